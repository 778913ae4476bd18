//! `vaultnix node drain --config nodes/<node>.drain.json`: the server unit's `ExecStop` (modules/node.nix)
//! and the lab's node stop run this before bao gets SIGTERM, so that stopping (or rebooting) the active
//! node is a planned step-down: step down (verified, retried), wait until another node is active, wait
//! out the load balancer's health-check fall window, then return so the process is stopped.
//!
//! A node that is not active returns at once. Bounded everywhere (`timeout_seconds` overall); it never
//! blocks a stop forever and never fails it: the caller reports an error and stops anyway.

use crate::api::NodeClient;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `nodes/<node>.drain.json`: public data only (addresses, paths, timings); the token is a path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    pub format: u32,
    pub cluster: String,
    /// The node this config is for (the one being stopped).
    pub node: String,
    /// Every server, this host's first.
    pub nodes: Vec<DrainNode>,
    pub ca_file: String,
    /// A token allowed only `sys/step-down` (`vaultnix bootstrap --drain-token`, policy vaultnix-drain).
    pub token_file: String,
    /// How long the load balancer takes to mark the old leader down after it stepped down (its health
    /// check: inter + fall x fastinter of the rendered HAProxy profile).
    pub lb_fall_window_ms: u64,
    pub step_down_attempts: u32,
    /// How long to wait for another node to become active after each step-down request.
    pub step_down_wait_ms: u64,
    /// The whole drain, at most (below the unit's TimeoutStopSec).
    pub timeout_seconds: u64,
    /// The drain agent HAProxy polls on this node (ops::agent): the node is drained at the LB through
    /// it before it steps down. The same on NixOS (the LB is another host) and in the lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::ops::agent::AgentConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrainNode {
    pub name: String,
    /// The TLS name verified (the node's fqdn).
    pub server_name: String,
    pub ip: IpAddr,
    pub port: u16,
}

/// The drain token's policy. OpenBao's `sys/step-down` is an update that needs root privileges
/// (vault/ha.go `StepDown` checks `RootPrivs`): `sudo` with `update`, nothing else.
pub const DRAIN_POLICY: &str = r#"# vaultnix node drain: step-down only (created by `vaultnix bootstrap --drain-token`).
path "sys/step-down" {
  capabilities = ["update", "sudo"]
}
"#;
pub const DRAIN_POLICY_NAME: &str = "vaultnix-drain";
/// LoadCredential name of the token in the server unit (modules/node.nix).
pub const DRAIN_TOKEN: &str = "drain-token";

pub fn drain_token_path(out: &Path) -> PathBuf {
    out.join("secrets").join(DRAIN_TOKEN)
}

pub fn load_config(path: &Path) -> Result<DrainConfig> {
    let t = fs::read_to_string(path).with_context(|| format!("cannot read the drain config {}", path.display()))?;
    let c: DrainConfig =
        serde_json::from_str(&t).with_context(|| format!("{}: not a vaultnix drain config", path.display()))?;
    if c.format != 1 {
        bail!("{}: format {} is not supported (expected 1)", path.display(), c.format);
    }
    if !c.nodes.iter().any(|n| n.name == c.node) {
        bail!("{}: node {:?} is not in its own nodes list", path.display(), c.node);
    }
    Ok(c)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DrainReport {
    /// This node was not the active node: nothing to do.
    NotActive { node: String, state: String },
    /// This node is active but no other node is an unsealed standby: stepping down would leave no leader.
    NoStandby { node: String },
    /// Leadership moved. `lb_drained`: the LB took the node out of rotation (through the agent) before
    /// the step-down; otherwise its fall window was waited out after it.
    SteppedDown { node: String, new_leader: String, attempts: u32, seconds: f64, lb_drained: bool },
}

impl std::fmt::Display for DrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainReport::NotActive { node, state } => write!(f, "{node} is not active ({state}): nothing to drain"),
            DrainReport::NoStandby { node } => {
                write!(f, "{node} is active but no other node is an unsealed standby: stopping without a step-down")
            }
            DrainReport::SteppedDown { node, new_leader, attempts, seconds, lb_drained } => write!(
                f,
                "{node} stepped down (attempt {attempts}); {new_leader} is active; {}; {seconds:.1} s",
                if *lb_drained {
                    "drained at the LB first (agent)"
                } else {
                    "the LB never polled the drain agent: its fall window waited"
                }
            ),
        }
    }
}

