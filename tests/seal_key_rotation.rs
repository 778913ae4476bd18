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

/// `--rotate-seal-key` on a cluster without a static seal: a clear refusal, nothing written.
#[test]
fn rotate_seal_key_is_refused_without_a_static_seal_and_during_a_rotation() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    generate(None, &out, &["--quiet"]);
    let before = common::tree(&out);
    let o = common::vaultnix()
        .args(["generate", "--out"])
        .arg(&out)
        .arg("--rotate-seal-key")
        .output()
        .expect("run vaultnix");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("not \"static\"") && err.contains("Nothing was written"), "{err}");
    assert_eq!(common::tree(&out), before, "a refused rotation changed the tree");

    // Static seal: the first rotation works; a second one before --drop-previous-seal-key is refused.
    let out = t.path().join("st");
    let spec = common::spec("static-seal.toml");
    generate(Some(&spec), &out, &["--quiet"]);
    let o = generate(Some(&spec), &out, &["--rotate-seal-key"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("rotated the static seal key"), "{o:?}");
    let before = common::tree(&out);
    let o = common::vaultnix()
        .args(["generate", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--rotate-seal-key")
        .output()
        .expect("run vaultnix");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("rotation is still in progress"), "{err}");
    assert_eq!(common::tree(&out), before, "a refused rotation changed the tree");
    // Dropping twice: the second has nothing to drop.
    generate(Some(&spec), &out, &["--drop-previous-seal-key", "--quiet"]);
    let o = common::vaultnix()
        .args(["generate", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--drop-previous-seal-key")
        .output()
        .expect("run vaultnix");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no previous static seal key to drop"), "{err}");
}

/// Real bao 2.7.2: a lab sealed with key A is rotated to B (A rendered as previous_key); every node
/// restarts, auto-unseals and the data reads back; the active node re-wrapped the keyring with B, so
/// after `--drop-previous-seal-key` (A no longer rendered) the nodes restart and unseal again.
#[test]
fn rotated_static_seal_key_keeps_the_data_and_the_previous_key_can_be_dropped() {
    use serde_json::json;
    use std::time::Duration;
    use vaultnix::api::block_on;
    use vaultnix::generate::{generate as gen, GenerateOptions};
    use vaultnix::lab::{wait_ready, LabHandle};
    use vaultnix::render::{Layout, RenderOptions};
    use vaultnix::secrets::Rotate;

    let bao = common::bao();
    assert!(bao.is_file(), "no bao at {}: live tests need the real server", bao.display());
    std::env::set_var("VAULTNIX_BAO", &bao);
    let t = tempfile::tempdir().expect("tempdir");
    let lab = LabHandle::up(Some(&common::spec("static-seal.toml")), &t.path().join("lab")).expect("lab up");
    let dir = lab.dir().to_path_buf();
    let plan = lab.plan().clone();
    let names = lab.node_names();
    let c = lab.cluster_with_root().expect("root token");
    block_on(async { c.lb.kv_put("secret", "rot/a", &json!({ "v": "before" })).await }).expect("kv put");
    let key_a = std::fs::read(dir.join("secrets/seal.key")).unwrap();

    let regen = |rotate: Rotate| {
        let o = GenerateOptions {
            out: dir.clone(),
            check: false,
            rotate,
            render: RenderOptions { nix: false, ..RenderOptions::default() },
        };
        gen(&plan, &Layout::Lab(dir.clone()), &o).expect("generate")
    };
    let restart_all = |what: &str| {
        for n in &names {
            lab.stop(n).expect("stop");
        }
        for n in &names {
            lab.start(n).expect("start");
        }
        block_on(async { wait_ready(&c, &plan, Duration::from_secs(90)).await })
            .unwrap_or_else(|e| panic!("{what}: the cluster did not come back unsealed: {e:#}"));
    };

    // Rotate: B current, A previous.
    let g = regen(Rotate { seal: true, ..Rotate::default() });
    assert!(g.events.iter().any(|e| e.contains("rotated the static seal key")), "{:?}", g.events);
    let key_b = std::fs::read(dir.join("secrets/seal.key")).unwrap();
    assert_ne!(key_b, key_a);
    let id_a = format!("{}-1", plan.name);
    assert_eq!(std::fs::read(dir.join(format!("secrets/seal.{id_a}.key"))).unwrap(), key_a, "key A kept");
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("flake/nodes/{}.server.json", names[0]))).unwrap(),
    )
    .unwrap();
    let st = &cfg["seal"]["static"];
    assert_eq!(st["previous_key_id"], json!(id_a), "{st}");
    assert_eq!(st["current_key_id"], json!(format!("{}-2", plan.name)), "{st}");
    assert!(st["previous_key"].as_str().unwrap().ends_with(&format!("secrets/seal.{id_a}.key")), "{st}");

    restart_all("rotated to B with previous A");
    let v = block_on(async { c.lb.kv_get("secret", "rot/a").await }).expect("kv get after rotation");
    assert_eq!(v, Some(json!({ "v": "before" })));
    block_on(async { c.lb.kv_put("secret", "rot/b", &json!({ "v": "during" })).await }).expect("kv put");
    // The active node re-wrapped the stored keyring with the current key when it unsealed.
    let logs: String =
        names.iter().map(|n| std::fs::read_to_string(dir.join(format!("logs/{n}.log"))).unwrap_or_default()).collect();
    assert!(logs.contains("upgrading stored keys"), "no node re-wrapped the keyring with the new key");

    // Drop A: only B is rendered; the nodes still unseal, both writes read back.
    let g = regen(Rotate { drop_previous_seal: true, ..Rotate::default() });
    assert!(g.events.iter().any(|e| e.contains("retired the previous static seal key")), "{:?}", g.events);
    for n in &names {
        let text = std::fs::read_to_string(dir.join(format!("flake/nodes/{n}.server.json"))).unwrap();
        assert!(!text.contains("previous_key"), "{n}: previous key still rendered");
    }
    assert_eq!(std::fs::read(dir.join(format!("secrets/seal.{id_a}.key"))).unwrap(), key_a, "retired key kept");
    restart_all("B only");
    block_on(async {
        assert_eq!(c.lb.kv_get("secret", "rot/a").await.unwrap(), Some(json!({ "v": "before" })));
        assert_eq!(c.lb.kv_get("secret", "rot/b").await.unwrap(), Some(json!({ "v": "during" })));
    });
    lab.down().expect("lab down");
}
