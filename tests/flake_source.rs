//! Nothing the generated flake can copy into the Nix store holds key material (issue 13, item 1):
//! `DIR/flake/` is the flake's source tree and `DIR/secrets/` lies outside it by construction. Checked
//! by walking the flake directory and, with the real `nix-instantiate`, by copying it into a private
//! store exactly as `nix build ./DIR/flake#…` would (`builtins.path`) and scanning the store copy.
//! Also: an output tree in the old layout (secrets/ next to flake.nix) is migrated by the next
//! `generate`, secrets byte-identical and never rotated.

mod common;

use base64::Engine as _;
use common::{files, generate, tree};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every secret of an output directory, as the byte strings that must not appear in a flake file:
/// each secret file whole, each of its lines (PEM bodies, WireGuard keys), and the base64 of binary
/// keys (the static seal key).
fn needles(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut n = Vec::new();
    for (rel, bytes) in files(&out.join("secrets")) {
        n.push((format!("secrets/{rel}"), bytes.clone()));
        n.push((
            format!("secrets/{rel} (base64)"),
            base64::engine::general_purpose::STANDARD.encode(&bytes).into_bytes(),
        ));
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = line.trim();
            if line.len() >= 16 && !line.starts_with("-----") {
                n.push((format!("a line of secrets/{rel}"), line.as_bytes().to_vec()));
            }
        }
    }
    n
}

/// Fails on any file under `dir` that looks like or contains key material.
fn assert_no_key_material(dir: &Path, needles: &[(String, Vec<u8>)], what: &str) {
    let fs = files(dir);
    assert!(fs.keys().any(|k| k.ends_with(".server.json")), "{what}: no flake files found under {}", dir.display());
    for (rel, bytes) in &fs {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("PRIVATE KEY"), "{what}: {rel} holds a PEM private key");
        assert!(!rel.ends_with("init.json") && !rel.ends_with(".key"), "{what}: {rel} is a secret file");
        for (name, needle) in needles {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_slice()), "{what}: {rel} contains {name}");
        }
    }
}

/// A generated tree with every kind of secret: CA and node keys, WireGuard keys (the example's
/// overlay), the static seal key, and a bootstrap's init.json.
fn outputs(t: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for (name, spec) in [("example", None), ("static", Some(common::spec("static-seal.toml")))] {
        let out = t.join(name);
        generate(spec.as_deref(), &out, &["--quiet"]);
        std::fs::write(
            out.join("secrets/init.json"),
            r#"{"keys_base64":["c2hhbWlyLXNoYXJlLW9mLXRoZS10ZXN0LWtleXM="],"root_token":"s.roottokenofthetestcluster"}"#,
        )
        .expect("write init.json");
        v.push(out);
    }
    let ex = files(&v[0].join("secrets"));
    assert!(ex.keys().any(|k| k.ends_with(".wg.key")), "the example has WireGuard keys: {:?}", ex.keys());
    assert!(files(&v[1].join("secrets")).contains_key("seal.key"), "static-seal.toml has a seal key");
    v
}

#[test]
fn the_flake_directory_holds_no_key_material() {
    let t = tempfile::tempdir().expect("tempdir");
    for out in outputs(t.path()) {
        assert!(out.join("flake/flake.nix").is_file(), "flake.nix is in flake/");
        assert!(!out.join("flake/secrets").exists(), "no secrets/ inside the flake");
        assert!(!out.join("flake.nix").exists(), "no flake at the top of the output directory");
        let n = needles(&out);
        assert!(n.len() > 10, "secrets to look for: {}", n.len());
        assert_no_key_material(&out.join("flake"), &n, "flake/");
        let gi = std::fs::read_to_string(out.join(".gitignore")).expect(".gitignore");
        assert!(gi.lines().any(|l| l == "/secrets/"), "{gi}");
    }
}

