//! Snapshots on a real lab (OpenBao + HAProxy on loopback): the restore drill at CI size, save from a
//! standby, tampered/truncated snapshots refused with nothing restored, same-cluster restore, prune.

mod common_ops;

use assert_cmd::Command;
use serde_json::json;
use std::time::Duration;
use vaultnix::api::{block_on, NodeState};
use vaultnix::lab::LabHandle;
use vaultnix::ops::restore_drill::{run_restore_drill, RestoreDrillOptions};
use vaultnix::ops::snapshot;

#[test]
fn restore_drill_200_secrets_onto_a_fresh_cluster() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), common_ops::SPEC);
    let r = run_restore_drill(&RestoreDrillOptions {
        spec: Some(spec),
        workdir: t.path().join("drill"),
        secrets: 200,
        concurrency: 8,
        keep_files: false,
        from_repo: false,
    })
    .expect("restore drill");
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(r.plain_restore_refused, "a plain restore of another cluster's snapshot must be refused");
    assert_eq!((r.read_back, r.missing, r.wrong), (200, 0, 0));
    assert!(r.saved_from.contains("standby"), "saved from a standby: {}", r.saved_from);
    assert!(r.saved_via_redirect, "a standby's own snapshot can lag: the active node must have served it");
    assert_eq!(r.restored_cluster_id, r.original_cluster_id, "the fresh cluster now runs the original one");
    assert!(r.repo.is_none());
    assert!(r.ok());
}

/// `drill restore --from-repo` (issue 17): the snapshot goes through a real restic repository twice (a
/// change in between), the fresh cluster is restored from the newest copy, and every write of both
/// rounds reads back; RPO and RTO are measured, and the second copy deduplicates.
#[test]
fn restore_drill_through_a_restic_repository_reports_rpo_and_rto() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), common_ops::SPEC);
    let r = run_restore_drill(&RestoreDrillOptions {
        spec: Some(spec),
        workdir: t.path().join("drill"),
        secrets: 200,
        concurrency: 8,
        // Kept, to look at the repository below (inside the test's temporary directory).
        keep_files: true,
        from_repo: true,
    })
    .expect("restore drill from the repository (is restic installed?)");
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    let f = r.repo.as_ref().expect("repository figures");
    // 200 written, 2 more after the first copy: only the newest copy holds all 202.
    assert_eq!(f.changed_secrets, 2);
    assert_eq!((r.secrets, r.read_back, r.missing, r.wrong), (202, 202, 0, 0));
    assert!(f.repository.join("config").is_file(), "a restic repository");
    assert!(f.repo_bytes_after_second > f.repo_bytes_after_first && f.repo_bytes_after_first > 0);
    assert!(f.dedup_ratio > 1.0, "the second copy of a barely changed snapshot deduplicates: {f:?}");
    assert!(f.rpo_seconds > 0.0 && f.rpo_seconds < 600.0, "{f:?}");
    assert!(f.rto_seconds >= f.fetch_seconds && f.fetch_seconds > 0.0, "{f:?}");
    assert_eq!(r.restored_cluster_id, r.original_cluster_id);
    assert!(r.ok());
}

#[test]
fn save_from_standby_refuse_tampered_restore_same_cluster_prune() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), common_ops::SPEC);
    let dir = t.path().join("lab");
    let lab = LabHandle::up(Some(&spec), &dir).expect("lab up");
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
    block_on(active.kv_put("secret", "x", &json!({"v": "1"}))).unwrap();

    let snaps = t.path().join("snaps");
    let standby_url = lab.plan().api_url(lab.plan().node(&standby.name).unwrap());
    let save = |addr: &str| {
        let a = Command::cargo_bin("vaultnix")
            .unwrap()
            .args(["snapshot", "save", "--out"])
            .arg(&dir)
            .args(["--address", addr, "--dir"])
            .arg(&snaps)
            .assert()
            .success();
        // stdout: the result line; stderr: the note about the standby.
        format!(
            "{}{}",
            String::from_utf8_lossy(&a.get_output().stdout),
            String::from_utf8_lossy(&a.get_output().stderr)
        )
    };
    let out = save(&standby_url);
    eprintln!("{out}");
    let file = snapshot::latest(&snaps).unwrap().expect("a snapshot file");
    let meta = snapshot::verify(&file).unwrap();
    assert_eq!(meta.cluster, "ops");
    assert!(meta.cluster_id.is_some());
    assert_eq!(meta.seal.kind, "shamir");
    assert_eq!(meta.source_node, active.name, "asked a standby, saved from the active node");
    assert!(out.contains("is a standby"), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600);

    // x changes after the snapshot; a refused restore must leave it at 2.
    block_on(active.kv_put("secret", "x", &json!({"v": "2"}))).unwrap();
    let read_x = || block_on(active.kv_get("secret", "x")).unwrap().unwrap()["v"].as_str().unwrap().to_string();

    let restore = |f: &std::path::Path| {
        Command::cargo_bin("vaultnix").unwrap().args(["snapshot", "restore"]).arg(f).arg("--out").arg(&dir).assert()
    };
    let bytes = std::fs::read(&file).unwrap();
    let sidecar = std::fs::read(snapshot::sidecar_path(&file)).unwrap();
    let bad_dir = t.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad = bad_dir.join(file.file_name().unwrap());
    std::fs::write(snapshot::sidecar_path(&bad), &sidecar).unwrap();
    // one flipped byte in the middle
    let mut tampered = bytes.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x40;
    std::fs::write(&bad, &tampered).unwrap();
    let a = restore(&bad).code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("does not match") && err.contains("refusing"), "{err}");
    assert_eq!(read_x(), "2", "nothing restored");
    // truncated
    std::fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    let a = restore(&bad).code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(read_x(), "2", "nothing restored");

    // The genuine file restores onto its own cluster without --force.
    let a = restore(&file).success();
    eprintln!("{}", String::from_utf8_lossy(&a.get_output().stdout));
    let mut x = String::new();
    for _ in 0..60 {
        let r = block_on(async {
            let a = vaultnix::ops::common::find_active(&c).await.ok_or("no active node".to_string())?;
            a.kv_get("secret", "x").await.map_err(|e| e.to_string())
        });
        match r {
            Ok(Some(v)) => {
                x = v["v"].as_str().unwrap_or_default().to_string();
                if x == "1" {
                    break;
                }
            }
            other => eprintln!("after restore: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(x, "1", "restored to the snapshot's state");

    // prune: a second snapshot, then --keep-days 0 keeps only the newest.
    std::thread::sleep(Duration::from_millis(1100));
    save(&standby_url);
    let n = |d: &std::path::Path| std::fs::read_dir(d).unwrap().count();
    assert_eq!(n(&snaps), 4, "two snapshots with sidecars");
    Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["snapshot", "prune", "--keep-days", "0", "--dir"])
        .arg(&snaps)
        .assert()
        .success();
    assert_eq!(n(&snaps), 2, "the newest snapshot and its sidecar remain");
    assert_ne!(snapshot::latest(&snaps).unwrap().unwrap(), file);
    lab.down().unwrap();
}
