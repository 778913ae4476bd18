//! `vaultnix step-down`: move leadership off the active node, drained at HAProxy first.
//!
//! OpenBao sometimes answers 204 and stays active (measured: 4 of 22 tries), so the leader change is
//! verified and the request retried, bounded.

use super::common::{find_active, resolve_token};
use crate::api::Cluster;
use crate::plan::Plan;
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct StepDownOptions {
    pub out: PathBuf,
    /// HAProxy's admin socket (drained/readied when reachable); None: skip.
    pub haproxy_socket: Option<PathBuf>,
    /// How many step-down requests at most.
    pub attempts: u32,
    /// How long to wait for another node to become active after each request.
    pub wait: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepDownReport {
    pub old_leader: String,
    pub new_leader: String,
    pub attempts: u32,
    pub drained: bool,
    /// How long it waited first, until no standby could still be in OpenBao's post-step-down pause (ms).
    pub paused_ms: u64,
}

pub async fn step_down(plan: &Plan, opts: &StepDownOptions) -> Result<StepDownReport> {
    let cluster = Cluster::from_out(plan, &opts.out)?;
    let active = find_active(&cluster).await.ok_or_else(|| {
        anyhow!("no node is active (every node answered something other than 200 on sys/health): nothing to step down")
    })?;
    let token = resolve_token(&active, &opts.out).await.ok_or_else(|| {
        anyhow!("step-down needs a token: secrets/admin-token, the root token in secrets/init.json, $BAO_TOKEN, or a cert login with flake/pki/admin.crt + secrets/admin.key")
    })?;
    let cluster = cluster.with_token(Some(token));
    // The drain, the verified step-down and the restore are shared with `vaultnix drill leader-stepdown
    // --drain`, which measures them (docs/failover.md).
    let socket = opts.haproxy_socket.as_deref().filter(|s| s.exists());
    let r = super::lb::planned_step_down(&cluster, &active.name, socket, opts.attempts as usize, opts.wait).await?;
    Ok(StepDownReport {
        old_leader: r.old_leader,
        new_leader: r.new_leader,
        attempts: r.attempts as u32,
        drained: !r.lb_commands.is_empty(),
        paused_ms: r.paused_ms,
    })
}
