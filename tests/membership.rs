//! Membership on a real lab: `node add` (spec edited with comments kept, generated, started, joined via
//! retry_join, unsealed, voter in autopilot), then `node remove` (raft remove-peer, back to 3 peers).

mod common_ops;

use assert_cmd::Command;
use vaultnix::lab::LabHandle;

#[test]
fn add_a_fourth_voter_then_remove_it() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), common_ops::SPEC);
    let dir = t.path().join("lab");
    let lab = LabHandle::up(Some(&spec), &dir).expect("lab up");
    // Stops whatever the lab runs now (a 4th node included) even when an assertion fails midway.
    struct Down(std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            if let Ok(l) = vaultnix::lab::Lab::open(&self.0, None) {
                let _ = l.down(false);
            }
        }
    }
    let _down = Down(dir.clone());

    let a = Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["node", "add", "vault-4", "--provider", "onprem", "--address", "192.0.2.14", "--out"])
        .arg(&dir)
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    eprintln!("{out}");
    assert!(out.contains("vault-4 joined, unsealed and is a voter"), "{out}");
    assert!(out.contains("raft peers: 4"), "{out}");
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.starts_with("# ops test cluster\n"), "comments kept");
    assert!(text.contains("name = \"vault-4\""));
    assert!(dir.join("flake/pki/vault-4.crt").exists() && dir.join("flake/nodes/vault-4.server.json").exists());
    let c = vaultnix::lab::Lab::open(&dir, None).unwrap().cluster().unwrap();
    // The new node's drain agent runs with it (and goes with it below).
    let agent = vaultnix::lab::Lab::open(&dir, None).unwrap().pid("agent-vault-4").expect("vault-4's drain agent runs");
    let root = lab.root_token().unwrap();
    let st = vaultnix::api::block_on(async {
        let a = vaultnix::ops::common::find_active(&c).await.unwrap().with_token(Some(root.clone()));
        a.autopilot_state().await.unwrap()
    });
    assert!(st.voters.contains(&"vault-4".to_string()), "{:?}", st.voters);
    assert_eq!(st.voters.len(), 4);

    let a = Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["node", "remove", "vault-4", "--out"])
        .arg(&dir)
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    eprintln!("{out}");
    assert!(out.contains("raft peers: 3"), "{out}");
    assert!(!std::fs::read_to_string(&spec).unwrap().contains("vault-4"));
    assert!(!dir.join("flake/nodes/vault-4.server.json").exists());
    let lab2 = vaultnix::lab::Lab::open(&dir, None).unwrap();
    assert!(lab2.pid("vault-4").is_none());
    assert!(!vaultnix::lab::process::alive(agent), "vault-4's drain agent (pid {agent}) still runs after its removal");
    // The node process for vault-4 is no longer part of the lab plan: make sure nothing of it runs.
    lab.down().unwrap();
}
