//! CI-sized fuzzing of spec parsing → validation → plan → render (about 20,000 generated inputs). The
//! soak run with a million inputs is `cargo bench --bench fuzz`. Inputs that once broke something live in
//! tests/fuzz-regressions/ and are replayed here.

mod fuzz_support;

use assert_cmd::Command;
use fuzz_support::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use vaultnix::generate::{self, GenerateOptions};
use vaultnix::plan::Plan;
use vaultnix::render::{Layout, RenderOptions};
use vaultnix::secrets::Rotate;

/// Generous: debug build on a shared 2-core machine. The soak benchmark reports the real maximum.
const CASE_LIMIT: Duration = Duration::from_secs(60);

fn watchdog() -> &'static Watchdog {
    static W: OnceLock<Watchdog> = OnceLock::new();
    W.get_or_init(|| Watchdog::start(CASE_LIMIT))
}

fn seeds_arc() -> Arc<Vec<String>> {
    static S: OnceLock<Arc<Vec<String>>> = OnceLock::new();
    S.get_or_init(|| Arc::new(seeds())).clone()
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2000,
        // CI runs the same inputs every time (reproducible failures); FUZZ_SEED=<n> explores others.
        // The soak run (`cargo bench --bench fuzz`) draws fresh ones.
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x7661_756c_746e_6978),
        ),
        ..Config::default()
    }
}

/// Runs `cases` inputs from `strategy` through the property; counts valid and invalid outcomes.
fn fuzz(name: &str, cases: u32, strategy: impl Strategy<Value = String>) -> (u32, u32) {
    let mut runner = TestRunner::new(config(cases));
    let counts = std::sync::Mutex::new((0u32, 0u32));
    let result = runner.run(&strategy, |input| {
        let (r, _) = watchdog().run(&input, || run_case(&input));
        match r {
            Ok(Outcome::Valid) => counts.lock().map(|mut c| c.0 += 1).unwrap_or(()),
            Ok(Outcome::Invalid) => counts.lock().map(|mut c| c.1 += 1).unwrap_or(()),
            Err(e) => return Err(proptest::test_runner::TestCaseError::fail(e)),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let c = *counts.lock().unwrap();
    eprintln!("{name}: {cases} cases, {} valid, {} invalid, slowest {:?}", c.0, c.1, watchdog().max_case());
    c
}

#[test]
fn seeds_are_valid_and_render() {
    for (i, s) in seeds().iter().enumerate() {
        assert_eq!(check_text(s), Ok(Outcome::Valid), "seed #{i} must be a valid spec");
    }
}

#[test]
fn fuzz_arbitrary_text() {
    let (_, invalid) = fuzz("arbitrary text", 3000, arb_text());
    assert!(invalid > 2900, "arbitrary text should almost never be a valid spec");
}

#[test]
fn fuzz_random_toml_documents() {
    let (_, invalid) = fuzz("random TOML", 5000, arb_toml_doc());
    assert!(invalid > 0);
}

#[test]
fn fuzz_mutated_specs() {
    let (valid, invalid) = fuzz("mutated specs", 12000, arb_mutated_spec(seeds_arc()));
    // Both sides of the property must be exercised, or the generator is broken.
    // Typically 4-6% of mutations stay valid; 100 of 12,000 proves the generator still reaches valid specs.
    assert!(valid > 100, "only {valid} mutated specs were valid");
    assert!(invalid > 500, "only {invalid} mutated specs were invalid");
}

#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("tests/fuzz-regressions exists") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            let (r, _) = watchdog().run(&text, || run_case(&text));
            assert!(r.is_ok(), "{}: {}", p.display(), r.unwrap_err());
            // Valid ones also go through key generation and certificate issuing (in memory).
            if let Ok(loaded) = vaultnix::spec::load_str("r.toml", &text, Path::new("/nonexistent")) {
                let plan = Plan::from_loaded(&loaded);
                let opts = GenerateOptions {
                    out: "/nonexistent/vaultnix-out".into(),
                    check: false,
                    rotate: Rotate::default(),
                    render: RenderOptions::default(),
                };
                let r = generate::render_tree(&plan, &opts.out, &Layout::NixOs, &opts, 1_700_000_000);
                assert!(r.is_ok(), "{}: {:#}", p.display(), r.err().unwrap());
            }
            n += 1;
        }
    }
    assert!(n > 0, "no regression cases in {}", dir.display());
}

