//! `vaultnix node replace NAME`: wipe a node's raft data and let it rejoin through retry_join.
//!
//! Used for nodes lost in a quorum loss (their old data holds a raft configuration that no longer
//! exists; starting them with it would disturb the recovered cluster) and for any node that was removed.
//! The node must rejoin empty: it then receives a snapshot from the leader, is unsealed, and autopilot
//! promotes it to voter after server_stabilization_time.

use super::{keys_or_default, Log, Target};
use crate::api::{Cluster, NodeClient};
use crate::ops::common::{find_active, poll, resolve_token};
use crate::ops::unseal::{unseal_node, Keys};
use crate::spec::SealKind;
use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ReplaceOptions {
    pub node: String,
    pub keys: Option<Keys>,
    /// Bound for each wait (join + unseal, promotion to voter).
    pub wait: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplaceReport {
    pub node: String,
    pub removed_peer: bool,
    pub wiped: bool,
    /// Real hosts: commands printed; the node has not rejoined yet.
    pub waiting_for_operator: bool,
    pub voter: bool,
    pub failure_tolerance: Option<i64>,
    pub seconds: f64,
}

pub async fn replace_node(t: &Target, o: &ReplaceOptions, log: Log<'_>) -> Result<ReplaceReport> {
    let start = Instant::now();
    let n = t.node(&o.node)?.clone();
    let cluster = Cluster::from_out(&t.plan, &t.out)?;
    let active = find_active(&cluster).await.ok_or_else(|| {
        anyhow!("no active node: the cluster has no leader to rejoin (`vaultnix recover lost-quorum` first)")
    })?;
    if active.name == n.name {
        bail!("{} is the active node: step it down first (`vaultnix step-down`), then replace it", n.name);
    }
    let token = resolve_token(&active, &t.out).await.ok_or_else(|| {
        anyhow!("no usable token (secrets/admin-token, secrets/init.json, $BAO_TOKEN) for raft remove-peer")
    })?;
    let active = active.with_token(Some(token));

    // Out of the raft configuration first, so the leader never counts the old server (or its stale
    // data) as a voter.
    let cfg = active.raft_configuration().await?;
    let removed_peer = cfg.servers.iter().any(|s| s.node_id == n.node_id);
    if removed_peer {
        active
            .call(Method::POST, "sys/storage/raft/remove-peer", Some(&json!({ "server_id": n.node_id })))
            .await
            .with_context(|| format!("removing {} from raft", n.node_id))?;
        log(&format!("removed {} from the raft configuration (via {})", n.node_id, active.name));
    }

    let data = t.data_dir(&n);
    let mut wiped = false;
    match &t.lab {
        Some(lab) => {
            if lab.stop(&n.name)? {
                log(&format!("stopped {}", n.name));
            }
            wipe_dir(&data)?;
            wiped = true;
            log(&format!("wiped {}", data.display()));
            let pid = lab.start(&n.name)?;
            log(&format!("started {} (pid {pid}); it rejoins through retry_join", n.name));
        }
        None => {
            let unit = t.unit();
            log(&format!("on {} ({}), run:", n.name, n.ip));
            log(&format!("  systemctl stop {unit}"));
            log(&format!("  find {} -mindepth 1 -delete    # the node's raft data: it rejoins empty", data.display()));
            log(&format!("  systemctl unmask --runtime {unit}; systemctl start {unit}"));
            log("waiting for it to answer (re-run this command once done if it times out)");
        }
    }

    let client = cluster.node(&n.name).cloned().ok_or_else(|| anyhow!("no client for {}", n.name))?;
    let reachable = poll(o.wait, Duration::from_millis(250), || async { client.health().await.ok() }).await;
    if reachable.is_none() {
        if t.is_lab() {
            bail!("{} did not answer within {:?} after starting", n.name, o.wait);
        }
        return Ok(ReplaceReport {
            node: n.name.clone(),
            removed_peer,
            wiped,
            waiting_for_operator: true,
            voter: false,
            failure_tolerance: None,
            seconds: start.elapsed().as_secs_f64(),
        });
    }

    match t.plan.seal.kind {
        SealKind::Shamir => {
            let keys = keys_or_default(o.keys.clone(), &t.out)?
                .ok_or_else(|| anyhow!("{} needs unseal keys: pass --keys-file, or run `vaultnix unseal`", n.name))?;
            let r = unseal_node(&client, &keys, o.wait).await?;
            log(&format!("unsealed {} ({r:?})", n.name));
        }
        _ => {
            poll(o.wait, Duration::from_millis(250), || async {
                client.seal_status().await.ok().filter(|s| s.initialized && !s.sealed)
            })
            .await
            .ok_or_else(|| anyhow!("{} did not auto-unseal within {:?}", n.name, o.wait))?;
        }
    }

    let (voter, ft) = wait_member(&cluster, &active, &n.node_id, n.voter, o.wait).await?;
    log(&format!(
        "{} is a healthy {} again; failure tolerance {ft}",
        n.name,
        if voter { "voter" } else { "non-voter" }
    ));
    Ok(ReplaceReport {
        node: n.name.clone(),
        removed_peer,
        wiped,
        waiting_for_operator: false,
        voter,
        failure_tolerance: Some(ft),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Waits until autopilot reports `id` healthy and (if `want_voter`) a voter. The leader may change
/// meanwhile, so the active node is looked up again on each round.
async fn wait_member(
    c: &Cluster,
    first: &NodeClient,
    id: &str,
    want_voter: bool,
    limit: Duration,
) -> Result<(bool, i64)> {
    let token = first.token().map(str::to_string);
    let found = poll(limit, Duration::from_millis(500), || {
        let token = token.clone();
        async move {
            let a = find_active(c).await?.with_token(token);
            let st = a.autopilot_state().await.ok()?;
            let s = st.servers.get(id)?;
            let voter = st.voters.iter().any(|v| v == id);
            (s.healthy && (voter || !want_voter)).then_some((voter, st.failure_tolerance))
        }
    })
    .await;
    found.ok_or_else(|| {
        anyhow!(
            "{id} did not become a healthy {} within {limit:?} (autopilot promotes after server_stabilization_time); check `vaultnix status`",
            if want_voter { "voter" } else { "member" }
        )
    })
}

/// Removes everything inside `dir` (not `dir` itself: on NixOS it is the unit's StateDirectory).
fn wipe_dir(dir: &std::path::Path) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            return Ok(());
        }
        Err(e) => return Err(anyhow!("cannot read {}: {e}", dir.display())),
    };
    for e in rd {
        let p = e?.path();
        if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }
            .with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(())
}
