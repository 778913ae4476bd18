//! Every spec under tests/bad-specs/ is refused by the real binary: exit code 2, every error reported
//! at once at its file:line:col with the expected message, and the output directory untouched (both a
//! previous good generation and a directory that does not exist yet).
//!
//! `NN-name.expect` holds `exit <code>` and one `<line>:<col> <message substring>` line per error;
//! `#` lines are comments.

mod common;

use common::{tree, vaultnix};
use std::path::{Path, PathBuf};

struct Expect {
    exit: i32,
    errors: Vec<(String, String)>,
}

fn read_expect(p: &Path) -> Expect {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut exit = None;
    let mut errors = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(code) = line.strip_prefix("exit ") {
            exit = Some(code.parse().expect("exit code"));
        } else {
            let (loc, msg) = line.split_once(' ').unwrap_or_else(|| panic!("{}: bad line {line:?}", p.display()));
            errors.push((loc.to_string(), msg.to_string()));
        }
    }
    Expect { exit: exit.unwrap_or_else(|| panic!("{}: no `exit` line", p.display())), errors }
}

fn bad_specs() -> Vec<PathBuf> {
    let dir = common::root().join("tests/bad-specs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/bad-specs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

/// `(line:col, message)` of every error the binary printed for `spec`.
fn printed_errors(stderr: &str, spec: &Path) -> Vec<(String, String)> {
    let prefix = format!("{}:", spec.display());
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (loc, msg) = rest.split_once(": error: ")?;
            Some((loc.to_string(), msg.to_string()))
        })
        .collect()
}

/// Problems with one spec's run, as text (empty: it behaved).
fn check_one(spec: &Path, good_out: &Path, missing_out: &Path) -> Vec<String> {
    let name = spec.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let want = read_expect(&spec.with_extension("expect"));
    let mut problems = Vec::new();
    let before = tree(good_out);
    for out in [good_out, missing_out] {
        let o = vaultnix().arg("generate").arg("--spec").arg(spec).arg("--out").arg(out).output().expect("run");
        let stderr = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(want.exit) {
            problems.push(format!("{name}: exit {:?}, expected {}\n{stderr}", o.status.code(), want.exit));
        }
        if !o.stdout.is_empty() {
            problems.push(format!("{name}: printed on stdout: {}", String::from_utf8_lossy(&o.stdout)));
        }
        let got = printed_errors(&stderr, spec);
        // One printed error per expected line, at that place, with that text; nothing more.
        let mut unmatched = got.clone();
        for (loc, msg) in &want.errors {
            match unmatched.iter().position(|(l, m)| l == loc && m.contains(msg.as_str())) {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => problems.push(format!("{name}: no error `{loc}: ... {msg}` in:\n{stderr}")),
            }
        }
        for (loc, msg) in unmatched {
            problems.push(format!("{name}: unexpected error {loc}: {msg}"));
        }
        let n = want.errors.len();
        let summary = format!("{n} error{} in spec; nothing was written", if n == 1 { "" } else { "s" });
        if !stderr.contains(&summary) {
            problems.push(format!("{name}: stderr lacks {summary:?}:\n{stderr}"));
        }
        // Each error shows the offending source line under the location.
        if !stderr.contains(" | ") {
            problems.push(format!("{name}: no source excerpt in:\n{stderr}"));
        }
    }
    if tree(good_out) != before {
        problems.push(format!("{name}: the existing output directory changed"));
    }
    if missing_out.exists() {
        problems.push(format!("{name}: created {}", missing_out.display()));
    }
    problems
}

#[test]
fn every_bad_spec_is_refused_with_located_errors_and_nothing_written() {
    let specs = bad_specs();
    assert!(specs.len() >= 30, "only {} bad specs", specs.len());
    let multi = specs.iter().filter(|s| read_expect(&s.with_extension("expect")).errors.len() >= 3).count();
    assert!(multi >= 3, "only {multi} specs with 3 or more errors (all must be reported at once)");

    let t = tempfile::tempdir().expect("tempdir");
    let good = t.path().join("good");
    common::generate(None, &good, &["--quiet"]);
    // A user's file and the previous generation's files must all survive a refused run.
    std::fs::write(good.join("notes.md"), "mine").expect("write");
    let missing = t.path().join("missing");

    let mut problems = Vec::new();
    for s in &specs {
        problems.extend(check_one(s, &good, &missing));
    }
    // Nothing was left beside the output directories either (no staging directory).
    let mut names: Vec<String> = std::fs::read_dir(t.path())
        .expect("read")
        .map(|e| e.expect("e").file_name().to_string_lossy().into())
        .collect();
    names.sort();
    assert_eq!(names, ["good"], "stray files next to the output directory");
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n---\n"));
}

#[test]
fn every_bad_spec_has_an_expectation_with_exit_code_2() {
    for s in bad_specs() {
        let e = read_expect(&s.with_extension("expect"));
        assert_eq!(e.exit, 2, "{}", s.display());
        assert!(!e.errors.is_empty(), "{}: no expected error", s.display());
    }
}

