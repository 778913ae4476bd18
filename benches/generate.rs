//! `cargo bench --bench generate`: wall time of `generate` into a fresh output directory (CA, node keys
//! and certificates, WireGuard keys, every rendered file, the atomic write) for 3, 5 and 7 nodes,
//! through the library API and through the release binary. Prints median and max of N runs.
//! Goal: ≤ 100 ms for 3 nodes.

use std::path::Path;
use std::time::{Duration, Instant};
use vaultnix::generate::{generate, GenerateOptions};
use vaultnix::plan::Plan;
use vaultnix::render::{Layout, RenderOptions};
use vaultnix::secrets::Rotate;

const RUNS: usize = 20;

fn specs() -> Vec<(&'static str, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |f: &str| std::fs::read_to_string(root.join("tests/specs").join(f)).expect("spec");
    let seven = read("seven.toml");
    // seven.toml without its non-voter: exactly 7 nodes.
    let seven = seven[..seven.find("[[nodes]]\nname = \"r1\"").expect("r1")].to_string();
    vec![("3 nodes (example)", vaultnix::spec::EXAMPLE.to_string()), ("5 nodes", read("five.toml")), ("7 nodes", seven)]
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_vaultnix");
    let tmp = tempfile::tempdir().expect("tempdir");
    println!("generate into a fresh directory, {RUNS} runs each (median / max):");
    for (label, text) in specs() {
        let spec_file = tmp.path().join(format!("{}.toml", label.len()));
        std::fs::write(&spec_file, &text).expect("write spec");
        let loaded = vaultnix::spec::load_str(label, &text, tmp.path()).expect("valid spec");
        let plan = Plan::from_loaded(&loaded);

        let mut lib = Vec::new();
        let mut exe = Vec::new();
        for i in 0..RUNS {
            let out = tmp.path().join(format!("lib-{i}"));
            let opts = GenerateOptions {
                out: out.clone(),
                check: false,
                rotate: Rotate::default(),
                render: RenderOptions::default(),
            };
            let t = Instant::now();
            let g = generate(&plan, &Layout::NixOs, &opts).expect("generate");
            lib.push(t.elapsed());
            assert!(!g.diff.added.is_empty());
            std::fs::remove_dir_all(&out).expect("cleanup");

            let out = tmp.path().join(format!("bin-{i}"));
            let t = Instant::now();
            let status = std::process::Command::new(bin)
                .args(["--quiet", "generate", "--spec"])
                .arg(&spec_file)
                .arg("--out")
                .arg(&out)
                .status()
                .expect("run vaultnix");
            exe.push(t.elapsed());
            assert!(status.success());
            std::fs::remove_dir_all(&out).expect("cleanup");
        }
        let (lm, lx) = stats(lib);
        let (bm, bx) = stats(exe);
        println!("  {label:<18} library: {lm:7.1} ms / {lx:7.1} ms    binary: {bm:7.1} ms / {bx:7.1} ms");
    }
}
