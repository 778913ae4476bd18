//! The lost-write checker: given what a client was told (a history of writes, each with its outcome)
//! and what the cluster holds afterwards (a read-back of every key), decide whether any acknowledged
//! write was lost.
//!
//! Writes use unique keys, so each key has at most one intended value and the verdict is per key. A
//! failure the client could not classify (a timeout, a reset after the request left) may or may not have
//! been committed; OpenBao does commit some of them (facts file), so they are counted, never flagged.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What the client learned about one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx: the cluster promised the write is durable.
    Acked,
    /// A definite refusal (the request was answered with an error status).
    Failed,
    /// No answer (timeout, connection reset): it may or may not have been applied.
    Ambiguous,
}

/// One write of the history. Times are offsets from the start of the trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Op {
    pub key: String,
    pub value: String,
    #[serde(with = "ms")]
    pub sent: Duration,
    pub outcome: Outcome,
    /// When the acknowledgement (or the failure) arrived.
    #[serde(with = "ms")]
    pub finished: Duration,
}

/// What a read of one key returned after the trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadBack {
    Value(String),
    Missing,
    /// The read did not succeed within its bounded retries: the key could not be verified.
    Error(String),
}

#[derive(Debug, Clone, Default)]
pub struct History {
    pub ops: Vec<Op>,
    /// The recorded end of the trial: the client had settled every request by then.
    pub horizon: Duration,
    /// The final read-back, keyed by key. It may hold keys that no op wrote (a listing of the prefix).
    pub readback: BTreeMap<String, ReadBack>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub key: String,
    pub expected: String,
    /// What the read-back found instead (None: the key is missing).
    pub found: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Duplicate {
    /// The same key was acknowledged more than once with different values.
    AckedTwice { key: String, values: Vec<String> },
    /// The read-back holds a key no op ever wrote, or a value never written for that key.
    Phantom { key: String, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LateAck {
    pub key: String,
    #[serde(with = "ms")]
    pub acked_at: Duration,
    #[serde(with = "ms")]
    pub horizon: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub writes: usize,
    pub acked: usize,
    pub failed: usize,
    pub ambiguous: usize,
    /// Acknowledged writes missing or different on read-back. Must be empty.
    pub lost: Vec<Lost>,
    pub duplicates: Vec<Duplicate>,
    /// Acknowledgements recorded after the end of the trial: the history itself is inconsistent.
    pub late_acks: Vec<LateAck>,
    /// Acknowledged keys whose read-back failed: neither proven kept nor lost.
    pub unverified: Vec<String>,
    /// Ambiguous writes that were in fact committed (expected now and then; not a violation).
    pub ambiguous_committed: usize,
    /// Writes refused with an error status that were committed anyway (also not a violation: the
    /// client was told nothing was promised).
    pub failed_committed: usize,
}

impl Verdict {
    /// No acknowledged write lost, no duplicate, no late ack, every acknowledged key verified.
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.duplicates.is_empty() && self.late_acks.is_empty() && self.unverified.is_empty()
    }

    /// Adds another trial's verdict into this one.
    pub fn merge(&mut self, o: Verdict) {
        self.writes += o.writes;
        self.acked += o.acked;
        self.failed += o.failed;
        self.ambiguous += o.ambiguous;
        self.lost.extend(o.lost);
        self.duplicates.extend(o.duplicates);
        self.late_acks.extend(o.late_acks);
        self.unverified.extend(o.unverified);
        self.ambiguous_committed += o.ambiguous_committed;
        self.failed_committed += o.failed_committed;
    }
}

pub fn check(h: &History) -> Verdict {
    let mut v = Verdict { writes: h.ops.len(), ..Verdict::default() };
    // Every value ever sent per key, and the acknowledged ones.
    let mut written: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut acked: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for op in &h.ops {
        written.entry(&op.key).or_default().insert(&op.value);
        match op.outcome {
            Outcome::Acked => {
                v.acked += 1;
                acked.entry(&op.key).or_default().insert(&op.value);
                if op.finished > h.horizon {
                    v.late_acks.push(LateAck { key: op.key.clone(), acked_at: op.finished, horizon: h.horizon });
                }
            }
            Outcome::Failed => v.failed += 1,
            Outcome::Ambiguous => v.ambiguous += 1,
        }
    }
    for (key, values) in &acked {
        if values.len() > 1 {
            v.duplicates.push(Duplicate::AckedTwice {
                key: (*key).to_string(),
                values: values.iter().map(|s| (*s).to_string()).collect(),
            });
        }
    }
    for (key, rb) in &h.readback {
        if let ReadBack::Value(val) = rb {
            if !written.get(key.as_str()).is_some_and(|w| w.contains(val.as_str())) {
                v.duplicates.push(Duplicate::Phantom { key: key.clone(), value: val.clone() });
            }
        }
    }
    for op in &h.ops {
        let rb = h.readback.get(&op.key);
        let present = matches!(rb, Some(ReadBack::Value(x)) if *x == op.value);
        match op.outcome {
            Outcome::Acked => match rb {
                _ if present => {}
                Some(ReadBack::Value(other)) => {
                    v.lost.push(Lost { key: op.key.clone(), expected: op.value.clone(), found: Some(other.clone()) })
                }
                Some(ReadBack::Missing) => {
                    v.lost.push(Lost { key: op.key.clone(), expected: op.value.clone(), found: None })
                }
                Some(ReadBack::Error(_)) | None => v.unverified.push(op.key.clone()),
            },
            Outcome::Ambiguous if present => v.ambiguous_committed += 1,
            Outcome::Failed if present => v.failed_committed += 1,
            _ => {}
        }
    }
    v
}

/// Durations as integer milliseconds in JSON.
pub(crate) mod ms {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &str, value: &str, sent_ms: u64, outcome: Outcome, finished_ms: u64) -> Op {
        Op {
            key: key.into(),
            value: value.into(),
            sent: Duration::from_millis(sent_ms),
            outcome,
            finished: Duration::from_millis(finished_ms),
        }
    }

    /// Ten acknowledged writes, one ambiguous that was committed, one failed that was not; everything
    /// read back as written.
    fn clean() -> History {
        let mut ops: Vec<Op> =
            (0..10).map(|i| op(&format!("k{i}"), &format!("v{i}"), i * 100, Outcome::Acked, i * 100 + 20)).collect();
        ops.push(op("k10", "v10", 1000, Outcome::Ambiguous, 3000));
        ops.push(op("k11", "v11", 1100, Outcome::Failed, 1150));
        let mut readback: BTreeMap<String, ReadBack> =
            (0..11).map(|i| (format!("k{i}"), ReadBack::Value(format!("v{i}")))).collect();
        readback.insert("k11".into(), ReadBack::Missing);
        History { ops, horizon: Duration::from_millis(5000), readback }
    }

    #[test]
    fn clean_history_passes() {
        let v = check(&clean());
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.writes, v.acked, v.failed, v.ambiguous), (12, 10, 1, 1));
        assert_eq!(v.ambiguous_committed, 1);
        assert_eq!(v.failed_committed, 0);
    }

    #[test]
    fn flags_lost_write_with_its_key() {
        let mut h = clean();
        h.readback.insert("k3".into(), ReadBack::Missing);
        let v = check(&h);
        assert!(!v.ok());
        assert_eq!(v.lost, [Lost { key: "k3".into(), expected: "v3".into(), found: None }]);
    }

    #[test]
    fn flags_wrong_value_as_lost_and_phantom() {
        let mut h = clean();
        h.readback.insert("k4".into(), ReadBack::Value("garbage".into()));
        let v = check(&h);
        assert_eq!(v.lost, [Lost { key: "k4".into(), expected: "v4".into(), found: Some("garbage".into()) }]);
        assert_eq!(v.duplicates, [Duplicate::Phantom { key: "k4".into(), value: "garbage".into() }]);
    }

    #[test]
    fn flags_duplicate_ack() {
        let mut h = clean();
        h.ops.push(op("k2", "other", 1200, Outcome::Acked, 1230));
        let v = check(&h);
        assert!(!v.ok());
        assert_eq!(
            v.duplicates,
            [Duplicate::AckedTwice { key: "k2".into(), values: vec!["other".into(), "v2".into()] }]
        );
    }

    #[test]
    fn flags_key_never_written() {
        let mut h = clean();
        h.readback.insert("nobody-wrote-me".into(), ReadBack::Value("x".into()));
        let v = check(&h);
        assert!(!v.ok());
        assert_eq!(v.duplicates, [Duplicate::Phantom { key: "nobody-wrote-me".into(), value: "x".into() }]);
    }

    #[test]
    fn flags_ack_after_horizon() {
        let mut h = clean();
        h.ops.push(op("k12", "v12", 4900, Outcome::Acked, 5200));
        h.readback.insert("k12".into(), ReadBack::Value("v12".into()));
        let v = check(&h);
        assert!(!v.ok());
        assert_eq!(
            v.late_acks,
            [LateAck {
                key: "k12".into(),
                acked_at: Duration::from_millis(5200),
                horizon: Duration::from_millis(5000)
            }]
        );
        assert!(v.lost.is_empty());
    }

    #[test]
    fn unreadable_acked_key_is_not_a_pass() {
        let mut h = clean();
        h.readback.insert("k5".into(), ReadBack::Error("503".into()));
        h.readback.remove("k6");
        let v = check(&h);
        assert!(!v.ok());
        assert_eq!(v.unverified, ["k5", "k6"]);
        assert!(v.lost.is_empty());
    }

    #[test]
    fn failed_but_committed_is_counted_not_flagged() {
        let mut h = clean();
        h.readback.insert("k11".into(), ReadBack::Value("v11".into()));
        let v = check(&h);
        assert!(v.ok());
        assert_eq!(v.failed_committed, 1);
    }

    #[test]
    fn merge_adds_up() {
        let mut a = check(&clean());
        let mut h = clean();
        h.readback.insert("k0".into(), ReadBack::Missing);
        a.merge(check(&h));
        assert_eq!(a.acked, 20);
        assert_eq!(a.lost.len(), 1);
        assert_eq!(a.ambiguous_committed, 2);
    }
}
