//! Tampering with a generated tree is detected with a clear message and a non-zero exit: a modified
//! manifest or generated file (`generate --check`), a CA key that does not match the CA certificate, a
//! corrupted node key, a node certificate from another CA.
//!
//! TODO(snapshot command, other branch): `snapshot_tamper_is_detected` — a snapshot file with one byte
//! flipped, or its checksum sidecar edited, must be refused by `vaultnix snapshot restore` with a message
//! naming the file, before anything is sent to the cluster (see docs/security.md).

use assert_cmd::Command;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn vaultnix(args: &[&str], out: &Path) -> Out {
    let o = Command::cargo_bin("vaultnix")
        .unwrap()
        .env_remove("VAULTNIX_SPEC")
        .args(args)
        .arg("--out")
        .arg(out)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let r = Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

fn generated(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    let r = vaultnix(&["generate"], &out);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(vaultnix(&["generate", "--check"], &out).code, Some(0), "fresh tree must pass --check");
    out
}

/// Every file's bytes and mode, to prove a refused run wrote nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut m = BTreeMap::new();
    fn rec(d: &Path, m: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            if p.is_dir() {
                m.insert(p.clone(), (vec![], mode));
                rec(&p, m);
            } else {
                m.insert(p.clone(), (std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    rec(dir, &mut m);
    m
}

fn no_staging_left(parent: &Path) {
    for e in std::fs::read_dir(parent).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.contains("staging"), "staging directory {n} left behind");
    }
}

#[test]
fn modified_manifest_is_drift() {
    let t = tempfile::tempdir().unwrap();
    let out = generated(t.path());
    let m = out.join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    // Point the manifest's hash for a file at something else, as someone hiding an edit might.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let first_hash = v["files"]["flake/haproxy/haproxy.cfg"].as_str().unwrap();
    std::fs::write(&m, text.replace(first_hash, &"0".repeat(64))).unwrap();
    let r = vaultnix(&["generate", "--check"], &out);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stdout.contains("differs: manifest.json"), "{}", r.stdout);
    assert!(r.stderr.contains("differs from what the spec generates"), "{}", r.stderr);
    // Removing the manifest is drift too.
    std::fs::remove_file(&m).unwrap();
    let r = vaultnix(&["generate", "--check"], &out);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains("missing: manifest.json"), "{}", r.stdout);
    // A manifest that is not JSON is an error, not a pass.
    std::fs::write(&m, "not json").unwrap();
    let r = vaultnix(&["generate", "--check"], &out);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    // Reported as drift, naming the damage (the summary on stdout, the verdict on stderr).
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("manifest.json") && all.contains("not a vaultnix manifest"), "{all}");
    assert!(r.stderr.contains("differs from what the spec generates"), "{}", r.stderr);
}

#[test]
fn modified_generated_file_is_drift_even_with_a_matching_manifest() {
    let t = tempfile::tempdir().unwrap();
    let out = generated(t.path());
    let f = out.join("flake/nodes/vault-1.server.json");
    let orig = std::fs::read_to_string(&f).unwrap();
    let evil = orig.replace("\"tls_min_version\": \"tls12\"", "\"tls_disable\": true");
    assert_ne!(orig, evil);
    std::fs::write(&f, &evil).unwrap();
    let r = vaultnix(&["generate", "--check"], &out);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains("differs: flake/nodes/vault-1.server.json"), "{}", r.stdout);
    // Now also "fix" the manifest to the edited file's hash: still drift.
    let m = out.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
    v["files"]["flake/nodes/vault-1.server.json"] = vaultnix::output::sha256_hex(evil.as_bytes()).into();
    std::fs::write(&m, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let r = vaultnix(&["generate", "--check"], &out);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains("flake/nodes/vault-1.server.json"), "{}", r.stdout);
    // A plain generate repairs it.
    assert_eq!(vaultnix(&["generate"], &out).code, Some(0));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), orig);
    assert_eq!(vaultnix(&["generate", "--check"], &out).code, Some(0));
}

