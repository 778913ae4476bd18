//! `vaultnix step-down`: move leadership off the active node, drained at HAProxy first.
//!
//! OpenBao sometimes answers 204 and stays active (measured: 4 of 22 tries), so the leader change is
//! verified and the request retried, bounded.

use super::common::{find_active, health_all, poll, resolve_token};
use crate::api::{Cluster, NodeState};
use crate::plan::Plan;
use anyhow::{anyhow, bail, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
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
}

/// Sends one command to HAProxy's admin socket and returns its answer.
pub fn haproxy_command(socket: &Path, cmd: &str) -> Result<String> {
    let mut s = UnixStream::connect(socket).map_err(|e| anyhow!("HAProxy admin socket {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Ok(out.trim().to_string())
}

pub async fn step_down(plan: &Plan, opts: &StepDownOptions) -> Result<StepDownReport> {
    let cluster = Cluster::from_out(plan, &opts.out)?;
    let active = find_active(&cluster).await.ok_or_else(|| {
        anyhow!("no node is active (every node answered something other than 200 on sys/health): nothing to step down")
    })?;
    let token = resolve_token(&active, &opts.out).await.ok_or_else(|| {
        anyhow!("step-down needs a token: secrets/admin-token, the root token in secrets/init.json, $BAO_TOKEN, or a cert login with pki/admin.crt + secrets/admin.key")
    })?;
    let active = active.with_token(Some(token));
    let old = active.name.clone();

    let drained = match &opts.haproxy_socket {
        Some(sock) if sock.exists() => {
            let r = haproxy_command(sock, &format!("set server vault_active/{old} state drain"))?;
            if !r.is_empty() {
                bail!("HAProxy refused to drain {old}: {r}");
            }
            true
        }
        _ => false,
    };
    let result = async {
        for attempt in 1..=opts.attempts.max(1) {
            active.step_down().await?;
            let new = poll(opts.wait, Duration::from_millis(200), || async {
                health_all(&cluster).await.into_iter().find_map(|(n, h)| match h {
                    Ok(h) if h.state == NodeState::Active && n.name != old => Some(n.name.clone()),
                    _ => None,
                })
            })
            .await;
            if let Some(new) = new {
                return Ok((new, attempt));
            }
        }
        Err(anyhow!(
            "{old} is still the active node after {} step-down request(s) (OpenBao answered 204 but kept \
             leadership); try again in ~10 s",
            opts.attempts
        ))
    }
    .await;
    if drained {
        if let Some(sock) = &opts.haproxy_socket {
            // Back in rotation: as a standby it fails the health check and is not routed to anyway.
            let _ = haproxy_command(sock, &format!("set server vault_active/{old} state ready"));
        }
    }
    let (new_leader, attempts) = result?;
    Ok(StepDownReport { old_leader: old, new_leader, attempts, drained })
}
