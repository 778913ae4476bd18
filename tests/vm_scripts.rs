//! The NixOS VM test scripts (vm-tests/cluster.nix, wireguard.nix) on the hosts lab, through
//! vm-tests/hosts_driver.py (the driver's Machine API over `vaultnix lab machine`), and their type check
//! against the driver stub with the pinned mypy. Needs root, python3, nix-instantiate and
//! `scripts/install-tools.sh` (mypy, nc); without them the tests FAIL with the reason (never skip).
//! Every lab is removed by the driver, and again by a Drop guard when the driver died midway.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn driver() -> Command {
    let mut c = Command::new("python3");
    c.arg(root().join("vm-tests/hosts_driver.py")).current_dir(root());
    let tools = root().join(".tools/bin");
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("{}:{path}", tools.display()));
    if std::env::var_os("VAULTNIX_BAO").is_none() {
        c.env("VAULTNIX_BAO", root().join(".tools/bao-2.7.2/bao"));
    }
    c
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn preflight() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the VM scripts run on the hosts lab, which needs root");
    vaultnix::lab::hosts::preflight().expect("hosts lab tools (scripts/install-tools.sh)");
    for t in ["python3", "nix-instantiate", "nc"] {
        let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(t).is_file());
        assert!(on_path, "`{t}` is needed (scripts/install-tools.sh)");
    }
    assert!(root().join(".tools/mypy-1.18.2/mypy").is_dir(), "no pinned mypy: run scripts/install-tools.sh");
}

/// Runs `lab down --purge` for the directory when dropped, if a lab is still recorded there.
struct Guard(PathBuf);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(l) = vaultnix::lab::hosts::HostsLab::open(&self.0) {
            if let Err(e) = l.down(true) {
                eprintln!("hosts lab cleanup failed: {e:#}");
            }
        }
    }
}

/// `hosts_driver.py run --test TEST [--script FIXTURE]` on a fresh lab; then checks that nothing of
/// the lab is left (its namespaces, the recorded state, processes naming its directory).
fn run(test: &str, script: Option<&Path>) -> (bool, String, String) {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let guard = Guard(dir.clone());
    let mut c = driver();
    c.args(["run", "--test", test, "--vaultnix", env!("CARGO_BIN_EXE_vaultnix"), "--dir"]).arg(&dir);
    // The machines load the nftables files NixOS evaluates for them (where the fixture exists), as
    // the VMs do.
    let spec = root().join(match test {
        "wireguard" => "vm-tests/cluster-wireguard.toml",
        _ => "vm-tests/cluster.toml",
    });
    if let Some(d) = common::nixos_rulesets(&spec, tmp.path()) {
        c.env("VAULTNIX_HOSTS_NIXOS_FIREWALL", d);
    }
    if let Some(s) = script {
        c.arg("--script").arg(s);
    }
    let o = c.output().expect("python3 vm-tests/hosts_driver.py");
    let (out, err) = text(&o);
    eprintln!("{err}");
    println!("{out}");
    let netns: Vec<String> = out
        .lines()
        .find_map(|l| l.strip_prefix("lab namespaces: "))
        .unwrap_or_else(|| panic!("the driver did not bring a lab up:\n{out}\n{err}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(netns.len() >= 5, "{netns:?}");
    assert!(vaultnix::lab::hosts::read_state(&dir).unwrap().is_none(), "the driver left the lab up");
    drop(guard);
    for n in &netns {
        assert!(!vaultnix::lab::hosts::net::netns_exists(n), "namespace {n} left behind");
    }
    // Also one made later (a spare): every namespace with the lab's prefix.
    let prefix = netns[0].split('-').next().unwrap().to_string() + "-";
    for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        assert!(!n.starts_with(&prefix), "namespace {n} left behind");
    }
    let marker = dir.display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !cmd.contains(&marker),
                "process {} of the lab left behind: {cmd}",
                e.file_name().to_string_lossy()
            );
        }
    }
    // The client's /etc/hosts entry lived in its overlay only.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(!hosts.contains("vault.vault.test"), "the client's /etc/hosts entry reached the machine's");
    (o.status.success(), out, err)
}

fn subtests(script: &str) -> Vec<String> {
    let t = std::fs::read_to_string(root().join("vm-tests").join(script)).unwrap();
    t.lines()
        .filter_map(|l| l.trim().strip_prefix("with subtest(\"").and_then(|r| r.split("\")").next()))
        .map(str::to_string)
        .collect()
}