#[test]
fn the_flake_copied_into_a_nix_store_holds_no_key_material() {
    let nix = common::tool("VAULTNIX_NIX_INSTANTIATE", "nix-instantiate");
    let t = tempfile::tempdir().expect("tempdir");
    for out in outputs(t.path()) {
        let store = t.path().join(format!("store-{}", out.file_name().unwrap().to_string_lossy()));
        let flake = out.join("flake");
        // What `nix build ./out/flake#…` does with a path flake that is not a git work tree: the whole
        // directory is copied into the store as the flake's source.
        let expr = format!("builtins.path {{ path = {}; name = \"source\"; }}", flake.display());
        let o = std::process::Command::new(&nix)
            .args(["--eval", "--read-write-mode", "--store"])
            .arg(&store)
            .args(["-E", &expr])
            .env("NIX_CONFIG", "build-users-group =")
            .output()
            .expect("run nix-instantiate");
        assert!(o.status.success(), "nix-instantiate: {}", String::from_utf8_lossy(&o.stderr));
        let printed = String::from_utf8_lossy(&o.stdout).trim().trim_matches('"').to_string();
        let copy = PathBuf::from(format!("{}{printed}", store.display()));
        assert!(copy.join("flake.nix").is_file(), "store copy at {}", copy.display());
        assert_no_key_material(&copy, &needles(&out), "store copy");
        // The check itself is not blind: the output directory as a whole does hold key material.
        let whole = needles(&out);
        let all = files(&out);
        assert!(
            all.iter().any(|(_, b)| whole.iter().any(|(_, n)| b.windows(n.len()).any(|w| w == n.as_slice()))),
            "the needles match the secrets they came from"
        );
    }
}

/// The layout before `flake/` existed: every public file at the top of DIR, next to secrets/.
fn to_old_layout(out: &Path) {
    let flake = out.join("flake");
    for (rel, _) in files(&flake) {
        let to = out.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).expect("mkdir");
        std::fs::rename(flake.join(&rel), &to).expect("move");
    }
    std::fs::remove_dir_all(&flake).expect("rm flake/");
    std::fs::remove_file(out.join(".gitignore")).expect("rm .gitignore");
    let m = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
    let m = m.replace("\"flake/", "\"").replace("    \".gitignore\": ", "    \"x-dropped\": ");
    std::fs::write(out.join("manifest.json"), m).expect("write manifest");
}

#[test]
fn an_old_layout_tree_is_migrated_with_secrets_and_certificates_unchanged() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    generate(None, &out, &["--quiet"]);
    to_old_layout(&out);
    std::fs::write(out.join("secrets/init.json"), "{\"root_token\":\"s.x\"}").expect("init.json");
    // bootstrap writes init.json 0600 (generate would tighten a loosened one: a separate test).
    std::fs::set_permissions(out.join("secrets/init.json"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    std::fs::write(out.join("flake.lock"), "{\"version\":7}\n").expect("flake.lock");
    std::fs::write(out.join("NOTES.md"), "mine\n").expect("notes");
    assert!(out.join("flake.nix").is_file() && out.join("pki/ca.crt").is_file());
    let secrets_before = tree(&out.join("secrets"));
    let pki_before: BTreeMap<String, Vec<u8>> = files(&out.join("pki"));

    let o = generate(None, &out, &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("moved the public files into flake/"), "{text}");
    assert!(!text.contains("created") && !text.contains("issued") && !text.contains("rotated"), "{text}");

    assert_eq!(tree(&out.join("secrets")), secrets_before, "secrets/ byte-identical, same modes");
    assert_eq!(files(&out.join("flake/pki")), pki_before, "CA and node certificates kept, not reissued");
    for old in ["flake.nix", "cluster.json", "nodes", "pki", "haproxy", "monitoring", "flake.lock"] {
        assert!(!out.join(old).exists(), "{old} left at the top of the output directory");
    }
    assert_eq!(std::fs::read_to_string(out.join("flake/flake.lock")).unwrap(), "{\"version\":7}\n", "lock moved");
    assert_eq!(std::fs::read_to_string(out.join("NOTES.md")).unwrap(), "mine\n", "user file kept");
    assert_no_key_material(&out.join("flake"), &needles(&out), "migrated flake/");
    // Migrated once: the next run has nothing to do.
    let o = generate(None, &out, &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing written"), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn a_users_own_gitignore_is_kept() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join(".gitignore"), "mine\n").expect("write");
    let o = generate(None, &out, &[]);
    assert_eq!(std::fs::read_to_string(out.join(".gitignore")).unwrap(), "mine\n");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("kept your own .gitignore"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
