//! What a client saw during one trial, computed from its request timeline, and summaries over trials.
//! All times are offsets from the start of the trial.

use super::checker::ms;
use serde::Serialize;
use std::time::Duration;

/// One client request: when it left, when it ended, whether it succeeded, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub sent: Duration,
    pub finished: Duration,
    pub ok: bool,
    pub kind: Kind,
}

/// How one request ended (the report plots failures by kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// 2xx.
    #[default]
    Ok,
    /// An error status (307: a standby's redirect; 5xx: sealed, standby, or no server).
    Http(u16),
    /// The connection was refused: the request never left.
    Refused,
    /// No answer within the client's timeout.
    Timeout,
    /// Reset, cut handshake, any other transport error.
    Transport,
}

impl Kind {
    /// The short name, as in the drill's `errors` counts ("HTTP 500", "refused", "timeout", ...).
    pub fn label(self) -> String {
        match self {
            Kind::Ok => "ok".into(),
            Kind::Http(c) => format!("HTTP {c}"),
            Kind::Refused => "refused".into(),
            Kind::Timeout => "timeout".into(),
            Kind::Transport => "transport".into(),
        }
    }

    /// What the kind means, for a legend.
    pub fn describe(self) -> String {
        match self {
            Kind::Ok => "ok".into(),
            Kind::Http(307) => "HTTP 307 (standby refusal)".into(),
            Kind::Http(c @ 500..=599) => format!("HTTP {c} (5xx)"),
            Kind::Http(c) => format!("HTTP {c}"),
            Kind::Refused => "connection refused".into(),
            Kind::Timeout => "timeout".into(),
            Kind::Transport => "transport error (reset)".into(),
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

/// A change of one load-balancer server's state as seen on HAProxy's admin socket (`show stat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LbEvent {
    /// When it was seen, from the start of the trial.
    #[serde(rename = "at_ms", with = "ms")]
    pub at: Duration,
    pub server: String,
    /// The state before (None: the first sample of the trial, not a change).
    pub from: Option<String>,
    /// "UP", "DOWN", "DRAIN", "MAINT", ... (HAProxy's `status` column, first word).
    pub to: String,
}

#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// When the fault was injected (kill -9, step-down, ...).
    pub fault_at: Duration,
    pub requests: Vec<Request>,
    /// When a node other than the old leader was first seen active (None: not observed).
    pub new_leader_at: Option<Duration>,
    /// When the faulted node was back as a healthy voter (None: not observed, or not restarted).
    pub old_node_healthy_at: Option<Duration>,
    /// The LB's server state changes during the trial (empty when the target has no admin socket).
    pub lb_events: Vec<LbEvent>,
}

/// A trial's timeline as the JSON report and `--report` carry it: every request, the fault, the
/// election and the LB's state changes. Times in milliseconds from the start of the trial.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimelineRecord {
    pub fault_ms: f64,
    pub new_leader_ms: Option<f64>,
    pub old_node_healthy_ms: Option<f64>,
    pub requests: Vec<RequestRecord>,
    pub lb_events: Vec<LbEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    pub sent_ms: f64,
    pub latency_ms: f64,
    pub outcome: Kind,
}

fn ms_f(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl From<&Timeline> for TimelineRecord {
    fn from(t: &Timeline) -> Self {
        TimelineRecord {
            fault_ms: ms_f(t.fault_at),
            new_leader_ms: t.new_leader_at.map(ms_f),
            old_node_healthy_ms: t.old_node_healthy_at.map(ms_f),
            requests: t
                .requests
                .iter()
                .map(|r| RequestRecord {
                    sent_ms: ms_f(r.sent),
                    latency_ms: ms_f(r.finished.saturating_sub(r.sent)),
                    outcome: r.kind,
                })
                .collect(),
            lb_events: t.lb_events.clone(),
        }
    }
}

/// One trial's figures; durations are measured from the fault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrialFigures {
    pub requests: usize,
    /// Failed requests sent at or after the fault.
    pub failed: usize,
    /// Failed requests sent before the fault (noise that is not the fault's doing; expected 0).
    pub failed_before_fault: usize,
    /// Fault → end of the first successful request sent after the fault.
    #[serde(with = "opt_ms")]
    pub outage: Option<Duration>,
    /// Fault → end of the last failed request (0 when nothing failed): the disruption window.
    #[serde(with = "ms")]
    pub disruption: Duration,
    /// First failed request sent → last failed request ended (None when nothing failed).
    #[serde(with = "opt_ms")]
    pub failing_span: Option<Duration>,
    #[serde(with = "opt_ms")]
    pub new_leader: Option<Duration>,
    #[serde(with = "opt_ms")]
    pub old_node_healthy: Option<Duration>,
    /// Latency of the successful requests sent at or after the fault, 50th and 99th percentile
    /// (microseconds): what the clients that were not failed paid for the fault.
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    /// The same before the fault: the baseline the added latency is read against.
    pub baseline_p50_us: Option<u64>,
    pub baseline_p99_us: Option<u64>,
}

