//! Rolling upgrade order: standbys first (one at a time, each back healthy and a voter before the
//! next), then a step-down of the active node (drained at the load balancer first) so that leadership
//! moves to an already-upgraded node, then the old leader. Never fail over from new to old.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Stop, switch the binary, start, unseal, wait until healthy and a voter again.
    Upgrade { node: String },
    /// Drain `node` at the load balancer, step it down, wait for another (upgraded) node to lead.
    StepDown { node: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Upgrade { node } => {
                write!(f, "upgrade {node}: stop, switch binary, start, unseal, wait healthy + voter")
            }
            Step::StepDown { node } => {
                write!(f, "step down {node}: drain at the LB, step-down, wait for an upgraded leader")
            }
        }
    }
}

/// The steps for nodes `(name, is_active)` in spec order. With no active node known the order is spec
/// order (nothing to step down).
pub fn plan(nodes: &[(String, bool)]) -> Vec<Step> {
    let mut steps: Vec<Step> =
        nodes.iter().filter(|(_, active)| !active).map(|(n, _)| Step::Upgrade { node: n.clone() }).collect();
    for (n, _) in nodes.iter().filter(|(_, active)| *active) {
        steps.push(Step::StepDown { node: n.clone() });
        steps.push(Step::Upgrade { node: n.clone() });
    }
    steps
}

/// A version as numbers ("2.7.2" -> [2, 7, 2]; "2.7.2-beta1" -> [2, 7, 2]). None when it does not
/// start with a number.
pub fn version_key(v: &str) -> Option<Vec<u64>> {
    let core = v.trim().trim_start_matches('v').split(['-', '+', ' ']).next()?;
    let parts: Option<Vec<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    parts.filter(|p| !p.is_empty())
}

/// The mixed-version guard, checked before every step-down: leadership must never move from a newer
/// server to an older one (an older leader may not understand what the newer one already wrote to
/// raft). Every node that could win the election (every node but `leader`) must report a version at
/// least `leader_version`; a node whose version is unknown (down, sealed without an answer) refuses
/// the step-down too, since it may be elected once it is back.
pub fn step_down_guard(leader: &str, leader_version: &str, others: &[(String, Option<String>)]) -> Result<()> {
    let lv = version_key(leader_version).ok_or_else(|| {
        anyhow!("{leader} reports an unreadable version {leader_version:?}: refusing to step it down")
    })?;
    let mut older = Vec::new();
    for (n, v) in others {
        match v.as_deref().map(|s| (s, version_key(s))) {
            Some((_, Some(k))) if k >= lv => {}
            Some((s, Some(_))) => older.push(format!("{n} runs {s}")),
            Some((s, None)) => older.push(format!("{n} reports an unreadable version {s:?}")),
            None => older.push(format!("{n}'s version is unknown (not answering sys/health)")),
        }
    }
    if !older.is_empty() {
        bail!(
            "refusing to step down {leader} ({leader_version}): leadership could move to an older server ({}). \
             Upgrade those nodes first.",
            older.join("; ")
        );
    }
    Ok(())
}

// ---- Running it on the lab.

use crate::api::{Cluster, NodeClient, NodeState};
use crate::lab::{process, Lab};
use crate::ops::common;
use crate::ops::unseal::{unseal_node, Keys};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub lab_dir: PathBuf,
    pub to_bao: PathBuf,
    /// Per node: how long to wait for it to be unsealed, healthy and a voter again.
    pub node_wait: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: Step,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    pub from_version: String,
    pub to_version: String,
    pub steps: Vec<StepReport>,
    pub seconds: f64,
}

/// `bao version` of a binary (e.g. "2.7.2").
pub fn binary_version(bao: &Path) -> Result<String> {
    let o = std::process::Command::new(bao)
        .arg("version")
        .output()
        .with_context(|| format!("cannot run {} version", bao.display()))?;
    let s = String::from_utf8_lossy(&o.stdout);
    // "OpenBao v2.7.2 (9e0a0d3c...), built ..."
    s.split_whitespace()
        .find_map(|w| w.strip_prefix('v').filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit())))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{}: unexpected `version` output {:?}", bao.display(), s.trim()))
}

/// The active node and the ordered steps for a lab.
pub async fn plan_for(c: &Cluster) -> Result<Vec<Step>> {
    let hs = common::health_all(c).await;
    let nodes: Vec<(String, bool)> =
        hs.iter().map(|(n, h)| (n.name.clone(), matches!(h, Ok(h) if h.state == NodeState::Active))).collect();
    if !nodes.iter().any(|(_, a)| *a) {
        bail!("no active node: the cluster must be healthy before an upgrade (`vaultnix status`)");
    }
    Ok(plan(&nodes))
}