fn clients(c: &DrainConfig, token: Option<String>) -> Result<Vec<NodeClient>> {
    let ca = fs::read(&c.ca_file).with_context(|| format!("cannot read the CA certificate {}", c.ca_file))?;
    c.nodes
        .iter()
        .map(|n| {
            Ok(NodeClient::new(&n.name, &n.server_name, n.ip, n.port, &ca)?
                .with_token(token.clone())
                .with_timeout(Duration::from_secs(5)))
        })
        .collect()
}

async fn active_of(nodes: &[NodeClient]) -> Option<String> {
    for n in nodes {
        if let Ok(h) = n.health().await {
            if h.state == crate::api::NodeState::Active {
                return Some(n.name.clone());
            }
        }
    }
    None
}

/// The drain of the server process `pid` (when known); bounded by `timeout_seconds`.
pub async fn drain(c: &DrainConfig, pid: Option<u32>) -> Result<DrainReport> {
    let limit = Duration::from_secs(c.timeout_seconds.max(1));
    tokio::time::timeout(limit, drain_inner(c, pid))
        .await
        .map_err(|_| anyhow!("the drain of {} did not finish within {limit:?}", c.node))?
}

async fn drain_inner(c: &DrainConfig, pid: Option<u32>) -> Result<DrainReport> {
    let t0 = Instant::now();
    let nodes = clients(c, None)?;
    let me = nodes.iter().find(|n| n.name == c.node).ok_or_else(|| anyhow!("no node {}", c.node))?;
    let state = match me.health().await {
        Ok(h) => h.state,
        Err(e) => return Ok(DrainReport::NotActive { node: c.node.clone(), state: format!("no answer: {e}") }),
    };
    if state != crate::api::NodeState::Active {
        return Ok(DrainReport::NotActive { node: c.node.clone(), state: state.as_str().to_string() });
    }
    let mut standby = false;
    for n in nodes.iter().filter(|n| n.name != c.node) {
        if matches!(n.health().await, Ok(h) if h.state == crate::api::NodeState::Standby) {
            standby = true;
        }
    }
    if !standby {
        return Ok(DrainReport::NoStandby { node: c.node.clone() });
    }
    let token = crate::ops::backup::read_token(Path::new(&c.token_file))
        .map_err(|_| anyhow!("cannot read the drain token {} (vaultnix bootstrap --drain-token)", c.token_file))?;
    let me = me.clone().with_token(Some(token)).with_timeout(Duration::from_secs(10));
    // Not while a standby may still be in the pause of the step-down that made this node active.
    crate::ops::lb::wait_step_down_pause(&me).await;
    let lb_drained = match &c.agent {
        Some(a) => drain_at_lb(a, pid).await?,
        None => false,
    };
    step_down_verified(c, &me, &nodes, t0, lb_drained).await
}

/// Through the agent: `down` until HAProxy has fetched it `fall` + 1 times (the node is out of
/// rotation; with no other server UP the frontend holds new work; passthrough closes the node's
/// sessions, terminate lets requests in flight finish). True when the LB confirmed it; false when no
/// LB polled the agent within the bound.
async fn drain_at_lb(a: &crate::ops::agent::AgentConfig, pid: Option<u32>) -> Result<bool> {
    use crate::ops::agent::{set, wait_answered};
    let Some(pid) = pid else {
        bail!("the server's pid is unknown ($MAINPID, --pid): the drain agent drains only a process that runs")
    };
    // A poll can take one agent-inter to come plus one to be applied; a second of slack for a busy LB.
    let poll = |times: u64| Duration::from_millis(a.inter_ms * (times + 2) + 1000);
    set(a, "down", pid).await?;
    let fall = u64::from(a.fall.max(1));
    // HAProxy applies the last answer when it gets it; one more poll is its proof.
    Ok(wait_answered(a, "down", fall + 1, poll(fall + 1)).await)
}

