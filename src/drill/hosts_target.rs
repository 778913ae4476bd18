//! Drilling a hosts lab (`drill --hosts`): the faults are real — kill -9 of a node's bao on its host, a
//! partition that drops raft's port in both directions on the node, and the WAN relay between sites.
//! The trials run on a thread inside the load balancer's network namespace (the LB host reaches every
//! node on the overlay, as the bootstrap does).

use super::report::DrillReport;
use super::run::{self, ConfigReport, Progress, Target, TrialOptions};
use crate::api::Cluster;
use crate::lab::hosts::wan::WanProfile;
use crate::lab::hosts::{enter, HostsLab};
use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct HostsTarget<'a> {
    lab: &'a HostsLab,
    cluster: Cluster,
    keys: crate::ops::unseal::Keys,
    /// Nodes we partitioned or isolated: always healed on drop, whatever happened.
    partitioned: Vec<String>,
    isolated: Vec<String>,
}

impl<'a> HostsTarget<'a> {
    pub fn new(lab: &'a HostsLab) -> Result<HostsTarget<'a>> {
        let init = crate::ops::common::read_init(&lab.dir)?.context("the hosts lab is not initialized")?;
        let keys = crate::ops::unseal::Keys::parse(&serde_json::to_string(&init)?)?;
        let cluster = Cluster::from_out(&lab.plan, &lab.dir)?.with_token(Some(init.root_token.clone()));
        Ok(HostsTarget { lab, cluster, keys, partitioned: Vec::new(), isolated: Vec::new() })
    }
}

impl Drop for HostsTarget<'_> {
    fn drop(&mut self) {
        for n in std::mem::take(&mut self.partitioned) {
            let _ = self.lab.heal_partition_full(&n);
        }
        for n in std::mem::take(&mut self.isolated) {
            let _ = self.lab.unisolate(&n);
        }
    }
}

impl Target for HostsTarget<'_> {
    fn cluster(&self) -> &Cluster {
        &self.cluster
    }
    fn kill(&mut self, node: &str) -> Result<()> {
        self.lab.kill_node(node)
    }
    /// On a hosts lab the partition scenario is a real one: raft's port dropped both ways.
    fn pause(&mut self, node: &str, paused: bool) -> Result<()> {
        if paused {
            self.lab.partition_full(node)?;
            self.partitioned.push(node.to_string());
        } else {
            self.lab.heal_partition_full(node)?;
            self.partitioned.retain(|n| n != node);
        }
        Ok(())
    }
    /// The unit's stop path on the node's host: `vaultnix node drain` (agent, step-down), then SIGTERM.
    async fn stop(&mut self, node: &str) -> Result<()> {
        // Blocking (the drain waits for the LB, then SIGTERM and the exit): off the writer's thread.
        let (lab, n) = (self.lab.clone(), node.to_string());
        let said = tokio::task::spawn_blocking(move || lab.stop_node(&n)).await.map_err(|e| anyhow!("{e}"))??;
        eprintln!("{node}: {said}");
        Ok(())
    }
    async fn start(&mut self, node: &str) -> Result<()> {
        self.lab.start_node(node)?;
        super::run::unseal_started(&self.cluster, &self.keys, node).await
    }
    fn isolate(&mut self, node: &str, isolated: bool) -> Result<()> {
        if isolated {
            self.lab.isolate(node)?;
            self.isolated.push(node.to_string());
        } else {
            self.lab.unisolate(node)?;
            self.isolated.retain(|n| n != node);
        }
        Ok(())
    }
    async fn step_down(&mut self, node: &str, drain: bool) -> Result<(String, usize)> {
        let socket = self.lab.haproxy_admin_socket()?;
        super::run::step_down_at(&self.cluster, node, &socket, drain).await
    }
}

