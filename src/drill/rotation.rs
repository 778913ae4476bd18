//! Rotation drills (`drill ca-rollover`, `drill cert-renewal`): no fault, planned certificate changes
//! under the drill's non-retrying writer through the load balancer. Each step is the operation itself
//! (ops::ca_rollover, ops::certs through [`Target`]), applied and verified on the wire before the next.
//!
//! CA rollover: the writer that runs across `begin` trusts the old CA only (nothing it sees changes);
//! once `begin` is verified, a second writer with the bundle (what clients receive after `begin`) starts
//! before the first stops, and runs across `reissue` and `finish`. Both histories are read back through
//! a client trusting the new CA only, and checked.

use super::checker::{self, History, Verdict};
use super::client::{self, Writer, WriterConfig, WriterResult};
use super::measure::{self, Timeline};
use super::probe;
use super::run::{wait_ready, Progress, Scenario, Target, TrialOptions, TrialReport};
use crate::secrets::CaStep;
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

/// Writing on each new phase before the next step (the reloads' old processes finish their sessions).
const STEP_DWELL: Duration = Duration::from_secs(2);

fn writer(t0: Instant, lb: crate::api::NodeClient, prefix: &str, o: &TrialOptions) -> Writer {
    Writer::start(
        lb,
        WriterConfig {
            prefix: prefix.to_string(),
            rate_hz: o.rate_hz,
            timeout: o.timeout,
            max_in_flight: 64,
            max_requests: (o.rate_hz * o.trial_limit.as_secs_f64()).ceil() as usize + 1,
            max_duration: o.trial_limit,
        },
        t0,
    )
}

pub async fn trial<T: Target>(
    t: &mut T,
    name: &str,
    i: usize,
    o: &TrialOptions,
    progress: &dyn Progress,
) -> Result<(TrialReport, Verdict)> {
    let c = t.cluster().clone();
    let old = probe::active(&c).await.context("no active node before the rotation")?;
    let prefix = format!("{}/{name}/{}/{i}", o.run_id, o.scenario.as_str());
    let t0 = Instant::now();
    let deadline = t0 + o.trial_limit;
    let mut segments: Vec<(String, Writer)> =
        vec![(format!("{prefix}/a"), writer(t0, c.lb.clone(), &format!("{prefix}/a"), o))];
    tokio::time::sleep(o.warmup).await;
    let mut tl = Timeline { fault_at: t0.elapsed(), ..Timeline::default() };
    let mut notes = Vec::new();
    let mut done = Vec::new();
    let mut results: Vec<(String, WriterResult)> = Vec::new();
    let steps = async {
        match o.scenario {
            Scenario::CaRollover => {
                for step in [CaStep::Begin, CaStep::Reissue, CaStep::Finish] {
                    if Instant::now() > deadline {
                        bail!("the trial limit passed before the {} step", step.as_str());
                    }
                    progress.phase(&format!("{name}: trial {}/{}: ca rollover {}", i + 1, o.trials, step.as_str()));
                    let s = Instant::now();
                    let d = t.ca_step(step).await?;
                    notes.push(format!(
                        "{}: applied and verified on the wire in {:.1} s",
                        step.as_str(),
                        s.elapsed().as_secs_f64()
                    ));
                    done.extend(d);
                    // Keep writing on the new phase before the next step.
                    tokio::time::sleep(STEP_DWELL).await;
                    if step == CaStep::Begin {
                        // Clients receive the bundle: a new writer with it, before the old one stops.
                        t.reload_trust()?;
                        let p = format!("{prefix}/b");
                        segments.push((p.clone(), writer(t0, t.cluster().lb.clone(), &p, o)));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let (p, w) = segments.remove(0);
                        results.push((p, w.finish().await?));
                    }
                }
                // The new CA only, for the read-back and the next trial.
                t.reload_trust()?;
            }
            Scenario::CertRenewal => {
                progress.phase(&format!("{name}: trial {}/{}: certs renew --all", i + 1, o.trials));
                let s = Instant::now();
                done.extend(t.renew_certs().await?);
                notes.push(format!(
                    "renewal: applied and served (verified on the wire) in {:.1} s",
                    s.elapsed().as_secs_f64()
                ));
                tokio::time::sleep(STEP_DWELL).await;
            }
            other => bail!("{} is not a rotation", other.as_str()),
        }
        tl.old_node_healthy_at = Some(t0.elapsed());
        Ok::<(), anyhow::Error>(())
    };
    let step_result = steps.await;
    tokio::time::sleep(o.tail).await;
    for (p, w) in segments {
        results.push((p, w.finish().await?));
    }
    step_result?;
    progress.phase(&format!("{name}: trial {}/{}: reading back", i + 1, o.trials));
    let c = t.cluster().clone();
    wait_ready(&c, Duration::from_secs(120)).await?;
    let active = probe::active(&c).await.context("no active node for the read-back")?;
    let confirm = c.node(&active).unwrap_or(&c.lb);
    let mut verdict = Verdict::default();
    let mut errors = std::collections::BTreeMap::new();
    let mut skipped = 0;
    for (p, w) in results {
        let readback = client::read_back(&c.lb, confirm, &p, &w.ops).await?;
        verdict.merge(checker::check(&History { ops: w.ops, horizon: w.horizon, readback }));
        tl.requests.extend(w.requests);
        for (k, n) in w.errors {
            *errors.entry(k).or_insert(0) += n;
        }
        skipped += w.skipped;
    }
    tl.requests.sort_by_key(|r| r.sent);
    notes.push(format!("{} on-the-wire result(s): {}", done.len(), done.join("; ")));
    let figures = measure::figures(&tl);
    let timeline = measure::TimelineRecord::from(&tl);
    let report = TrialReport {
        trial: i + 1,
        leader_before: old,
        leader_after: Some(active),
        figures,
        acked: verdict.acked,
        lost: verdict.lost.len(),
        ambiguous: verdict.ambiguous,
        ambiguous_committed: verdict.ambiguous_committed,
        skipped_sends: skipped,
        errors,
        stepdown_ignored: 0,
        notes,
        timeline,
    };
    Ok((report, verdict))
}
