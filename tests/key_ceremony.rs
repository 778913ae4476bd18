//! Key ceremony and audit on a real lab: Shamir shares encrypted to three generated PGP keys (init.json
//! holds only PGP messages; each decrypts with its key; the decrypted shares unseal), `bootstrap
//! --revoke-root`, and the audit device writing its log by default.

mod common_ops;

use base64::Engine as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vaultnix::api::block_on;
use vaultnix::lab::{alloc_base, LabHandle, LabOptions};
use vaultnix::ops::bootstrap::{bootstrap, BootstrapOptions};

fn gpg(home: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut c = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gpg must be installed");
    if let Some(i) = stdin {
        c.stdin.take().unwrap().write_all(i).unwrap();
    } else {
        drop(c.stdin.take());
    }
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

#[test]
fn pgp_encrypted_shares_decrypt_and_unseal() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let holders = ["alice", "bob", "carol"];
    for h in holders {
        gpg(&home, &["--quick-gen-key", &format!("{h} <{h}@example.org>"), "rsa2048", "encrypt", "never"], None);
        let public = gpg(&home, &["--export", &format!("{h}@example.org")], None);
        assert!(!public.is_empty());
        // The armored export is accepted too and means the same key.
        let armored = gpg(&home, &["--export", "--armor", &format!("{h}@example.org")], None);
        assert_eq!(
            vaultnix::spec::pgp::pgp_key_base64(&armored).unwrap(),
            base64::engine::general_purpose::STANDARD.encode(&public)
        );
        std::fs::write(t.path().join(format!("{h}.gpg")), public).unwrap();
    }
    let spec_text = common_ops::SPEC
        .replace("threshold = 2\n", "threshold = 2\npgp_keys = [\"alice.gpg\", \"bob.gpg\", \"carol.gpg\"]\n");
    let spec = common_ops::spec_in(t.path(), &spec_text);
    let dir = t.path().join("lab");
    let mut o = LabOptions::new(Some(spec.clone()), &dir);
    o.base = Some(alloc_base().unwrap());
    o.bootstrap = false;
    let lab = LabHandle::up_with(o).expect("lab processes up");
    let plan = lab.plan().clone();

    // bootstrap initializes, saves the encrypted shares, and stops: only their holders can unseal.
    let err = block_on(bootstrap(&plan, &BootstrapOptions::new(&dir))).expect_err("sealed: holders must unseal");
    assert!(format!("{err:#}").contains("PGP"), "{err:#}");
    let init: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("secrets/init.json")).unwrap()).unwrap();
    let shares: Vec<String> =
        init["keys_base64"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(shares.len(), 3);
    let mut plain = Vec::new();
    for (i, s) in shares.iter().enumerate() {
        let msg = base64::engine::general_purpose::STANDARD.decode(s).expect("base64");
        // An OpenPGP message: the first packet is a public-key encrypted session key (tag 1), in either
        // the old (0x84/0x85) or the new (0xC1) packet format.
        assert!(matches!(msg[0], 0x84 | 0x85 | 0xc1), "share {i} is not a PGP message: {:#x}", msg[0]);
        let packets = String::from_utf8_lossy(&gpg(&home, &["--list-packets"], Some(&msg))).to_string();
        assert!(packets.contains("pubkey enc packet"), "{packets}");
        let key = String::from_utf8(gpg(&home, &["--decrypt"], Some(&msg))).unwrap();
        assert!(!key.trim().is_empty());
        plain.push(key.trim().to_string());
    }
    // Which holder's key opens which share: each share is for exactly one key, in order.
    let recipients: Vec<String> = shares
        .iter()
        .map(|s| {
            let msg = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
            String::from_utf8_lossy(&gpg(&home, &["--list-packets"], Some(&msg))).to_string()
        })
        .collect();
    assert_eq!(recipients.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "three distinct recipients");

    // Two decrypted shares (threshold 2) unseal every node.
    let keys = vaultnix::ops::unseal::Keys(plain[..2].to_vec());
    let c = lab.cluster().unwrap();
    let rep = block_on(vaultnix::ops::unseal::unseal_all(&c, &keys, Duration::from_secs(90)));
    assert!(rep.failed.is_empty(), "{rep:?}");
    let hs = block_on(vaultnix::ops::common::health_all(&c));
    for (n, h) in &hs {
        assert!(h.as_ref().map(|h| h.state.is_up()).unwrap_or(false), "{} not unsealed: {h:?}", n.name);
    }
    lab.down().unwrap();
}