/// Runs `f` with a runtime and the target on a thread inside the LB host's network namespace.
pub fn in_lb<T: Send>(
    lab: &HostsLab,
    f: impl FnOnce(&tokio::runtime::Runtime, &mut HostsTarget<'_>) -> Result<T> + Send,
) -> Result<T> {
    let ns = lab.netns(&lab.plan.lb.name);
    enter::in_netns(&ns, || -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut t = HostsTarget::new(lab)?;
        f(&rt, &mut t)
    })?
}

/// The trials of `o` on a running hosts lab.
pub fn trials(lab: &HostsLab, name: &str, o: &TrialOptions, progress: &dyn Progress) -> Result<ConfigReport> {
    in_lb(lab, |rt, t| rt.block_on(run::run_trials(t, name, o, progress)))
}

/// What a steady window under a WAN profile showed: leader changes and write latency.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyFigures {
    pub seconds: f64,
    pub profile: String,
    pub writes: usize,
    pub failed: usize,
    pub leader_changes: usize,
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
}

/// Writes at `rate_hz` through the LB for `window` and polls the active node every 250 ms: how often
/// the leadership changed (flapping) and what the writes cost.
pub fn steady_window(lab: &HostsLab, window: Duration, rate_hz: f64) -> Result<SteadyFigures> {
    let profile = crate::lab::hosts::wan::read_profile(&lab.dir)?.unwrap_or_default().to_string();
    in_lb(lab, |rt, t| {
        let c = t.cluster().clone();
        rt.block_on(async move {
            run::wait_ready(&c, Duration::from_secs(180)).await?;
            let t0 = Instant::now();
            let w = super::client::Writer::start(
                c.lb.clone(),
                super::client::WriterConfig {
                    prefix: format!("steady-{:x}", time::OffsetDateTime::now_utc().unix_timestamp()),
                    rate_hz,
                    timeout: Duration::from_secs(5),
                    max_in_flight: 64,
                    max_requests: (rate_hz * window.as_secs_f64()).ceil() as usize + 1,
                    max_duration: window + Duration::from_secs(10),
                },
                t0,
            );
            let mut last = super::probe::active(&c).await;
            let mut changes = 0;
            while t0.elapsed() < window {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let a = super::probe::active(&c).await;
                if a.is_some() && a != last {
                    if last.is_some() {
                        changes += 1;
                    }
                    last = a;
                }
            }
            let w = w.finish().await?;
            let mut lat: Vec<u64> = Vec::new();
            let mut failed = 0;
            for op in &w.ops {
                match op.outcome {
                    super::checker::Outcome::Acked => lat.push(op.finished.saturating_sub(op.sent).as_micros() as u64),
                    _ => failed += 1,
                }
            }
            lat.sort_unstable();
            Ok(SteadyFigures {
                seconds: window.as_secs_f64(),
                profile,
                writes: w.ops.len(),
                failed,
                leader_changes: changes,
                latency_p50_us: super::measure::percentile(&lat, 50),
                latency_p99_us: super::measure::percentile(&lat, 99),
            })
        })
    })
}

/// `drill --hosts`: a fresh hosts lab from the spec (torn down after, kept with `keep`), or the running
/// one in `dir`; the WAN profile applied first when given.
pub fn drill(
    o: &super::lab_target::DrillOptions,
    wan: Option<WanProfile>,
    progress: &dyn Progress,
    shell: &crate::shell::Shell,
) -> Result<DrillReport> {
    let topts = TrialOptions {
        scenario: o.scenario,
        trials: o.trials,
        rate_hz: o.rate_hz,
        timeout: o.timeout,
        drain: o.drain,
        ..TrialOptions::default()
    };
    let mut r = if let Some(dir) = &o.dir {
        let lab = HostsLab::open(dir)?;
        if let Some(w) = &wan {
            lab.set_wan(w)?;
        }
        let mut r = trials(&lab, "ours", &topts, progress)?;
        r.haproxy_profile = "as running".into();
        r
    } else {
        let work = super::lab_target::new_private_dir()?;
        let dir = work.join("lab");
        let up = HostsLab::up_with(
            &dir,
            crate::lab::hosts::UpOptions {
                spec: o.spec.clone(),
                wan: wan.map(crate::lab::hosts::wan::WanMap::from),
                ..Default::default()
            },
        );
        let r = match &up {
            Ok(lab) => {
                shell.detail(format!("hosts lab in {} (prefix {})", dir.display(), lab.state.prefix));
                trials(lab, "ours", &topts, progress)
            }
            Err(e) => Err(anyhow!("hosts lab up: {e:#}")),
        };
        let down = match HostsLab::open(&dir) {
            Ok(l) => l.down(!o.keep).map(|_| ()),
            Err(_) => Ok(()),
        };
        if !o.keep {
            let _ = std::fs::remove_dir_all(&work);
        } else {
            shell.note(format!("hosts lab files kept in {}", PathBuf::from(&dir).display()));
        }
        let mut r = r?;
        down?;
        r.haproxy_profile = "hosts".into();
        r
    };
    if let Some(w) = &wan {
        r.name = format!("ours, WAN {w}");
    }
    Ok(DrillReport::new(o.scenario, o.trials, o.rate_hz, o.drain, vec![r]))
}

