//! The drill's client: writes unique keys through the load balancer at a fixed rate and records what it
//! was told, then reads every key back. Open loop (a slow answer does not delay the next send, as with
//! real independent clients), bounded by a request count, a duration and a cap on requests in flight.

use super::checker::{Op, Outcome, ReadBack};
use super::measure::{Kind, Request};
use crate::api::{ErrorKind, NodeClient};
use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// The KV v1 mount the drill writes to (enabled by [`ensure_mount`]).
pub const MOUNT: &str = "vaultnix-drill";

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Keys are `<prefix>/<seq>`.
    pub prefix: String,
    pub rate_hz: f64,
    pub timeout: Duration,
    pub max_in_flight: usize,
    /// Hard bounds: the writer stops by itself after either.
    pub max_requests: usize,
    pub max_duration: Duration,
}

/// What the request tasks record: the history, the timeline, and failure reasons.
type Recorded = (Vec<Op>, Vec<Request>, BTreeMap<String, usize>);

pub struct Writer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<WriterResult>,
}

#[derive(Debug, Default)]
pub struct WriterResult {
    pub ops: Vec<Op>,
    pub requests: Vec<Request>,
    /// Sends skipped because `max_in_flight` requests were outstanding.
    pub skipped: usize,
    /// Why requests failed: "HTTP 500", "HTTP 307", "connect", "timeout", "reset", with counts.
    pub errors: BTreeMap<String, usize>,
    /// When the last request had settled (the checker's horizon), from the trial start.
    pub horizon: Duration,
}

impl Writer {
    /// Starts writing now; times are recorded relative to `t0`.
    /// `lb` carries the token; requests go where it points (the load balancer).
    pub fn start(lb: NodeClient, cfg: WriterConfig, t0: Instant) -> Writer {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(lb, cfg, t0, rx));
        Writer { stop, task }
    }

    /// Stops sending, waits for the requests in flight (each bounded by its timeout) and returns the
    /// history.
    pub async fn finish(self) -> Result<WriterResult> {
        let _ = self.stop.send(true);
        Ok(self.task.await?)
    }
}

