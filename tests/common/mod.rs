//! Helpers shared by the integration tests: the real binary, output-tree fingerprints, required tools.
#![allow(dead_code)]

use assert_cmd::Command;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The built `vaultnix` binary.
pub fn vaultnix() -> Command {
    let mut c = Command::cargo_bin("vaultnix").expect("vaultnix binary is built");
    c.env_remove("VAULTNIX_SPEC").env_remove("VAULTNIX_OUT");
    c
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A spec under tests/specs/.
pub fn spec(name: &str) -> PathBuf {
    root().join("tests/specs").join(name)
}

/// Runs `vaultnix --quiet generate` and fails the test on a non-zero exit.
pub fn generate(spec: Option<&Path>, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = vaultnix();
    c.arg("generate").arg("--out").arg(out).args(extra);
    if let Some(s) = spec {
        c.arg("--spec").arg(s);
    }
    let o = c.output().expect("run vaultnix");
    assert!(
        o.status.success(),
        "vaultnix generate failed ({:?}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Every entry under `dir` (relative path → kind, mode and sha256 of the contents), so two trees, or
/// one tree before and after a command, can be compared in full.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

fn walk(root: &Path, dir: &Path, m: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry")).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
        let md = std::fs::symlink_metadata(&p).expect("metadata");
        let mode = md.permissions().mode() & 0o7777;
        if md.is_dir() {
            m.insert(rel, format!("dir {mode:o}"));
            walk(root, &p, m);
        } else {
            let bytes = std::fs::read(&p).expect("read file");
            m.insert(rel, format!("file {mode:o} {}", hex::encode(Sha256::digest(&bytes))));
        }
    }
}

/// Only the files' contents (relative path → bytes).
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir)
        .into_iter()
        .filter(|(_, v)| v.starts_with("file"))
        .map(|(k, _)| {
            let b = std::fs::read(dir.join(&k)).expect("read");
            (k, b)
        })
        .collect()
}

/// A required external tool: `$ENV` if set, else `default` (a path or a name on PATH). A missing tool
/// fails the test loudly: these checks are the proof that the generated files work.
pub fn tool(env: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    let found = if p.components().count() > 1 {
        p.is_file()
    } else {
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).any(|d| d.join(&p).is_file())).unwrap_or(false)
    };
    assert!(found, "required tool {} not found (set ${env} or install it; scripts/install-tools.sh does)", p.display());
    p
}

