//! Trials: bring the cluster to a healthy state, start the writer, inject the fault, watch the cluster
//! recover, stop the writer, read everything back and check it.

use super::checker::{self, History, Verdict};
use super::client::{self, Writer, WriterConfig};
use super::measure::{self, Summary, Timeline, TrialFigures};
use super::probe;
use crate::api::Cluster;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// kill -9 the active node, restart it once a new leader is elected.
    LeaderCrash,
    /// `sys/step-down` on the active node (planned).
    LeaderStepdown,
    /// kill -9 a standby, restart it.
    FollowerCrash,
    /// Freeze the active node (SIGSTOP) until the others elected a leader, then let it go (SIGCONT).
    /// On a hosts lab (`drill --hosts`) a real partition instead: raft's port dropped both ways.
    Partition,
    /// Every node down (kill -9), then up and unsealed.
    FullRestart,
    /// A staged CA rollover (begin, reissue, finish), each step applied and verified on the wire.
    CaRollover,
    /// Every node certificate renewed (same CA), reloaded and verified on the wire.
    CertRenewal,
    /// Stop the active node through the server unit's stop path (ExecStop `vaultnix node drain`, then
    /// SIGTERM), restart and unseal it: what `systemctl stop` / a reboot does on NixOS.
    LeaderStop,
    /// Cut a standby off the network entirely (hosts lab: its link down) for 10 s, then reconnect it.
    FollowerIsolate,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::LeaderCrash => "leader-crash",
            Scenario::LeaderStepdown => "leader-stepdown",
            Scenario::FollowerCrash => "follower-crash",
            Scenario::Partition => "partition",
            Scenario::FullRestart => "full-restart",
            Scenario::CaRollover => "ca-rollover",
            Scenario::CertRenewal => "cert-renewal",
            Scenario::LeaderStop => "leader-stop",
            Scenario::FollowerIsolate => "follower-isolate",
        }
    }

    /// A rotation (super::rotation): no fault, planned changes of certificates every client must not notice.
    pub fn is_rotation(self) -> bool {
        matches!(self, Scenario::CaRollover | Scenario::CertRenewal)
    }
}

/// What a drill needs from a cluster: observing it and controlling its processes. The lab implements it;
/// every method acts only on processes the lab started.
/// What both lab targets do after starting a node's process: unseal it (bounded, 60 s).
pub(crate) async fn unseal_started(cluster: &Cluster, keys: &crate::ops::unseal::Keys, node: &str) -> Result<()> {
    let n = cluster.node(node).with_context(|| format!("no node {node}"))?;
    crate::ops::unseal::unseal_node(n, keys, Duration::from_secs(60)).await?;
    Ok(())
}

/// Both lab targets' planned step-down: drained at their HAProxy's admin socket when `drain`; 3
/// step-down requests at most, 8 s each. Returns the new leader and the requests answered in vain.
pub(crate) async fn step_down_at(
    cluster: &Cluster,
    node: &str,
    socket: &std::path::Path,
    drain: bool,
) -> Result<(String, usize)> {
    let r =
        crate::ops::lb::planned_step_down(cluster, node, drain.then_some(socket), 3, Duration::from_secs(8)).await?;
    Ok((r.new_leader, r.ignored))
}