fn openssl_key() -> String {
    let o = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .output()
        .expect("openssl is installed");
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn ca_key_that_does_not_match_the_certificate_is_refused_and_nothing_written() {
    let t = tempfile::tempdir().unwrap();
    let out = generated(t.path());
    std::fs::write(out.join("secrets/ca.key"), openssl_key()).unwrap();
    let before = snapshot(&out);
    for args in [&["generate"][..], &["generate", "--check"][..], &["generate", "--rotate-keys"][..]] {
        let r = vaultnix(args, &out);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("secrets/ca.key") && r.stderr.contains("flake/pki/ca.crt"), "{}", r.stderr);
        assert!(r.stderr.contains("does not match"), "{}", r.stderr);
        assert_eq!(snapshot(&out), before, "{args:?} wrote something");
        no_staging_left(t.path());
    }
    // A CA certificate that is garbage is refused the same way.
    std::fs::write(out.join("flake/pki/ca.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap();
    let before = snapshot(&out);
    let r = vaultnix(&["generate"], &out);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("flake/pki/ca.crt"), "{}", r.stderr);
    assert_eq!(snapshot(&out), before);
}

#[test]
fn corrupted_node_key_is_refused_and_nothing_written() {
    let t = tempfile::tempdir().unwrap();
    let out = generated(t.path());
    let key = out.join("secrets/vault-2.key");
    let mut k = std::fs::read(&key).unwrap();
    let mid = k.len() / 2;
    k[mid] ^= 0x55; // a flipped byte in the base64 body
    k.truncate(k.len() - 30);
    std::fs::write(&key, &k).unwrap();
    let before = snapshot(&out);
    for args in [&["generate"][..], &["generate", "--check"][..]] {
        let r = vaultnix(args, &out);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("secrets/vault-2.key") && r.stderr.contains("not a PEM private key"), "{}", r.stderr);
        assert_eq!(snapshot(&out), before, "{args:?} wrote something");
    }
    // A different valid key in its place is not silently paired with the old certificate: the
    // certificate is reissued for the new key (and --check reports it first).
    std::fs::write(&key, openssl_key()).unwrap();
    let r = vaultnix(&["generate", "--check"], &out);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("flake/pki/vault-2.crt must be reissued (does not match the node key)"), "{}", r.stderr);
    let r = vaultnix(&["generate"], &out);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("issued certificate for vault-2 (does not match the node key)"), "{}", r.stdout);
}

#[test]
fn node_certificate_from_another_ca_is_never_trusted() {
    let t = tempfile::tempdir().unwrap();
    let out = generated(t.path());
    // A second cluster with the same spec: same CA name, different CA key.
    let other = t.path().join("other");
    assert_eq!(vaultnix(&["generate"], &other).code, Some(0));
    let cert = out.join("flake/pki/vault-1.crt");
    std::fs::copy(other.join("flake/pki/vault-1.crt"), &cert).unwrap();
    std::fs::copy(other.join("secrets/vault-1.key"), out.join("secrets/vault-1.key")).unwrap();
    let verify = |ca: &Path, c: &Path| {
        std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(ca)
            .arg(c)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!verify(&out.join("flake/pki/ca.crt"), &cert), "precondition: the foreign cert must not verify");

    let r = vaultnix(&["generate", "--check"], &out);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("flake/pki/vault-1.crt must be reissued (not signed by the current CA)"), "{}", r.stderr);

    let r = vaultnix(&["generate"], &out);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("issued certificate for vault-1 (not signed by the current CA)"), "{}", r.stdout);
    assert!(verify(&out.join("flake/pki/ca.crt"), &cert), "the reissued certificate must chain to our CA");
    for n in ["vault-2", "vault-3"] {
        assert!(verify(&out.join("flake/pki/ca.crt"), &out.join(format!("flake/pki/{n}.crt"))), "{n}");
    }
    assert_eq!(vaultnix(&["generate", "--check"], &out).code, Some(0));
}
