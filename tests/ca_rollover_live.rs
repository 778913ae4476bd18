//! A staged CA rollover on a real lab (bao 2.7.2, HAProxy) under the drill's writer: `vaultnix ca
//! rollover begin`, `reissue` and `finish`, each applied (SIGHUP, seamless HAProxy reload) and verified
//! on the wire by the command itself. The writer does not retry; every write must be acknowledged and
//! read back (the drill's lost-write checker), and `reissue`/`finish` must be refused until the phase
//! before was verified.
//!
//! A client that still trusts only the old CA works across `begin` (nothing it sees changes); clients
//! then get the bundle (flake/pki/ca.crt after `begin`) and keep working across `reissue` and `finish`.
//!
//! The drills (`vaultnix drill ca-rollover`, `vaultnix drill cert-renewal`) run the same operations
//! under the drill's writer with its default 2 s timeout, >= 1,000 requests each.
//!
//! `cargo test --test ca_rollover_live -- --nocapture` prints the figures (docs/operations.md).

mod common_ops;

use assert_cmd::Command;
use std::path::Path;
use std::time::{Duration, Instant};
use vaultnix::api::Cluster;
use vaultnix::drill::checker::{self, History, Outcome};
use vaultnix::drill::client::{self, Writer, WriterConfig, WriterResult};
use vaultnix::lab::LabHandle;

const RATE_HZ: f64 = 25.0;

fn vaultnix_ca(dir: &Path, action: &str) -> (bool, String) {
    let o = Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["ca", "rollover", action, "--out"])
        .arg(dir)
        .timeout(Duration::from_secs(240))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    eprintln!("--- vaultnix ca rollover {action}\n{text}");
    (o.status.success(), text)
}

fn writer(c: &Cluster, prefix: &str) -> Writer {
    Writer::start(
        c.lb.clone(),
        WriterConfig {
            prefix: prefix.into(),
            rate_hz: RATE_HZ,
            // Generous: a loaded machine must not turn a slow answer into a failure.
            timeout: Duration::from_secs(10),
            max_in_flight: 64,
            max_requests: 20_000,
            max_duration: Duration::from_secs(400),
        },
        Instant::now(),
    )
}

/// Keeps the writer going at least `min` from `started`, then stops it.
async fn finish_after(w: Writer, started: Instant, min: Duration) -> WriterResult {
    if let Some(rest) = min.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    w.finish().await.unwrap()
}

