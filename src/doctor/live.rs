//! Live checks (`doctor --live`): what the running cluster serves, against the plan.
//!
//! The API port is checked with a full TLS handshake that trusts only pki/ca.crt and verifies the node's
//! DNS name. The cluster port (8201) speaks OpenBao's own internal TLS: it serves a certificate from the
//! cluster's internal CA (not ours) and requires an ALPN protocol and a client certificate from that CA,
//! so the only honest check from outside is TCP reachability.

use super::{Finding, Report, Severity};
use crate::api::{Cluster, NodeState};
use crate::ops::common::{health_all, resolve_token};
use crate::plan::{sock, Plan};
use crate::render::paths;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The generated tree (pki/ca.crt, secrets/init.json or admin-token for a token).
    pub out: PathBuf,
    /// Where raft snapshots are written (the backup destination), when it is on this machine.
    pub snapshot_dir: Option<PathBuf>,
    /// Bound for each TCP connect.
    pub connect_timeout: Duration,
}

impl LiveOptions {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        LiveOptions { out: out.into(), snapshot_dir: None, connect_timeout: Duration::from_secs(3) }
    }
}

pub async fn live(plan: &Plan, o: &LiveOptions) -> Report {
    let mut r = Report::default();
    let cluster = match Cluster::from_out(plan, &o.out) {
        Ok(c) => c,
        Err(e) => {
            r.push(Finding::new(
                Severity::Error,
                "live",
                None,
                format!("cannot build API clients: {e:#}"),
                "run `vaultnix generate` first",
            ));
            return r;
        }
    };
    let local_certs: Vec<Option<Vec<u8>>> = plan.nodes.iter().map(|n| cert_der(&o.out, &n.name)).collect();

    // API: TLS handshake verified against the CA and the node's name, then health.
    let mut active = Vec::new();
    let mut up = 0usize;
    let mut cluster_ids: Vec<(String, String)> = Vec::new();
    for (i, (n, h)) in health_all(&cluster).await.into_iter().enumerate() {
        let node = Some(n.name.as_str());
        match h {
            Ok(h) => {
                if let Some(id) = h.body.cluster_id.as_ref().filter(|id| !id.is_empty()) {
                    cluster_ids.push((n.name.clone(), id.clone()));
                }
                r.push(Finding::ok(
                    "tls-api",
                    node,
                    format!("{} serves a certificate for {} signed by flake/pki/ca.crt", n.addr(), n.server_name),
                ));
                if let (Some(served), Some(Some(local))) = (&h.peer_cert, local_certs.get(i)) {
                    if served != local {
                        r.push(Finding::new(
                            Severity::Warning,
                            "tls-api",
                            node,
                            format!("{} serves a different certificate than flake/pki/{}.crt", n.addr(), n.name),
                            "deploy the current certificate; the listener reloads it (tls_auto_reload_interval or SIGHUP: `systemctl reload openbao`)",
                        ));
                    }
                }
                match h.state {
                    NodeState::Active | NodeState::Standby => {
                        up += 1;
                        if h.state == NodeState::Active {
                            active.push(n.name.clone());
                        }
                        r.push(Finding::ok("health", node, h.state.as_str()));
                    }
                    NodeState::Sealed => r.push(Finding::new(
                        Severity::Error,
                        "health",
                        node,
                        "sealed: it serves nothing and does not count towards failure tolerance",
                        "`vaultnix unseal` (keys from the key holders)",
                    )),
                    NodeState::Uninitialized => r.push(Finding::new(
                        Severity::Error,
                        "health",
                        node,
                        "not initialized (never joined the cluster)",
                        "`vaultnix bootstrap` (first start), or `vaultnix node replace` for a node that lost its data",
                    )),
                }
            }
            Err(e) if e.is_certificate() => r.push(Finding::new(
                Severity::Error,
                "tls-api",
                node,
                format!("TLS to {} as {} failed: {e}", n.addr(), n.server_name),
                "the node serves a certificate that does not match flake/pki/ca.crt or its name: deploy flake/pki/<node>.crt and the CA from the generated tree (`vaultnix doctor` offline checks the files)",
            )),
            Err(e) => r.push(Finding::new(
                Severity::Error,
                "health",
                node,
                format!("API unreachable: {e}"),
                "start the server (`systemctl start openbao`) and check the firewall/overlay between this machine and the node",
            )),
        }
    }
    if let Some(f) = cluster_id_finding(&cluster_ids) {
        r.push(f);
    }
    match active.len() {
        1 => r.push(Finding::ok("leader", active.first().map(String::as_str), "the active node")),
        0 => r.push(Finding::new(
            Severity::Error,
            "leader",
            None,
            format!("no active node ({up} of {} unsealed)", plan.nodes.len()),
            if up > 0 && up < plan.quorum.quorum {
                "fewer voters than the quorum are up: bring nodes back, or `vaultnix recover lost-quorum` (docs/recovery.md)"
            } else {
                "wait for the election (up to ~15 s at multiplier 5); if none comes, see docs/recovery.md"
            },
        )),
        _ => r.push(Finding::new(
            Severity::Error,
            "leader",
            None,
            format!("several nodes answer active: {}", active.join(", ")),
            "split brain: stop all but one and follow docs/recovery.md",
        )),
    }

    // Load balancer: the name clients use, through HAProxy.
    match cluster.lb.health().await {
        Ok(h) if h.state == NodeState::Active => r.push(Finding::ok(
            "tls-lb",
            None,
            format!("{} as {} reaches the active node", cluster.lb.addr(), cluster.lb.server_name),
        )),
        Ok(h) => r.push(Finding::new(
            Severity::Error,
            "tls-lb",
            None,
            format!("the load balancer answers {} instead of the active node", h.state.as_str()),
            "HAProxy must route to the node answering 200 on /v1/sys/health only: regenerate haproxy.cfg",
        )),
        Err(e) => r.push(Finding::new(
            Severity::Error,
            "tls-lb",
            None,
            format!("through the load balancer: {e}"),
            if e.is_certificate() {
                "every node certificate must include the LB hostname (`vaultnix doctor` offline)"
            } else {
                "start HAProxy; with no active node it has nowhere to route (see the leader finding)"
            },
        )),
    }

    // Cluster port: TCP reachability only (see the module comment).
    for n in &plan.nodes {
        let addr = SocketAddr::new(n.ip, plan.cluster_port);
        let node = Some(n.name.as_str());
        match tokio::time::timeout(o.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => r.push(Finding::ok(
                "cluster-port",
                node,
                format!("{} accepts TCP (its internal TLS is not checkable from outside)", sock(n.ip, plan.cluster_port)),
            )),
            Ok(Err(e)) => r.push(Finding::new(
                Severity::Error,
                "cluster-port",
                node,
                format!("cluster port {} unreachable: {e}", sock(n.ip, plan.cluster_port)),
                "raft and request forwarding use this port: start the server and open TCP 8201 between all nodes (firewall, overlay)",
            )),
            Err(_) => r.push(Finding::new(
                Severity::Error,
                "cluster-port",
                node,
                format!("cluster port {}: no answer within {:?}", sock(n.ip, plan.cluster_port), o.connect_timeout),
                "a firewall drops the packets or the overlay is down: open TCP 8201 between all nodes",
            )),
        }
    }

    raft_checks(plan, &cluster, o, &mut r).await;
    snapshot_check(plan, o, &mut r);
    r
}