/// Arbitrary bytes through the file reader (invalid UTF-8 is a located error, not a panic).
#[test]
fn fuzz_spec_files_with_arbitrary_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    let mut runner = TestRunner::new(config(400));
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..400), |bytes| {
            std::fs::write(&path, &bytes).unwrap();
            match vaultnix::spec::load_file(&path) {
                Ok(_) => {}
                Err(vaultnix::spec::LoadError::Invalid(r)) => {
                    let text = String::from_utf8_lossy(&bytes);
                    // Locations are checked against the lossy text only when the input was UTF-8: for
                    // other bytes the reported column counts the replacement characters.
                    if std::str::from_utf8(&bytes).is_ok() {
                        check_located(&text, &r).map_err(proptest::test_runner::TestCaseError::fail)?;
                    }
                    prop_assert!(r.has_errors());
                    prop_assert!(r.diagnostics.iter().all(|d| d.location.is_some()));
                }
                Err(e) => return Err(proptest::test_runner::TestCaseError::fail(format!("unexpected {e}"))),
            }
            Ok(())
        })
        .unwrap();
}

/// Valid mutated specs through the real key generation and certificate issuing (in memory): extreme
/// validity periods and odd names must be refused by validation or handled, never panic in PKI.
#[test]
fn fuzz_generate_in_memory() {
    let seeds = seeds_arc();
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec(
            prop_oneof![
                (any::<usize>(), proptest::sample::select(EXTREME_INTS)).prop_map(|(s, n)| Mutation::Extreme(s, n)),
                (any::<usize>(), arb_weird_string()).prop_map(|(s, w)| Mutation::Weird(s, w)),
                any::<usize>().prop_map(Mutation::Delete),
            ],
            1..3,
        ),
    )
        .prop_map(move |(i, m)| apply(&seeds[i], &m));
    let out = tempfile::tempdir().unwrap();
    let valid = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(config(400));
    runner
        .run(&strategy, |input| {
            let Ok(loaded) = vaultnix::spec::load_str("fuzz.toml", &input, Path::new("/nonexistent")) else {
                return Ok(());
            };
            valid.set(valid.get() + 1);
            let plan = Plan::from_loaded(&loaded);
            let opts = GenerateOptions {
                out: out.path().join("never-written"),
                check: false,
                rotate: Rotate::default(),
                render: RenderOptions::default(),
            };
            let r = std::panic::catch_unwind(|| {
                generate::render_tree(&plan, &opts.out, &Layout::NixOs, &opts, 1_700_000_000)
            });
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(proptest::test_runner::TestCaseError::fail(format!("valid spec failed: {e:#}")))
                }
                Err(_) => return Err(proptest::test_runner::TestCaseError::fail("PANIC in render_tree")),
            }
            prop_assert!(!opts.out.exists(), "render_tree wrote files");
            Ok(())
        })
        .unwrap();
    let valid = valid.get();
    assert!(valid > 10, "only {valid} valid specs reached key generation");
}