/// The real OpenBao 2.7.2 binary.
pub fn bao() -> PathBuf {
    tool("VAULTNIX_BAO", concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.7.2/bao"))
}

/// OpenBao 2.6.2 (built-in cloud KMS seals still exist there).
pub fn bao_2_6() -> PathBuf {
    tool("VAULTNIX_BAO_2_6", concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.6.2/bao"))
}

/// The nftables file NixOS loads on each machine of `spec` (`systemd.services.nftables`'s ExecStart
/// script), read back from evaluating the generated `nodes/<machine>.nix` with our modules against the
/// nixpkgs-subset fixture (tests/nix/eval-node.nix), one `<machine>.nft` per machine in `into`. None,
/// said loudly, where the fixture is absent (a machine without ../shared: tier (c) of tests/nix/eval.sh):
/// the hosts then load firewall.rs's ruleset, built from the same data.
pub fn nixos_rulesets(spec: &Path, into: &Path) -> Option<PathBuf> {
    let subset = std::env::var_os("NIXPKGS_SUBSET")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/nixpkgs-subset"));
    if !subset.join("eval.nix").is_file() {
        eprintln!(
            "NOTE: no nixpkgs-subset fixture at {}: the hosts load firewall.rs's ruleset, NOT the one NixOS evaluates",
            subset.display()
        );
        return None;
    }
    let gen = into.join("generated");
    let o = generate(Some(spec), &gen, &["--quiet"]);
    assert!(o.status.success(), "generate: {}", String::from_utf8_lossy(&o.stderr));
    let eval_node = root().join("tests/nix/eval-node.nix");
    let dir = into.join("nft");
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(gen.join("flake/nodes")).unwrap() {
        let f = e.unwrap().path();
        let Some(name) = f.file_name().and_then(|x| x.to_str()).and_then(|x| x.strip_suffix(".nix")) else { continue };
        // A server runs with its stop path (drain agent + ExecStop drain), as the hosts lab does: the
        // agent's port is then open to the LB only.
        let drain = gen.join(format!("flake/nodes/{name}.drain.json"));
        let extra = if drain.is_file() {
            format!("{{ vaultnix.server.drain = {{ enable = true; configFile = {}; }}; }}", drain.display())
        } else {
            String::new()
        };
        let expr = format!(
            "let r = import {} {{ subset = {}; modules = [ {} {extra} ]; }}; in (builtins.elemAt r.config.systemd.services.nftables.serviceConfig.ExecStart 1).text",
            eval_node.display(),
            subset.display(),
            f.display()
        );
        // stdout only: Debian's nix warns on stderr (no nixbld group), never parsed.
        let o = std::process::Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--read-write-mode", "-E", &expr])
            .env("NIX_CONFIG", "build-users-group =")
            .output()
            .expect("nix-instantiate (scripts/install-tools.sh installs nix-bin)");
        assert!(o.status.success(), "evaluating {name}'s nftables file: {}", String::from_utf8_lossy(&o.stderr));
        let text: String = serde_json::from_slice(&o.stdout).expect("a JSON string");
        assert!(text.contains("table inet nixos-fw"), "{name}: {text}");
        std::fs::write(dir.join(format!("{name}.nft")), text).unwrap();
        n += 1;
    }
    assert!(n >= 4, "one nftables file per machine: {n}");
    eprintln!("hosts load NixOS's own nftables files ({n} machines, evaluated against {})", subset.display());
    Some(dir)
}

/// `bao operator raft list-peers` run on `host` of a hosts lab: the servers' JSON entries and their
/// addresses, sorted (plus the raw output for messages).
pub fn raft_peers(lab: &vaultnix::lab::hosts::HostsLab, host: &str) -> (Vec<serde_json::Value>, Vec<String>, String) {
    let bao = bao().display().to_string();
    let peers = lab.run(host, &bao, &["operator", "raft", "list-peers", "-format=json"], None).expect("list-peers");
    let v: serde_json::Value = serde_json::from_str(&peers).expect("list-peers JSON");
    let servers = v.pointer("/data/config/servers").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    let mut addrs: Vec<String> = servers.iter().map(|s| s["address"].as_str().unwrap_or("").to_string()).collect();
    addrs.sort();
    (servers, addrs, peers)
}

/// Runs `lab down` for a hosts lab directory when dropped (pass or fail): nothing the lab made
/// outlives a test that failed midway.
pub struct HostsGuard(pub PathBuf);
impl Drop for HostsGuard {
    fn drop(&mut self) {
        if let Ok(l) = vaultnix::lab::hosts::HostsLab::open(&self.0) {
            if let Err(e) = l.down(false) {
                eprintln!("hosts lab cleanup failed: {e:#}");
            }
        }
    }
}

/// What a hosts lab test needs before it starts: root, the lab's tools, a bao (VAULTNIX_BAO). Fails
/// with the reason, never skips.
pub fn hosts_preflight() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the hosts lab test needs root (network and mount namespaces)");
    vaultnix::lab::hosts::preflight().expect("hosts lab tools (scripts/install-tools.sh)");
    if std::env::var_os("VAULTNIX_BAO").is_none() {
        std::env::set_var("VAULTNIX_BAO", bao());
    }
}

/// Each node's `agent_status` in HAProxy's vault_active backend, polled until all are L7OK (HAProxy
/// reaches every drain agent) or 10 s passed.
pub fn wait_drain_agents(lab: &vaultnix::lab::hosts::HostsLab) -> Vec<String> {
    use std::time::{Duration, Instant};
    let sock = lab.haproxy_admin_socket().unwrap();
    vaultnix::api::block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut all = Vec::new();
            for n in &lab.plan.nodes {
                all.push(vaultnix::ops::lb::stat_field(&sock, "vault_active", &n.name, "agent_status").await?);
            }
            if all.iter().all(|s| s == "L7OK") || Instant::now() > deadline {
                return Ok::<_, anyhow::Error>(all);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .unwrap()
}