pub trait Target {
    /// API clients for every node and the LB, with a token that may write the drill's mount.
    fn cluster(&self) -> &Cluster;
    /// kill -9 one node.
    fn kill(&mut self, node: &str) -> Result<()>;
    /// SIGSTOP (true) / SIGCONT (false) one node.
    fn pause(&mut self, node: &str, paused: bool) -> Result<()>;
    /// Starts a stopped node and unseals it; does not wait for it to join.
    fn start(&mut self, node: &str) -> impl Future<Output = Result<()>>;
    /// The planned step-down of the active node `node` (drained at the LB first when `drain`). Returns
    /// the new active node and how many step-down requests were answered while `node` stayed active.
    fn step_down(&mut self, node: &str, drain: bool) -> impl Future<Output = Result<(String, usize)>>;
    /// One CA rollover step, applied and verified on the wire (ops::ca_rollover); what was done.
    fn ca_step(&mut self, _step: crate::secrets::CaStep) -> impl Future<Output = Result<Vec<String>>> {
        async { bail!("this target cannot roll its CA over") }
    }
    /// Every node certificate renewed, reloaded and verified on the wire (ops::certs); what was done.
    fn renew_certs(&mut self) -> impl Future<Output = Result<Vec<String>>> {
        async { bail!("this target cannot renew its certificates") }
    }
    /// Rebuilds [`Target::cluster`]'s clients with the trust bundle now on disk (what a client does
    /// when it receives the new flake/pki/ca.crt).
    fn reload_trust(&mut self) -> Result<()> {
        bail!("this target cannot reload its clients' trust")
    }
    /// HAProxy's admin socket, sampled during a trial for the LB's server state changes (None: not
    /// observed).
    fn lb_admin_socket(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// Stops one node the way its service manager does (ExecStop drain, then SIGTERM).
    fn stop(&mut self, node: &str) -> impl Future<Output = Result<()>> {
        let _ = node;
        async { bail!("this target has no stop path (ExecStop drain)") }
    }
    /// Cuts one node off the network (true) / reconnects it (false). Only targets with a network do.
    fn isolate(&mut self, node: &str, isolated: bool) -> Result<()> {
        let _ = (node, isolated);
        bail!("isolating a node needs a network: use the hosts lab (`drill --hosts`)")
    }
}

#[derive(Debug, Clone)]
pub struct TrialOptions {
    pub scenario: Scenario,
    pub trials: usize,
    pub rate_hz: f64,
    /// Per-request timeout of the writer.
    pub timeout: Duration,
    /// Writing before the fault.
    pub warmup: Duration,
    /// Writing after recovery (catches failures when the restarted node comes back).
    pub tail: Duration,
    /// Planned step-down: drain at the LB first.
    pub drain: bool,
    /// Upper bound for one trial (waits included).
    pub trial_limit: Duration,
    /// Distinguishes this run's keys from earlier runs' on the same cluster.
    pub run_id: String,
}

impl Default for TrialOptions {
    fn default() -> Self {
        TrialOptions {
            scenario: Scenario::LeaderCrash,
            trials: 1,
            rate_hz: 10.0,
            timeout: Duration::from_secs(2),
            warmup: Duration::from_secs(2),
            tail: Duration::from_secs(3),
            drain: false,
            trial_limit: Duration::from_secs(240),
            run_id: format!("run-{:x}", time::OffsetDateTime::now_utc().unix_timestamp()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialReport {
    pub trial: usize,
    /// The active node before the fault.
    pub leader_before: String,
    /// The active node after it (None: not observed; unchanged for follower-crash).
    pub leader_after: Option<String>,
    #[serde(flatten)]
    pub figures: TrialFigures,
    pub acked: usize,
    pub lost: usize,
    pub ambiguous: usize,
    pub ambiguous_committed: usize,
    pub skipped_sends: usize,
    /// Why requests failed, with counts.
    pub errors: std::collections::BTreeMap<String, usize>,
    /// Step-downs answered 204 while the node stayed active (retried).
    pub stepdown_ignored: usize,
    pub notes: Vec<String>,
    /// Every request, the fault, the election and the LB's state changes (what `--report` plots).
    pub timeline: measure::TimelineRecord,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub name: String,
    pub performance_multiplier: u8,
    pub haproxy_profile: String,
    pub trials: Vec<TrialReport>,
    pub summary: Summary,
    /// Lost acknowledged writes over all trials (must be 0); the keys are in `verdict.lost`.
    pub lost: usize,
    pub stepdown_ignored: usize,
    pub verdict: Verdict,
}

/// Something to tell the user while trials run (a progress bar in the CLI).
pub trait Progress: Sync {
    fn phase(&self, msg: &str);
    fn trial_done(&self);
}

pub struct NoProgress;
impl Progress for NoProgress {
    fn phase(&self, _: &str) {}
    fn trial_done(&self) {}
}

/// Waits until every voter is a healthy voter with one active node, and the drill mount exists.
pub async fn wait_ready(c: &Cluster, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    if !probe::wait_until(deadline, Duration::from_millis(500), || probe::all_voters_healthy(c)).await {
        let h = probe::all_states(c).await;
        bail!("the cluster did not become healthy within {} s: {h:?}", limit.as_secs());
    }
    client::ensure_mount(&c.lb, deadline.max(Instant::now() + Duration::from_secs(20))).await
}

pub async fn run_trials<T: Target>(
    t: &mut T,
    name: &str,
    o: &TrialOptions,
    progress: &dyn Progress,
) -> Result<ConfigReport> {
    let plan = t.cluster().plan.clone();
    let mut trials = Vec::new();
    let mut verdict = Verdict::default();
    for i in 0..o.trials {
        progress.phase(&format!("{name}: trial {}/{}: waiting for a healthy cluster", i + 1, o.trials));
        wait_ready(t.cluster(), Duration::from_secs(180)).await?;
        let (report, v) = trial(t, name, i, o, progress).await?;
        verdict.merge(v);
        trials.push(report);
        progress.trial_done();
    }
    // Leave the cluster healthy for whoever comes next.
    wait_ready(t.cluster(), Duration::from_secs(180)).await?;
    let figures: Vec<TrialFigures> = trials.iter().map(|t| t.figures.clone()).collect();
    Ok(ConfigReport {
        name: name.to_string(),
        performance_multiplier: plan.raft.performance_multiplier,
        haproxy_profile: String::new(),
        summary: measure::summarize(&figures),
        lost: verdict.lost.len(),
        stepdown_ignored: trials.iter().map(|t| t.stepdown_ignored).sum(),
        trials,
        verdict,
    })
}

async fn trial<T: Target>(
    t: &mut T,
    name: &str,
    i: usize,
    o: &TrialOptions,
    progress: &dyn Progress,
) -> Result<(TrialReport, Verdict)> {
    if o.scenario.is_rotation() {
        return super::rotation::trial(t, name, i, o, progress).await;
    }
    let c = t.cluster().clone();
    let plan = c.plan.clone();
    let old = probe::active(&c).await.context("no active node before the fault")?;
    // The planned step-down waits until no standby can still be in the pause of the step-down before
    // (ops::lb::STEP_DOWN_PAUSE): here, before the writer starts, so that wait is not in the figures.
    if matches!(o.scenario, Scenario::LeaderStepdown | Scenario::LeaderStop) {
        if let Some(n) = c.node(&old) {
            progress.phase(&format!("{name}: trial {}/{}: {old} active for 10 s", i + 1, o.trials));
            crate::ops::lb::wait_step_down_pause(n).await;
        }
    }
    let limit = Instant::now() + o.trial_limit;
    let prefix = format!("{}/{name}/{}/{i}", o.run_id, o.scenario.as_str());
    let t0 = Instant::now();
    let writer = Writer::start(
        c.lb.clone(),
        WriterConfig {
            prefix: prefix.clone(),
            rate_hz: o.rate_hz,
            timeout: o.timeout,
            max_in_flight: 64,
            max_requests: (o.rate_hz * o.trial_limit.as_secs_f64()).ceil() as usize + 1,
            max_duration: o.trial_limit,
        },
        t0,
    );
    let (lb_stop, lb_stop_rx) = tokio::sync::watch::channel(false);
    let lb_watch = t.lb_admin_socket().map(|socket| {
        let every = Duration::from_millis(100);
        tokio::spawn(probe::watch_lb(socket, crate::ops::lb::BACKEND, t0, every, o.trial_limit, lb_stop_rx))
    });
    tokio::time::sleep(o.warmup).await;
    let mut tl = Timeline::default();
    let mut notes = Vec::new();
    let mut new_leader = None;
    let mut stepdown_ignored = 0;
    progress.phase(&format!("{name}: trial {}/{}: {} ({old})", i + 1, o.trials, o.scenario.as_str()));
    let fault = async {
        tl.fault_at = t0.elapsed();
        match o.scenario {
            Scenario::LeaderCrash => {
                t.kill(&old)?;
                let n = probe::wait_active_other_than(&c, Some(&old), limit).await?;
                tl.new_leader_at = Some(t0.elapsed());
                new_leader = Some(n);
                t.start(&old).await?;
                wait_voter(&c, &old, limit).await?;
                tl.old_node_healthy_at = Some(t0.elapsed());
            }
            Scenario::FollowerCrash => {
                let f = plan.nodes.iter().map(|n| n.name.clone()).find(|n| *n != old).context("no standby")?;
                notes.push(format!("killed standby {f}"));
                t.kill(&f)?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                t.start(&f).await?;
                wait_voter(&c, &f, limit).await?;
                tl.old_node_healthy_at = Some(t0.elapsed());
            }
            Scenario::LeaderStepdown => {
                // About 1 step-down in 5 is answered 204 while the node stays active (facts file): the
                // step-down op verifies the leader changed and retries, bounded; we report how often.
                let (n, ignored) = t.step_down(&old, o.drain).await?;
                tl.new_leader_at = Some(t0.elapsed());
                if ignored > 0 {
                    stepdown_ignored = ignored;
                    notes.push(format!("{ignored} step-down request(s) answered while {old} stayed active"));
                }
                new_leader = Some(n);
                wait_voter(&c, &old, limit).await?;
                tl.old_node_healthy_at = Some(t0.elapsed());
            }
            Scenario::LeaderStop => {
                // The new leader is watched while the stop runs: the stepped-down server takes ~10 s more
                // to exit on SIGTERM (OpenBao's HA loop sleeps after a step-down before it lets the seal
                // finish; seen in both labs), and the new leader is active long before that.
                let watch = async {
                    let n = probe::wait_active_other_than(&c, Some(&old), limit).await;
                    (n, t0.elapsed())
                };
                let (stopped, (n, at)) = tokio::join!(t.stop(&old), watch);
                stopped?;
                tl.new_leader_at = Some(at);
                new_leader = Some(n?);
                t.start(&old).await?;
                wait_voter(&c, &old, limit).await?;
                tl.old_node_healthy_at = Some(t0.elapsed());
            }
            Scenario::Partition => {
                t.pause(&old, true)?;
                let r = probe::wait_active_other_than(&c, Some(&old), limit).await;
                let elected_at = t0.elapsed();
                // Keep the old leader frozen a little past the election so it wakes up deposed.
                tokio::time::sleep(Duration::from_secs(2)).await;
                t.pause(&old, false)?;
                new_leader = Some(r?);
                tl.new_leader_at = Some(elected_at);
                wait_voter(&c, &old, limit).await?;
                tl.old_node_healthy_at = Some(t0.elapsed());
            }
            Scenario::CaRollover | Scenario::CertRenewal => bail!("rotations run in drill::rotation"),
            Scenario::FollowerIsolate => {
                let f = plan.nodes.iter().map(|n| n.name.clone()).find(|n| *n != old).context("no standby")?;
                notes.push(format!("isolated standby {f} for 10 s"));
                t.isolate(&f, true)?;
                tokio::time::sleep(Duration::from_secs(10)).await;
                t.isolate(&f, false)?;
                wait_voter(&c, &f, limit).await?;
                tl.old_node_healthy_at = Some(t0.elapsed());
            }
            Scenario::FullRestart => {
                for n in &plan.nodes {
                    t.kill(&n.name)?;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                for n in &plan.nodes {
                    t.start(&n.name).await?;
                }
                let n = probe::wait_active_other_than(&c, None, limit).await?;
                tl.new_leader_at = Some(t0.elapsed());
                new_leader = Some(n);
                if !probe::wait_until(limit, Duration::from_millis(500), || probe::all_voters_healthy(&c)).await {
                    bail!("not every voter healthy again before the trial limit");
                }
                tl.old_node_healthy_at = Some(t0.elapsed());
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let fault_result = fault.await;
    tokio::time::sleep(o.tail).await;
    let w = writer.finish().await?;
    let _ = lb_stop.send(true);
    if let Some(h) = lb_watch {
        let lw = h.await?;
        if lw.failed_samples > 0 {
            notes.push(format!("LB admin socket: {} of {} samples failed", lw.failed_samples, lw.samples));
        }
        tl.lb_events = lw.events;
    }
    fault_result?;
    if let (Scenario::FollowerCrash | Scenario::FollowerIsolate, Some(a)) = (o.scenario, probe::active(&c).await) {
        if a != old {
            notes.push(format!("leader changed to {a} although only a standby was faulted"));
            new_leader = Some(a);
        }
    }
    progress.phase(&format!("{name}: trial {}/{}: reading back {} keys", i + 1, o.trials, w.ops.len()));
    wait_ready(&c, Duration::from_secs(120)).await?;
    let active = probe::active(&c).await.context("no active node for the read-back")?;
    let confirm = c.node(&active).unwrap_or(&c.lb);
    let readback = client::read_back(&c.lb, confirm, &prefix, &w.ops).await?;
    let v = checker::check(&History { ops: w.ops, horizon: w.horizon, readback });
    tl.requests = w.requests;
    notes.extend(measure::timeout_note(&tl, o.timeout));
    let figures = measure::figures(&tl);
    let timeline = measure::TimelineRecord::from(&tl);
    let report = TrialReport {
        trial: i + 1,
        leader_before: old,
        leader_after: new_leader,
        figures,
        acked: v.acked,
        lost: v.lost.len(),
        ambiguous: v.ambiguous,
        ambiguous_committed: v.ambiguous_committed,
        skipped_sends: w.skipped,
        errors: w.errors.clone(),
        stepdown_ignored,
        notes,
        timeline,
    };
    Ok((report, v))
}

async fn wait_voter(c: &Cluster, node: &str, deadline: Instant) -> Result<()> {
    if probe::wait_until(deadline, Duration::from_millis(250), || probe::healthy_voter(c, node)).await {
        Ok(())
    } else {
        bail!("{node} did not come back as a healthy voter before the trial limit")
    }
}
