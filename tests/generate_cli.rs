//! `vaultnix init` and `vaultnix generate` through the real binary: quorum math, CLI manners, idempotent
//! re-runs, determinism, drift detection, targeted reissue, CA rotation, file modes, user files and
//! atomicity.

mod common;

use common::{files, generate, tree, vaultnix};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `vaultnix generate --check` on `out` and returns (exit code, stdout).
fn check(spec: Option<&Path>, out: &Path) -> (i32, String) {
    let mut c = vaultnix();
    c.arg("generate").arg("--check").arg("--out").arg(out);
    if let Some(s) = spec {
        c.arg("--spec").arg(s);
    }
    let o = c.output().expect("run");
    (o.status.code().unwrap_or(-1), stdout(&o) + &stderr(&o))
}

fn only(m: &BTreeMap<String, Vec<u8>>, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    m.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn the_example_generates_every_file_and_prints_its_quorum_math() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    let o = generate(None, &out, &[]);
    let text = stdout(&o);
    assert!(text.contains("3 voter(s) — quorum 2, tolerates 1 failure(s)"), "{text}");
    assert!(text.contains("33 added, 0 changed, 0 removed"), "{text}");
    assert!(stderr(&o).contains("using the built-in example"), "{}", stderr(&o));
    let names: Vec<String> = files(&out).into_keys().collect();
    let mut want: Vec<String> = [
        ".gitignore",
        "flake/cluster.json",
        "flake/flake.nix",
        "flake/haproxy/haproxy.cfg",
        "flake/haproxy/hold.lua",
        "manifest.json",
        "flake/monitoring/alerts.yml",
        "flake/monitoring/prometheus.yml",
        "flake/pki/ca.crt",
        "secrets/ca.key",
        "flake/nodes/vault-lb.nix",
        "secrets/vault-lb.wg.key",
    ]
    .map(String::from)
    .to_vec();
    for n in ["vault-1", "vault-2", "vault-3"] {
        for f in [
            "flake/nodes/{}.nix",
            "flake/nodes/{}.server.json",
            "flake/nodes/{}.backup.json",
            "flake/nodes/{}.drain.json",
            "flake/pki/{}.crt",
            "secrets/{}.key",
            "secrets/{}.wg.key",
        ] {
            want.push(f.replace("{}", n));
        }
    }
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn five_and_seven_node_specs_print_their_failure_tolerance() {
    let t = tempfile::tempdir().expect("tempdir");
    for (spec, line, nodes) in [
        ("five.toml", "5 voter(s) — quorum 3, tolerates 2 failure(s)", 5),
        ("seven.toml", "7 voter(s) — quorum 4, tolerates 3 failure(s)", 8),
    ] {
        let out = t.path().join(spec);
        let o = generate(Some(&common::spec(spec)), &out, &[]);
        assert!(stdout(&o).contains(line), "{spec}: {}", stdout(&o));
        assert!(!stderr(&o).contains("warning"), "{spec}: {}", stderr(&o));
        let configs = files(&out).into_keys().filter(|k| k.ends_with(".server.json")).count();
        assert_eq!(configs, nodes, "{spec}");
    }
    // seven.toml's non-voter joins as one.
    let r1 = std::fs::read_to_string(t.path().join("seven.toml/flake/nodes/r1.server.json")).expect("read");
    assert!(r1.contains("\"retry_join_as_non_voter\": true"), "{r1}");
    let s1 = std::fs::read_to_string(t.path().join("seven.toml/flake/nodes/s1.server.json")).expect("read");
    assert!(!s1.contains("retry_join_as_non_voter"), "{s1}");
}

#[test]
fn an_even_voter_count_is_warned_about() {
    let t = tempfile::tempdir().expect("tempdir");
    let o = generate(Some(&common::spec("four.toml")), &t.path().join("out"), &[]);
    let err = stderr(&o);
    assert!(err.contains("warning: 4 voters need 3 for quorum and tolerate 1 failure(s), as 3 voters would"), "{err}");
    assert!(stdout(&o).contains("4 voter(s) — quorum 3, tolerates 1 failure(s)"), "{}", stdout(&o));
}

#[test]
fn init_writes_the_example_and_refuses_to_overwrite_without_force() {
    let t = tempfile::tempdir().expect("tempdir");
    let p = t.path().join("cluster.toml");
    let o = vaultnix().arg("init").arg(&p).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&p).expect("read"), vaultnix::spec::EXAMPLE);
    assert!(stdout(&o).contains("next: vaultnix generate --spec"), "{}", stdout(&o));

    std::fs::write(&p, "# mine\n").expect("write");
    let o = vaultnix().arg("init").arg(&p).output().expect("run");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists; pass --force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&p).expect("read"), "# mine\n");

    let o = vaultnix().arg("init").arg("--force").arg(&p).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&p).expect("read"), vaultnix::spec::EXAMPLE);

    // The written spec generates the same cluster as the built-in example.
    let o = generate(Some(&p), &t.path().join("out"), &[]);
    assert!(stdout(&o).contains("cluster \"hybrid\""), "{}", stdout(&o));
}

