//! The drill's result: one report per configuration, the seed comparison, and the goals checked.

use super::run::{ConfigReport, Scenario};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Goals from the failover issue, checked on our configuration.
pub const GOAL_RATIO: f64 = 4.0;
pub const GOAL_MEDIAN_MS: f64 = 3000.0;
pub const GOAL_MAX_MS: u64 = 6000;

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub scenario: Scenario,
    pub trials: usize,
    pub rate_hz: f64,
    pub drain: bool,
    pub configs: Vec<ConfigReport>,
    /// Seed disruption median / ours (kill → last failed request); only with --compare-seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Lost acknowledged writes per configuration.
    pub lost: BTreeMap<String, usize>,
    pub goals: Vec<Goal>,
    /// True when no acknowledged write was lost and the history was consistent everywhere.
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub name: String,
    pub met: bool,
    pub detail: String,
}

impl DrillReport {
    pub fn new(scenario: Scenario, trials: usize, rate_hz: f64, drain: bool, configs: Vec<ConfigReport>) -> Self {
        let lost = configs.iter().map(|c| (c.name.clone(), c.lost)).collect();
        let ok = configs.iter().all(|c| c.verdict.ok());
        let ours = configs.iter().find(|c| c.name == "ours");
        let seed = configs.iter().find(|c| c.name == "seed");
        let ratio = match (
            seed.and_then(|s| s.summary.disruption.median_ms),
            ours.and_then(|o| o.summary.disruption.median_ms),
        ) {
            (Some(s), Some(o)) if o > 0.0 => Some((s / o * 100.0).round() / 100.0),
            _ => None,
        };
        let mut goals = Vec::new();
        for c in &configs {
            goals.push(Goal {
                name: format!("{}: 0 acknowledged writes lost", c.name),
                met: c.verdict.ok(),
                detail: format!(
                    "{} lost, {} duplicates, {} late acks, {} unverified of {} acknowledged",
                    c.lost,
                    c.verdict.duplicates.len(),
                    c.verdict.late_acks.len(),
                    c.verdict.unverified.len(),
                    c.verdict.acked
                ),
            });
        }
        if let Some(o) = ours {
            let d = &o.summary.disruption;
            if let (Some(m), Some(x)) = (d.median_ms, d.max_ms) {
                goals.push(Goal {
                    name: "ours: disruption median <= 3 s".into(),
                    met: m <= GOAL_MEDIAN_MS,
                    detail: format!("{:.0} ms", m),
                });
                goals.push(Goal {
                    name: "ours: disruption max <= 6 s".into(),
                    met: x <= GOAL_MAX_MS,
                    detail: format!("{x} ms"),
                });
            }
        }
        if scenario == Scenario::LeaderStepdown && drain {
            if let Some(t) = configs.iter().find(|c| c.name == "terminate") {
                goals.push(Goal {
                    name: "terminate: a drained step-down fails no request".into(),
                    met: t.summary.failed_total == 0,
                    detail: format!("{} failed of {}", t.summary.failed_total, t.summary.requests_total),
                });
            }
        }
        if scenario.is_rotation() {
            for c in &configs {
                goals.push(Goal {
                    name: format!("{}: 0 failed requests across the {}", c.name, scenario.as_str()),
                    met: c.summary.failed_total == 0 && c.trials.iter().all(|t| t.figures.failed_before_fault == 0),
                    detail: format!("{} failed of {}", c.summary.failed_total, c.summary.requests_total),
                });
            }
        }
        if seed.is_some() {
            goals.push(Goal {
                name: "disruption >= 4x shorter than the seed's".into(),
                met: ratio.is_some_and(|r| r >= GOAL_RATIO),
                detail: match ratio {
                    Some(r) => format!("ratio {r:.2}"),
                    None => "ratio undefined (ours had no failed request, or no seed figures)".into(),
                },
            });
        }
        DrillReport { scenario, trials, rate_hz, drain, configs, ratio, lost, goals, ok }
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "drill {}{}: {} trial(s) per configuration, {} writes/s through the LB",
            self.scenario.as_str(),
            if self.drain { " (drained at the LB)" } else { "" },
            self.trials,
            self.rate_hz
        );
        let _ = writeln!(
            s,
            "{:<11} {:>4} {:>17} {:<22} {:<22} {:<22} {:<22} {:<22} {:>9} {:>5}",
            "config",
            "mult",
            "lb",
            "disruption (median)",
            "outage (median)",
            "new leader (median)",
            "old node voter",
            "latency p50/p99 (base)",
            "failed",
            "lost"
        );
        for c in &self.configs {
            let su = &c.summary;
            let _ = writeln!(
                s,
                "{:<11} {:>4} {:>17} {:<22} {:<22} {:<22} {:<22} {:<22} {:>9} {:>5}",
                c.name,
                c.performance_multiplier,
                c.haproxy_profile,
                su.disruption.human(),
                su.outage.human(),
                su.new_leader.human(),
                su.old_node_healthy.human(),
                latency_human(su),
                format!("{}/{}", su.failed_total, su.requests_total),
                c.lost
            );
            for t in &c.trials {
                let _ = writeln!(
                    s,
                    "  #{:<2} {} -> {}: disruption {} ms, outage {}, failed {} {:?}, acked {}, ambiguous {} ({} committed){}",
                    t.trial,
                    t.leader_before,
                    t.leader_after.as_deref().unwrap_or("-"),
                    t.figures.disruption.as_millis(),
                    t.figures.outage.map(|d| format!("{} ms", d.as_millis())).unwrap_or_else(|| "-".into()),
                    t.figures.failed,
                    t.errors,
                    t.acked,
                    t.ambiguous,
                    t.ambiguous_committed,
                    if t.notes.is_empty() { String::new() } else { format!("; {}", t.notes.join("; ")) }
                );
            }
            for l in &c.verdict.lost {
                let _ = writeln!(
                    s,
                    "  LOST {}: expected {:?}, found {}",
                    l.key,
                    l.expected,
                    l.found.as_deref().map(|f| format!("{f:?}")).unwrap_or_else(|| "nothing".into())
                );
            }
        }
        if let Some(r) = self.ratio {
            let _ = writeln!(s, "ratio (seed / ours, median disruption): {r:.2}");
        }
        for g in &self.goals {
            let _ = writeln!(s, "[{}] {} ({})", if g.met { "ok" } else { "MISSED" }, g.name, g.detail);
        }
        s
    }
}