fn run(spec_text: &str, name: &str) {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), spec_text);
    let dir = t.path().join("lab");
    let lab = LabHandle::up(Some(&spec), &dir).expect("lab up");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    // A self-initialized cluster has no root token: the operator certificate logs in.
    let token = Some(match lab.root_token() {
        Ok(t) => t,
        Err(_) => rt
            .block_on(vaultnix::ops::common::resolve_token(&lab.cluster().unwrap().nodes[0], &dir))
            .expect("a token from the operator certificate"),
    });
    let self_init = spec_text.contains("self_init = true");
    let old_ca = std::fs::read_to_string(dir.join("flake/pki/ca.crt")).unwrap();

    // The order is enforced before anything runs.
    for early in ["reissue", "finish"] {
        let (ok, text) = vaultnix_ca(&dir, early);
        assert!(!ok && text.contains("no CA rollover is in progress"), "{early} before begin: {text}");
    }

    // 1. begin, under a client that trusts the old CA only.
    let c_old = lab.cluster().unwrap().with_token(token.clone());
    rt.block_on(client::ensure_mount(&c_old.lb, Instant::now() + Duration::from_secs(60))).unwrap();
    let t1 = Instant::now();
    let w1 = writer(&c_old, &format!("{name}/begin"));
    std::thread::sleep(Duration::from_secs(2));
    let s = Instant::now();
    let (ok, begin_out) = vaultnix_ca(&dir, "begin");
    let begin_s = s.elapsed().as_secs_f64();
    assert!(ok, "begin: {begin_out}");
    let r1 = rt.block_on(finish_after(w1, t1, Duration::from_secs(22)));
    assert!(begin_out.contains("phase trust-both verified on the wire"), "{begin_out}");
    assert!(begin_out.contains("HAProxy trusts exactly the bundle's 2 CA(s)"), "{begin_out}");
    let bundle = std::fs::read_to_string(dir.join("flake/pki/ca.crt")).unwrap();
    assert_eq!(vaultnix::pki::split_bundle(&bundle).len(), 2);
    assert!(bundle.starts_with(old_ca.trim_end()), "the old CA stays first");

    // finish before reissue: a clear error, nothing written.
    let (ok, text) = vaultnix_ca(&dir, "finish");
    assert!(!ok && text.contains("still signed by the old CA"), "{text}");
    assert_eq!(std::fs::read_to_string(dir.join("flake/pki/ca.crt")).unwrap(), bundle);

    // 2. reissue and 3. finish, under a client that got the bundle.
    let c_both = lab.cluster().unwrap().with_token(token.clone());
    let t2 = Instant::now();
    let w2 = writer(&c_both, &format!("{name}/reissue-finish"));
    std::thread::sleep(Duration::from_secs(2));
    let s = Instant::now();
    let (ok, reissue_out) = vaultnix_ca(&dir, "reissue");
    let reissue_s = s.elapsed().as_secs_f64();
    assert!(ok, "reissue: {reissue_out}");
    assert!(reissue_out.contains("phase reissued verified on the wire"), "{reissue_out}");
    std::thread::sleep(Duration::from_secs(2));
    let s = Instant::now();
    let (ok, finish_out) = vaultnix_ca(&dir, "finish");
    let finish_s = s.elapsed().as_secs_f64();
    assert!(ok, "finish: {finish_out}");
    assert!(finish_out.contains("phase finished verified on the wire"), "{finish_out}");
    assert!(finish_out.contains("HAProxy trusts exactly the bundle's 1 CA(s)"), "{finish_out}");
    let r2 = rt.block_on(finish_after(w2, t2, Duration::from_secs(30)));
    let new_only = std::fs::read_to_string(dir.join("flake/pki/ca.crt")).unwrap();
    assert_eq!(vaultnix::pki::split_bundle(&new_only).len(), 1);
    assert_ne!(new_only.trim(), old_ca.trim());
    assert_eq!(
        std::fs::read_to_string(dir.join("secrets/ca.retired-1.crt")).unwrap().trim(),
        old_ca.trim(),
        "the old CA is archived"
    );
    if self_init {
        // The role was rewritten at begin (old + new) and finish (new only), and the operator
        // certificate (reissued by the new CA) logs in at every step.
        assert!(begin_out.contains("now trusts the 2 CA(s)"), "{begin_out}");
        assert!(finish_out.contains("now trusts the 1 CA(s)"), "{finish_out}");
        for out in [&begin_out, &reissue_out, &finish_out] {
            assert!(out.contains("ok   cert auth role vaultnix-admin trusts exactly the bundle"), "{out}");
        }
    }
    for n in ["vault-1", "vault-2", "vault-3"] {
        for out in [&begin_out, &reissue_out, &finish_out] {
            assert!(out.contains(&format!("ok   {n}: serves flake/pki/{n}.crt")), "{out}");
        }
    }

    // Read back every key through a client trusting the new CA only.
    let c_new = lab.cluster().unwrap().with_token(token);
    let active = rt.block_on(vaultnix::drill::probe::active(&c_new)).expect("an active node");
    let confirm = c_new.node(&active).unwrap().clone();
    let mut total = checker::Verdict::default();
    let mut lines = Vec::new();
    for (label, r, prefix) in [
        ("begin (old-CA client)", r1, format!("{name}/begin")),
        ("reissue + finish (bundle client)", r2, format!("{name}/reissue-finish")),
    ] {
        let readback = rt.block_on(client::read_back(&c_new.lb, &confirm, &prefix, &r.ops)).unwrap();
        let ambiguous = r.ops.iter().filter(|o| o.outcome == Outcome::Ambiguous).count();
        let v = checker::check(&History { ops: r.ops, horizon: r.horizon, readback });
        lines.push(format!(
            "{label}: {} writes, {} acked, {} failed, {ambiguous} ambiguous, {} lost, {} skipped, errors {:?}",
            v.writes,
            v.acked,
            v.failed,
            v.lost.len(),
            r.skipped,
            r.errors
        ));
        total.merge(v);
    }
    eprintln!(
        "CA rollover ({name}) through the LB: {} writes, {} acked, {} failed, {} ambiguous, {} lost; begin {begin_s:.1} s, \
         reissue {reissue_s:.1} s, finish {finish_s:.1} s (each: render + apply + verify)",
        total.writes,
        total.acked,
        total.failed,
        total.ambiguous,
        total.lost.len()
    );
    for l in &lines {
        eprintln!("  {l}");
    }
    assert!(total.writes >= 1000, "at least 1,000 requests: {lines:?}");
    assert_eq!(total.failed, 0, "{lines:?}");
    assert_eq!(total.ambiguous, 0, "{lines:?}");
    assert!(total.ok(), "lost/duplicated/unverified: {total:?}");
    assert_eq!(total.acked, total.writes);
    drop(_enter);
    drop(rt);
    lab.down().unwrap();
}

