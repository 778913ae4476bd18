//! The hosts lab over a WAN (issue 15): `performance_multiplier` × round-trip time between sites,
//! leader crash. For every cell: a fresh hosts lab from tests/specs/hosts.toml (each node on its own
//! site, the LB on a fourth) with the multiplier set, the WAN relay at `rtt` from the start; the time
//! `lab up --hosts` took to 3 healthy voters; the leader-crash trials through the LB with the
//! lost-write checker (disruption, failed requests, steady-state write latency before the fault);
//! then a steady window with `jitter=10ms,loss=1%` added: leader changes counted (flapping) and the
//! write latency. Prints one row per cell and appends it as JSON to $HOSTS_BENCH_OUT when set.
//!
//! Run (root): `VAULTNIX_BAO=$PWD/.tools/bao-2.7.2/bao cargo bench --bench hosts_wan`
//! Knobs: HOSTS_BENCH_MULTS (1,3,5), HOSTS_BENCH_RTTS (0,30,80,150), HOSTS_BENCH_TRIALS (5),
//! HOSTS_BENCH_STEADY_S (30).
//!
//! `HOSTS_BENCH_MODE=blackout`: instead, per multiplier, one lab at the first RTT and
//! HOSTS_BENCH_TRIALS blackouts of HOSTS_BENCH_BLACKOUT_MS (2000) — every cross-site packet dropped,
//! like a tunnel or routing stall — each followed by recovery: did raft elect (sys/leader's
//! active_time moved), how many writes failed, how long after the blackout the last one failed.

use std::path::Path;
use std::time::{Duration, Instant};
use vaultnix::drill::hosts_target::{steady_window, trials};
use vaultnix::drill::lab_target::with_multiplier;
use vaultnix::drill::run::{NoProgress, Scenario, TrialOptions};
use vaultnix::lab::hosts::wan::{WanMap, WanProfile};
use vaultnix::lab::hosts::{HostsLab, UpOptions};

fn list(var: &str, default: &str) -> Vec<u64> {
    std::env::var(var).unwrap_or_else(|_| default.into()).split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into())
}