#[test]
fn vm_scripts_type_check_against_the_driver_stub() {
    preflight();
    let o = driver().arg("typecheck").output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for l in ["typecheck cluster: ok", "typecheck wireguard: ok", "typecheck hosts_driver.py, lib.py (--strict): ok"] {
        assert!(out.contains(l), "{l}: {out}");
    }
    // A script calling a method the driver does not have, or with a wrong type, is rejected.
    let bad = root().join("tests/fixtures/vm-tests/broken-types.py");
    let o = driver().args(["typecheck", "--test", "cluster", "--script"]).arg(&bad).output().unwrap();
    let (out, err) = text(&o);
    assert!(!o.status.success(), "mypy accepted the broken script: {out}");
    // mypy --pretty wraps its messages.
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.contains("\"QemuMachine\" has no attribute \"shutdown\""), "{out}\n{err}");
    assert!(
        out.contains("\"wait_for_unit\" of \"BaseMachine\" has incompatible type") && out.contains("[arg-type]"),
        "{out}\n{err}"
    );
}

#[test]
fn vm_cluster_script_passes_on_the_hosts_lab() {
    // The restore subtest writes /tmp/shared/restore.snap on node1 and /root/restore.snap on the
    // spare: each host's own /tmp and /root (the lab's shared directory at /tmp/shared), never the
    // machine's.
    let on_machine = ["/tmp/shared/restore.snap", "/root/restore.snap"].map(std::path::Path::new);
    let existed: Vec<bool> = on_machine.iter().map(|p| p.exists()).collect();
    let (ok, out, err) = run("cluster", None);
    assert!(ok, "the cluster VM script failed on the hosts lab:\n{out}\n{err}");
    let all = subtests("cluster.py");
    // The backup subtest runs: node1's host runs the backup timer (every 60 s, as cluster.nix forces
    // `minutely`) with the generated backup.json and the node exporter's textfile collector. The
    // restore subtest runs on the spare machine, added with the configuration cluster.nix gives it.
    for s in ["the backup timer writes a verified snapshot and a metric", "the snapshot restores into a fresh node"] {
        assert!(all.iter().any(|a| a == s), "{s}: {all:?}");
    }
    for s in &all {
        assert!(out.contains(&format!("): {s}\n")), "subtest {s:?} did not pass: {out}");
    }
    assert!(
        out.contains(&format!("vm test cluster: {} subtests passed, every subtest of the script ran", all.len())),
        "{out}"
    );
    assert!(err.contains("spare: adding the spare machine to the lab"), "{err}");
    for (p, e) in on_machine.iter().zip(existed) {
        assert!(e || !p.exists(), "{} was written on the machine, not on a host", p.display());
    }
}

#[test]
fn vm_wireguard_script_passes_on_the_hosts_lab() {
    let (ok, out, err) = run("wireguard", None);
    assert!(ok, "the wireguard VM script failed on the hosts lab:\n{out}\n{err}");
    let all = subtests("wireguard.py");
    assert_eq!(all.len(), 4, "{all:?}");
    for s in &all {
        assert!(out.contains(&format!("): {s}\n")), "subtest {s:?} did not pass: {out}");
    }
    assert!(out.contains("vm test wireguard: 4 subtests passed, every subtest of the script ran"), "{out}");
}

#[test]
fn broken_vm_scripts_fail_on_the_hosts_lab() {
    // Wrong about the cluster: the first subtest passes, the second fails on the firewall.
    let (ok, out, err) = run("cluster", Some(&root().join("tests/fixtures/vm-tests/broken-runtime.py")));
    assert!(!ok, "a wrong script passed: {out}");
    assert!(out.contains("subtest passed") && out.contains("): the servers start\n"), "{out}\n{err}");
    assert!(err.contains("command `nc -z -w 3 192.168.1.3 8201` failed"), "{err}");
    assert!(out.contains("vm test cluster: FAILED (1 subtests passed before)"), "{out}");
    // The background job the fixture started on node1 died with the lab.
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmd).contains("600.4242"), "the script's background job outlived the lab");
    }
    // A unit NixOS names differently: fails at once, naming what the host runs.
    let (ok, out, err) = run("cluster", Some(&root().join("tests/fixtures/vm-tests/broken-unit.py")));
    assert!(!ok, "waiting for a unit the lab lacks passed: {out}");
    assert!(
        err.contains("has no unit \"bao.service\" (it runs: openbao.service, prometheus-node-exporter.service, vaultnix-backup.timer)"),
        "{err}"
    );
    // A subtest that never ran (behind a condition): the script raised nothing, yet the run fails.
    let (ok, out, err) = run("cluster", Some(&root().join("tests/fixtures/vm-tests/skipped-subtest.py")));
    assert!(!ok, "a run that left a subtest out passed: {out}");
    assert!(out.contains("): the servers answer\n"), "{out}\n{err}");
    assert!(
        out.contains("vm test cluster: FAILED: subtests never ran: ['a subtest behind a condition'] (1 passed)"),
        "{out}\n{err}"
    );
}
