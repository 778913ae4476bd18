//! Issue 14: the output tree and the spec, tried hard. Table-driven per group; every case asserts the
//! exit code, the message, and that nothing outside what the user asked was read, written or deleted
//! (the whole scratch directory, and any mount, hashed before and after).
//!
//! Mount cases run as root in a private mount namespace (`unshare -m --propagation private`), so the
//! tmpfs disappears with the namespace even when the test fails.

mod common;

use common::vaultnix;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("vaultnix")
}

fn four() -> PathBuf {
    common::spec("four.toml")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn gen(args: &[&str], cwd: &Path) -> Output {
    let mut c = vaultnix();
    c.current_dir(cwd).arg("generate").args(args).timeout(Duration::from_secs(60));
    c.output().unwrap()
}

fn assert_no_panic(what: &str, o: &Output) {
    let t = text(o);
    assert!(!t.contains("panicked") && !t.contains("RUST_BACKTRACE"), "{what}: panic\n{t}");
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Group "loses or exposes data": a case prepares a scratch dir, runs one command, and checks.
struct Case {
    name: &'static str,
    setup: fn(&Path),
    args: fn(&Path) -> Vec<String>,
    code: i32,
    message: &'static str,
    /// The scratch dir must be byte-for-byte unchanged (a refusal writes nothing).
    unchanged: bool,
    check: fn(&Path),
}

fn out_arg(d: &Path, rel: &str) -> Vec<String> {
    vec!["--spec".into(), four().display().to_string(), "--out".into(), d.join(rel).display().to_string()]
}

fn first_generate(d: &Path) {
    let o = gen(&out_arg(d, "out").iter().map(String::as_str).collect::<Vec<_>>(), d);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn group_loses_or_exposes_data() {
    let cases: Vec<Case> = vec![
        Case {
            name: "--out symlink to a foreign directory (like /etc) is refused, never hard-linked",
            setup: |d| {
                std::fs::create_dir(d.join("etc")).unwrap();
                std::fs::write(d.join("etc/shadow"), "root:secret").unwrap();
                std::fs::set_permissions(d.join("etc/shadow"), std::fs::Permissions::from_mode(0o640)).unwrap();
                std::os::unix::fs::symlink(d.join("etc"), d.join("out")).unwrap();
            },
            args: |d| out_arg(d, "out"),
            code: 1,
            message: "holds no vaultnix manifest.json",
            unchanged: true,
            check: |d| assert!(std::fs::symlink_metadata(d.join("out")).unwrap().file_type().is_symlink()),
        },
        Case {
            name: "--out symlink to an empty directory: written through, the link stays",
            setup: |d| {
                std::fs::create_dir(d.join("enc")).unwrap();
                std::os::unix::fs::symlink(d.join("enc"), d.join("out")).unwrap();
            },
            args: |d| out_arg(d, "out"),
            code: 0,
            message: "added",
            unchanged: false,
            check: |d| {
                assert!(std::fs::symlink_metadata(d.join("out")).unwrap().file_type().is_symlink());
                assert!(d.join("enc/manifest.json").is_file());
                assert_eq!(mode(&d.join("enc/secrets")), 0o700);
                // a second run (the tree now exists) still writes through
                let o = gen(
                    &["--spec", four().to_str().unwrap(), "--out", d.join("out").to_str().unwrap(), "--rotate-keys"],
                    d,
                );
                assert_eq!(o.status.code(), Some(0), "{}", text(&o));
                assert!(std::fs::symlink_metadata(d.join("out")).unwrap().file_type().is_symlink());
            },
        },
        Case {
            name: "forgotten --spec over another cluster's tree is refused",
            setup: first_generate,
            args: |d| vec!["--out".into(), d.join("out").display().to_string()],
            code: 1,
            message: "holds the output of cluster \"four\"",
            unchanged: true,
            check: |_| {},
        },
        Case {
            name: "--replace-cluster overrides the cluster check",
            setup: first_generate,
            args: |d| vec!["--out".into(), d.join("out").display().to_string(), "--replace-cluster".into()],
            code: 0,
            message: "removed",
            unchanged: false,
            check: |d| {
                let m = std::fs::read_to_string(d.join("out/manifest.json")).unwrap();
                assert!(!m.contains("\"cluster\": \"four\""), "{m}");
            },
        },
        Case {
            name: "--check reports loosened secrets",
            setup: |d| {
                first_generate(d);
                loosen(d);
            },
            args: |d| {
                let mut a = out_arg(d, "out");
                a.push("--check".into());
                a
            },
            code: 1,
            message: "loose mode: secrets (0755)",
            unchanged: true,
            check: |_| {},
        },
        Case {
            name: "generate tightens loosened secrets (also a kept, user-made one)",
            setup: |d| {
                first_generate(d);
                std::fs::write(d.join("out/secrets/init.json"), "{}").unwrap();
                loosen(d);
            },
            args: |d| out_arg(d, "out"),
            code: 0,
            message: "tightened secrets/a.key (0644)",
            unchanged: false,
            check: |d| {
                assert_eq!(mode(&d.join("out/secrets")), 0o700);
                for e in std::fs::read_dir(d.join("out/secrets")).unwrap() {
                    let p = e.unwrap().path();
                    assert_eq!(mode(&p) & 0o077, 0, "{} still {:o}", p.display(), mode(&p));
                }
                assert_eq!(std::fs::read_to_string(d.join("out/secrets/init.json")).unwrap(), "{}");
            },
        },
        Case {
            name: "--out inside another tree's secrets/ is refused",
            setup: first_generate,
            args: |d| out_arg(d, "out/secrets/nested"),
            code: 1,
            message: "inside the secrets directory",
            unchanged: true,
            check: |d| assert_eq!(mode(&d.join("out/secrets")), 0o700),
        },
        Case {
            name: "keys of a node removed from the spec are kept and named in the summary",
            setup: |d| {
                first_generate(d);
                let s = std::fs::read_to_string(four()).unwrap();
                let cut = s.find("[[nodes]]\nname = \"d\"").unwrap();
                std::fs::write(d.join("three.toml"), &s[..cut]).unwrap();
            },
            args: |d| {
                vec![
                    "--spec".into(),
                    d.join("three.toml").display().to_string(),
                    "--out".into(),
                    d.join("out").display().to_string(),
                ]
            },
            code: 0,
            message: "secret(s) of nodes no longer in the spec",
            unchanged: false,
            check: |d| assert!(d.join("out/secrets/d.key").is_file(), "d's key kept"),
        },
    ];
    for c in cases {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        (c.setup)(d);
        let before = tree_nofollow(d);
        let args = (c.args)(d);
        let o = gen(&args.iter().map(String::as_str).collect::<Vec<_>>(), d);
        assert_no_panic(c.name, &o);
        assert_eq!(o.status.code(), Some(c.code), "{}: {}", c.name, text(&o));
        assert!(text(&o).contains(c.message), "{}: expected {:?} in\n{}", c.name, c.message, text(&o));
        if c.unchanged {
            assert_eq!(tree_nofollow(d), before, "{}: the scratch dir changed", c.name);
        }
        (c.check)(d);
    }
}

fn loosen(d: &Path) {
    for e in std::fs::read_dir(d.join("out/secrets")).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(d.join("out/secrets"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Like `common::tree`, but a symlink is recorded as its target (never followed).
fn tree_nofollow(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    fn walk(root: &Path, dir: &Path, m: &mut std::collections::BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.file_type().is_symlink() {
                m.insert(rel, format!("link {}", std::fs::read_link(&p).unwrap().display()));
            } else if md.is_dir() {
                m.insert(rel, format!("dir {:o}", mode(&p)));
                walk(root, &p, m);
            } else if md.is_file() {
                let b = std::fs::read(&p).unwrap();
                m.insert(rel, format!("file {:o} {}", mode(&p), vaultnix::output::sha256_hex(&b)));
            } else {
                m.insert(rel, format!("special {:o}", mode(&p)));
            }
        }
    }
    walk(dir, dir, &mut m);
    m
}

/// A tmpfs mounted inside the output tree (on secrets/ and on a user directory): refused before
/// anything is written; both mounts and the tree are unchanged.
#[test]
fn mount_inside_the_tree_is_refused_and_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    first_generate(d);
    std::fs::create_dir(d.join("out/vault-data")).unwrap();
    // Inside the namespace: mount, put a user file on each mount, hash everything, generate with a
    // changed spec (--rotate-keys), hash again. The script prints the rc and both hashes.
    let script = r#"
set -eu
mount -t tmpfs -o mode=0700 none "$D/out/secrets"
cp -a "$D/keep/." "$D/out/secrets/"
mount -t tmpfs none "$D/out/vault-data"
echo mine > "$D/out/vault-data/user-file"
h() { (cd "$D" && find . -path ./keep -prune -o -print0 | LC_ALL=C sort -z | xargs -0 ls -ld --time-style=+ | awk '{print $1, $5, $NF}'; find . -type f -not -path './keep/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum; }
before=$(h)
set +e
"$BIN" generate --spec "$SPEC" --out "$D/out" --rotate-keys > "$D/../$N.log" 2>&1
rc=$?
set -e
after=$(h)
echo "rc=$rc"
[ "$before" = "$after" ] && echo same || echo CHANGED
cat "$D/out/vault-data/user-file"
ls "$D/out/secrets" | wc -l
ls -a "$D" | grep -c vaultnix-staging || true
"#;
    std::fs::create_dir(d.join("keep")).unwrap();
    for e in std::fs::read_dir(d.join("out/secrets")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.join("keep").join(p.file_name().unwrap())).unwrap();
    }
    let n = format!("mnt-{}", std::process::id());
    let o = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env("D", d)
        .env("BIN", bin())
        .env("SPEC", four())
        .env("N", &n)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(d.parent().unwrap().join(format!("{n}.log"))).unwrap_or_default();
    let _ = std::fs::remove_file(d.parent().unwrap().join(format!("{n}.log")));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "script failed: {out}\n{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "rc=1", "{out}\n{log}");
    assert!(log.contains("is a mount point inside the output tree"), "{log}");
    assert!(log.contains("nothing was written"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(lines[1], "same", "tree or mounts changed\n{log}");
    assert_eq!(lines[2], "mine", "user file on the mount kept");
    assert_ne!(lines[3], "0", "secrets on the mount kept");
    assert_eq!(lines[4], "0", "no staging dir left");
}

/// `--out` itself a mount point: refused clearly (a mount point cannot be renamed).
#[test]
fn out_that_is_a_mount_point_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir(d.join("out")).unwrap();
    let script = r#"
mount -t tmpfs none "$D/out" || exit 99
"$BIN" generate --spec "$SPEC" --out "$D/out"; echo "rc=$?" >&2
ls -A "$D/out" | wc -l >&2
"#;
    let o = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env("D", d)
        .env("BIN", bin())
        .env("SPEC", four())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("is a mount point; vaultnix replaces the output tree by renaming it"), "{e}");
    assert!(e.contains("rc=1\n0"), "refused, nothing written: {e}");
}

/// Three parallel `generate` runs on a fresh directory: one writer at a time, exactly one CA created,
/// and every run ends with that CA.
#[test]
fn parallel_generates_create_exactly_one_ca() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(bin())
                .args(["generate", "--spec", four().to_str().unwrap(), "--out", d.join("out").to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let mut created = 0;
    for o in &outs {
        assert_no_panic("parallel", o);
        assert_eq!(o.status.code(), Some(0), "{}", text(o));
        created += text(o).matches("created the CA").count();
    }
    assert_eq!(
        created,
        1,
        "exactly one run created the CA:\n{}",
        outs.iter().map(text).collect::<Vec<_>>().join("\n---\n")
    );
    // The CA on disk is the one every node certificate chains to (no run replaced it afterwards).
    let o = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(d.join("out/flake/pki/ca.crt"))
        .arg(d.join("out/flake/pki/a.crt"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let staging = std::fs::read_dir(d)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("staging"))
        .count();
    assert_eq!(staging, 0);
}

/// Group "hangs, panics": FIFOs and devices refused at once; closed pipes exit quietly; `init` with a
/// bare file name and with none.
#[test]
fn group_hangs_and_panics() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let fifo = d.join("spec.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    struct C {
        name: &'static str,
        spec: PathBuf,
        code: i32,
        message: &'static str,
    }
    let cases = [
        C { name: "FIFO as --spec", spec: fifo.clone(), code: 2, message: "a FIFO (named pipe), not a regular file" },
        C { name: "/dev/zero as --spec", spec: "/dev/zero".into(), code: 2, message: "a device, not a regular file" },
        C { name: "a directory as --spec", spec: d.to_path_buf(), code: 2, message: "a directory" },
    ];
    for c in cases {
        let before = tree_nofollow(d);
        let start = std::time::Instant::now();
        let o = vaultnix()
            .current_dir(d)
            .args(["generate", "--check", "--out", "out", "--spec"])
            .arg(&c.spec)
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(10), "{}: took {:?}", c.name, start.elapsed());
        assert_no_panic(c.name, &o);
        assert_eq!(o.status.code(), Some(c.code), "{}: {}", c.name, text(&o));
        assert!(text(&o).contains(c.message), "{}: {}", c.name, text(&o));
        assert_eq!(tree_nofollow(d), before, "{}", c.name);
    }
}

/// A PGP key that is a FIFO or /dev/zero: a located error at once, no hang, no OOM.
#[test]
fn pgp_key_fifo_and_device_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(std::process::Command::new("mkfifo").arg(d.join("k.asc")).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/zero", d.join("z.asc")).unwrap();
    let base = std::fs::read_to_string(four()).unwrap();
    for (key, msg) in [("k.asc", "a FIFO (named pipe)"), ("z.asc", "a device")] {
        let spec =
            format!("{base}\n[unseal]\nshares = 3\nthreshold = 2\npgp_keys = [\"{key}\", \"{key}\", \"{key}\"]\n");
        std::fs::write(d.join("s.toml"), spec).unwrap();
        let start = std::time::Instant::now();
        let o = vaultnix()
            .current_dir(d)
            .args(["generate", "--check", "--out", "out", "--spec", "s.toml"])
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(10), "{key}: {:?}", start.elapsed());
        assert_no_panic(key, &o);
        assert_eq!(o.status.code(), Some(2), "{key}: {}", text(&o));
        assert!(text(&o).contains(msg), "{key}: {}", text(&o));
    }
}

/// stdout is a pipe whose reader is already closed: every write is EPIPE, deterministically.
fn run_with_closed_stdout(args: &[&str], cwd: &Path) -> Output {
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let w = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
    let child = std::process::Command::new(bin())
        .current_dir(cwd)
        .args(args)
        .stdout(std::process::Stdio::from(w))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn closed_pipe_exits_quietly() {
    let t = tempfile::tempdir().unwrap();
    for args in [
        vec!["completions", "bash"],
        vec!["generate", "--spec", four().to_str().unwrap(), "--out", "out", "--output", "json"],
        vec!["--help"],
    ] {
        let o = run_with_closed_stdout(&args, t.path());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!e.contains("panicked"), "{args:?}: {e}");
        assert!(matches!(o.status.code(), Some(0) | Some(141)), "{args:?}: {:?} {e}", o.status);
    }
}

#[test]
fn init_with_a_bare_file_name_and_with_none() {
    for args in [vec!["init", "cluster.toml"], vec!["init"]] {
        let t = tempfile::tempdir().unwrap();
        let o = vaultnix().current_dir(t.path()).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        assert_eq!(std::fs::read_to_string(t.path().join("cluster.toml")).unwrap(), vaultnix::spec::EXAMPLE);
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{args:?}: only cluster.toml written: {names:?}");
    }
}

/// `doctor` reports secrets group or others can read (and is ok once `generate` tightened them).
#[test]
fn doctor_reports_loosened_secrets() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    first_generate(d);
    let doctor = || {
        vaultnix()
            .current_dir(d)
            .args(["doctor", "--no-validate-config", "--output", "json", "--out", "out", "--spec"])
            .arg(four())
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    };
    let finding = |o: &Output| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)));
        let all = v["findings"].as_array().cloned().unwrap_or_default();
        all.into_iter().find(|f| f["check"] == "secret-modes").unwrap_or_else(|| panic!("no secret-modes finding: {v}"))
    };
    let f = finding(&doctor());
    assert_eq!(f["severity"], "ok", "{f}");
    loosen(d);
    let o = doctor();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let f = finding(&o);
    assert_eq!(f["severity"], "error", "{f}");
    assert!(f["what"].as_str().unwrap().contains("secrets (0755)"), "{f}");
    assert!(f["what"].as_str().unwrap().contains("secrets/a.key (0644)"), "{f}");
    first_generate(d);
    assert_eq!(finding(&doctor())["severity"], "ok");
}