async fn step_down_verified(
    c: &DrainConfig,
    me: &NodeClient,
    nodes: &[NodeClient],
    t0: Instant,
    lb_drained: bool,
) -> Result<DrainReport> {
    let wait = Duration::from_millis(c.step_down_wait_ms.max(100));
    for attempt in 1..=c.step_down_attempts.max(1) {
        me.step_down().await.map_err(|e| anyhow!("step-down on {}: {e}", c.node))?;
        // OpenBao sometimes answers 204 and stays active (ops/lb.rs): verify, retry.
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(a) = active_of(nodes).await {
                if a != c.node {
                    if !lb_drained {
                        // The LB still routes to this node until its health check fails `fall` times.
                        tokio::time::sleep(Duration::from_millis(c.lb_fall_window_ms)).await;
                    }
                    return Ok(DrainReport::SteppedDown {
                        node: c.node.clone(),
                        new_leader: a,
                        attempts: attempt,
                        seconds: t0.elapsed().as_secs_f64(),
                        lb_drained,
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    bail!("{} is still the active node after {} step-down request(s)", c.node, c.step_down_attempts)
}

/// The drain token's path for this process: `$CREDENTIALS_DIRECTORY/drain-token` when systemd passed
/// it to this unit (the renewal timer's own credential), else the config's `token_file`.
fn token_path(c: &DrainConfig) -> PathBuf {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(d) if Path::new(&d).join(DRAIN_TOKEN).is_file() => Path::new(&d).join(DRAIN_TOKEN),
        _ => PathBuf::from(&c.token_file),
    }
}

/// `vaultnix node drain --renew-token` (the daily `vaultnix-drain-token-renew` timer): the drain token
/// is periodic (768 h) and only a stop of the active node uses it, so without this it would expire
/// on a node that was not active at a stop for 32 days, and that node's next stop would be undrained.
/// Renews it on the first node that answers; returns (node, new TTL in seconds). Fails loudly.
pub async fn renew_token(c: &DrainConfig) -> Result<(String, u64)> {
    let path = token_path(c);
    let token = crate::ops::backup::read_token(&path)
        .map_err(|_| anyhow!("cannot read the drain token {} (vaultnix bootstrap --drain-token)", path.display()))?;
    let mut errors = Vec::new();
    for n in clients(c, Some(token))? {
        match n.renew_self().await {
            Ok(ttl) if ttl > 0 => return Ok((n.name.clone(), ttl)),
            Ok(_) => errors.push(format!("{}: renewed without a TTL", n.name)),
            Err(e) => errors.push(format!("{}: {e}", n.name)),
        }
    }
    bail!("the drain token was not renewed: {}", errors.join("; "))
}

/// Runs the drain and never fails: what the stop path calls. Returns the line to log.
pub fn drain_for_stop(config: &Path, pid: Option<u32>) -> String {
    crate::api::block_on(drain_for_stop_async(config, pid))
}

pub async fn drain_for_stop_async(config: &Path, pid: Option<u32>) -> String {
    let r = match load_config(config) {
        Ok(c) => drain(&c, pid).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(r) => r.to_string(),
        Err(e) => format!("drain failed, stopping anyway: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_allows_only_step_down() {
        assert_eq!(DRAIN_POLICY.matches("path ").count(), 1);
        assert!(DRAIN_POLICY.contains(r#"path "sys/step-down""#));
        assert!(DRAIN_POLICY.contains(r#"["update", "sudo"]"#));
    }
}
