//! Observing the cluster during a drill: who is active, is everyone unsealed, is a node a healthy voter.
//! Every wait here is bounded by a deadline and polls at a fixed interval.

use crate::plan::Plan;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The HTTPS client of a drill. It trusts only the cluster CA and never follows redirects: a 307 from
/// a standby is what a client behind the seed's round-robin LB would see, and counts as a failure.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub token: String,
}

impl Http {
    pub fn new(ca_pem: &[u8], token: String) -> Result<Http> {
        let ca = reqwest::Certificate::from_pem(ca_pem).context("cluster CA certificate")?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTPS client")?;
        Ok(Http { client, token })
    }
}

/// What `GET /v1/sys/health` said about one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Active,
    Standby,
    Sealed,
    Uninitialized,
    Down,
}

pub async fn health(http: &Http, url: &str) -> Health {
    let r = http.client.get(format!("{url}/v1/sys/health")).timeout(Duration::from_millis(800)).send().await;
    match r.map(|r| r.status().as_u16()) {
        Ok(200) => Health::Active,
        Ok(429) => Health::Standby,
        Ok(503) => Health::Sealed,
        Ok(501) => Health::Uninitialized,
        _ => Health::Down,
    }
}

/// The health of every node, in plan order.
pub async fn all_health(http: &Http, plan: &Plan) -> Vec<(String, Health)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        let (http, url) = (http.clone(), plan.api_url(n));
        set.spawn(async move { (i, health(&http, &url).await) });
    }
    let mut out: Vec<(String, Health)> = plan.nodes.iter().map(|n| (n.name.clone(), Health::Down)).collect();
    while let Some(r) = set.join_next().await {
        if let Ok((i, h)) = r {
            out[i].1 = h;
        }
    }
    out
}

/// The single active node, if exactly one answers 200.
pub async fn active(http: &Http, plan: &Plan) -> Option<String> {
    let h = all_health(http, plan).await;
    let mut act = h.into_iter().filter(|(_, h)| *h == Health::Active).map(|(n, _)| n);
    match (act.next(), act.next()) {
        (Some(a), None) => Some(a),
        _ => None,
    }
}

/// Polls until a node other than `not` is the single active node; returns its name.
pub async fn wait_active_other_than(http: &Http, plan: &Plan, not: Option<&str>, deadline: Instant) -> Result<String> {
    loop {
        if let Some(a) = active(http, plan).await {
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

/// Autopilot's view: for each server id, (healthy, status).
pub async fn autopilot(http: &Http, url: &str) -> Result<Vec<(String, bool, String)>> {
    let r = http
        .client
        .get(format!("{url}/v1/sys/storage/raft/autopilot/state"))
        .header("X-Vault-Token", &http.token)
        .timeout(Duration::from_secs(2))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("autopilot state: HTTP {}", r.status());
    }
    let v: Value = r.json().await?;
    let servers = v
        .pointer("/data/servers")
        .or_else(|| v.get("servers"))
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("autopilot state without servers"))?;
    Ok(servers
        .iter()
        .map(|(id, s)| {
            (
                id.clone(),
                s.get("healthy").and_then(Value::as_bool).unwrap_or(false),
                s.get("status").and_then(Value::as_str).unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// Autopilot reports the leader as "leader", other voters as "voter" (non-voters "non-voter").
fn is_voter(status: &str) -> bool {
    status == "voter" || status == "leader"
}

/// True when every voter of the plan is a healthy voter in autopilot, asked of the active node.
pub async fn all_voters_healthy(http: &Http, plan: &Plan) -> bool {
    let Some(a) = active(http, plan).await else { return false };
    let Some(n) = plan.node(&a) else { return false };
    let Ok(servers) = autopilot(http, &plan.api_url(n)).await else { return false };
    plan.voters().all(|v| servers.iter().any(|(id, healthy, status)| *id == v.node_id && *healthy && is_voter(status)))
}

/// True when `node` is a healthy voter in autopilot (asked of the active node) and unsealed.
pub async fn healthy_voter(http: &Http, plan: &Plan, node: &str) -> bool {
    let Some(a) = active(http, plan).await else { return false };
    let (Some(an), Some(n)) = (plan.node(&a), plan.node(node)) else { return false };
    let Ok(servers) = autopilot(http, &plan.api_url(an)).await else { return false };
    servers.iter().any(|(id, healthy, status)| *id == n.node_id && *healthy && is_voter(status))
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
