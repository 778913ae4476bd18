//! HAProxy's runtime API over its admin socket, and the planned step-down's LB choreography.
//!
//! With the tuned profile only the active node is UP, so "drain the active node" leaves HAProxy without
//! a server until the new leader passes its check. The rendered frontend holds new connections during
//! that window (Lua `wait_for_server`, bounded), so the drain is: the active node drained and its
//! sessions closed, step-down, wait for the new leader. (Forcing the standbys UP instead, as before,
//! made them answer 307 during the election: docs/failover.md.) What is left: closing the old leader's
//! sessions can cut a request in flight (ambiguous); passthrough cannot see request boundaries.

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
    stat_field(socket, backend, server, "status").await
}

/// One column of `show stat` for `backend/server` ("status", "scur", "mode", ...).
pub async fn stat_field(socket: &Path, backend: &str, server: &str, field: &str) -> Result<String> {
    let csv = command(socket, "show stat").await?;
    let mut header: Vec<&str> = Vec::new();
    for line in csv.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            header = h.split(',').collect();
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        if cols.first() == Some(&backend) && cols.get(1) == Some(&server) {
            let i = header.iter().position(|c| *c == field).with_context(|| format!("`show stat` has no {field}"))?;
            return Ok(cols.get(i).map(|s| s.to_string()).unwrap_or_default());
        }
    }
    bail!("HAProxy has no server {backend}/{server}")
}

/// The backend name the renderer uses (render::haproxy).
pub const BACKEND: &str = "vault_active";

/// Before a planned step-down of `active`: `active` drained and its sessions closed. The standbys are
/// NOT forced UP (measured, docs/failover.md: during the election they answer writes 307, which no
/// HAProxy can retry); instead HAProxy holds new connections while no server is UP (the rendered
/// `wait_for_server` Lua action) until the new leader passes its check. Returns the commands sent.
///
/// In `mode http` (`load_balancer.mode = "terminate"`) HAProxy picks a server per request, so the drain
/// alone moves the next request; the requests already on the old leader are left to finish (its
/// current sessions reach 0, bounded by 3 s) instead of being cut.
pub async fn drain_for_step_down(socket: &Path, active: &str, _standbys: &[String]) -> Result<Vec<String>> {
    let drain = format!("set server {BACKEND}/{active} state drain");
    command(socket, &drain).await?;
    if stat_field(socket, BACKEND, active, "mode").await? == "http" {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if stat_field(socket, BACKEND, active, "scur").await?.trim() == "0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        return Ok(vec![drain, format!("(waited for {BACKEND}/{active}'s requests in flight to finish)")]);
    }
    let shut = format!("shutdown sessions server {BACKEND}/{active}");
    command(socket, &shut).await?;
    Ok(vec![drain, shut])
}

/// After the step-down: the old leader back in rotation, but only once its own check has marked it
/// DOWN (bounded by `limit`). Readied earlier, it still counts as UP, and the connections HAProxy was
/// holding are released to it: it answers 500 "local node not active" (measured: 6 in one trial).
pub async fn restore_after_step_down(socket: &Path, old: &str, _standbys: &[String]) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match server_state(socket, BACKEND, old).await {
            Ok(st) if st.starts_with("DOWN") || st.starts_with("MAINT") => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    command(socket, &format!("set server {BACKEND}/{old} state ready")).await.map(|_| ())
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
    /// How long it waited first for [`STEP_DOWN_PAUSE`] (ms).
    pub paused_ms: u64,
}

/// OpenBao's (and Vault's) `manualStepDownSleepPeriod`: after `sys/step-down` a node waits this long
/// before it competes for the HA lock again (internal/vault/ha.go, waitForLeadership). Raft's
/// leadership transfer at the next step-down may pick that node: the cluster then has a raft leader
/// that cannot become active until its pause ends. Measured on the built-in example: step-downs 8 s
/// apart took 2.7-2.8 s whenever raft picked the node that had stepped down before, 0.6-1.3 s otherwise.
pub const STEP_DOWN_PAUSE: Duration = Duration::from_secs(10);

/// How long to wait before stepping `active` down so that no standby is still in the pause of the
/// step-down that made `active` active: until it has been active for [`STEP_DOWN_PAUSE`] plus 0.5 s.
/// `active_time` is its `sys/leader` `active_time` (RFC 3339); unknown or unreadable: no wait.
pub fn step_down_pause_left(active_time: Option<&str>, now: std::time::SystemTime) -> Duration {
    let Some(t) =
        active_time.and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
    else {
        return Duration::ZERO;
    };
    let now = time::OffsetDateTime::from(now);
    let need = STEP_DOWN_PAUSE + Duration::from_millis(500);
    match (now - t).try_into() {
        Ok(since) => need.saturating_sub(since),
        // A time in the future (clock skew between hosts): at most one whole pause.
        Err(_) => need,
    }
}

/// Waits out [`step_down_pause_left`] for `node` (the active node), read from its `sys/leader`.
/// Returns how long it waited.
pub async fn wait_step_down_pause(node: &crate::api::NodeClient) -> Duration {
    let Ok(l) = node.leader().await else { return Duration::ZERO };
    if !l.is_self {
        return Duration::ZERO;
    }
    let left = step_down_pause_left(l.active_time.as_deref(), std::time::SystemTime::now());
    tokio::time::sleep(left).await;
    left
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
    // Before the drain: a drained active node with no other server UP makes the LB hold every request.
    let paused = wait_step_down_pause(node).await;
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
    Ok(PlannedStepDown {
        old_leader: active.to_string(),
        new_leader,
        attempts: n,
        ignored: n - 1,
        lb_commands,
        paused_ms: paused.as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn a_step_down_waits_out_the_pause_of_the_one_before() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let at = |secs_ago: f64| {
            let t = time::OffsetDateTime::from(now) - time::Duration::seconds_f64(secs_ago);
            t.format(&time::format_description::well_known::Rfc3339).unwrap()
        };
        // Active for 3.25 s (OpenBao writes nanoseconds): 7.25 s of the pause and the 0.5 s slack left.
        assert_eq!(step_down_pause_left(Some(&at(3.25)), now), Duration::from_millis(7_250));
        assert_eq!(step_down_pause_left(Some(&at(60.0)), now), Duration::ZERO);
        assert_eq!(step_down_pause_left(Some("2026-12-03T14:21:58.322338036Z"), SystemTime::now()), Duration::ZERO);
        // Unknown: no wait; in the future (skew): one pause at most.
        assert_eq!(step_down_pause_left(None, now), Duration::ZERO);
        assert_eq!(step_down_pause_left(Some("yesterday"), now), Duration::ZERO);
        assert_eq!(step_down_pause_left(Some(&at(-5.0)), now), STEP_DOWN_PAUSE + Duration::from_millis(500));
    }
}