/// Nearest-rank percentile (`q` in 0..=100) of sorted values; None when empty.
pub fn percentile(sorted: &[u64], q: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q as usize * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn latencies_us<'a>(rs: impl Iterator<Item = &'a Request>) -> Vec<u64> {
    let mut v: Vec<u64> = rs.filter(|r| r.ok).map(|r| r.finished.saturating_sub(r.sent).as_micros() as u64).collect();
    v.sort_unstable();
    v
}

pub fn figures(t: &Timeline) -> TrialFigures {
    let after: Vec<&Request> = t.requests.iter().filter(|r| r.sent >= t.fault_at).collect();
    let failed: Vec<&&Request> = after.iter().filter(|r| !r.ok).collect();
    let since = |d: Duration| d.saturating_sub(t.fault_at);
    let during = latencies_us(after.iter().copied());
    let before = latencies_us(t.requests.iter().filter(|r| r.sent < t.fault_at));
    TrialFigures {
        requests: t.requests.len(),
        failed: failed.len(),
        failed_before_fault: t.requests.iter().filter(|r| r.sent < t.fault_at && !r.ok).count(),
        outage: after.iter().filter(|r| r.ok).map(|r| since(r.finished)).min(),
        disruption: failed.iter().map(|r| since(r.finished)).max().unwrap_or_default(),
        failing_span: match (failed.iter().map(|r| r.sent).min(), failed.iter().map(|r| r.finished).max()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        new_leader: t.new_leader_at.map(since),
        old_node_healthy: t.old_node_healthy_at.map(since),
        latency_p50_us: percentile(&during, 50),
        latency_p99_us: percentile(&during, 99),
        baseline_p50_us: percentile(&before, 50),
        baseline_p99_us: percentile(&before, 99),
    }
}

/// Median and extremes of one figure over the trials where it was observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stat {
    /// Trials where the figure was observed.
    pub n: usize,
    pub median_ms: Option<f64>,
    pub min_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

impl Stat {
    pub fn of(values: impl IntoIterator<Item = Duration>) -> Stat {
        let mut v: Vec<u64> = values.into_iter().map(|d| d.as_millis() as u64).collect();
        v.sort_unstable();
        let n = v.len();
        let median_ms = match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2] as f64),
            _ => Some((v[n / 2 - 1] + v[n / 2]) as f64 / 2.0),
        };
        Stat { n, median_ms, min_ms: v.first().copied(), max_ms: v.last().copied() }
    }

    /// "1.23 s (max 2.34 s)" or "-" when never observed.
    pub fn human(&self) -> String {
        match (self.median_ms, self.max_ms) {
            (Some(m), Some(x)) => format!("{:.2} s (max {:.2})", m / 1000.0, x as f64 / 1000.0),
            _ => "-".into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub trials: usize,
    pub outage: Stat,
    pub disruption: Stat,
    pub failing_span: Stat,
    pub new_leader: Stat,
    pub old_node_healthy: Stat,
    /// Failed requests per trial (as counts, not milliseconds).
    pub failed_median: Option<f64>,
    pub failed_max: Option<usize>,
    pub failed_total: usize,
    pub requests_total: usize,
    /// Median over the trials of each trial's p50 latency after the fault (ms), and the worst trial's
    /// p99 (ms); the baseline likewise, from the requests before the fault.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub baseline_p50_ms: Option<f64>,
    pub baseline_p99_ms: Option<f64>,
}

fn median_us(v: impl IntoIterator<Item = u64>) -> Option<f64> {
    let mut v: Vec<u64> = v.into_iter().collect();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2] as f64 / 1000.0),
        _ => Some((v[n / 2 - 1] + v[n / 2]) as f64 / 2000.0),
    }
}

