//! `generate --rotate-keys` never replaces the static seal key (issue 13, item 4): a new key would make
//! every node's data unreadable. The node TLS keys are rotated; the seal key stays byte-identical and
//! the summary says so.

mod common;

use common::generate;

#[test]
fn rotate_keys_keeps_the_static_seal_key_and_says_so() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    let spec = common::spec("static-seal.toml");
    generate(Some(&spec), &out, &["--quiet"]);
    let seal = std::fs::read(out.join("secrets/seal.key")).expect("seal.key");
    assert_eq!(seal.len(), 32);
    let names: Vec<String> = common::files(&out.join("secrets")).into_keys().filter(|k| k.ends_with(".key")).collect();
    let node_key = names.iter().find(|k| *k != "seal.key" && *k != "ca.key").expect("a node key").clone();
    let node_before = std::fs::read(out.join("secrets").join(&node_key)).expect("node key");

    let o = generate(Some(&spec), &out, &["--rotate-keys"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(std::fs::read(out.join("secrets/seal.key")).expect("seal.key"), seal, "seal key replaced");
    assert_ne!(std::fs::read(out.join("secrets").join(&node_key)).expect("node key"), node_before, "TLS keys rotate");
    assert!(text.contains("kept the static seal key"), "{text}");
    assert!(!text.contains("created the static seal key"), "{text}");
}
