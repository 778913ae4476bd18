//! Observing the cluster during a drill: who is active, is a node a healthy voter. Every wait here is
//! bounded by a deadline and polls at a fixed interval. Built on [`crate::api::Cluster`].

use crate::api::{Cluster, NodeClient, NodeState};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// Probes are short: a node that does not answer within this is reported down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The state of one node from `sys/health` (None: unreachable or an unexpected status).
pub async fn state(n: &NodeClient) -> Option<NodeState> {
    let r = n.send(reqwest::Method::GET, "sys/health", None, Some(PROBE_TIMEOUT)).await.ok()?;
    NodeState::from_status(r.status.as_u16())
}

/// The state of every node, in plan order, probed in parallel.
pub async fn all_states(c: &Cluster) -> Vec<(String, Option<NodeState>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let n = n.clone();
        set.spawn(async move { (i, state(&n).await) });
    }
    let mut out: Vec<(String, Option<NodeState>)> = c.nodes.iter().map(|n| (n.name.clone(), None)).collect();
    while let Some(r) = set.join_next().await {
        if let Ok((i, s)) = r {
            out[i].1 = s;
        }
    }
    out
}

/// The single active node, if exactly one answers 200.
pub async fn active(c: &Cluster) -> Option<String> {
    let mut act = all_states(c).await.into_iter().filter(|(_, s)| *s == Some(NodeState::Active)).map(|(n, _)| n);
    match (act.next(), act.next()) {
        (Some(a), None) => Some(a),
        _ => None,
    }
}

/// Polls until a node other than `not` is the single active node; returns its name.
pub async fn wait_active_other_than(c: &Cluster, not: Option<&str>, deadline: Instant) -> Result<String> {
    loop {
        if let Some(a) = active(c).await {
            if Some(a.as_str()) != not {
                return Ok(a);
            }
        }
        if Instant::now() >= deadline {
            bail!("no new active node before the deadline");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Autopilot's healthy voters (node ids), asked of the active node.
async fn healthy_voter_ids(c: &Cluster) -> Option<Vec<String>> {
    let a = active(c).await?;
    let st = c.node(&a)?.autopilot_state().await.ok()?;
    Some(
        st.servers
            .iter()
            .filter(|(_, s)| s.healthy && (s.status == "voter" || s.status == "leader"))
            .map(|(id, _)| id.clone())
            .collect(),
    )
}

/// True when every voter of the plan is a healthy voter in autopilot.
pub async fn all_voters_healthy(c: &Cluster) -> bool {
    let Some(ids) = healthy_voter_ids(c).await else { return false };
    c.plan.voters().all(|v| ids.contains(&v.node_id))
}

/// True when `node` is a healthy voter in autopilot.
pub async fn healthy_voter(c: &Cluster, node: &str) -> bool {
    let (Some(ids), Some(n)) = (healthy_voter_ids(c).await, c.plan.node(node)) else { return false };
    ids.contains(&n.node_id)
}

/// Polls `cond` every `every` until it holds or the deadline passes.
pub async fn wait_until<F, Fut>(deadline: Instant, every: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Every server of `backend` with its state from HAProxy's `show stat` (the first word of `status`:
/// "UP 1/3" while failing checks is still UP, HAProxy still routes to it).
pub async fn lb_server_states(socket: &std::path::Path, backend: &str) -> Result<Vec<(String, String)>> {
    let csv = crate::ops::lb::command(socket, "show stat").await?;
    Ok(parse_server_states(&csv, backend))
}

fn parse_server_states(csv: &str, backend: &str) -> Vec<(String, String)> {
    let mut status_col = None;
    let mut out = Vec::new();
    for line in csv.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            status_col = h.split(',').position(|c| c == "status");
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let (Some(i), Some(&b), Some(&s)) = (status_col, cols.first(), cols.get(1)) else { continue };
        // The backup hold (render::haproxy::HOLD_SERVER) is no node: never a state change to report.
        if b != backend || s == "BACKEND" || s == "FRONTEND" || s == crate::render::haproxy::HOLD_SERVER {
            continue;
        }
        let st = cols.get(i).and_then(|v| v.split_whitespace().next()).unwrap_or("").to_string();
        out.push((s.to_string(), st));
    }
    out
}

/// What [`watch_lb`] saw: the state changes, and how many samples were taken / failed.
#[derive(Debug, Default)]
pub struct LbWatch {
    pub events: Vec<crate::drill::measure::LbEvent>,
    pub samples: usize,
    pub failed_samples: usize,
}

/// Samples the LB's server states every `every` until `stop` turns true or `limit` passes (bounded),
/// recording the first state of each server and every change after it, timed from `t0`.
pub async fn watch_lb(
    socket: std::path::PathBuf,
    backend: &'static str,
    t0: Instant,
    every: Duration,
    limit: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> LbWatch {
    let started = Instant::now();
    let mut w = LbWatch::default();
    let mut last: std::collections::BTreeMap<String, String> = Default::default();
    while !*stop.borrow() && started.elapsed() < limit {
        w.samples += 1;
        match lb_server_states(&socket, backend).await {
            Ok(states) => {
                let at = t0.elapsed();
                for (server, to) in states {
                    let from = last.get(&server).cloned();
                    if from.as_deref() != Some(to.as_str()) {
                        last.insert(server.clone(), to.clone());
                        w.events.push(crate::drill::measure::LbEvent { at, server, from, to });
                    }
                }
            }
            Err(_) => w.failed_samples += 1,
        }
        tokio::time::sleep(every).await;
    }
    w
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_states_from_show_stat() {
        let csv = "# pxname,svname,qcur,status,weight\nfe,FRONTEND,,OPEN,\nvault_active,node-a,0,UP,1\n\
                   vault_active,node-b,0,DOWN 1/2,1\nvault_active,node-c,0,UP 1/3,1\nvault_active,hold,0,no check,1\nvault_active,BACKEND,0,UP,1\n\
                   other,node-a,0,MAINT,1\n";
        assert_eq!(
            super::parse_server_states(csv, "vault_active"),
            [("node-a".into(), "UP".into()), ("node-b".into(), "DOWN".into()), ("node-c".into(), "UP".into())]
                as [(String, String); 3]
        );
    }
}
