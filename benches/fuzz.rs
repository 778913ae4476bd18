//! Soak fuzzing of spec parsing → validation → plan → render: `cargo bench --bench fuzz`.
//!
//! Runs FUZZ_CASES generated inputs (default 1,000,000) from the generators in tests/fuzz_support (random
//! text and bytes, random TOML documents, mutations of the valid seed specs), checks the property on each
//! (a located error, or a valid spec that renders everywhere), bounds every case in time (FUZZ_CASE_LIMIT_S,
//! default 10 s: the watchdog saves the input and aborts), and prints cases/second and totals. Every 200th
//! valid spec also goes through key generation and certificate issuing in memory. Failing inputs are saved
//! to tests/fuzz-regressions/ and make the run exit non-zero. FUZZ_SEED picks the random seed.

#[path = "../tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vaultnix::generate::{self, GenerateOptions};
use vaultnix::plan::Plan;
use vaultnix::render::{Layout, RenderOptions};
use vaultnix::secrets::Rotate;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; nothing else is accepted.
    let cases = env_u64("FUZZ_CASES", 1_000_000);
    let limit = Duration::from_secs(env_u64("FUZZ_CASE_LIMIT_S", 10));
    let seed = env_u64("FUZZ_SEED", 0x7661_756c_746e_6978);
    let seeds = Arc::new(seeds());
    let strategy = arb_any_input(seeds.clone());
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let dog = Watchdog::start(limit);

    println!("fuzz: {cases} cases, seed {seed:#x}, per-case limit {limit:?}, {} seed specs", seeds.len());
    let (mut valid, mut invalid, mut failures, mut pki_runs, mut bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut gen_time = Duration::ZERO;
    let mut check_time = Duration::ZERO;
    let start = Instant::now();
    let mut last_report = Instant::now();
    for i in 0..cases {
        let g = Instant::now();
        let input = match strategy.new_tree(&mut runner) {
            Ok(t) => t.current(),
            Err(e) => {
                eprintln!("generator rejected too many values: {e}");
                return ExitCode::FAILURE;
            }
        };
        gen_time += g.elapsed();
        bytes += input.len() as u64;
        let (r, d) = dog.run(&input, || run_case(&input));
        check_time += d;
        match r {
            Ok(Outcome::Invalid) => invalid += 1,
            Ok(Outcome::Valid) => {
                valid += 1;
                if valid % 200 == 0 {
                    pki_runs += 1;
                    if let Err(e) = dog.run(&input, || pki_case(&input)).0 {
                        failures += 1;
                        report_failure(&input, &format!("key generation: {e}"));
                    }
                }
            }
            Err(e) => {
                failures += 1;
                report_failure(&input, &e);
            }
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            let s = start.elapsed().as_secs_f64();
            eprintln!("  {} cases in {s:.0} s ({:.0}/s), {failures} failures", i + 1, (i + 1) as f64 / s);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("fuzz: {cases} cases in {secs:.1} s = {:.0} cases/s", cases as f64 / secs);
    println!(
        "fuzz: {valid} valid specs rendered ({pki_runs} also through PKI), {invalid} located errors, {failures} failures"
    );
    println!(
        "fuzz: {:.1} MB of input; generating {:.1} s, checking {:.1} s; slowest case {:?}",
        bytes as f64 / 1e6,
        gen_time.as_secs_f64(),
        check_time.as_secs_f64(),
        dog.max_case()
    );
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn report_failure(input: &str, e: &str) {
    let saved = save_regression("crash", input).map(|p| p.display().to_string()).unwrap_or_else(|e| e);
    eprintln!("FAILURE: {e}\n  input saved as {saved}");
}

/// Key generation and certificate issuing in memory (nothing is written).
fn pki_case(input: &str) -> Result<(), String> {
    let loaded = vaultnix::spec::load_str("fuzz.toml", input, Path::new("/nonexistent")).map_err(|e| e.to_string())?;
    let plan = Plan::from_loaded(&loaded);
    let opts = GenerateOptions {
        out: "/nonexistent/vaultnix-fuzz-out".into(),
        check: false,
        rotate: Rotate::default(),
        render: RenderOptions::default(),
    };
    match std::panic::catch_unwind(|| generate::render_tree(&plan, &opts.out, &Layout::NixOs, &opts, 1_700_000_000)) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("PANIC in render_tree".into()),
    }
}
