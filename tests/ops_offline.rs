//! Offline day-2 commands through the real binary: node add/remove on a spec file, certs renew, prune.

use assert_cmd::Command;
use std::fs;

fn vaultnix() -> Command {
    Command::cargo_bin("vaultnix").unwrap()
}

#[test]
fn node_add_then_remove_edits_spec_and_regenerates() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("cluster.toml");
    let out = t.path().join("out");
    vaultnix().args(["init"]).arg(&spec).assert().success();
    let original = fs::read_to_string(&spec).unwrap();
    vaultnix().args(["generate", "--spec"]).arg(&spec).arg("--out").arg(&out).assert().success();
    vaultnix()
        .args(["node", "add", "vault-4", "--provider", "linode", "--address", "203.0.113.40"])
        .args(["--overlay-address", "10.88.0.4", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let edited = fs::read_to_string(&spec).unwrap();
    assert!(edited.starts_with(original.trim_end()), "comments and formatting kept");
    assert!(out.join("flake/pki/vault-4.crt").exists() && out.join("flake/nodes/vault-4.server.json").exists());
    let n1 = fs::read_to_string(out.join("flake/nodes/vault-1.server.json")).unwrap();
    assert!(n1.contains("10.88.0.4:8200"), "peers retry_join the new node");
    // generate --check agrees with what node add wrote
    vaultnix().args(["generate", "--check", "--spec"]).arg(&spec).arg("--out").arg(&out).assert().success();

    // an invalid addition (duplicate overlay address) is refused with exit 2 and nothing written
    vaultnix()
        .args(["node", "add", "vault-5", "--provider", "linode", "--address", "203.0.113.41"])
        .args(["--overlay-address", "10.88.0.4", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    assert_eq!(fs::read_to_string(&spec).unwrap(), edited);

    // No token anywhere: remove-peer is refused before any request is sent (the example spec's addresses
    // are not loopback), and nothing changes; --spec-only edits the spec alone.
    vaultnix()
        .args(["node", "remove", "vault-4", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_TOKEN")
        .assert()
        .code(1);
    assert_eq!(fs::read_to_string(&spec).unwrap(), edited);
    vaultnix()
        .args(["node", "remove", "vault-4", "--spec-only", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(fs::read_to_string(&spec).unwrap().trim_end(), original.trim_end());
    assert!(!out.join("flake/nodes/vault-4.server.json").exists());
}

#[test]
fn certs_renew_all_reissues_under_same_ca() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    vaultnix().args(["generate", "--out"]).arg(&out).assert().success();
    let ca = fs::read(out.join("flake/pki/ca.crt")).unwrap();
    let c1 = fs::read(out.join("flake/pki/vault-1.crt")).unwrap();
    let a = vaultnix().args(["certs", "renew", "--out"]).arg(&out).assert().success();
    let s = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(s.contains("kept vault-1") && s.contains("CA:"), "{s}");
    assert_eq!(fs::read(out.join("flake/pki/vault-1.crt")).unwrap(), c1);
    vaultnix().args(["certs", "renew", "--all", "--out"]).arg(&out).assert().success();
    assert_ne!(fs::read(out.join("flake/pki/vault-1.crt")).unwrap(), c1);
    assert_eq!(fs::read(out.join("flake/pki/ca.crt")).unwrap(), ca);
    vaultnix().args(["generate", "--check", "--out"]).arg(&out).assert().success();
    vaultnix().args(["certs", "renew", "--within", "soon", "--out"]).arg(&out).assert().code(2);
}
