//! `vaultnix status`: what every node reports, the raft peers and autopilot's view.

use super::common::{health_all, resolve_token};
use crate::api::{Cluster, NodeState};
use crate::plan::Plan;
use crate::render::paths;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub reachable: bool,
    /// Why it could not be asked (unreachable, TLS problem), with its address.
    pub error: Option<String>,
    pub initialized: Option<bool>,
    pub sealed: Option<bool>,
    /// active | standby | sealed | uninitialized
    pub state: Option<NodeState>,
    pub raft_applied_index: Option<u64>,
    pub version: Option<String>,
    /// Days left on the certificate the node served on this connection.
    pub cert_days_left: Option<i64>,
    /// The cluster id the node reports (sys/health); differing ids are flagged in `warnings`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub node_id: String,
    pub address: String,
    pub voter: bool,
    pub leader: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AutopilotSummary {
    pub healthy: bool,
    pub failure_tolerance: i64,
    pub voters: Vec<String>,
    pub healthy_voters: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub nodes: Vec<NodeStatus>,
    pub peers: Option<Vec<Peer>>,
    pub autopilot: Option<AutopilotSummary>,
    /// Why peers/autopilot are missing (no token, no active node).
    pub notes: Vec<String>,
    /// Days left on the cluster CA (pki/ca.crt).
    pub ca_days_left: Option<i64>,
    /// Certificates close to expiry (the same thresholds as the alerts).
    pub warnings: Vec<String>,
}

impl ClusterStatus {
    pub fn count(&self, s: NodeState) -> usize {
        self.nodes.iter().filter(|n| n.state == Some(s)).count()
    }
    pub fn voters(&self) -> usize {
        self.peers.as_ref().map(|p| p.iter().filter(|p| p.voter).count()).unwrap_or(0)
    }
}

/// Collects the status. Never fails because a node is down: that is what it reports.
pub async fn status(plan: &Plan, out: &Path) -> Result<ClusterStatus> {
    let cluster = Cluster::from_out(plan, out)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut nodes = Vec::new();
    let mut active = None;
    for (n, h) in health_all(&cluster).await {
        let mut s = NodeStatus {
            name: n.name.clone(),
            address: n.addr(),
            reachable: false,
            error: None,
            initialized: None,
            sealed: None,
            state: None,
            raft_applied_index: None,
            version: None,
            cert_days_left: None,
            cluster_id: None,
        };
        match h {
            Ok(h) => {
                s.reachable = true;
                s.initialized = Some(h.body.initialized);
                s.sealed = Some(h.body.sealed);
                s.state = Some(h.state);
                s.version = Some(h.body.version.clone()).filter(|v| !v.is_empty());
                s.cluster_id = h.body.cluster_id.clone().filter(|id| !id.is_empty());
                s.cert_days_left = h.peer_cert.as_deref().and_then(|der| days_left(der, now));
                if h.state.is_up() {
                    s.raft_applied_index = n.leader().await.ok().map(|l| l.raft_applied_index);
                }
                if h.state == NodeState::Active {
                    active = Some(n.clone());
                }
            }
            Err(e) => s.error = Some(e.to_string()),
        }
        nodes.push(s);
    }
    let ca_days_left = std::fs::read_to_string(out.join(paths::CA_CRT))
        .ok()
        .and_then(|pem| crate::pki::inspect(&pem).ok())
        .map(|i| i.days_left(now));
    let mut warnings = expiry_warnings(plan, &nodes, ca_days_left);
    warnings.extend(cluster_id_warning(&nodes));
    let mut st = ClusterStatus {
        cluster: plan.name.clone(),
        nodes,
        peers: None,
        autopilot: None,
        notes: Vec::new(),
        ca_days_left,
        warnings,
    };
    let Some(active) = active else {
        st.notes.push("no active node: raft peers and autopilot unavailable".into());
        return Ok(st);
    };
    let Some(token) = resolve_token(&active, out).await else {
        st.notes.push(
            "no token (secrets/admin-token, secrets/init.json, $BAO_TOKEN, or the operator certificate flake/pki/admin.crt): raft peers and autopilot skipped".into(),
        );
        return Ok(st);
    };
    let active = active.with_token(Some(token));
    match active.raft_configuration().await {
        Ok(c) => {
            st.peers = Some(
                c.servers
                    .into_iter()
                    .map(|s| Peer { node_id: s.node_id, address: s.address, voter: s.voter, leader: s.leader })
                    .collect(),
            )
        }
        Err(e) => st.notes.push(format!("raft configuration: {e}")),
    }
    match active.autopilot_state().await {
        Ok(a) => {
            st.autopilot = Some(AutopilotSummary {
                healthy: a.healthy,
                failure_tolerance: a.failure_tolerance,
                healthy_voters: a.healthy_voters(),
                voters: a.voters,
            })
        }
        Err(e) => st.notes.push(format!("autopilot state: {e}")),
    }
    Ok(st)
}