pub fn summarize(trials: &[TrialFigures]) -> Summary {
    let failed = Stat::of(trials.iter().map(|t| Duration::from_millis(t.failed as u64)));
    Summary {
        trials: trials.len(),
        outage: Stat::of(trials.iter().filter_map(|t| t.outage)),
        disruption: Stat::of(trials.iter().map(|t| t.disruption)),
        failing_span: Stat::of(trials.iter().filter_map(|t| t.failing_span)),
        new_leader: Stat::of(trials.iter().filter_map(|t| t.new_leader)),
        old_node_healthy: Stat::of(trials.iter().filter_map(|t| t.old_node_healthy)),
        failed_median: failed.median_ms,
        failed_max: failed.max_ms.map(|x| x as usize),
        failed_total: trials.iter().map(|t| t.failed).sum(),
        requests_total: trials.iter().map(|t| t.requests).sum(),
        latency_p50_ms: median_us(trials.iter().filter_map(|t| t.latency_p50_us)),
        latency_p99_ms: trials.iter().filter_map(|t| t.latency_p99_us).max().map(|x| x as f64 / 1000.0),
        baseline_p50_ms: median_us(trials.iter().filter_map(|t| t.baseline_p50_us)),
        baseline_p99_ms: trials.iter().filter_map(|t| t.baseline_p99_us).max().map(|x| x as f64 / 1000.0),
    }
}

mod opt_ms {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
}