#[test]
fn help_version_and_completions() {
    for args in [&["--help"][..], &["generate", "--help"], &["init", "--help"]] {
        let o = vaultnix().args(args).output().expect("run");
        assert!(o.status.success(), "{args:?}");
        let text = stdout(&o);
        assert!(text.contains("Example"), "{args:?}: no examples:\n{text}");
        assert!(text.contains("vaultnix "), "{args:?}:\n{text}");
    }
    let o = vaultnix().arg("--version").output().expect("run");
    assert_eq!(stdout(&o).trim(), format!("vaultnix {}", env!("CARGO_PKG_VERSION")));
    let o = vaultnix().args(["completions", "bash"]).output().expect("run");
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.contains("_vaultnix()") && text.contains("complete -F _vaultnix") && text.contains("generate"),
        "{text}"
    );
    let o = vaultnix().args(["generate", "--no-such-flag"]).output().expect("run");
    assert_eq!(o.status.code(), Some(2), "bad arguments are invalid input");
}

#[test]
fn quiet_prints_nothing_on_success() {
    let t = tempfile::tempdir().expect("tempdir");
    let o = vaultnix().args(["--quiet", "generate", "--out"]).arg(t.path().join("out")).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));
    let o = vaultnix().args(["-q", "generate", "--check", "--out"]).arg(t.path().join("out")).output().expect("run");
    assert!(o.status.success());
    assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));
}

#[test]
fn json_output_is_valid_and_holds_no_key_material() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    let mut outputs = Vec::new();
    for extra in [&[][..], &["--check"], &["--rotate-ca"]] {
        let o = vaultnix().args(["generate", "--output", "json", "--out"]).arg(&out).args(extra).output().expect("run");
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{extra:?}: {e}\n{}", stdout(&o)));
        assert_eq!(v["cluster"], "hybrid");
        assert_eq!(v["quorum"]["tolerates"], 1);
        outputs.push(stdout(&o));
    }
    // Every secret written, in every form it has: no line of any of them may appear in the output.
    let secrets = only(&files(&out), "secrets/");
    assert!(secrets.len() >= 8);
    for text in &outputs {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for (name, bytes) in &secrets {
            for line in String::from_utf8_lossy(bytes).lines().filter(|l| l.len() > 20 && !l.starts_with("-----")) {
                assert!(!text.contains(line), "{name} leaked into --output json");
            }
        }
    }
}