fn main() -> anyhow::Result<()> {
    let mults = list("HOSTS_BENCH_MULTS", "1,3,5");
    let rtts = list("HOSTS_BENCH_RTTS", "0,30,80,150");
    let n: usize = std::env::var("HOSTS_BENCH_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let steady = Duration::from_secs(list("HOSTS_BENCH_STEADY_S", "30").first().copied().unwrap_or(30));
    let out = std::env::var_os("HOSTS_BENCH_OUT");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("VAULTNIX_BIN").is_none() {
        std::env::set_var("VAULTNIX_BIN", root.join("target/debug/vaultnix"));
    }
    let base = std::fs::read_to_string(root.join("tests/specs/hosts.toml"))?;
    if std::env::var("HOSTS_BENCH_MODE").as_deref() == Ok("blackout") {
        return blackouts(&mults, rtts.first().copied().unwrap_or(80), n, &base);
    }
    println!(
        "mult rtt_ms | up_s | disruption_med/max_ms failed/requests lost new_leader_med_ms write_p50/p99_ms | \
         +jitter10ms,loss1%: leader_changes write_p50/p99_ms failed/writes"
    );
    for &m in &mults {
        for &rtt in &rtts {
            let tmp = tempfile::tempdir()?;
            let spec = tmp.path().join("spec.toml");
            std::fs::write(&spec, with_multiplier(&base, m as u8)?)?;
            let dir = tmp.path().join("lab");
            let wan = WanProfile { rtt_ms: rtt as f64, ..WanProfile::default() };
            let t0 = Instant::now();
            let r = (|| -> anyhow::Result<serde_json::Value> {
                let lab = HostsLab::up_with(
                    &dir,
                    UpOptions { spec: Some(spec.clone()), wan: Some(WanMap::from(wan)), ..Default::default() },
                )?;
                let up = t0.elapsed().as_secs_f64();
                let o = TrialOptions {
                    scenario: Scenario::LeaderCrash,
                    trials: n,
                    trial_limit: Duration::from_secs(300),
                    ..TrialOptions::default()
                };
                let rep = trials(&lab, &format!("m{m}-rtt{rtt}"), &o, &NoProgress)?;
                let s = &rep.summary;
                lab.set_wan(&WanProfile { rtt_ms: rtt as f64, jitter_ms: 10.0, loss_pct: 1.0 })?;
                let st = steady_window(&lab, steady, 10.0)?;
                println!(
                    "{m} {rtt} | {up:.1} | {}/{} {}/{} {} {} {}/{} | {} {}/{} {}/{}",
                    ms(s.disruption.median_ms),
                    s.disruption.max_ms.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                    s.failed_total,
                    s.requests_total,
                    rep.lost,
                    ms(s.new_leader.median_ms),
                    ms(s.baseline_p50_ms),
                    ms(s.baseline_p99_ms),
                    st.leader_changes,
                    ms(st.latency_p50_us.map(|u| u as f64 / 1000.0)),
                    ms(st.latency_p99_us.map(|u| u as f64 / 1000.0)),
                    st.failed,
                    st.writes,
                );
                Ok(serde_json::json!({
                    "multiplier": m, "rtt_ms": rtt, "trials": n, "up_s": up,
                    "summary": s, "lost": rep.lost, "steady": st,
                }))
            })();
            if let Ok(l) = HostsLab::open(&dir) {
                if let Err(e) = l.down(true) {
                    eprintln!("lab down failed: {e:#}");
                }
            }
            let row = match r {
                Ok(v) => v,
                Err(e) => {
                    println!("{m} {rtt} | FAILED: {e:#}");
                    serde_json::json!({"multiplier": m, "rtt_ms": rtt, "error": format!("{e:#}")})
                }
            };
            if let Some(p) = &out {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(p)?;
                writeln!(f, "{row}")?;
            }
        }
    }
    Ok(())
}

fn blackouts(mults: &[u64], rtt: u64, n: usize, base: &str) -> anyhow::Result<()> {
    let ms: u64 = std::env::var("HOSTS_BENCH_BLACKOUT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let out = std::env::var_os("HOSTS_BENCH_OUT");
    println!("mult rtt_ms blackout_ms | elections/blackouts | failed/writes per blackout | last failure after the blackout (ms)");
    for &m in mults {
        let tmp = tempfile::tempdir()?;
        let spec = tmp.path().join("spec.toml");
        std::fs::write(&spec, with_multiplier(base, m as u8)?)?;
        let dir = tmp.path().join("lab");
        let wan = WanProfile { rtt_ms: rtt as f64, ..WanProfile::default() };
        let r = (|| -> anyhow::Result<Vec<vaultnix::drill::hosts_target::BlackoutFigures>> {
            let lab = HostsLab::up_with(
                &dir,
                UpOptions { spec: Some(spec.clone()), wan: Some(WanMap::from(wan)), ..Default::default() },
            )?;
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(vaultnix::drill::hosts_target::blackout(&lab, wan, Duration::from_millis(ms), 10.0)?);
            }
            Ok(v)
        })();
        if let Ok(l) = HostsLab::open(&dir) {
            if let Err(e) = l.down(true) {
                eprintln!("lab down failed: {e:#}");
            }
        }
        match r {
            Ok(v) => {
                let el = v.iter().filter(|b| b.leadership_changed).count();
                let f: Vec<String> = v.iter().map(|b| format!("{}/{}", b.failed, b.writes)).collect();
                let t: Vec<String> = v.iter().map(|b| b.tail_ms.to_string()).collect();
                println!("{m} {rtt} {ms} | {el}/{} | {} | {}", v.len(), f.join(" "), t.join(" "));
                if let Some(p) = &out {
                    use std::io::Write;
                    let mut fh = std::fs::OpenOptions::new().create(true).append(true).open(p)?;
                    writeln!(fh, "{}", serde_json::json!({"multiplier": m, "rtt_ms": rtt, "blackouts": v}))?;
                }
            }
            Err(e) => println!("{m} {rtt} {ms} | FAILED: {e:#}"),
        }
    }
    Ok(())
}