/// Why requests timed out when the cause is the election itself: the new active node answered later
/// after the fault than the client waits, so requests sent at the fault (held by the LB, or queued on
/// a node) finished after the client gave up. None: no timeouts, or the election was shorter.
pub fn timeout_note(t: &Timeline, timeout: Duration) -> Option<String> {
    let timeouts = t.requests.iter().filter(|r| r.kind == Kind::Timeout).count();
    let window = t.new_leader_at?.checked_sub(t.fault_at)?;
    (timeouts > 0 && window > timeout).then(|| {
        format!(
            "{timeouts} request(s) timed out: a new node was active {} ms after the fault, later than the \
             client's {} ms timeout (a client waiting longer gets these answered)",
            window.as_millis(),
            timeout.as_millis()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    #[test]
    fn timeouts_are_put_down_to_an_election_longer_than_the_client_waits() {
        let mut t = crash();
        t.new_leader_at = Some(ms(3_800));
        let n = t.requests.iter().filter(|r| r.kind == Kind::Timeout).count();
        let note = timeout_note(&t, ms(2_000)).expect("a note");
        assert!(note.starts_with(&format!("{n} request(s) timed out: a new node was active 2800 ms")), "{note}");
        assert_eq!(timeout_note(&t, ms(3_000)), None, "the election was shorter than the timeout");
        t.new_leader_at = None;
        assert_eq!(timeout_note(&t, ms(2_000)), None);
    }
    fn req(sent: u64, finished: u64, ok: bool) -> Request {
        Request { sent: ms(sent), finished: ms(finished), ok, kind: if ok { Kind::Ok } else { Kind::Timeout } }
    }

    /// 10 req/s; the fault at 1000 ms; failures from 1000 to 3400; round-robin style interleaved success
    /// at 2000; steady success from 3500.
    fn crash() -> Timeline {
        let mut requests = Vec::new();
        for i in 0..50u64 {
            let sent = i * 100;
            let ok = !(10..35).contains(&i) || i == 20;
            requests.push(req(sent, sent + 30, ok));
        }
        Timeline {
            fault_at: ms(1000),
            requests,
            new_leader_at: Some(ms(3300)),
            old_node_healthy_at: Some(ms(16000)),
            ..Timeline::default()
        }
    }

    #[test]
    fn crash_figures() {
        let f = figures(&crash());
        assert_eq!(f.requests, 50);
        assert_eq!(f.failed, 24);
        assert_eq!(f.failed_before_fault, 0);
        // First success after the fault is the interleaved one at 2000 (+30).
        assert_eq!(f.outage, Some(ms(1030)));
        // Last failure: request 34, sent 3400, ended 3430.
        assert_eq!(f.disruption, ms(2430));
        assert_eq!(f.failing_span, Some(ms(2430)));
        assert_eq!(f.new_leader, Some(ms(2300)));
        assert_eq!(f.old_node_healthy, Some(ms(15000)));
    }

    #[test]
    fn no_failures_means_zero_disruption() {
        let t = Timeline {
            fault_at: ms(500),
            requests: (0..10).map(|i| req(i * 100, i * 100 + 10, true)).collect(),
            new_leader_at: None,
            old_node_healthy_at: None,
            ..Timeline::default()
        };
        let f = figures(&t);
        assert_eq!(f.failed, 0);
        assert_eq!(f.disruption, Duration::ZERO);
        assert_eq!(f.failing_span, None);
        assert_eq!(f.outage, Some(ms(10)));
        assert_eq!(f.new_leader, None);
    }

    #[test]
    fn failures_before_the_fault_are_kept_apart() {
        let t = Timeline {
            fault_at: ms(500),
            requests: vec![req(100, 150, false), req(600, 700, false), req(800, 820, true)],
            ..Timeline::default()
        };
        let f = figures(&t);
        assert_eq!((f.failed, f.failed_before_fault), (1, 1));
        assert_eq!(f.disruption, ms(200));
        assert_eq!(f.outage, Some(ms(320)));
    }

    #[test]
    fn never_recovers() {
        let t = Timeline { fault_at: ms(0), requests: vec![req(0, 2000, false)], ..Timeline::default() };
        let f = figures(&t);
        assert_eq!(f.outage, None);
        assert_eq!(f.disruption, ms(2000));
    }

    #[test]
    fn latency_percentiles_before_and_after_the_fault() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 99), Some(7));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 99), percentile(&v, 100)), (Some(50), Some(99), Some(100)));
        // Before the fault every request takes 10 ms; after it, 98 take 20 ms and 2 take 900 ms
        // (held by the LB), and failed requests do not count.
        let mut requests: Vec<Request> = (0..10).map(|i| req(i * 10, i * 10 + 10, true)).collect();
        for i in 0..100u64 {
            let sent = 1000 + i * 10;
            let took = if i < 2 { 900 } else { 20 };
            requests.push(req(sent, sent + took, true));
        }
        requests.push(req(1005, 6000, false));
        let t = Timeline { fault_at: ms(1000), requests, ..Timeline::default() };
        let f = figures(&t);
        assert_eq!((f.baseline_p50_us, f.baseline_p99_us), (Some(10_000), Some(10_000)));
        assert_eq!((f.latency_p50_us, f.latency_p99_us), (Some(20_000), Some(900_000)));
        let mut g = f.clone();
        g.latency_p50_us = Some(40_000);
        g.latency_p99_us = Some(100_000);
        let s = summarize(&[f, g]);
        assert_eq!(s.latency_p50_ms, Some(30.0));
        assert_eq!(s.latency_p99_ms, Some(900.0));
        assert_eq!(s.baseline_p50_ms, Some(10.0));
    }

    #[test]
    fn medians_and_max() {
        assert_eq!(Stat::of([ms(3), ms(1), ms(2)]).median_ms, Some(2.0));
        let s = Stat::of([ms(4), ms(1), ms(2), ms(10)]);
        assert_eq!((s.n, s.median_ms, s.min_ms, s.max_ms), (4, Some(3.0), Some(1), Some(10)));
        assert_eq!(Stat::of([]).median_ms, None);
        assert_eq!(Stat::of([ms(1500), ms(2500)]).human(), "2.00 s (max 2.50)");

        let a = figures(&crash());
        let mut b = a.clone();
        b.disruption = ms(5000);
        b.failed = 30;
        b.new_leader = None;
        let s = summarize(&[a, b]);
        assert_eq!(s.trials, 2);
        assert_eq!(s.disruption.median_ms, Some(3715.0));
        assert_eq!(s.disruption.max_ms, Some(5000));
        assert_eq!(s.new_leader.n, 1);
        assert_eq!(s.failed_max, Some(30));
        assert_eq!(s.failed_total, 54);
    }
}
