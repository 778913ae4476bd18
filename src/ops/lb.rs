//! HAProxy's runtime API over its admin socket, and the planned step-down's LB choreography.
//!
//! With the tuned profile only the active node is UP, so "drain the active node" alone leaves HAProxy
//! without a server: every new connection fails until the new leader passes its check (measured: up
//! to 18 failed connects in one step-down). Instead, for the duration of a planned step-down the
//! standbys are forced UP (their check disabled): they forward requests to the active node, new
//! connections go to them, and the active node is drained and its sessions closed before it is asked
//! to step down. Afterwards every check is re-enabled and HAProxy converges on the new active node.
//! What is left (docs/failover.md): requests that reach a standby during the election itself (~0.5-1
//! s) are answered 307/500, and closing sessions can cut a request in flight.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one command and returns HAProxy's answer. Bounded by a 3 s timeout.
pub async fn command(socket: &Path, cmd: &str) -> Result<String> {
    let fut = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to the HAProxy admin socket {}", socket.display()))?;
        s.write_all(format!("{cmd}\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, anyhow::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(3), fut).await.context("HAProxy admin socket timed out")??;
    let t = out.trim();
    if t.starts_with("Unknown command") || t.contains("No such") || t.starts_with("Require") {
        bail!("HAProxy refused `{cmd}`: {t}");
    }
    Ok(out)
}

/// The operational state HAProxy reports for `backend/server` ("UP", "DOWN", "DRAIN", "MAINT", ...).
pub async fn server_state(socket: &Path, backend: &str, server: &str) -> Result<String> {
    let csv = command(socket, "show stat").await?;
    let mut header: Vec<&str> = Vec::new();
    for line in csv.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            header = h.split(',').collect();
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        if cols.first() == Some(&backend) && cols.get(1) == Some(&server) {
            let i = header.iter().position(|c| *c == "status").unwrap_or(17);
            return Ok(cols.get(i).map(|s| s.to_string()).unwrap_or_default());
        }
    }
    bail!("HAProxy has no server {backend}/{server}")
}

/// The backend name the renderer uses (render::haproxy).
pub const BACKEND: &str = "vault_active";

/// Before a planned step-down of `active`: standbys forced UP, `active` drained and its sessions closed.
/// Returns the commands sent (for reports).
pub async fn drain_for_step_down(socket: &Path, active: &str, standbys: &[String]) -> Result<Vec<String>> {
    let mut cmds = Vec::new();
    for s in standbys {
        cmds.push(format!("disable health {BACKEND}/{s}"));
        cmds.push(format!("set server {BACKEND}/{s} health up"));
    }
    cmds.push(format!("set server {BACKEND}/{active} state drain"));
    cmds.push(format!("shutdown sessions server {BACKEND}/{active}"));
    for c in &cmds {
        command(socket, c).await?;
    }
    Ok(cmds)
}

/// After the step-down: health checks back on for every node, the old leader back in rotation (as a
/// standby its check keeps it DOWN). Runs every command even if one fails; returns the first error.
pub async fn restore_after_step_down(socket: &Path, old: &str, standbys: &[String]) -> Result<()> {
    let mut cmds = vec![format!("set server {BACKEND}/{old} state ready")];
    for s in standbys {
        cmds.push(format!("enable health {BACKEND}/{s}"));
    }
    let mut first_err = None;
    for c in &cmds {
        if let Err(e) = command(socket, c).await {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedStepDown {
    pub old_leader: String,
    pub new_leader: String,
    /// Step-down requests sent.
    pub attempts: usize,
    /// Requests answered (204) while the node stayed active.
    pub ignored: usize,
    /// HAProxy commands sent before the step-down (empty without a socket).
    pub lb_commands: Vec<String>,
}

/// Planned step-down of the active node `active`: drained at HAProxy first when `socket` is given,
/// then `sys/step-down`, verifying that another node became active (OpenBao sometimes answers 204 and
/// stays active: retried up to `attempts` times, waiting up to `wait` each), then HAProxy restored. `c`
/// must carry a token.
pub async fn planned_step_down(
    c: &crate::api::Cluster,
    active: &str,
    socket: Option<&Path>,
    attempts: usize,
    wait: Duration,
) -> Result<PlannedStepDown> {
    let node = c.node(active).with_context(|| format!("no node {active:?}"))?;
    let standbys: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).filter(|n| n != active).collect();
    let lb_commands = match socket {
        Some(s) => drain_for_step_down(s, active, &standbys).await?,
        None => Vec::new(),
    };
    let result = async {
        for attempt in 1..=attempts.max(1) {
            node.step_down().await?;
            // The election takes ~0.5-2.5 s at multiplier 1 (measured); a step-down that was answered but
            // did nothing is told apart by waiting longer than that.
            let deadline = std::time::Instant::now() + wait;
            if let Ok(new) = crate::drill::probe::wait_active_other_than(c, Some(active), deadline).await {
                return Ok((new, attempt));
            }
        }
        bail!("{active} is still the active node after {attempts} step-down request(s) (answered 204 each time)")
    }
    .await;
    if let Some(s) = socket {
        let restored = restore_after_step_down(s, active, &standbys).await;
        if result.is_ok() {
            restored?;
        }
    }
    let (new_leader, n) = result?;
    Ok(PlannedStepDown { old_leader: active.to_string(), new_leader, attempts: n, ignored: n - 1, lb_commands })
}