/// "12/340 ms (9/15)": p50/p99 after the fault, and the baseline before it; "-" when nothing succeeded.
fn latency_human(su: &super::measure::Summary) -> String {
    let f = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    format!(
        "{}/{} ms ({}/{})",
        f(su.latency_p50_ms),
        f(su.latency_p99_ms),
        f(su.baseline_p50_ms),
        f(su.baseline_p99_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::checker::Verdict;
    use crate::drill::measure::{summarize, TrialFigures};
    use std::time::Duration;

    fn config(name: &str, disruptions_ms: &[u64]) -> ConfigReport {
        let figures: Vec<TrialFigures> = disruptions_ms
            .iter()
            .map(|d| TrialFigures {
                disruption: Duration::from_millis(*d),
                failed: 3,
                requests: 100,
                ..Default::default()
            })
            .collect();
        ConfigReport {
            name: name.into(),
            performance_multiplier: 1,
            haproxy_profile: "tuned".into(),
            trials: Vec::new(),
            summary: summarize(&figures),
            lost: 0,
            stepdown_ignored: 0,
            verdict: Verdict::default(),
        }
    }

    #[test]
    fn rotations_have_a_zero_failed_goal_per_config() {
        // config(): 3 failed requests per trial.
        let r = DrillReport::new(Scenario::CaRollover, 1, 25.0, false, vec![config("terminate", &[0])]);
        let g = r.goals.iter().find(|g| g.name == "terminate: 0 failed requests across the ca-rollover").expect("goal");
        assert!(!g.met, "{g:?}");
        assert_eq!(g.detail, "3 failed of 100");
        let mut clean = config("passthrough", &[0]);
        clean.summary = summarize(&[TrialFigures { requests: 500, ..Default::default() }]);
        let r = DrillReport::new(Scenario::CertRenewal, 1, 25.0, false, vec![clean]);
        let g = r.goals.iter().find(|g| g.name.ends_with("across the cert-renewal")).expect("goal");
        assert!(g.met, "{g:?}");
        // Not a rotation: no such goal.
        let r = DrillReport::new(Scenario::LeaderCrash, 1, 10.0, false, vec![config("ours", &[0])]);
        assert!(!r.goals.iter().any(|g| g.name.contains("failed requests across")));
    }

    #[test]
    fn ratio_and_goals() {
        let r = DrillReport::new(
            Scenario::LeaderCrash,
            3,
            10.0,
            false,
            vec![config("seed", &[14000, 13000, 15000]), config("ours", &[2000, 2500, 5000])],
        );
        assert_eq!(r.ratio, Some(5.6));
        assert!(r.ok);
        assert!(r.goals.iter().all(|g| g.met), "{:?}", r.goals);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["ratio"], 5.6);
        assert_eq!(j["lost"]["ours"], 0);
        assert_eq!(j["lost"]["seed"], 0);
        assert!(r.table().contains("ratio (seed / ours, median disruption): 5.60"));
    }

    #[test]
    fn missed_goals_are_reported() {
        let r = DrillReport::new(
            Scenario::LeaderCrash,
            2,
            10.0,
            false,
            vec![config("seed", &[8000, 8000]), config("ours", &[4000, 7000])],
        );
        let missed: Vec<&str> = r.goals.iter().filter(|g| !g.met).map(|g| g.name.as_str()).collect();
        assert_eq!(
            missed,
            [
                "ours: disruption median <= 3 s",
                "ours: disruption max <= 6 s",
                "disruption >= 4x shorter than the seed's"
            ]
        );
    }

    #[test]
    fn compare_mode_reports_both_and_holds_terminate_to_zero_failed() {
        // config() gives every trial 3 failed requests of 100.
        let r = DrillReport::new(
            Scenario::LeaderStepdown,
            2,
            10.0,
            true,
            vec![config("passthrough", &[0, 0]), config("terminate", &[0, 0])],
        );
        let g = r.goals.iter().find(|g| g.name.starts_with("terminate: a drained step-down")).expect("goal");
        assert!(!g.met, "6 failed requests must miss the goal: {g:?}");
        assert_eq!(g.detail, "6 failed of 200");
        let t = r.table();
        assert!(t.contains("passthrough") && t.contains("terminate"), "{t}");
        assert!(t.contains("latency p50/p99 (base)"), "{t}");
        // Not a step-down, or not drained: no such goal.
        let r = DrillReport::new(Scenario::LeaderCrash, 1, 10.0, false, vec![config("terminate", &[0])]);
        assert!(!r.goals.iter().any(|g| g.name.starts_with("terminate: a drained")));
    }
}