#[test]
fn rerunning_generate_changes_nothing_and_writes_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    generate(None, &out, &["--quiet"]);
    let before = tree(&out);
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).expect("metadata");
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let stamps: Vec<_> = files(&out).keys().map(|k| stamp(&out.join(k))).collect();
    let dir_stamp = stamp(&out);
    let o = generate(None, &out, &[]);
    assert!(stdout(&o).contains("already up to date (33 files); nothing written"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("created") && !stdout(&o).contains("issued"), "{}", stdout(&o));
    assert_eq!(tree(&out), before, "CA, keys, certs and configs must be byte-identical");
    assert_eq!(files(&out).keys().map(|k| stamp(&out.join(k))).collect::<Vec<_>>(), stamps, "a file was rewritten");
    assert_eq!(stamp(&out), dir_stamp, "the output directory was replaced");
}

#[test]
fn same_spec_and_same_secrets_give_byte_identical_output() {
    let t = tempfile::tempdir().expect("tempdir");
    for spec in [None, Some(common::spec("five.toml")), Some(common::spec("static-seal.toml"))] {
        let a = t.path().join("a");
        let b = t.path().join("b");
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
        generate(spec.as_deref(), &a, &["--quiet"]);
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::create_dir_all(b.join("flake")).expect("mkdir");
        for sub in ["secrets", "flake/pki"] {
            let o = std::process::Command::new("cp")
                .arg("-a")
                .arg(a.join(sub))
                .arg(b.join(sub).parent().unwrap())
                .output()
                .expect("cp");
            assert!(o.status.success(), "{}", stderr(&o));
        }
        generate(spec.as_deref(), &b, &["--quiet"]);
        let (fa, fb) = (files(&a), files(&b));
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>(), "{spec:?}");
        for (k, v) in &fa {
            assert!(fb[k] == *v, "{spec:?}: {k} differs between two generations from the same secrets");
        }
    }
}

#[test]
fn check_passes_on_a_fresh_tree_and_lists_drift() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    generate(None, &out, &["--quiet"]);
    let (code, text) = check(None, &out);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("up to date (33 files)"), "{text}");

    // One of each kind of drift, each found alone and all together.
    let edit = |out: &Path| {
        let p = out.join("flake/nodes/vault-2.server.json");
        let s =
            std::fs::read_to_string(&p).expect("read").replace("\"log_level\": \"info\"", "\"log_level\": \"debug\"");
        std::fs::write(p, s).expect("write");
    };
    let delete = |out: &Path| std::fs::remove_file(out.join("flake/haproxy/haproxy.cfg")).expect("rm");
    let manifest = |out: &Path| {
        let p = out.join("manifest.json");
        let s = std::fs::read_to_string(&p).expect("read").replace("\"cluster\": \"hybrid\"", "\"cluster\": \"other\"");
        std::fs::write(p, s).expect("write");
    };
    type Damage<'a> = (&'a dyn Fn(&Path), &'a str);
    let cases: [Damage; 3] = [
        (&edit, "differs: flake/nodes/vault-2.server.json"),
        (&delete, "missing: flake/haproxy/haproxy.cfg"),
        (&manifest, "differs: manifest.json"),
    ];
    for (i, (damage, line)) in cases.iter().enumerate() {
        let copy = t.path().join(format!("copy{i}"));
        let o = std::process::Command::new("cp").arg("-a").arg(&out).arg(&copy).output().expect("cp");
        assert!(o.status.success());
        damage(&copy);
        let before = tree(&copy);
        let (code, text) = check(None, &copy);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains(line), "{line}: {text}");
        assert_eq!(text.matches("differs:").count() + text.matches("missing:").count(), 1, "{text}");
        assert_eq!(tree(&copy), before, "--check wrote something");
    }
    for (damage, _) in &cases {
        damage(&out);
    }
    let (code, text) = check(None, &out);
    assert_eq!(code, 1, "{text}");
    for (_, line) in &cases {
        assert!(text.contains(line), "{line}: {text}");
    }
    // A regeneration repairs it (the damaged manifest names another cluster: that takes
    // --replace-cluster, see tests/output_fs.rs).
    generate(None, &out, &["--quiet", "--replace-cluster"]);
    assert_eq!(check(None, &out).0, 0);
}