#[test]
fn a_spec_that_cannot_be_read_is_a_failure_not_a_crash() {
    let t = tempfile::tempdir().expect("tempdir");
    let o = vaultnix()
        .arg("generate")
        .arg("--spec")
        .arg(t.path().join("nope.toml"))
        .arg("--out")
        .arg(t.path().join("out"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read spec") && stderr.contains("nope.toml"), "{stderr}");
    assert!(!t.path().join("out").exists());
}

#[test]
fn a_spec_that_is_not_utf8_is_located() {
    let t = tempfile::tempdir().expect("tempdir");
    let p = t.path().join("latin1.toml");
    std::fs::write(&p, b"[cluster]\nname = \"caf\xe9\"\n").expect("write");
    let o =
        vaultnix().arg("generate").arg("--spec").arg(&p).arg("--out").arg(t.path().join("out")).output().expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:2:12: error: the spec is not valid UTF-8", p.display())), "{stderr}");
    assert!(!t.path().join("out").exists());
}

/// Issue #14 item 10: control characters in a spec (raw, or as TOML escapes) and in its file name
/// reach the terminal escaped, never raw (an OSC title change, a screen clear).
#[test]
fn control_characters_from_the_spec_are_escaped_in_diagnostics() {
    let t = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[u8], &str); 3] = [
        // Raw ESC sequences: toml refuses the byte, the diagnostic quotes the line.
        ("raw\x1b[2J.toml", b"[cluster]\nname = \"a\x1b]0;pwned\x07\x1b[2J\"\n", "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
        // TOML escapes: the value holds real control characters, the message quotes the value.
        (
            "escaped.toml",
            b"[cluster]\nname = \"x\\u001b]0;pwned\\u0007\\u001b[2J\"\n[load_balancer]\nhostname = \"h.example.com\"\naddress = \"192.0.2.9\"\n[[nodes]]\nname = \"n1\"\nprovider = \"onprem\"\naddress = \"192.0.2.1\"\n",
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J",
        ),
        // A C1 CSI (U+009B) and DEL in a comment.
        ("c1.toml", "[cluster] # \u{9b}2J\x7f\n".as_bytes(), "\\u{9b}2J\\u{7f}"),
    ];
    for (name, text, want) in cases {
        let p = t.path().join(name);
        std::fs::write(&p, text).expect("write");
        let o = vaultnix()
            .arg("generate")
            .arg("--spec")
            .arg(&p)
            .arg("--out")
            .arg(t.path().join("out"))
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        let raw: Vec<char> = stderr.chars().filter(|c| c.is_control() && *c != '\n').collect();
        assert!(raw.is_empty(), "{name}: raw control characters {raw:?} in {stderr:?}");
        assert!(stderr.contains(want), "{name}: no {want:?} in:\n{stderr}");
        if name.starts_with("raw") {
            assert!(stderr.contains("raw\\u{1b}[2J.toml:2:"), "{name}: file name not escaped:\n{stderr}");
        }
        assert!(!t.path().join("out").exists());
    }
}

/// Issue #14 item 19: `generate --output json` prints the same diagnostics as a JSON document on
/// stdout (exit 2, nothing written), for every bad spec.
#[test]
fn json_output_holds_every_error_of_a_bad_spec() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    let mut problems = Vec::new();
    for spec in bad_specs() {
        let want = read_expect(&spec.with_extension("expect"));
        let o = vaultnix()
            .args(["generate", "--output", "json", "--spec"])
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run");
        let name = spec.display().to_string();
        if o.status.code() != Some(2) {
            problems.push(format!("{name}: exit {:?}", o.status.code()));
        }
        let v: serde_json::Value = match serde_json::from_slice(&o.stdout) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name}: stdout is not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)));
                continue;
            }
        };
        if v["ok"] != serde_json::json!(false) {
            problems.push(format!("{name}: ok is not false"));
        }
        let errors = v["errors"].as_array().cloned().unwrap_or_default();
        let got: Vec<(String, String)> = errors
            .iter()
            .map(|e| {
                let loc = e["location"].as_str().unwrap_or("");
                let loc = loc.strip_prefix(&format!("{name}:")).unwrap_or(loc).to_string();
                (loc, e["message"].as_str().unwrap_or("").to_string())
            })
            .collect();
        if got.len() != want.errors.len() {
            problems.push(format!("{name}: {} errors in JSON, {} expected: {got:?}", got.len(), want.errors.len()));
        }
        for (loc, msg) in &want.errors {
            if !got.iter().any(|(l, m)| l == loc && m.contains(msg.as_str())) {
                problems.push(format!("{name}: JSON lacks {loc} {msg}: {got:?}"));
            }
        }
        if out.exists() {
            problems.push(format!("{name}: created {}", out.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