/// Through the real binary: an invalid spec writes nothing and exits 2 with a located error; a valid one
/// writes a complete tree.
#[test]
fn fuzz_cli_generate_writes_all_or_nothing() {
    let seeds = seeds_arc();
    let strategy = (0..seeds.len(), proptest::collection::vec(arb_mutation(), 1..3))
        .prop_map(move |(i, m)| apply(&seeds[i], &m))
        .prop_filter("keep CLI runs small", |s| s.len() < 200_000);
    let dir = tempfile::tempdir().unwrap();
    let counter = std::cell::Cell::new(0u32);
    let (valid, invalid) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let mut runner = TestRunner::new(config(60));
    runner
        .run(&strategy, |input| {
            counter.set(counter.get() + 1);
            let n = counter.get();
            let spec = dir.path().join(format!("s{n}.toml"));
            let out = dir.path().join(format!("out{n}"));
            std::fs::write(&spec, &input).unwrap();
            let o = Command::cargo_bin("vaultnix")
                .unwrap()
                .env_remove("VAULTNIX_SPEC")
                .env_remove("VAULTNIX_OUT")
                .args(["generate", "--spec"])
                .arg(&spec)
                .arg("--out")
                .arg(&out)
                .timeout(Duration::from_secs(60))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            prop_assert!(!stderr.contains("panicked"), "{stderr}");
            match o.status.code() {
                Some(0) => {
                    valid.set(valid.get() + 1);
                    let m: vaultnix::output::Manifest =
                        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
                    for f in m.files.keys() {
                        prop_assert!(out.join(f).is_file(), "manifest lists {f} but it was not written");
                    }
                }
                Some(2) => {
                    invalid.set(invalid.get() + 1);
                    prop_assert!(!out.exists(), "invalid spec wrote {}", out.display());
                    prop_assert!(stderr.contains(&format!("{}:", spec.display())), "error not located: {stderr}");
                    prop_assert!(stderr.contains("nothing was written"), "{stderr}");
                }
                c => prop_assert!(false, "exit code {c:?}: {stderr}"),
            }
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains("staging"))
                .collect();
            prop_assert!(leftovers.is_empty(), "staging directory left behind");
            Ok(())
        })
        .unwrap();
    let (valid, invalid) = (valid.get(), invalid.get());
    assert!(valid > 0 && invalid > 0, "valid {valid}, invalid {invalid}");
}