async fn wait_node_ready(c: &Cluster, n: &NodeClient, version: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match n.health().await {
            Ok(h) if h.state.is_up() && h.body.version == version => {
                // Voter and healthy in autopilot, asked of whichever node is active now.
                if let Some(a) = common::find_active(c).await {
                    match a.autopilot_state().await {
                        Ok(st) => {
                            if let Some(s) = st.servers.get(&n.name) {
                                // Autopilot's own view of the version proves it has seen the restarted node.
                                let seen_new = s.version.is_empty() || s.version == version;
                                if s.healthy && seen_new && (s.status == "voter" || s.status == "leader") {
                                    return Ok(());
                                }
                                last = format!("autopilot: {} healthy={} version={}", s.status, s.healthy, s.version);
                            }
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
            }
            Ok(h) => last = format!("{} version {}", h.state.as_str(), h.body.version),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("{} not healthy + voter on {version} within {limit:?} (last: {last})", n.name)
}

/// Runs the rolling upgrade on a lab: standbys first, then step-down, then the old leader.
pub async fn run_lab_upgrade(o: &UpgradeOptions) -> Result<UpgradeReport> {
    let t0 = Instant::now();
    let mut lab = Lab::open(&o.lab_dir, None)?;
    let to_version = binary_version(&o.to_bao)?;
    let from_version = binary_version(&lab.state.bao)?;
    let init = common::read_init(&lab.dir)?.ok_or_else(|| anyhow!("the lab has no secrets/init.json"))?;
    let keys = Keys(if init.keys_base64.is_empty() { init.keys.clone() } else { init.keys_base64.clone() });
    let c = lab.cluster()?.with_token(Some(init.root_token.clone()));
    let steps = plan_for(&c).await?;
    let mut rep = UpgradeReport { from_version, to_version: to_version.clone(), steps: Vec::new(), seconds: 0.0 };
    let sock = lab.dir.join("run/haproxy.sock");
    for step in steps {
        let t = Instant::now();
        let detail = match &step {
            Step::StepDown { node } => {
                // Mixed-version guard, against what the nodes report right now (not the plan).
                let hs = common::health_all(&c).await;
                let leader_version = hs
                    .iter()
                    .find(|(n, _)| n.name == *node)
                    .and_then(|(_, h)| h.as_ref().ok())
                    .map(|h| h.body.version.clone())
                    .ok_or_else(|| anyhow!("{node} does not answer sys/health: cannot step it down safely"))?;
                let others: Vec<(String, Option<String>)> = hs
                    .iter()
                    .filter(|(n, _)| n.name != *node)
                    .map(|(n, h)| (n.name.clone(), h.as_ref().ok().map(|h| h.body.version.clone())))
                    .collect();
                step_down_guard(node, &leader_version, &others)?;
                let r = crate::ops::step_down::step_down(
                    &lab.plan,
                    &crate::ops::step_down::StepDownOptions {
                        out: lab.dir.clone(),
                        haproxy_socket: Some(sock.clone()),
                        attempts: 5,
                        wait: Duration::from_secs(15),
                    },
                )
                .await?;
                if r.old_leader != *node {
                    bail!("expected {node} to be the leader, but {} was", r.old_leader);
                }
                format!(
                    "leader moved {} -> {} (attempt {}, drained: {})",
                    r.old_leader, r.new_leader, r.attempts, r.drained
                )
            }
            Step::Upgrade { node } => {
                let n = c.node(node).ok_or_else(|| anyhow!("no node {node}"))?;
                lab.stop_async(node).await?;
                process::start(&lab.dir, &process::node_spec(&lab.dir, &o.to_bao, node))?;
                unseal_node(n, &keys, o.node_wait).await?;
                wait_node_ready(&c, n, &to_version, o.node_wait).await?;
                format!("{node} on {to_version}, unsealed, healthy voter")
            }
        };
        rep.steps.push(StepReport { step, seconds: t.elapsed().as_secs_f64(), detail });
    }
    // From now on the lab starts the new binary.
    lab.state.bao = o.to_bao.clone();
    let mut text = serde_json::to_string_pretty(&lab.state)?;
    text.push('\n');
    crate::output::write_file_atomic(&lab.dir.join(crate::lab::STATE_FILE), text.as_bytes(), false)?;
    rep.seconds = t0.elapsed().as_secs_f64();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standbys_first_then_step_down_then_old_leader() {
        let n = |s: &str, a: bool| (s.to_string(), a);
        let p = plan(&[n("a", false), n("b", true), n("c", false)]);
        assert_eq!(
            p,
            vec![
                Step::Upgrade { node: "a".into() },
                Step::Upgrade { node: "c".into() },
                Step::StepDown { node: "b".into() },
                Step::Upgrade { node: "b".into() },
            ]
        );
        assert!(p[2].to_string().contains("drain"));
        assert_eq!(plan(&[n("a", false)]).len(), 1);
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(version_key("2.7.2"), Some(vec![2, 7, 2]));
        assert_eq!(version_key("v2.10.0-beta1"), Some(vec![2, 10, 0]));
        assert!(version_key("2.10.0") > version_key("2.9.9"));
        assert_eq!(version_key("dev"), None);
        assert_eq!(version_key(""), None);
    }

    #[test]
    fn guard_refuses_a_step_down_onto_an_older_server() {
        let o = |n: &str, v: Option<&str>| (n.to_string(), v.map(str::to_string));
        // Every possible successor upgraded (or equal): allowed.
        step_down_guard("b", "2.6.2", &[o("a", Some("2.7.2")), o("c", Some("2.7.2"))]).unwrap();
        step_down_guard("b", "2.7.2", &[o("a", Some("2.7.2")), o("c", Some("2.10.0"))]).unwrap();
        // A newer leader with one older standby: refused, and the error names it.
        let e = step_down_guard("b", "2.7.2", &[o("a", Some("2.7.2")), o("c", Some("2.6.2"))]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("c runs 2.6.2") && s.contains("refusing to step down b (2.7.2)"), "{s}");
        assert!(!s.contains("a runs"), "{s}");
        // Unknown or unreadable versions are refused, not guessed.
        let s = step_down_guard("b", "2.6.2", &[o("a", None)]).unwrap_err().to_string();
        assert!(s.contains("a's version is unknown"), "{s}");
        assert!(step_down_guard("b", "2.6.2", &[o("a", Some("dev"))]).is_err());
        assert!(step_down_guard("b", "weird", &[o("a", Some("2.7.2"))]).is_err());
    }
}
