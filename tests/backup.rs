//! The scheduled backup job on a real lab (OpenBao + HAProxy on loopback): the unit's own command
//! (ExecStart's arguments read from modules/backup.nix, config rendered into the lab by `generate`)
//! run on a STANDBY host saves the ACTIVE node's data with the `snapshot save` sidecar; restoring it
//! brings back the latest acknowledged writes. A missing backup token is said plainly.

mod common_ops;

use assert_cmd::Command;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use vaultnix::api::{block_on, NodeState};
use vaultnix::lab::{LabHandle, LabOptions};
use vaultnix::ops::snapshot;

/// The arguments modules/backup.nix's ExecStart passes to the vaultnix binary, with the config path
/// replaced by `config`: the test runs exactly what the unit runs.
fn unit_args(config: &Path) -> Vec<String> {
    let m = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/modules/backup.nix")).unwrap();
    let line = m.lines().find(|l| l.trim_start().starts_with("ExecStart =")).expect("ExecStart in modules/backup.nix");
    let after = line.split("\"vaultnix\"}").nth(1).expect("ExecStart runs the vaultnix binary");
    let args = after.trim_end().trim_end_matches(';').trim_end_matches('"');
    let path_var = m
        .lines()
        .find_map(|l| l.trim().strip_prefix("configPath = \"").map(|r| r.trim_end_matches("\";").to_string()))
        .expect("configPath in modules/backup.nix");
    assert_eq!(path_var, "/etc/vaultnix/backup.json");
    let args: Vec<String> = args
        .split_whitespace()
        .map(|a| if a == "${configPath}" { config.to_string_lossy().into_owned() } else { a.to_string() })
        .collect();
    assert_eq!(args[..3], ["backup", "run", "--config"], "{args:?}");
    args
}

#[test]
fn backup_unit_command_on_a_standby_saves_the_active_nodes_latest_writes() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), common_ops::SPEC);
    let dir = t.path().join("lab");
    let mut o = LabOptions::new(Some(spec), &dir);
    o.base = Some(vaultnix::lab::alloc_base().unwrap());
    o.backup_token = true;
    let lab = LabHandle::up_with(o).expect("lab up");
    let token_file = dir.join("secrets/backup-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token_file).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600, "bootstrap --backup-token writes the token owner-only");

    let c = lab.cluster_with_root().unwrap();
    let active = block_on(vaultnix::ops::common::find_active(&c)).expect("an active node");
    let standby = block_on(async {
        for n in &c.nodes {
            if let Ok(h) = n.health().await {
                if h.state == NodeState::Standby {
                    return Some(n.clone());
                }
            }
        }
        None
    })
    .expect("a standby");

    // Acknowledged writes, the last one immediately before the job runs.
    const N: usize = 200;
    block_on(async {
        for i in 0..N {
            active.kv_put("secret", &format!("k{i}"), &json!({ "v": i })).await.unwrap();
        }
    });
    let config = dir.join(format!("flake/nodes/{}.backup.json", standby.name));
    let run = || Command::cargo_bin("vaultnix").unwrap().args(unit_args(&config)).assert();
    let a = run().success();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&a.get_output().stdout),
        String::from_utf8_lossy(&a.get_output().stderr)
    );
    eprintln!("{out}");
    assert!(out.contains("is a standby"), "{out}");
    let snaps = dir.join("backups");
    let file = snapshot::latest(&snaps).unwrap().expect("the job wrote a snapshot");
    // The same sidecar `snapshot save` writes, accepted by the restore path's check.
    let meta = snapshot::verify(&file).unwrap();
    assert_eq!(meta.source_node, active.name, "run on a standby, saved from the active node");
    assert_eq!(meta.cluster, "ops");
    let prom = std::fs::read_to_string(dir.join("textfile/vaultnix_backup.prom")).unwrap();
    assert!(
        prom.contains(&format!(
            "vaultnix_backup_last_success_timestamp_seconds{{cluster=\"ops\",node=\"{}\"}}",
            standby.name
        )),
        "{prom}"
    );

    // Without the token: a plain message, exit 1, no new snapshot.
    let saved = std::fs::read(&token_file).unwrap();
    std::fs::remove_file(&token_file).unwrap();
    let a = run().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("no backup token") && err.contains("--backup-token"), "{err}");
    assert_eq!(std::fs::read_dir(&snaps).unwrap().count(), 2, "only the first snapshot and its sidecar");
    std::fs::write(&token_file, saved).unwrap();

    // Writes after the snapshot, which the restore must undo.
    block_on(active.kv_put("secret", "after", &json!({ "v": "x" }))).unwrap();
    Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--out")
        .arg(&dir)
        .assert()
        .success();
    let mut ok = false;
    for _ in 0..60 {
        let r = block_on(async {
            let a = vaultnix::ops::common::find_active(&c).await.ok_or("no active node".to_string())?;
            if a.kv_get("secret", "after").await.map_err(|e| e.to_string())?.is_some() {
                return Err("not restored yet".to_string());
            }
            let mut got = 0;
            for i in 0..N {
                if let Some(v) = a.kv_get("secret", &format!("k{i}")).await.map_err(|e| e.to_string())? {
                    if v["v"] == json!(i) {
                        got += 1;
                    }
                }
            }
            Ok::<usize, String>(got)
        });
        match r {
            Ok(got) if got == N => {
                ok = true;
                break;
            }
            other => eprintln!("after restore: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(ok, "every write acknowledged before the backup reads back after the restore");
    lab.down().unwrap();
}