async fn raft_checks(plan: &Plan, cluster: &Cluster, o: &LiveOptions, r: &mut Report) {
    let Some(active) = crate::ops::common::find_active(cluster).await else {
        r.push(Finding::new(
            Severity::Info,
            "raft-peers",
            None,
            "no active node: raft configuration and autopilot state not checked",
            "",
        ));
        return;
    };
    let Some(token) = resolve_token(&active, &o.out).await else {
        r.push(Finding::new(
            Severity::Info,
            "raft-peers",
            None,
            "no usable token (secrets/admin-token, secrets/init.json, $BAO_TOKEN): raft configuration and autopilot not checked",
            "export BAO_TOKEN with a token allowed to read sys/storage/raft/*",
        ));
        return;
    };
    let active = active.with_token(Some(token));
    match active.raft_configuration().await {
        Ok(cfg) => {
            let ids: BTreeSet<&str> = cfg.servers.iter().map(|s| s.node_id.as_str()).collect();
            let mut ok = true;
            for n in &plan.nodes {
                let node = Some(n.name.as_str());
                match cfg.servers.iter().find(|s| s.node_id == n.node_id) {
                    None => {
                        ok = false;
                        r.push(Finding::new(
                            Severity::Error,
                            "raft-peers",
                            node,
                            format!("{} is not in the raft configuration", n.node_id),
                            format!("`vaultnix node replace {}` (wipes its data and rejoins)", n.name),
                        ));
                    }
                    Some(s) => {
                        let want = sock(n.ip, plan.cluster_port);
                        if s.address != want {
                            ok = false;
                            r.push(Finding::new(
                                Severity::Warning,
                                "raft-peers",
                                node,
                                format!("raft knows {} at {}, the plan at {want}", n.node_id, s.address),
                                format!("`vaultnix node replace {}` to rejoin at the planned address", n.name),
                            ));
                        }
                        if s.voter != n.voter {
                            ok = false;
                            r.push(Finding::new(
                                Severity::Warning,
                                "raft-peers",
                                node,
                                format!(
                                    "{} is a {} in raft, a {} in the plan",
                                    n.node_id,
                                    if s.voter { "voter" } else { "non-voter" },
                                    if n.voter { "voter" } else { "non-voter" }
                                ),
                                "autopilot promotes healthy non-voters after server_stabilization_time; otherwise replace the node",
                            ));
                        }
                    }
                }
            }
            for s in &cfg.servers {
                if plan.nodes.iter().all(|n| n.node_id != s.node_id) {
                    ok = false;
                    r.push(Finding::new(
                        Severity::Warning,
                        "raft-peers",
                        None,
                        format!("raft has a peer {} ({}) that is not in the plan", s.node_id, s.address),
                        format!(
                            "if it is gone: `bao operator raft remove-peer {}`; if it should stay, add it to the spec",
                            s.node_id
                        ),
                    ));
                }
            }
            if ok {
                r.push(Finding::ok("raft-peers", None, format!("raft configuration = plan ({} peers)", ids.len())));
            }
        }
        Err(e) => r.push(Finding::new(
            Severity::Warning,
            "raft-peers",
            None,
            format!("cannot read the raft configuration: {e}"),
            "use a token allowed to read sys/storage/raft/configuration",
        )),
    }
    match active.autopilot_state().await {
        Ok(st) => {
            let dead: Vec<&str> = st
                .servers
                .values()
                .filter(|s| !s.healthy && st.voters.iter().any(|v| v == &s.id))
                .map(|s| s.id.as_str())
                .collect();
            let want = plan.quorum.tolerates as i64;
            if !dead.is_empty() {
                r.push(Finding::new(
                    if st.failure_tolerance <= 0 { Severity::Error } else { Severity::Warning },
                    "autopilot",
                    None,
                    format!(
                        "unhealthy voter(s) {}: failure tolerance is {} (the plan's {} voters tolerate {want})",
                        dead.join(", "),
                        st.failure_tolerance,
                        plan.quorum.voters
                    ),
                    "bring the node back (start, unseal) or `vaultnix node replace NAME`; a dead voter still counts towards the quorum",
                ));
            } else if st.failure_tolerance < want {
                r.push(Finding::new(
                    Severity::Warning,
                    "autopilot",
                    None,
                    format!("failure tolerance {} is below the plan's {want}", st.failure_tolerance),
                    "check `vaultnix status`: a node may still be a non-voter or missing",
                ));
            } else {
                r.push(Finding::ok("autopilot", None, format!("healthy; failure tolerance {}", st.failure_tolerance)));
            }
        }
        Err(e) => r.push(Finding::new(
            Severity::Warning,
            "autopilot",
            None,
            format!("cannot read the autopilot state: {e}"),
            "use a token allowed to read sys/storage/raft/autopilot/state",
        )),
    }
}