async fn run(lb: NodeClient, cfg: WriterConfig, t0: Instant, stop: watch::Receiver<bool>) -> WriterResult {
    let started = Instant::now();
    let shared: Arc<Mutex<Recorded>> = Arc::default();
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.rate_hz.clamp(0.1, 1000.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut skipped = 0;
    let mut seq = 0usize;
    while seq < cfg.max_requests && started.elapsed() < cfg.max_duration && !*stop.borrow() {
        tick.tick().await;
        if *stop.borrow() {
            break;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let key = format!("{}/{seq:06}", cfg.prefix);
        let value = format!("v{seq}-{:x}", t0.elapsed().as_nanos());
        seq += 1;
        let (lb, shared, timeout) = (lb.clone(), shared.clone(), cfg.timeout);
        tasks.spawn(async move {
            let sent = t0.elapsed();
            let (outcome, kind) = write(&lb, &key, &value, timeout).await;
            let finished = t0.elapsed();
            drop(permit);
            if let Ok(mut g) = shared.lock() {
                if kind != Kind::Ok {
                    *g.2.entry(kind.label()).or_default() += 1;
                }
                g.1.push(Request { sent, finished, ok: outcome == Outcome::Acked, kind });
                g.0.push(Op { key, value, sent, outcome, finished });
            }
        });
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let horizon = t0.elapsed();
    let (mut ops, mut requests, errors) = match Arc::try_unwrap(shared) {
        Ok(m) => m.into_inner().unwrap_or_default(),
        Err(a) => a.lock().map(|g| g.clone()).unwrap_or_default(),
    };
    ops.sort_by_key(|o| o.sent);
    requests.sort_by_key(|r| r.sent);
    WriterResult { ops, requests, skipped, errors, horizon }
}

/// One write. An HTTP error status is a definite refusal, and so is a refused connection (the request
/// never left). Anything else (timeout, reset, a handshake cut by the LB) may have reached the active
/// node: ambiguous.
async fn write(lb: &NodeClient, key: &str, value: &str, timeout: Duration) -> (Outcome, Kind) {
    let body = json!({ "value": value });
    match lb.send(Method::PUT, &format!("{MOUNT}/{key}"), Some(&body), Some(timeout)).await {
        Ok(r) if r.status.is_success() => (Outcome::Acked, Kind::Ok),
        Ok(r) => (Outcome::Failed, Kind::Http(r.status.as_u16())),
        Err(e) => match e.kind {
            ErrorKind::ConnectionRefused => (Outcome::Failed, Kind::Refused),
            ErrorKind::Timeout => (Outcome::Ambiguous, Kind::Timeout),
            _ => (Outcome::Ambiguous, Kind::Transport),
        },
    }
}

/// Enables the drill's KV (v1) mount (idempotent), retrying while the cluster settles.
pub async fn ensure_mount(lb: &NodeClient, deadline: Instant) -> Result<()> {
    loop {
        let last = match lb.enable_mount(MOUNT, "kv", json!({})).await {
            Ok(()) => return Ok(()),
            Err(e) if e.to_string().contains("already in use") => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("could not enable the drill mount {MOUNT}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads one key: Value / Missing, retried on errors until `tries` run out.
pub async fn read(n: &NodeClient, key: &str, tries: usize) -> ReadBack {
    let mut last = String::new();
    for i in 0..tries.max(1) {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(250 * i.min(8) as u64)).await;
        }
        match n.send(Method::GET, &format!("{MOUNT}/{key}"), None, Some(Duration::from_secs(3))).await {
            Ok(r) if r.status.as_u16() == 404 => return ReadBack::Missing,
            Ok(r) if r.status.is_success() => match r.body.pointer("/data/value").and_then(|x| x.as_str()) {
                Some(s) => return ReadBack::Value(s.to_string()),
                None => last = "response without data.value".into(),
            },
            Ok(r) => last = format!("HTTP {}", r.status.as_u16()),
            Err(e) => last = e.to_string(),
        }
    }
    ReadBack::Error(last)
}

/// Lists the keys under `prefix` (to find keys nobody wrote). Errors are returned, not hidden.
pub async fn list(n: &NodeClient, prefix: &str) -> Result<Vec<String>> {
    let r =
        n.send(Method::from_bytes(b"LIST")?, &format!("{MOUNT}/{prefix}/"), None, Some(Duration::from_secs(5))).await?;
    if r.status.as_u16() == 404 {
        return Ok(Vec::new());
    }
    if !r.status.is_success() {
        bail!("LIST {prefix}: HTTP {}", r.status);
    }
    Ok(r.body
        .pointer("/data/keys")
        .and_then(|k| k.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).map(|s| format!("{prefix}/{s}")).collect())
        .unwrap_or_default())
}

/// Reads back every key the history wrote plus any other key found under the prefix. Reads go through
/// `lb`; a key that reads Missing or different there is confirmed against `confirm` (the active node),
/// because a standby behind a round-robin LB may serve a stale read.
pub async fn read_back(
    lb: &NodeClient,
    confirm: &NodeClient,
    prefix: &str,
    ops: &[Op],
) -> Result<BTreeMap<String, ReadBack>> {
    let mut keys: Vec<String> = ops.iter().map(|o| o.key.clone()).collect();
    keys.extend(list(lb, prefix).await?);
    keys.sort();
    keys.dedup();
    let expected: BTreeMap<&str, &str> = ops.iter().map(|o| (o.key.as_str(), o.value.as_str())).collect();
    let mut out = BTreeMap::new();
    for k in keys {
        let mut rb = read(lb, &k, 8).await;
        let matches = matches!((&rb, expected.get(k.as_str())), (ReadBack::Value(v), Some(e)) if v == e);
        if !matches {
            rb = read(confirm, &k, 8).await;
        }
        out.insert(k, rb);
    }
    Ok(out)
}
