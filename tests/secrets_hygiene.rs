//! Secrets hygiene of `vaultnix generate`: permissions under a permissive umask, no key material in any
//! public file or in what the command prints, secrets referenced from Nix only by absolute path strings
//! outside the store, `Debug` without key material, and secrets/init.json never overwritten.

mod fuzz_support;

use assert_cmd::Command;
use base64::Engine as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The example with the static seal too, so every kind of secret is generated: CA key, node TLS keys,
/// WireGuard keys (the example uses a WireGuard overlay) and the static seal key.
fn spec_with_every_secret(dir: &Path) -> PathBuf {
    let text = vaultnix::spec::EXAMPLE.replace("kind = \"shamir\"", "kind = \"static\"");
    assert!(text.contains("kind = \"static\""));
    let p = dir.join("cluster.toml");
    std::fs::write(&p, text).unwrap();
    p
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs vaultnix under `umask 000`, the most permissive there is.
fn vaultnix_umask0(args: &[&str]) -> Out {
    let bin = assert_cmd::cargo::cargo_bin("vaultnix");
    let o = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(bin)
        .args(args)
        .env_remove("VAULTNIX_SPEC")
        .env_remove("VAULTNIX_OUT")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn generate(spec: &Path, out: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["generate", "--spec", spec.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let r = vaultnix_umask0(&args);
    assert_eq!(r.code, Some(0), "generate {extra:?} failed:\n{}", r.stderr);
    r
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.push(p.clone());
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

/// Every secret under `out/secrets`, in every spelling it could leak in: PEM bodies (whole and by line),
/// WireGuard keys, the raw seal key and its hex and base64, and the strings of init.json.
fn needles(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut n: Vec<(String, Vec<u8>)> = vec![];
    for p in walk(&out.join("secrets")) {
        if p.is_dir() {
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&p).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if text.contains("PRIVATE KEY") {
                for line in text.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16) {
                    n.push((format!("{name} PEM line"), line.as_bytes().to_vec()));
                }
                let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
                n.push((format!("{name} PEM body"), body.into_bytes()));
                continue;
            }
            if name.ends_with(".wg.key") {
                n.push((name.clone(), text.trim().as_bytes().to_vec()));
                continue;
            }
            if name == "init.json" {
                let v: serde_json::Value = serde_json::from_str(text).unwrap();
                let mut strings = vec![];
                collect_strings(&v, &mut strings);
                for s in strings.into_iter().filter(|s| s.len() >= 8) {
                    n.push(("init.json value".into(), s.into_bytes()));
                }
                continue;
            }
        }
        assert_eq!(name, "seal.key", "unexpected secret {name}");
        assert_eq!(bytes.len(), 32);
        n.push(("seal.key raw".into(), bytes.clone()));
        n.push(("seal.key hex".into(), hex::encode(&bytes).into_bytes()));
        n.push(("seal.key base64".into(), base64::engine::general_purpose::STANDARD.encode(&bytes).into_bytes()));
    }
    assert!(n.len() > 10, "too few secrets found: {}", n.len());
    n
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_secret_in(what: &str, hay: &[u8], needles: &[(String, Vec<u8>)]) {
    assert!(!contains(hay, b"PRIVATE KEY"), "{what} contains a PEM private key");
    for (name, n) in needles {
        assert!(!contains(hay, n), "{what} contains {name}");
    }
}

/// A fake `bao operator init` answer, as bootstrap will store it: unseal keys and a root token.
const FAKE_INIT: &str = r#"{
  "unseal_keys_b64": ["RkFLRS11bnNlYWwta2V5LW9uZS1mb3ItdmF1bHRuaXgtdGVzdHM=", "RkFLRS11bnNlYWwta2V5LXR3by1mb3ItdmF1bHRuaXgtdGVzdHM="],
  "unseal_keys_hex": ["46414b452d756e7365616c2d6b65792d6f6e65"],
  "root_token": "s.FAKEROOTTOKENvaultnixHygieneTest0001"
}
"#;

#[test]
fn permissions_hold_under_umask_000_and_nothing_secret_leaks() {
    let t = tempfile::tempdir().unwrap();
    let spec = spec_with_every_secret(t.path());
    let out = t.path().join("out");
    let first = generate(&spec, &out, &[]);
    // bootstrap (another branch) will write secrets/init.json; write a fake one like it.
    let init = out.join("secrets/init.json");
    std::fs::write(&init, FAKE_INIT).unwrap();
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut runs = vec![("generate", first)];
    runs.push(("generate --verbose (no change)", generate(&spec, &out, &["--verbose"])));
    runs.push(("generate --output json", generate(&spec, &out, &["--output", "json"])));
    runs.push(("generate --check --verbose", generate(&spec, &out, &["--check", "--verbose"])));
    runs.push(("generate --check --output json", generate(&spec, &out, &["--check", "--output", "json"])));
    let fresh = t.path().join("fresh");
    runs.push(("generate --verbose (new tree)", generate(&spec, &fresh, &["--verbose"])));
    let fresh_json = t.path().join("fresh-json");
    runs.push(("generate --output json (new tree)", generate(&spec, &fresh_json, &["--output", "json"])));

    let mut all_needles = needles(&out);
    all_needles.extend(needles(&fresh));
    all_needles.extend(needles(&fresh_json));
    for (what, r) in &runs {
        assert_no_secret_in(&format!("stdout of {what}"), r.stdout.as_bytes(), &all_needles);
        assert_no_secret_in(&format!("stderr of {what}"), r.stderr.as_bytes(), &all_needles);
    }
    let json: serde_json::Value = serde_json::from_str(&runs[2].1.stdout).expect("--output json prints JSON");
    assert!(json.get("cluster").is_some());

    for tree in [&out, &fresh, &fresh_json] {
        let secrets = tree.join("secrets");
        let mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}", secrets.display());
        let mut kinds = std::collections::BTreeSet::new();
        for p in walk(tree) {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let rel = p.strip_prefix(tree).unwrap().to_string_lossy().into_owned();
            // Nothing anyone else may change: a world-writable pki/ or nodes/ would let any local user
            // swap the CA certificate or a server config.
            assert_eq!(mode & 0o022, 0, "{rel} is group/world-writable ({mode:o})");
            if rel.starts_with("secrets/") {
                assert!(meta.is_file(), "{rel}");
                assert_eq!(mode, 0o600, "{rel} has mode {mode:o}");
                kinds.insert(rel.rsplit('.').next().unwrap().to_string());
                continue;
            }
            if meta.is_file() {
                assert_eq!(mode & 0o077 & !0o044, 0, "{rel} has mode {mode:o}");
                assert_no_secret_in(&rel, &std::fs::read(&p).unwrap(), &all_needles);
            }
        }
        assert!(kinds.contains("key"), "no keys under {}/secrets", tree.display());
        for name in ["ca.key", "vault-1.key", "vault-1.wg.key", "vault-lb.wg.key", "seal.key"] {
            assert!(secrets.join(name).is_file(), "{name} missing");
        }
        for public in [
            "flake/flake.nix",
            "flake/cluster.json",
            "manifest.json",
            "flake/haproxy/haproxy.cfg",
            "flake/monitoring/alerts.yml",
        ] {
            assert!(tree.join(public).is_file(), "{public} missing");
        }
    }
}

#[test]
fn nix_files_reference_secrets_only_by_absolute_paths_outside_the_store() {
    let t = tempfile::tempdir().unwrap();
    let spec = spec_with_every_secret(t.path());
    let out = t.path().join("out");
    generate(&spec, &out, &[]);
    let mut nix_files = 0;
    let mut secret_refs = 0;
    for p in walk(&out).into_iter().filter(|p| p.extension().is_some_and(|e| e == "nix")) {
        nix_files += 1;
        let rel = p.strip_prefix(&out).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("/nix/store"), "{rel} mentions /nix/store");
        fuzz_support::check_nix_secret_paths(&rel, &text).unwrap();
        let lex = fuzz_support::nix_lex(&text);
        for path in &lex.paths {
            assert!(!path.contains("secrets") && !path.ends_with(".key"), "{rel}: path literal {path}");
        }
        for s in &lex.strings {
            if s.contains("/secrets") || s.ends_with(".key") {
                assert!(s.starts_with("/var/lib/vaultnix/secrets/") || s == "/var/lib/vaultnix/secrets", "{rel}: {s}");
                secret_refs += 1;
            }
        }
    }
    assert!(nix_files >= 5, "only {nix_files} .nix files");
    // tls.key, seal.key, wg.key, backup-token per node at least
    assert!(secret_refs >= 12, "only {secret_refs} secret path strings found");
    // The lexer is what the assertions rest on: make sure it tells a path literal from a string.
    let lex = fuzz_support::nix_lex("{ a = ./secrets/x.key; b = \"/var/lib/x/secrets/tls.key\"; # ../c\n }");
    assert_eq!(lex.paths, ["./secrets/x.key"]);
    assert_eq!(lex.strings, ["/var/lib/x/secrets/tls.key"]);
    assert!(fuzz_support::check_nix_secret_paths("t", "  keyFile = ./secrets/tls.key;\n").is_err());
    assert!(fuzz_support::check_nix_secret_paths("t", "  keyFile = \"/nix//store/x/tls.key\";\n").is_err());
}