/// Passthrough, on a self-initialized cluster (static seal, no root token): the operator's client
/// certificate is one of the leaves, and the cert auth role follows the bundle.
#[test]
fn ca_rollover_passthrough_self_init_zero_failed() {
    let spec = include_str!("specs/selfinit.toml");
    assert!(spec.contains("self_init = true"));
    run(spec, "passthrough");
}

/// Runs `vaultnix drill <scenario> --output json` with the drill's own defaults (timeout 2 s, a
/// non-retrying writer through the LB) and returns the report.
fn drill_json(spec: &str, args: &[&str]) -> serde_json::Value {
    common_ops::bao_2_7();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs").join(spec);
    let o = Command::cargo_bin("vaultnix")
        .unwrap()
        .arg("drill")
        .args(args)
        .arg("--spec")
        .arg(&spec)
        .args(["--output", "json"])
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    eprintln!("--- vaultnix drill {}\n{out}\n{}", args.join(" "), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "vaultnix drill {} failed", args.join(" "));
    serde_json::from_str(&out).expect("the drill's JSON report")
}

/// The figures every rotation drill must show for each configuration: >= 1,000 requests, 0 failed,
/// 0 lost, 0 duplicated, every acknowledged write read back, every goal met, and each step verified on
/// the wire (`steps`: the note each trial carries per step). Returns one line per configuration.
fn assert_rotation_drill(r: &serde_json::Value, trials: usize, steps: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    let configs = r["configs"].as_array().expect("configs");
    assert!(!configs.is_empty());
    for c in configs {
        let name = c["name"].as_str().unwrap();
        let s = &c["summary"];
        let requests = s["requests_total"].as_u64().unwrap();
        let failed = s["failed_total"].as_u64().unwrap();
        let v = &c["verdict"];
        lines.push(format!(
            "{name}: {requests} requests, {failed} failed, {} lost, {} duplicated, {} acked of {} writes, p50 {} ms, p99 {} ms",
            c["lost"],
            v["duplicates"].as_array().map_or(0, |d| d.len()),
            v["acked"],
            v["writes"],
            s["latency_p50_ms"],
            s["latency_p99_ms"]
        ));
        assert!(requests >= 1000, "{name}: at least 1,000 requests: {requests}");
        assert_eq!(failed, 0, "{name}: failed requests: {c}");
        assert_eq!(c["lost"].as_u64(), Some(0), "{name}");
        assert_eq!(v["duplicates"].as_array().map(|d| d.len()), Some(0), "{name}");
        assert_eq!(v["failed"].as_u64(), Some(0), "{name}");
        assert_eq!(v["ambiguous"].as_u64(), Some(0), "{name}");
        assert_eq!(v["acked"], v["writes"], "{name}: every write acknowledged");
        let ts = c["trials"].as_array().unwrap();
        assert_eq!(ts.len(), trials, "{name}: one full rotation per trial");
        for t in ts {
            assert_eq!(t["failed_before_fault"].as_u64(), Some(0), "{name}: {t}");
            let notes: Vec<&str> = t["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
            for step in steps {
                assert!(
                    notes.iter().any(|n| n.contains(step) && n.contains("verified on the wire")),
                    "{name}: {step} not verified on the wire: {notes:?}"
                );
            }
        }
    }
    for g in r["goals"].as_array().unwrap() {
        assert_eq!(g["met"], true, "goal missed: {g}");
    }
    assert_eq!(r["ok"], true);
    lines
}

/// The same in terminate mode (HAProxy L7, tests/specs/lab-terminate.toml), under the drill's 2 s
/// timeout: every step reloads HAProxy. Before `option idle-close-on-response` and the hold skipping a
/// stopping process, the old process held the requests on its kept connections 5 s (it counts no UP
/// server once its checks stop): 18 failed of 1,315 (docs/failover.md).
#[test]
fn drill_ca_rollover_terminate_zero_failed() {
    let _g = common_ops::serial();
    let r = drill_json("lab-terminate.toml", &["ca-rollover", "--trials", "2", "--rate", "50"]);
    let lines = assert_rotation_drill(
        &r,
        2,
        &["phase trust-both verified", "phase reissued verified", "phase finished verified"],
    );
    for l in lines {
        eprintln!("drill ca-rollover (tests/specs/lab-terminate.toml, --trials 2 --rate 50): {l}");
    }
}

/// `vaultnix drill ca-rollover` (passthrough): two full rollovers, each step applied and verified on
/// the wire by the drill, under its writer with the default 2 s timeout.
#[test]
fn drill_ca_rollover_zero_failed() {
    let _g = common_ops::serial();
    let r = drill_json("lab.toml", &["ca-rollover", "--trials", "2", "--rate", "50"]);
    let lines = assert_rotation_drill(
        &r,
        2,
        &["phase trust-both verified", "phase reissued verified", "phase finished verified"],
    );
    for l in lines {
        eprintln!("drill ca-rollover (tests/specs/lab.toml, --trials 2 --rate 50): {l}");
    }
}

/// `vaultnix drill cert-renewal` in terminate mode: the load balancer's own certificate is renewed too,
/// HAProxy reloads seamlessly, and a fresh handshake through the LB sees the new one; 0 failed.
#[test]
fn drill_cert_renewal_terminate_zero_failed() {
    let _g = common_ops::serial();
    let r = drill_json("lab-terminate.toml", &["cert-renewal", "--trials", "3", "--rate", "50"]);
    let lines = assert_rotation_drill(
        &r,
        3,
        &[
            "renewed 3 node certificate(s) and the load balancer's (HAProxy reloaded seamlessly)",
            "4 listener(s) serve the new one",
        ],
    );
    for l in lines {
        eprintln!("drill cert-renewal (tests/specs/lab-terminate.toml, --trials 3 --rate 50): {l}");
    }
}

/// `vaultnix drill cert-renewal`: three renewals of every node certificate (same CA), each reloaded and
/// verified on the wire (every listener serves its new certificate).
#[test]
fn drill_cert_renewal_zero_failed() {
    let _g = common_ops::serial();
    let r = drill_json("lab.toml", &["cert-renewal", "--trials", "3", "--rate", "50"]);
    let lines = assert_rotation_drill(&r, 3, &["listener(s) serve the new one"]);
    for l in lines {
        eprintln!("drill cert-renewal (tests/specs/lab.toml, --trials 3 --rate 50): {l}");
    }
}