/// Strings from the spec end up in Nix files: whatever they contain, the files must still parse and keep
/// the values as strings (no injection).
#[test]
fn fuzzed_strings_render_to_parseable_nix() {
    let seeds = seeds_arc();
    const TARGETS: [&str; 6] = ["schedule", "destination", "secrets_dir", "auth_key_file", "tailnet", "site"];
    let strategy = (0..seeds.len(), proptest::sample::select(&TARGETS[..]), arb_weird_string());
    let dir = tempfile::tempdir().unwrap();
    let parsed = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(config(300));
    runner
        .run(&strategy, |(i, key, value)| {
            let text = replace_string_value(&seeds[i], key, &value);
            let Ok(loaded) = vaultnix::spec::load_str("n.toml", &text, Path::new(".")) else { return Ok(()) };
            let plan = Plan::from_loaded(&loaded);
            let wg = plan.machines().iter().map(|m| (m.name.clone(), "k".to_string())).collect();
            for (path, nix) in vaultnix::render::nix::render_nix(&plan, &wg).unwrap() {
                let f = dir.path().join("x.nix");
                std::fs::write(&f, &nix).unwrap();
                let o = std::process::Command::new("nix-instantiate").arg("--parse").arg(&f).output().unwrap();
                prop_assert!(
                    o.status.success(),
                    "{path} does not parse:\n{nix}\n{}",
                    String::from_utf8_lossy(&o.stderr)
                );
                parsed.set(parsed.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    let parsed = parsed.get();
    assert!(parsed > 50, "only {parsed} Nix files parsed");
}

fn replace_string_value(seed: &str, key: &str, value: &str) -> String {
    let mut doc: toml_edit::DocumentMut = seed.parse().unwrap();
    let section = match key {
        "schedule" | "destination" => "backup",
        "secrets_dir" => "cluster",
        "auth_key_file" | "tailnet" => "overlay",
        _ => "",
    };
    if section.is_empty() {
        if let Some(toml_edit::Item::ArrayOfTables(a)) = doc.get_mut("nodes") {
            if let Some(t) = a.get_mut(0) {
                t.insert(key, toml_edit::value(value));
            }
        }
    } else if let Some(t) = doc.get_mut(section).and_then(|i| i.as_table_mut()) {
        t.insert(key, toml_edit::value(value));
    }
    doc.to_string()
}

fn vaultnix_cmd() -> Command {
    let mut c = Command::cargo_bin("vaultnix").unwrap();
    c.env_remove("VAULTNIX_SPEC").env_remove("VAULTNIX_OUT").timeout(Duration::from_secs(150));
    c
}

/// File-system hazards around a valid seed (issue #14): the spec behind a symlink, a FIFO, a directory
/// or /dev/zero; the output directory behind a symlink, dangling, or a regular file; and concurrent
/// writers on one fresh directory. Never a panic or a hang; a refusal changes nothing; a success writes
/// through the symlink (the link stays a link); parallel runs create exactly one CA.
#[test]
fn fuzz_file_system_hazards() {
    use std::os::unix::fs::symlink;
    let seeds = seeds_arc();
    let strategy = (0..seeds.len(), 0u8..7);
    let counter = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(config(14));
    runner
        .run(&strategy, |(i, hazard)| {
            counter.set(counter.get() + 1);
            let t = tempfile::tempdir().unwrap();
            let d = t.path();
            let real_spec = d.join("real.toml");
            std::fs::write(&real_spec, &seeds[i]).unwrap();
            let (spec, out) = (d.join("spec.toml"), d.join("out"));
            match hazard {
                0 => symlink(&real_spec, &spec).unwrap(),
                1 => assert!(std::process::Command::new("mkfifo").arg(&spec).status().unwrap().success()),
                2 => std::fs::create_dir(&spec).unwrap(),
                3 => symlink("/dev/zero", &spec).unwrap(),
                4 => {
                    std::fs::copy(&real_spec, &spec).unwrap();
                    std::fs::create_dir(d.join("target")).unwrap();
                    symlink(d.join("target"), &out).unwrap();
                }
                5 => {
                    std::fs::copy(&real_spec, &spec).unwrap();
                    symlink(d.join("nowhere"), &out).unwrap();
                }
                _ => {
                    std::fs::copy(&real_spec, &spec).unwrap();
                    std::fs::write(&out, "a user's file").unwrap();
                }
            }
            let before = fs_state(d);
            let start = std::time::Instant::now();
            let o = vaultnix_cmd().args(["generate", "--spec"]).arg(&spec).arg("--out").arg(&out).output().unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            prop_assert!(start.elapsed() < Duration::from_secs(60), "hazard {hazard}: took {:?}", start.elapsed());
            prop_assert!(!stderr.contains("panicked"), "hazard {hazard}: {stderr}");
            match o.status.code() {
                Some(0) => {
                    prop_assert!(hazard == 0 || hazard == 4, "hazard {hazard} accepted: {stderr}");
                    if hazard == 4 {
                        prop_assert!(
                            std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink(),
                            "--out symlink replaced"
                        );
                        prop_assert!(d.join("target/manifest.json").is_file(), "not written through the symlink");
                    }
                }
                Some(1) | Some(2) => {
                    prop_assert!(hazard != 0, "a symlinked spec was refused: {stderr}");
                    prop_assert!(fs_state(d) == before, "hazard {hazard}: a refused run changed files");
                    prop_assert!(!stderr.trim().is_empty(), "hazard {hazard}: refused without a word");
                }
                c => prop_assert!(false, "hazard {hazard}: exit {c:?}: {stderr}"),
            }
            // Concurrent writers on a fresh directory: one CA, every run succeeds.
            if counter.get() % 4 == 1 {
                let fresh = d.join("fresh");
                let kids: Vec<_> = (0..3)
                    .map(|_| {
                        std::process::Command::new(assert_cmd::cargo::cargo_bin("vaultnix"))
                            .env_remove("VAULTNIX_SPEC")
                            .env_remove("VAULTNIX_OUT")
                            .args(["generate", "--spec"])
                            .arg(&real_spec)
                            .arg("--out")
                            .arg(&fresh)
                            .stdout(std::process::Stdio::piped())
                            .stderr(std::process::Stdio::piped())
                            .spawn()
                            .unwrap()
                    })
                    .collect();
                let outs: Vec<_> = kids.into_iter().map(|k| k.wait_with_output().unwrap()).collect();
                let created =
                    outs.iter().filter(|o| String::from_utf8_lossy(&o.stdout).contains("created the CA")).count();
                for o in &outs {
                    prop_assert!(o.status.success(), "a concurrent run failed: {}", String::from_utf8_lossy(&o.stderr));
                }
                prop_assert_eq!(created, 1, "{} runs created a CA", created);
            }
            Ok(())
        })
        .unwrap();
}

/// Every path under `d` (not following symlinks) with its kind and, for files, contents.
fn fs_state(d: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in walkdir_nofollow(d) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&e).unwrap().display())
        } else if m.is_file() {
            format!("{:?}", std::fs::read(&e).unwrap())
        } else {
            format!("{:?}", m.file_type())
        };
        v.push((e.display().to_string(), what));
    }
    v.sort();
    v
}

fn walkdir_nofollow(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().filter_map(|e| e.ok()) {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}
