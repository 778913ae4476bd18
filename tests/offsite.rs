//! Off-host copies with real restic through a loopback REST server (`rclone serve restic`, started
//! by the test on 127.0.0.1): N acknowledged writes, the backup unit's own command copies the
//! verified snapshot to the repository, `snapshot list --from-repo` shows it, the rehearsal unit's
//! command restores it into a throwaway server and reads the canary back; the whole lab is wiped,
//! a fresh lab is built, `snapshot restore --from-repo --force` + the original unseal keys bring
//! every write back. Then one pack of the repository is corrupted: `snapshot restore --from-repo`
//! refuses before anything is sent, and the rehearsal fails loudly (exit 1, success metric 0, the
//! last success kept).

mod common_ops;

use assert_cmd::Command;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vaultnix::api::block_on;
use vaultnix::lab::{LabHandle, LabOptions};

/// The arguments the unit in `module` passes to the vaultnix binary (ExecStart), with the config
/// path replaced by `config`: the test runs exactly what the unit runs.
fn unit_args(module: &str, config: &Path) -> Vec<String> {
    let m = std::fs::read_to_string(format!("{}/modules/{module}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let line = m.lines().find(|l| l.trim_start().starts_with("ExecStart =")).expect("ExecStart");
    let after = line.split("\"vaultnix\"}").nth(1).expect("ExecStart runs the vaultnix binary");
    let args = after.trim_end().trim_end_matches(';').trim_end_matches('"');
    args.split_whitespace()
        .map(|a| if a == "${configPath}" { config.to_string_lossy().into_owned() } else { a.to_string() })
        .collect()
}

/// `rclone serve restic` on a free loopback port; killed by its pid when dropped.
struct RestServer {
    child: std::process::Child,
    port: u16,
}

impl RestServer {
    fn start(dir: &Path) -> RestServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let child = std::process::Command::new("rclone")
            .args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")])
            .arg(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rclone (scripts/install-tools.sh installs it)");
        let s = RestServer { child, port };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "rclone serve restic did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn out_of(a: &assert_cmd::assert::Assert) -> String {
    format!("{}{}", String::from_utf8_lossy(&a.get_output().stdout), String::from_utf8_lossy(&a.get_output().stderr))
}

fn vaultnix() -> Command {
    Command::cargo_bin("vaultnix").unwrap()
}

const N: usize = 150;

#[test]
fn copies_through_a_rest_server_restore_into_a_fresh_lab_and_corruption_is_refused() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let repo_dir = t.path().join("repo");
    std::fs::create_dir_all(&repo_dir).unwrap();
    let rest = RestServer::start(&repo_dir);
    let spec_text = format!(
        "{}\n[backup.restic]\nrepository = \"rest:http://127.0.0.1:{}/\"\npassword_file = \"/run/agenix/restic-password\"\nkeep_daily = 7\n",
        common_ops::SPEC,
        rest.port
    );
    // [backup.restic] is a sub-table of [backup]: appended after the spec's last [[nodes]] it is still valid TOML.
    let spec = common_ops::spec_in(t.path(), &spec_text);
    let dir = t.path().join("lab");
    let mut o = LabOptions::new(Some(spec.clone()), &dir);
    o.base = Some(vaultnix::lab::alloc_base().unwrap());
    o.backup_token = true;
    let lab = LabHandle::up_with(o).expect("lab up");
    // The lab's layout: the unit credentials are files in secrets/.
    std::fs::write(dir.join("secrets/restic-password"), "correct horse battery staple\n").unwrap();
    std::fs::copy(dir.join("secrets/init.json"), dir.join("secrets/unseal-keys")).unwrap();

    let c = lab.cluster_with_root().unwrap();
    let active = block_on(vaultnix::ops::common::find_active(&c)).expect("an active node");
    block_on(async {
        for i in 0..N {
            active.kv_put("secret", &format!("k{i}"), &json!({ "v": i })).await.unwrap();
        }
    });

    // The backup unit's command copies the verified snapshot off the host.
    let config = dir.join("flake/nodes/vault-1.backup.json");
    let a = vaultnix().args(unit_args("backup.nix", &config)).assert().success();
    let out = out_of(&a);
    eprintln!("{out}");
    assert!(out.contains("copied to the restic repository"), "{out}");
    let prom = std::fs::read_to_string(dir.join("textfile/vaultnix_backup_offsite.prom")).unwrap();
    assert!(
        prom.contains("vaultnix_backup_offsite_last_success_timestamp_seconds{cluster=\"ops\",node=\"vault-1\"}"),
        "{prom}"
    );
    // The repository really is on the REST server (encrypted: no snapshot bytes in clear).
    assert!(repo_dir.join("config").is_file(), "restic initialised the repository behind the REST server");

    let a = vaultnix()
        .args(["snapshot", "list", "--from-repo", "--output", "json", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&dir)
        .arg("--password-file")
        .arg(dir.join("secrets/restic-password"))
        .assert()
        .success();
    let list: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let copies = list.as_array().unwrap();
    assert_eq!(copies.len(), 1, "{list}");
    let tags: Vec<&str> = copies[0]["tags"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert!(tags.contains(&"vaultnix") && tags.iter().any(|t| t.starts_with("sha256=")), "{tags:?}");
    assert!(tags.iter().any(|t| t.starts_with("canary=")), "{tags:?}");

    // The rehearsal (the LB's unit command) on the healthy repository.
    let rconfig = dir.join(format!("flake/nodes/{}.rehearsal.json", lab.plan().lb.name));
    let rargs = unit_args("rehearsal.nix", &rconfig);
    assert_eq!(rargs[..3], ["backup", "rehearse", "--config"], "{rargs:?}");
    let a = vaultnix().args(&rargs).timeout(Duration::from_secs(600)).assert();
    let out = out_of(&a);
    eprintln!("{out}");
    assert!(a.get_output().status.success(), "rehearsal on a healthy repository: {out}");
    assert!(out.contains("canary read back"), "{out}");
    let rprom_path = dir.join("textfile/vaultnix_restore_rehearsal.prom");
    let rprom = std::fs::read_to_string(&rprom_path).unwrap();
    assert!(rprom.contains("vaultnix_restore_rehearsal_success{cluster=\"ops\",host=\"vault-lb\"} 1"), "{rprom}");
    let rprom_healthy = rprom.clone();
    let last_success = rprom
        .lines()
        .find(|l| l.starts_with("vaultnix_restore_rehearsal_last_success_timestamp_seconds{"))
        .expect("last success metric")
        .to_string();
    assert!(rprom.contains("vaultnix_restore_rehearsal_duration_seconds{"), "{rprom}");
    assert!(!dir.join("rehearsal").read_dir().unwrap().any(|_| true), "the throwaway server's directory is wiped");

    // Lose the whole lab: only the repository (and the original keys, kept apart) remain.
    let init_original = std::fs::read(dir.join("secrets/init.json")).unwrap();
    let keys: Vec<String> = serde_json::from_slice::<serde_json::Value>(&init_original).unwrap()["keys_base64"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let root_original = serde_json::from_slice::<serde_json::Value>(&init_original).unwrap()["root_token"]
        .as_str()
        .unwrap()
        .to_string();
    let cluster_id_original = copies[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|x| x.as_str().unwrap().strip_prefix("cluster_id=").map(str::to_string))
        .unwrap();
    lab.down().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    // A fresh lab (its own barrier keys) in the same place, the repository password put back.
    let mut o = LabOptions::new(Some(spec.clone()), &dir);
    o.base = Some(vaultnix::lab::alloc_base().unwrap());
    let lab = LabHandle::up_with(o).expect("fresh lab up");
    std::fs::write(dir.join("secrets/restic-password"), "correct horse battery staple\n").unwrap();
    // A plain restore is refused (another cluster), before anything is sent.
    let a = vaultnix()
        .args(["snapshot", "restore", "--from-repo", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&dir)
        .arg("--password-file")
        .arg(dir.join("secrets/restic-password"))
        .assert()
        .code(1);
    let out = out_of(&a);
    assert!(out.contains("--force"), "{out}");
    let a = vaultnix()
        .args(["snapshot", "restore", "--from-repo", "--force", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&dir)
        .arg("--password-file")
        .arg(dir.join("secrets/restic-password"))
        .assert()
        .success();
    eprintln!("{}", out_of(&a));
    let plan = lab.plan().clone();
    let ca = std::fs::read(dir.join("flake/pki/ca.crt")).unwrap();
    let http = vaultnix::ops::live::Http::new(&ca, Duration::from_secs(60)).unwrap();
    let mut timeline = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let active_url = rt
        .block_on(vaultnix::ops::restore_drill::unseal_after_restore(
            &http,
            &plan,
            &keys,
            &cluster_id_original,
            Duration::from_secs(120),
            &mut timeline,
            &|n| {
                lab.stop(n)?;
                lab.start(n)?;
                Ok(())
            },
        ))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", timeline.join("\n")));
    let mut got = 0;
    rt.block_on(async {
        for i in 0..N {
            let (s, v) = http
                .json(reqwest::Method::GET, &active_url, &format!("/v1/secret/data/k{i}"), Some(&root_original), None)
                .await
                .unwrap();
            if s.is_success() && v.pointer("/data/data/v") == Some(&json!(i)) {
                got += 1;
            }
        }
    });
    assert_eq!(got, N, "every acknowledged write reads back from the off-host copy");

    // Corrupt one data pack of the repository (same size, flipped bytes).
    let mut packs: Vec<PathBuf> = walk(&repo_dir.join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let biggest = packs.last().expect("a data pack").clone();
    let mut b = std::fs::read(&biggest).unwrap();
    let mid = b.len() / 2;
    for x in &mut b[mid..mid + 64] {
        *x ^= 0xff;
    }
    std::fs::write(&biggest, &b).unwrap();
    let a = vaultnix()
        .args(["snapshot", "restore", "--from-repo", "--force", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&dir)
        .arg("--password-file")
        .arg(dir.join("secrets/restic-password"))
        .assert()
        .code(1);
    let out = out_of(&a);
    assert!(out.contains("refusing to restore"), "a corrupted copy is refused: {out}");
    assert!(!out.contains("restored "), "{out}");

    std::fs::write(dir.join("secrets/backup-token"), "unused-the-copy-fails-first\n").unwrap();
    std::fs::write(dir.join("secrets/unseal-keys"), &init_original).unwrap();
    // The textfile as the healthy rehearsal left it (the lab was rebuilt since).
    std::fs::create_dir_all(rprom_path.parent().unwrap()).unwrap();
    std::fs::write(&rprom_path, &rprom_healthy).unwrap();
    let a = vaultnix().args(&rargs).timeout(Duration::from_secs(600)).assert().code(1);
    let out = out_of(&a);
    assert!(out.contains("restore rehearsal failed"), "{out}");
    let rprom = std::fs::read_to_string(&rprom_path).unwrap_or_default();
    assert!(rprom.contains("vaultnix_restore_rehearsal_success{cluster=\"ops\",host=\"vault-lb\"} 0"), "{rprom}");
    assert!(rprom.contains(&last_success), "the last success is kept after a failure: {rprom}");
    lab.down().unwrap();
    drop(rest);
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p);
            }
        }
    }
    v
}

/// The [backup.restic] alert rules fire on the series that should trigger them (promtool, real rules
/// rendered by `generate` from a spec with [backup.restic]), and not before.
#[test]
fn restic_alert_rules_fire_when_copies_or_rehearsals_are_stale() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("cluster.toml");
    std::fs::write(
        &spec,
        format!("{}\n[backup.restic]\nrepository = \"/mnt/offsite/vault\"\npassword_file = \"/run/agenix/restic-password\"\n", common_ops::SPEC),
    )
    .unwrap();
    let out = t.path().join("out");
    vaultnix().args(["--quiet", "generate", "--spec"]).arg(&spec).arg("--out").arg(&out).assert().success();
    let dir = t.path().join("alerts");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(out.join("flake/monitoring/alerts.yml"), dir.join("alerts.yml")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/alerts-restic/rehearsal-stale.yml"),
        dir.join("rehearsal-stale.yml"),
    )
    .unwrap();
    let o = std::process::Command::new(std::env::var("VAULTNIX_PROMTOOL").unwrap_or_else(|_| "promtool".into()))
        .current_dir(&dir)
        .args(["test", "rules", "rehearsal-stale.yml"])
        .output()
        .expect("promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && text.contains("SUCCESS"), "{text}");
}