#[test]
fn check_without_a_previous_generation_fails_and_creates_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let (code, text) = check(None, &t.path().join("none"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("run `vaultnix generate` first"), "{text}");
    assert!(!t.path().join("none").exists());
}

#[test]
fn changing_a_nodes_address_reissues_only_that_nodes_certificate() {
    let t = tempfile::tempdir().expect("tempdir");
    let spec = t.path().join("five.toml");
    let text = std::fs::read_to_string(common::spec("five.toml")).expect("read");
    std::fs::write(&spec, &text).expect("write");
    let out = t.path().join("out");
    generate(Some(&spec), &out, &["--quiet"]);
    let before = files(&out);
    std::fs::write(&spec, text.replace("198.51.100.12", "198.51.100.99")).expect("write");
    let o = generate(Some(&spec), &out, &[]);
    assert!(stdout(&o).contains("issued certificate for home-2 (SANs changed)"), "{}", stdout(&o));
    assert_eq!(stdout(&o).matches("issued certificate").count(), 1, "{}", stdout(&o));
    let after = files(&out);
    assert_eq!(only(&before, "secrets/"), only(&after, "secrets/"), "keys must not change");
    for (k, v) in only(&before, "flake/pki/") {
        if k == "flake/pki/home-2.crt" {
            assert_ne!(after[&k], v, "home-2's certificate was not reissued");
        } else {
            assert_eq!(after[&k], v, "{k} changed");
        }
    }
    let info = vaultnix::pki::inspect(&String::from_utf8_lossy(&after["flake/pki/home-2.crt"])).expect("inspect");
    assert!(info.sans.ips.contains(&"198.51.100.99".parse().expect("ip")));
    assert!(!info.sans.ips.contains(&"198.51.100.12".parse().expect("ip")));
}

#[test]
fn rotate_ca_replaces_the_ca_and_reissues_every_certificate() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    generate(None, &out, &["--quiet"]);
    let before = files(&out);
    let o = generate(None, &out, &["--rotate-ca"]);
    assert!(stdout(&o).contains("rotated the CA"), "{}", stdout(&o));
    let after = files(&out);
    assert_ne!(before["secrets/ca.key"], after["secrets/ca.key"]);
    for k in before.keys().filter(|k| k.starts_with("flake/pki/")) {
        assert_ne!(before[k], after[k], "{k} was not replaced");
        let ok = vaultnix::pki::verify_signed_by(
            &String::from_utf8_lossy(&after[k]),
            &String::from_utf8_lossy(&after["flake/pki/ca.crt"]),
        );
        assert!(ok, "{k} is not signed by the new CA");
    }
    for n in ["vault-1", "vault-2", "vault-3"] {
        let k = format!("secrets/{n}.key");
        assert_eq!(before[&k], after[&k], "{k}: node keys survive a CA rotation");
        let w = format!("secrets/{n}.wg.key");
        assert_eq!(before[&w], after[&w], "{w}");
    }
}

#[test]
fn secrets_are_private_even_with_a_permissive_umask() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    let bin = assert_cmd::cargo::cargo_bin("vaultnix");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" --quiet generate --out \"$1\"")
        .arg(&bin)
        .arg(&out)
        .output()
        .expect("sh");
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&out.join("secrets")), 0o700);
    for (k, v) in tree(&out) {
        if v.starts_with("dir") && k != "secrets" {
            assert_eq!(mode(&out.join(&k)), 0o755, "{k}: directories must not be writable by others");
        }
    }
    assert_eq!(mode(&out), 0o755);
    for (k, _) in files(&out) {
        let m = mode(&out.join(&k));
        if k.starts_with("secrets/") {
            assert_eq!(m, 0o600, "{k}");
        } else {
            assert_eq!(m & 0o022, 0, "{k}: {m:o} is writable by others");
        }
    }
}