fn snapshot_check(plan: &Plan, o: &LiveOptions, r: &mut Report) {
    let Some(dir) = &o.snapshot_dir else {
        r.push(Finding::new(
            Severity::Info,
            "snapshot",
            None,
            format!(
                "time since the last snapshot not checked: snapshots live on the nodes ({}); the alert VaultnixBackupStale watches vaultnix_backup_last_success_timestamp_seconds",
                plan.backup.destination
            ),
            "pass --snapshot-dir DIR where snapshots are copied to check their age here",
        ));
        return;
    };
    let newest = std::fs::read_dir(dir).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
            .filter_map(|e| e.metadata().ok()?.modified().ok().map(|t| (t, e.path())))
            .max()
    });
    let limit_h = plan.monitoring.backup_max_age_hours as u64;
    match newest {
        None => r.push(Finding::new(
            Severity::Warning,
            "snapshot",
            None,
            format!("no *.snap file in {}", dir.display()),
            "take one now: `vaultnix snapshot save`; check the vaultnix-backup timer",
        )),
        Some((t, p)) => {
            let age = SystemTime::now().duration_since(t).unwrap_or_default();
            let hours = age.as_secs() / 3600;
            if age.as_secs() > limit_h * 3600 {
                r.push(Finding::new(
                    Severity::Warning,
                    "snapshot",
                    None,
                    format!("the newest snapshot {} is {hours} h old (limit {limit_h} h)", p.display()),
                    "`systemctl status vaultnix-backup` on the nodes; take one now with `vaultnix snapshot save`",
                ));
            } else {
                r.push(Finding::ok("snapshot", None, format!("newest snapshot {} is {hours} h old", p.display())));
            }
        }
    }
}