#[test]
fn revoke_root_and_audit_log_on_by_default() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), common_ops::SPEC);
    let dir = t.path().join("lab");
    let mut o = LabOptions::new(Some(spec.clone()), &dir);
    o.base = Some(alloc_base().unwrap());
    o.admin_token = true;
    let lab = LabHandle::up_with(o).expect("lab up");
    let root = lab.root_token().unwrap();
    let admin = std::fs::read_to_string(dir.join("secrets/admin-token")).unwrap().trim().to_string();

    let out = assert_cmd::Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["bootstrap", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&dir)
        .args(["--admin-token", "--revoke-root"])
        .timeout(Duration::from_secs(180))
        .assert()
        .success();
    eprintln!("{}", String::from_utf8_lossy(&out.get_output().stdout));
    let c = lab.cluster().unwrap();
    let (root_ok, admin_ok) = block_on(async {
        let a = vaultnix::ops::common::find_active(&c).await.expect("active");
        let r = a.clone().with_token(Some(root.clone())).lookup_self().await.is_ok();
        let ad = a.clone().with_token(Some(admin.clone())).lookup_self().await.is_ok();
        (r, ad)
    });
    assert!(!root_ok, "the root token is revoked");
    assert!(admin_ok, "the admin token still works");

    // Audit: the config-declared file device logs every request (HMAC'd), 0600.
    let log = dir.join("logs/audit.log");
    let text = std::fs::read_to_string(&log).expect("audit log written");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600);
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.iter().any(|l| l["type"] == "request"), "request entries");
    assert!(lines.iter().any(|l| l["type"] == "response"), "response entries");
    assert!(!text.contains(&admin), "tokens are HMAC'd, never in clear");
    lab.down().unwrap();
}

#[test]
fn generate_root_with_key_shares_after_revoke() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), common_ops::SPEC);
    let dir = t.path().join("lab");
    let mut lo = LabOptions::new(Some(spec.clone()), &dir);
    lo.base = Some(alloc_base().unwrap());
    lo.admin_token = true;
    let lab = LabHandle::up_with(lo).expect("lab up");
    let admin = std::fs::read_to_string(dir.join("secrets/admin-token")).unwrap().trim().to_string();
    let c = lab.cluster().unwrap();
    let init: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("secrets/init.json")).unwrap()).unwrap();
    let keys: Vec<String> =
        init["keys_base64"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let root = init["root_token"].as_str().unwrap().to_string();
    let active = block_on(vaultnix::ops::common::find_active(&c)).expect("active");
    block_on(active.clone().with_token(Some(root.clone())).revoke_self()).unwrap();
    assert!(block_on(active.clone().with_token(Some(root)).lookup_self()).is_err(), "root revoked");

    let o = vaultnix::ops::root_token::GenerateRootOptions {
        address: lab.plan().api_url(lab.plan().node(&active.name).unwrap()),
        ca_pem: std::fs::read(dir.join("flake/pki/ca.crt")).unwrap(),
        token: None,
        timeout: Duration::from_secs(30),
    };
    // OpenBao 2.7: the unauthenticated endpoints are off by default; the error says what to do.
    let e = block_on(vaultnix::ops::root_token::generate_root(&o, &keys[..2])).expect_err("unauthenticated refused");
    assert!(format!("{e:#}").contains("admin token"), "{e:#}");
    let o = vaultnix::ops::root_token::GenerateRootOptions { token: Some(admin.clone()), ..o };
    let new_root = block_on(vaultnix::ops::root_token::generate_root(&o, &keys[..2])).expect("generate-root");
    let me = block_on(active.clone().with_token(Some(new_root.clone())).lookup_self()).expect("new root works");
    assert_eq!(me["policies"], serde_json::json!(["root"]), "a root token");
    block_on(active.clone().with_token(Some(new_root)).revoke_self()).unwrap();

    // The same through the CLI: shares from init.json, token to a 0600 file, never on stdout.
    let tf = t.path().join("root-token");
    let a = assert_cmd::Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["root-token", "generate", "--out"])
        .arg(&dir)
        .arg("--keys")
        .arg(dir.join("secrets/init.json"))
        .arg("--token-file")
        .arg(&tf)
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let token = std::fs::read_to_string(&tf).unwrap().trim().to_string();
    let stdout = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(!stdout.contains(&token), "the token is not printed");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&tf).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600);
    assert!(block_on(active.with_token(Some(token)).lookup_self()).is_ok());
    lab.down().unwrap();
}