/// Warnings for certificates inside the alert windows (monitoring.cert_expiry_days for node
/// certificates, four times that for the CA — as in alerts.yml).
pub fn expiry_warnings(plan: &Plan, nodes: &[NodeStatus], ca_days_left: Option<i64>) -> Vec<String> {
    let node_days = plan.monitoring.cert_expiry_days as i64;
    let mut w = Vec::new();
    for n in nodes {
        if let Some(d) = n.cert_days_left {
            if d < node_days {
                w.push(format!("{}: certificate expires in {d} day(s): `vaultnix certs renew`", n.name));
            }
        }
    }
    if let Some(d) = ca_days_left {
        if d < node_days * 4 {
            w.push(format!("the cluster CA expires in {d} day(s): plan `vaultnix generate --rotate-ca`"));
        }
    }
    w
}

fn days_left(der: &[u8], now: i64) -> Option<i64> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((c.validity().not_after.timestamp() - now).div_euclid(86400))
}

/// Nodes reporting different cluster ids belong to different clusters (e.g. a self-init node that
/// came back empty and initialized its own): the same check as `doctor --live`.
pub fn cluster_id_warning(nodes: &[NodeStatus]) -> Option<String> {
    let ids: Vec<(String, String)> =
        nodes.iter().filter_map(|n| Some((n.name.clone(), n.cluster_id.clone()?))).collect();
    crate::doctor::live::cluster_id_finding(&ids).map(|f| format!("{}; {}", f.what, f.fix))
}

/// The text table `vaultnix status` prints.
pub fn render_text(st: &ClusterStatus) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "cluster {:?}", st.cluster);
    let _ = writeln!(
        s,
        "{:<12} {:<26} {:<14} {:>8} {:<10} {:>9}",
        "NODE", "ADDRESS", "STATE", "APPLIED", "VERSION", "CERT DAYS"
    );
    for n in &st.nodes {
        let state = match (&n.state, &n.error) {
            (Some(s), _) => s.as_str().to_string(),
            (None, _) => "unreachable".into(),
        };
        let _ = writeln!(
            s,
            "{:<12} {:<26} {:<14} {:>8} {:<10} {:>9}",
            n.name,
            n.address,
            state,
            n.raft_applied_index.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            n.version.clone().unwrap_or_else(|| "-".into()),
            n.cert_days_left.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
        );
        if let Some(e) = &n.error {
            let _ = writeln!(s, "  ! {e}");
        }
    }
    if let Some(peers) = &st.peers {
        let _ = writeln!(s, "raft peers:");
        for p in peers {
            let _ = writeln!(
                s,
                "  {:<12} {:<24} {}{}",
                p.node_id,
                p.address,
                if p.voter { "voter" } else { "non-voter" },
                if p.leader { ", leader" } else { "" }
            );
        }
    }
    if let Some(a) = &st.autopilot {
        let _ = writeln!(
            s,
            "autopilot: {}, failure tolerance {}, {} healthy voter(s) of {}",
            if a.healthy { "healthy" } else { "UNHEALTHY" },
            a.failure_tolerance,
            a.healthy_voters,
            a.voters.len()
        );
    }
    if let Some(d) = st.ca_days_left {
        let _ = writeln!(s, "CA: {d} day(s) left");
    }
    for w in &st.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for n in &st.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn warns_inside_the_alert_windows() {
        let plan = Plan::from_loaded(&crate::spec::example()); // cert_expiry_days = 21
        let node = |name: &str, d: Option<i64>| NodeStatus {
            name: name.into(),
            address: String::new(),
            reachable: true,
            error: None,
            initialized: None,
            sealed: None,
            state: None,
            raft_applied_index: None,
            version: None,
            cert_days_left: d,
            cluster_id: None,
        };
        let nodes = [node("a", Some(20)), node("b", Some(21)), node("c", None)];
        let w = expiry_warnings(&plan, &nodes, Some(83));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("a: certificate expires in 20"));
        assert!(w[1].contains("CA expires in 83"));
        assert!(expiry_warnings(&plan, &nodes[1..], Some(84)).is_empty());
    }

    #[test]
    fn differing_cluster_ids_are_flagged() {
        let node = |name: &str, id: Option<&str>| NodeStatus {
            name: name.into(),
            address: String::new(),
            reachable: true,
            error: None,
            initialized: None,
            sealed: None,
            state: None,
            raft_applied_index: None,
            version: None,
            cert_days_left: None,
            cluster_id: id.map(str::to_string),
        };
        let same = [node("a", Some("x")), node("b", Some("x")), node("c", None)];
        assert!(cluster_id_warning(&same).is_none());
        let split = [node("a", Some("x")), node("b", Some("y")), node("c", Some("x"))];
        let w = cluster_id_warning(&split).expect("flagged");
        assert!(w.contains("2 different clusters") && w.contains("y: b"), "{w}");
    }
}