/// Nodes that report different cluster ids belong to different clusters: e.g. a self-init node
/// that came back with empty storage and initialized a second cluster instead of joining.
pub(crate) fn cluster_id_finding(ids: &[(String, String)]) -> Option<Finding> {
    let mut distinct: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() <= 1 {
        return None;
    }
    let by_id: Vec<String> = distinct
        .iter()
        .map(|id| {
            let nodes: Vec<&str> = ids.iter().filter(|(_, i)| i == id).map(|(n, _)| n.as_str()).collect();
            format!("{id}: {}", nodes.join(", "))
        })
        .collect();
    Some(Finding::new(
        Severity::Error,
        "cluster-id",
        None,
        format!("the nodes belong to {} different clusters ({})", distinct.len(), by_id.join("; ")),
        "a node initialized a cluster of its own: stop it, wipe its raft data and let it join (`vaultnix node replace <node>`)",
    ))
}

fn cert_der(out: &Path, node: &str) -> Option<Vec<u8>> {
    let pem = std::fs::read(out.join(paths::node_crt(node))).ok()?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    Some(p.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_cluster_ids_are_an_error() {
        let one = |n: &str, id: &str| (n.to_string(), id.to_string());
        assert!(cluster_id_finding(&[one("a", "x"), one("b", "x"), one("c", "x")]).is_none());
        assert!(cluster_id_finding(&[]).is_none());
        let f = cluster_id_finding(&[one("a", "x"), one("b", "y"), one("c", "x")]).expect("flagged");
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(f.check, "cluster-id");
        assert!(f.what.contains("x: a, c") && f.what.contains("y: b"), "{}", f.what);
    }
}
