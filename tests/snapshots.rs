//! Snapshots (insta) of every generated text file for the built-in example. Key material and
//! certificates are not snapshotted; WireGuard public keys (different on every fresh generation) and
//! the generator version are masked. Review changes with `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test --test snapshots` and `git diff`); CI fails on any mismatch.

mod common;

/// Replaces what differs between two fresh generations (and releases) with fixed markers.
fn mask(text: &str) -> String {
    let version = format!("vaultnix {}", env!("CARGO_PKG_VERSION"));
    text.lines()
        .map(|l| {
            let l = l.replace(&version, "vaultnix [version]");
            match l.find("publicKey = \"") {
                Some(i) => format!("{}publicKey = \"[wireguard public key]\";", &l[..i]),
                None => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_output_snapshots() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    common::generate(None, &out, &["--quiet"]);
    let mut names = Vec::new();
    for (path, bytes) in common::files(&out) {
        let snapshot = path.ends_with(".json") && path != "manifest.json"
            || path.ends_with(".nix")
            || path.ends_with(".cfg")
            || path.ends_with(".yml")
            || path.ends_with(".lua");
        if !snapshot {
            continue;
        }
        let text = String::from_utf8(bytes).expect("generated text is UTF-8");
        assert!(!text.contains("PRIVATE KEY") && !text.contains("BEGIN CERTIFICATE"), "{path}");
        // Named without the `flake/` prefix: the snapshot files predate it and keep their names.
        let name = format!("example__{}", path.strip_prefix("flake/").unwrap_or(&path).replace('/', "__"));
        insta::assert_snapshot!(name.clone(), mask(&text));
        names.push(name);
    }
    // 3 server configs, 3 backup configs, 3 drain configs (ExecStop), 4 machine modules, haproxy.cfg,
    // hold.lua, alerts.yml, prometheus.yml, cluster.json, flake.nix.
    assert_eq!(names.len(), 19, "{names:?}");
}
