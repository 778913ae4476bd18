//! 3-node lab: time from process start to (a) every node unsealed and healthy, (b) 3 healthy voters in
//! autopilot. Runs LAB_BENCH_RUNS fresh labs (default 3) and prints each run and the medians.
//! Goals: (a) <= 6 s, (b) <= 15 s. Needs VAULTNIX_BAO (or bao on PATH) and haproxy.

use std::path::Path;
use std::time::{Duration, Instant};
use vaultnix::api::{block_on, NodeState};
use vaultnix::lab::{alloc_base, Lab, LabOptions};
use vaultnix::ops::bootstrap::{bootstrap, BootstrapOptions};
use vaultnix::ops::common::{health_all, resolve_token};

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("LAB_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/lab.toml");
    let mut healthy = Vec::new();
    let mut voters = Vec::new();
    for run in 1..=runs {
        let tmp = tempfile::tempdir()?;
        let mut o = LabOptions::new(Some(spec.clone()), tmp.path().join("lab"));
        o.base = Some(alloc_base()?);
        // Generate and start without bootstrap, then stop: the clock starts when the processes start.
        o.bootstrap = false;
        let (lab, _) = block_on(async { Lab::up(&o).await })?;
        lab.down(false)?;
        let r = block_on(async { measure(&lab).await });
        let _ = lab.down(false);
        let (a, b) = r?;
        println!(
            "run {run}: all unsealed and healthy {:.2} s, 3 healthy voters {:.2} s",
            a.as_secs_f64(),
            b.as_secs_f64()
        );
        healthy.push(a);
        voters.push(b);
    }
    println!(
        "median over {runs} run(s): all unsealed and healthy {:.2} s (goal <= 6 s), 3 healthy voters {:.2} s (goal <= 15 s)",
        median(&mut healthy).as_secs_f64(),
        median(&mut voters).as_secs_f64()
    );
    Ok(())
}

async fn measure(lab: &Lab) -> anyhow::Result<(Duration, Duration)> {
    let t0 = Instant::now();
    for p in lab.procs() {
        vaultnix::lab::process::start(&lab.dir, &p)?;
    }
    let mut bo = BootstrapOptions::new(&lab.dir);
    bo.wait = Duration::from_secs(60);
    bootstrap(&lab.plan, &bo).await?;
    let c = lab.cluster()?;
    let deadline = t0 + Duration::from_secs(120);
    loop {
        let all = health_all(&c).await;
        if all.iter().all(|(_, h)| matches!(h, Ok(h) if h.state.is_up()))
            && all.iter().any(|(_, h)| matches!(h, Ok(h) if h.state == NodeState::Active))
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "cluster not healthy within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healthy = t0.elapsed();
    let active = vaultnix::ops::common::find_active(&c).await.ok_or_else(|| anyhow::anyhow!("no active node"))?;
    let token = resolve_token(&active, &lab.dir).await.ok_or_else(|| anyhow::anyhow!("no token"))?;
    let active = active.with_token(Some(token));
    loop {
        if let Ok(s) = active.autopilot_state().await {
            if s.healthy_voters() >= 3 {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "3 healthy voters not reached within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((healthy, t0.elapsed()))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}
