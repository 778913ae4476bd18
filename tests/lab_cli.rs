//! The lab through the command line: up, env, status --output json, bootstrap re-run, step-down, down.
//! Real bao and HAProxy on a loopback range from `alloc_base()`; every command is bounded by its own
//! waits.

use assert_cmd::Command;
use std::path::Path;

fn vaultnix() -> Command {
    let mut c = Command::cargo_bin("vaultnix").unwrap();
    c.timeout(std::time::Duration::from_secs(180));
    c
}

#[test]
fn lab_cli_up_env_status_bootstrap_step_down_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let d = dir.to_str().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/lab.toml");
    let base = vaultnix::lab::alloc_base().unwrap().to_string();

    // Make sure the processes go away even if an assertion below fails.
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::cargo_bin("vaultnix").map(|mut c| c.args(["lab", "down", "--dir", &self.0]).output());
        }
    }
    let _guard = Down(d.to_string());

    let out =
        vaultnix().args(["lab", "up", "--spec", spec.to_str().unwrap(), "--dir", d, "--base", &base]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lab up failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("initialized vault-1") && stdout.contains("bootstrapped"), "{stdout}");
    assert!(stderr.contains("ROOT MATERIAL"), "the root material warning is loud: {stderr}");

    let env = vaultnix().args(["lab", "env", "--dir", d]).output().unwrap();
    let env = String::from_utf8_lossy(&env.stdout).to_string();
    assert!(env.contains(&format!("export BAO_ADDR=https://{base}:8200")), "{env}");
    assert!(env.contains("export VAULT_CACERT=") && env.contains("export BAO_TOKEN="), "{env}");

    let st = vaultnix().args(["status", "--out", d, "--output", "json"]).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let states: Vec<&str> = v["nodes"].as_array().unwrap().iter().map(|n| n["state"].as_str().unwrap_or("")).collect();
    assert_eq!(states.iter().filter(|s| **s == "active").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == "standby").count(), 2, "{states:?}");
    let init: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("secrets/init.json")).unwrap()).unwrap();
    let root = init["root_token"].as_str().unwrap();
    assert!(!root.is_empty() && !String::from_utf8_lossy(&st.stdout).contains(root), "no token in status output");

    let b = vaultnix().args(["bootstrap", "--out", d]).output().unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(String::from_utf8_lossy(&b.stdout).contains("already bootstrapped: nothing to do"));

    let sd = vaultnix().args(["step-down", "--out", d]).output().unwrap();
    let sds = String::from_utf8_lossy(&sd.stdout);
    assert!(sd.status.success(), "{sds}\n{}", String::from_utf8_lossy(&sd.stderr));
    assert!(sds.contains("stepped down") && sds.contains("drained at HAProxy"), "{sds}");
    // Right after it the new active node has just become active: the next step-down first waits
    // until the node that stepped down is out of OpenBao's 10 s post-step-down pause (raft could
    // otherwise hand it the leadership while it cannot take the HA lock) and says so.
    let t = std::time::Instant::now();
    let sd = vaultnix().args(["step-down", "--out", d]).output().unwrap();
    let sds = String::from_utf8_lossy(&sd.stdout);
    assert!(sd.status.success(), "{sds}\n{}", String::from_utf8_lossy(&sd.stderr));
    assert!(sds.contains("stepped down") && sds.contains("s first: "), "{sds}");
    assert!(t.elapsed() >= std::time::Duration::from_secs(5), "{sds}");

    let down = vaultnix().args(["lab", "down", "--dir", d, "--purge"]).output().unwrap();
    let ds = String::from_utf8_lossy(&down.stdout);
    assert!(down.status.success(), "{ds}");
    assert!(ds.contains("stopped: haproxy, vault-3, vault-2, vault-1"), "{ds}");
    assert!(!dir.join("secrets").exists() && !dir.join("data").exists());
}