#[test]
fn a_users_files_survive_regeneration() {
    let t = tempfile::tempdir().expect("tempdir");
    let spec = t.path().join("five.toml");
    let text = std::fs::read_to_string(common::spec("five.toml")).expect("read");
    std::fs::write(&spec, &text).expect("write");
    let out = t.path().join("out");
    generate(Some(&spec), &out, &["--quiet"]);
    std::fs::write(out.join("NOTES.md"), "mine").expect("write");
    std::fs::create_dir(out.join("extra")).expect("mkdir");
    std::fs::write(out.join("extra/deploy.sh"), "#!/bin/sh\n").expect("write");
    std::fs::write(out.join("secrets/init.json"), "{}").expect("write");
    // A change that rewrites the tree, then one that removes a node (its generated files go, not ours).
    std::fs::write(&spec, text.replace("198.51.100.12", "198.51.100.99")).expect("write");
    generate(Some(&spec), &out, &["--quiet"]);
    let cut = text.find("[[nodes]]\nname = \"do-1\"").expect("do-1");
    let four = text[..cut].to_string();
    std::fs::write(&spec, four.replace("198.51.100.12", "198.51.100.99")).expect("write");
    let o = generate(Some(&spec), &out, &[]);
    assert!(stdout(&o).contains("removed"), "{}", stdout(&o));
    assert_eq!(std::fs::read_to_string(out.join("NOTES.md")).expect("NOTES.md"), "mine");
    assert_eq!(std::fs::read_to_string(out.join("extra/deploy.sh")).expect("deploy.sh"), "#!/bin/sh\n");
    assert_eq!(std::fs::read_to_string(out.join("secrets/init.json")).expect("init.json"), "{}");
    assert!(!out.join("flake/nodes/do-1.server.json").exists(), "a removed node's config stays");
    assert!(!out.join("flake/pki/do-1.crt").exists());
    assert!(out.join("secrets/do-1.key").exists(), "keys are never deleted by generate");
    assert_eq!(check(Some(&spec), &out).0, 0);
}

#[test]
fn a_failed_generation_leaves_the_previous_output_intact() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    generate(None, &out, &["--quiet"]);
    std::fs::write(out.join("NOTES.md"), "mine").expect("write");
    let before = tree(&out);
    let bin = assert_cmd::cargo::cargo_bin("vaultnix");

    // 1. A crash while the new tree is being written: a 1-block file size limit kills the process
    //    (SIGXFSZ) at the first certificate it writes into the staging tree.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 1; exec \"$0\" --quiet generate --rotate-ca --out \"$1\"")
        .arg(&bin)
        .arg(&out)
        .output()
        .expect("sh");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGXFSZ), "expected a crash mid-write: {o:?}");
    let staging = std::fs::read_dir(t.path())
        .expect("read")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().contains("vaultnix-staging")))
        .count();
    assert_eq!(staging, 1, "the crash should have happened inside the staging tree");
    assert_eq!(tree(&out), before, "the crash changed the previous output");

    // 2. A directory where a generated file must go: refused with exit 1, nothing changed.
    std::fs::remove_file(out.join("flake/monitoring/alerts.yml")).expect("rm");
    std::fs::create_dir(out.join("flake/monitoring/alerts.yml")).expect("mkdir");
    let before = tree(&out);
    let o = vaultnix().args(["generate", "--rotate-ca", "--out"]).arg(&out).output().expect("run");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("flake/monitoring/alerts.yml"), "{}", stderr(&o));
    assert_eq!(tree(&out), before);

    // The next good run repairs the tree and cleans up what the crash left beside it.
    std::fs::remove_dir(out.join("flake/monitoring/alerts.yml")).expect("rmdir");
    generate(None, &out, &["--quiet"]);
    assert_eq!(check(None, &out).0, 0);
    assert_eq!(std::fs::read_to_string(out.join("NOTES.md")).expect("NOTES.md"), "mine");
    let mut names: Vec<String> = std::fs::read_dir(t.path())
        .expect("read")
        .map(|e| e.expect("e").file_name().to_string_lossy().into())
        .collect();
    names.sort();
    assert_eq!(names, ["out"], "staging trees left behind");
}

