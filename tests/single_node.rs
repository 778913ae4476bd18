//! A valid single-server spec without an overlay gives a machine that passes its own NixOS
//! assertions (issue 13, item 19): the generated node file, evaluated with vaultnix's modules
//! against the nixpkgs-subset fixture (real upstream NixOS modules), has no failed assertion.
//! Needs nix-instantiate and the fixture (../shared/nixpkgs-subset or $NIXPKGS_SUBSET); a
//! missing one fails the test.

mod common;

use std::process::Command;

#[test]
fn single_node_without_overlay_passes_its_own_assertions() {
    let nix = common::tool("VAULTNIX_NIX_INSTANTIATE", "nix-instantiate");
    let root = common::root();
    let subset = std::env::var_os("NIXPKGS_SUBSET")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/nixpkgs-subset"));
    assert!(subset.join("eval.nix").is_file(), "nixpkgs-subset fixture not found at {}", subset.display());
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    common::generate(Some(&common::spec("single.toml")), &out, &["--quiet"]);
    let node = out.join("nodes/solo-1.nix");
    let text = std::fs::read_to_string(&node).expect("node file");
    assert!(text.contains("singleNode = true;"), "{text}");
    let expr = format!(
        "let r = import {}/tests/nix/eval-node.nix {{ subset = {}; modules = [ {} ]; }}; in r.failedAssertions",
        root.display(),
        subset.canonicalize().expect("subset").display(),
        node.display()
    );
    let o = Command::new(&nix)
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .env("NIX_CONFIG", "build-users-group =")
        .output()
        .expect("run nix-instantiate");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "evaluation failed:\n{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout.trim(), "[]", "failed assertions of the single-node machine");
}