#[test]
fn debug_of_material_prints_no_key_material() {
    let t = tempfile::tempdir().unwrap();
    let spec = spec_with_every_secret(t.path());
    let out = t.path().join("out");
    generate(&spec, &out, &[]);
    let loaded = vaultnix::spec::load_file(&spec).unwrap();
    let plan = vaultnix::plan::Plan::from_loaded(&loaded);
    let m =
        vaultnix::secrets::prepare(&plan, &out, &vaultnix::secrets::Rotate::default(), false, 1_700_000_000).unwrap();
    assert!(m.seal_key.is_some() && !m.wg_private.is_empty() && !m.node_keys.is_empty());
    let needles = needles(&out);
    for text in [format!("{m:?}"), format!("{m:#?}")] {
        assert_no_secret_in("Debug of Material", text.as_bytes(), &needles);
        assert!(text.contains("vault-1"), "Debug should still say which nodes: {text}");
    }
    // The generate result holds the rendered files, secrets included: its Debug is not for logs, but the
    // CLI never prints it. What the CLI prints is covered above.
}

#[test]
fn init_json_is_never_overwritten() {
    let t = tempfile::tempdir().unwrap();
    let spec = spec_with_every_secret(t.path());
    let out = t.path().join("out");
    generate(&spec, &out, &[]);
    let init = out.join("secrets/init.json");
    std::fs::write(&init, FAKE_INIT).unwrap();
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A second file bootstrap might keep there, and one the operator put in the tree.
    std::fs::write(out.join("secrets/backup-token"), "s.FAKEBACKUPTOKEN").unwrap();
    std::fs::set_permissions(out.join("secrets/backup-token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    for extra in [&[][..], &["--rotate-keys"][..], &["--rotate-ca"][..], &["--verbose"][..]] {
        let r = generate(&spec, &out, extra);
        assert_eq!(std::fs::read_to_string(&init).unwrap(), FAKE_INIT, "init.json changed by generate {extra:?}");
        let mode = std::fs::metadata(&init).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "init.json mode changed by generate {extra:?}");
        assert_eq!(std::fs::read_to_string(out.join("secrets/backup-token")).unwrap(), "s.FAKEBACKUPTOKEN");
        assert!(!r.stdout.contains("FAKEROOTTOKEN") && !r.stderr.contains("FAKEROOTTOKEN"));
    }
    // --check neither reads it into its report nor touches it.
    let r = vaultnix_umask0(&["generate", "--spec", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--check"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&init).unwrap(), FAKE_INIT);
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(!manifest.contains("init.json"), "init.json is not generated and must not be in the manifest");
}