/// What a WAN blackout did: whether the leadership changed (raft elected, even the same node again:
/// `sys/leader`'s `active_time` moved) and what the writer through the LB saw.
#[derive(Debug, Clone, Serialize)]
pub struct BlackoutFigures {
    pub blackout_ms: u64,
    pub leader_before: String,
    pub leader_after: String,
    pub leadership_changed: bool,
    pub writes: usize,
    pub failed: usize,
    /// Blackout end → end of the last failed write (0 when none failed after it).
    pub tail_ms: u64,
}

/// Every cross-site packet dropped (loss 100 %) for `blackout`, then `base` again; waits until the
/// cluster is healthy and reads the leader again. A writer runs through the LB the whole time.
pub fn blackout(lab: &HostsLab, base: WanProfile, blackout: Duration, rate_hz: f64) -> Result<BlackoutFigures> {
    in_lb(lab, |rt, t| {
        let c = t.cluster().clone();
        rt.block_on(async move {
            run::wait_ready(&c, Duration::from_secs(180)).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let before = c.lb.leader().await.map_err(|e| anyhow!("sys/leader: {e}"))?;
            let name_before = super::probe::active(&c).await.unwrap_or_default();
            let t0 = Instant::now();
            let limit = Duration::from_secs(120);
            let w = super::client::Writer::start(
                c.lb.clone(),
                super::client::WriterConfig {
                    prefix: format!("blackout-{:x}", time::OffsetDateTime::now_utc().unix_timestamp_nanos()),
                    rate_hz,
                    timeout: Duration::from_secs(2),
                    max_in_flight: 64,
                    max_requests: (rate_hz * limit.as_secs_f64()).ceil() as usize + 1,
                    max_duration: limit,
                },
                t0,
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            lab.set_wan(&WanProfile { loss_pct: 100.0, ..base })?;
            tokio::time::sleep(blackout).await;
            lab.set_wan(&base)?;
            let end = t0.elapsed();
            tokio::time::sleep(Duration::from_secs(3)).await;
            run::wait_ready(&c, Duration::from_secs(90)).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let w = w.finish().await?;
            let after = c.lb.leader().await.map_err(|e| anyhow!("sys/leader: {e}"))?;
            let name_after = super::probe::active(&c).await.unwrap_or_default();
            let failed: Vec<&super::checker::Op> =
                w.ops.iter().filter(|o| o.outcome != super::checker::Outcome::Acked).collect();
            let tail = failed.iter().map(|o| o.finished).max().map(|f| f.saturating_sub(end)).unwrap_or_default();
            Ok(BlackoutFigures {
                blackout_ms: blackout.as_millis() as u64,
                leader_before: name_before.clone(),
                leader_after: name_after.clone(),
                leadership_changed: before.active_time != after.active_time || name_before != name_after,
                writes: w.ops.len(),
                failed: failed.len(),
                tail_ms: tail.as_millis() as u64,
            })
        })
    })
}