#[test]
fn a_damaged_manifest_is_drift_and_regeneration_repairs_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    generate(None, &out, &["--quiet"]);
    std::fs::write(out.join("manifest.json"), "not json").expect("write");
    let (code, text) = check(None, &out);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("differs: manifest.json"), "{text}");
    generate(None, &out, &["--quiet"]);
    assert_eq!(check(None, &out).0, 0);
}

/// Issue #14 item 18: settings that are valid but expose the cluster are warned about (at their place)
/// and still generate; the same spec without them has no warning at all.
#[test]
fn exposing_settings_are_warned_about_at_their_place() {
    let base = "[cluster]\nname = \"lab\"\nadmin_ssh_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGsJKmNrHyFKVs1u0G3VX9fx+p8iK9jYHs7a7JYF2Qdu admin@example\"]\n\
        [load_balancer]\nhostname = \"vault.example.com\"\naddress = \"192.0.2.50\"\n\
        [[nodes]]\nname = \"n1\"\nprovider = \"onprem\"\naddress = \"192.0.2.1\"\n\
        [[nodes]]\nname = \"n2\"\nprovider = \"onprem\"\naddress = \"192.0.2.2\"\n\
        [[nodes]]\nname = \"n3\"\nprovider = \"onprem\"\naddress = \"192.0.2.3\"\n";
    let cases: [(&str, &str, &str); 4] = [
        ("", "", ""),
        (
            "[firewall]\nclient_cidrs = [\"0.0.0.0/0\"]\n",
            "20:17",
            "client_cidrs 0.0.0.0/0 opens the API port of every node to the whole internet",
        ),
        ("[firewall]\nclient_cidrs = [\"10.0.0.0/8\", \"::/0\"]\n", "20:31", "client_cidrs ::/0 opens"),
        ("[audit]\nenabled = false\n", "20:11", "audit is disabled"),
    ];
    let t = tempfile::tempdir().expect("tempdir");
    let mut problems = Vec::new();
    let port_cases = [
        ("api_port = 22", "3:12", "port 22 is SSH's on the hosts"),
        ("cluster_port = 443", "3:16", "port 443 is privileged"),
    ];
    let mut all: Vec<(String, &str, &str)> = cases.iter().map(|(x, l, m)| (format!("{base}{x}"), *l, *m)).collect();
    for (line, l, m) in port_cases {
        all.push((base.replacen("name = \"lab\"\n", &format!("name = \"lab\"\n{line}\n"), 1), l, m));
    }
    for (i, (text, loc, want)) in all.iter().enumerate() {
        let p = t.path().join(format!("w{i}.toml"));
        std::fs::write(&p, text).expect("write");
        let o = generate(Some(&p), &t.path().join(format!("out{i}")), &[]);
        let err = stderr(&o);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
        if want.is_empty() {
            if !warnings.is_empty() {
                problems.push(format!("case {i}: unexpected warnings {warnings:?}"));
            }
            continue;
        }
        let at = format!("{}:{loc}: warning: ", p.display());
        if warnings.len() != 1 || !warnings[0].starts_with(&at) || !warnings[0].contains(want) {
            problems.push(format!("case {i}: want one `{at}... {want}`, got {warnings:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Issue #14 item 15: `--vaultnix-url` is remembered in the manifest: a plain re-run keeps it and
/// `--check` finds no drift; giving the default URL again returns to it.
#[test]
fn the_vaultnix_url_is_remembered() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    let flake = || std::fs::read_to_string(out.join("flake/flake.nix")).expect("flake.nix");
    let url = "git+https://git.example.com/me/vaultnix?ref=pinned";
    generate(None, &out, &["--quiet", "--vaultnix-url", url]);
    assert!(flake().contains(url), "{}", flake());
    let before = tree(&out);
    generate(None, &out, &["--quiet"]);
    assert!(flake().contains(url), "a plain run reverted the URL:\n{}", flake());
    assert_eq!(tree(&out), before, "a plain re-run changed the tree");
    let (code, text) = check(None, &out);
    assert_eq!(code, 0, "--check reports drift:\n{text}");
    generate(None, &out, &["--quiet", "--vaultnix-url", "github:vaultnix/vaultnix"]);
    assert!(!flake().contains(url) && flake().contains("github:vaultnix/vaultnix"), "{}", flake());
    let m = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
    assert!(!m.contains("vaultnix_url"), "{m}");
}

/// Issue #14 item 14: a changed tls.key_algorithm / node_validity_days reissues what the spec now asks
/// (new node keys and certificates, same CA); a CA change is never applied without --rotate-ca, but
/// said exactly, and --check reports it until then.
#[test]
fn tls_changes_in_the_spec_are_applied_or_explained() {
    let t = tempfile::tempdir().expect("tempdir");
    let spec = t.path().join("five.toml");
    let text = std::fs::read_to_string(common::spec("five.toml")).expect("read");
    std::fs::write(&spec, &text).expect("write");
    let out = t.path().join("out");
    generate(Some(&spec), &out, &["--quiet"]);
    let before = files(&out);

    // node_validity_days: every node certificate is reissued for the new validity, keys and CA kept.
    assert!(text.contains("node_validity_days = 90\n"), "five.toml changed");
    let v200 = text.replace("node_validity_days = 90\n", "node_validity_days = 200\n");
    std::fs::write(&spec, &v200).expect("write");
    let (code, report) = check(Some(&spec), &out);
    assert_eq!(code, 1, "--check did not report the validity change:\n{report}");
    assert!(report.contains("tls.node_validity_days"), "{report}");
    let o = generate(Some(&spec), &out, &[]);
    assert!(stdout(&o).contains("the spec asks 200 (tls.node_validity_days)"), "{}", stdout(&o));
    let after = files(&out);
    assert_eq!(only(&before, "secrets/"), only(&after, "secrets/"), "keys must not change");
    assert_eq!(before["flake/pki/ca.crt"], after["flake/pki/ca.crt"], "the CA changed");
    let info = vaultnix::pki::inspect(&String::from_utf8_lossy(&after["flake/pki/home-1.crt"])).expect("inspect");
    assert_eq!(vaultnix::pki::issued_validity_days(&info), 200);
    assert_eq!(check(Some(&spec), &out).0, 0, "drift after applying the change");

    // key_algorithm and ca_validity_days: node keys of the new kind; the CA is kept and the run says why.
    let ed = v200.replace("[tls]\n", "[tls]\nkey_algorithm = \"ed25519\"\nca_validity_days = 3000\n");
    std::fs::write(&spec, &ed).expect("write");
    let o = generate(Some(&spec), &out, &[]);
    let said = stdout(&o) + &stderr(&o);
    assert!(said.contains("created a new Ed25519 TLS key for home-1"), "{said}");
    assert!(said.contains("kept the CA although the spec changed") && said.contains("--rotate-ca"), "{said}");
    assert!(said.contains("tls.ca_validity_days") && said.contains("tls.key_algorithm"), "{said}");
    let after2 = files(&out);
    assert_eq!(after["flake/pki/ca.crt"], after2["flake/pki/ca.crt"], "the CA was replaced without --rotate-ca");
    assert_eq!(after["secrets/ca.key"], after2["secrets/ca.key"], "the CA key was replaced without --rotate-ca");
    assert!(vaultnix::pki::key_is(
        &String::from_utf8_lossy(&after2["secrets/home-1.key"]),
        vaultnix::spec::KeyAlgorithm::Ed25519
    ));
    let (code, report) = check(Some(&spec), &out);
    assert_eq!(code, 1, "--check must keep reporting the CA drift:\n{report}");
    assert!(report.contains("--rotate-ca"), "{report}");
    generate(Some(&spec), &out, &["--quiet", "--rotate-ca"]);
    assert_eq!(check(Some(&spec), &out).0, 0, "drift after --rotate-ca");
}
