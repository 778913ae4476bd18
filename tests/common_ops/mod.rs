//! Shared by the live ops tests: a 3-node LAN spec written into the test's temp dir (membership edits
//! it), the real `bao`, and a lock so the labs of one test binary run one at a time (2 shared cores).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub const SPEC: &str = r#"# ops test cluster
[cluster]
name = "ops"
engine = "openbao"
version = "2.7.2"
domain = "vault.internal"

[load_balancer]
hostname = "vault.lab.internal"
address = "192.0.2.10"
provider = "onprem"

[overlay]
kind = "none"

[unseal]
kind = "shamir"
shares = 3
threshold = 2

[raft]
performance_multiplier = 1

[[nodes]]
name = "vault-1"
provider = "onprem"
address = "192.0.2.11"

[[nodes]]
name = "vault-2"
provider = "onprem"
address = "192.0.2.12"

[[nodes]]
name = "vault-3"
provider = "onprem"
address = "192.0.2.13"
"#;

static LOCK: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn bao_2_7() -> PathBuf {
    let b = std::env::var_os("VAULTNIX_BAO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.7.2/bao")));
    assert!(b.is_file(), "no bao at {} (set VAULTNIX_BAO): live tests need the real server", b.display());
    b
}

/// Sets VAULTNIX_BAO (the real 2.7.2 unless given) and writes the spec (with `extra` appended to
/// [unseal]-free places by the caller) into `dir`.
pub fn spec_in(dir: &Path, text: &str) -> PathBuf {
    if std::env::var_os("VAULTNIX_BAO").is_none() {
        std::env::set_var("VAULTNIX_BAO", bao_2_7());
    }
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("cluster.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// What [`rolling_upgrade_under_writer`] saw.
pub struct UpgradeRun {
    pub sent: usize,
    pub acked: usize,
    /// Requests refused for certain (an HTTP error status, a refused connection: never applied), as
    /// the drill's client counts them.
    pub failed: usize,
    /// Requests whose outcome the client cannot know (a timeout, a cut connection: they may have been
    /// applied), as the drill counts them; the read-back below checks what happened to them.
    pub ambiguous: usize,
    /// What each unanswered request got (the first 10), with its time since the writer started.
    pub errors: Vec<String>,
    pub lost: Vec<usize>,
}

/// A rolling upgrade OpenBao 2.6.2 -> 2.7.2 of a lab built from `spec_text`, every node stopped
/// through the stop path, while a client that does not retry writes through the load balancer
/// (sequential, bounded in count and time). Asserts the plan (standbys, step-down, old leader), every
/// node on 2.7.2 afterwards and the lab recording the new binary; returns the client's counts.
pub fn rolling_upgrade_under_writer(spec_text: &str) -> UpgradeRun {
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use vaultnix::api::block_on;
    use vaultnix::lab::LabHandle;
    use vaultnix::ops::upgrade::{self, UpgradeOptions};
    const OLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.6.2/bao");

    let _g = serial();
    let old = std::path::PathBuf::from(std::env::var("VAULTNIX_BAO_OLD").unwrap_or_else(|_| OLD.into()));
    assert!(old.is_file(), "no bao 2.6.x at {} (set VAULTNIX_BAO_OLD)", old.display());
    let new = bao_2_7();
    assert_eq!(upgrade::binary_version(&old).unwrap(), "2.6.2");
    assert_eq!(upgrade::binary_version(&new).unwrap(), "2.7.2");
    // This test binary runs only this test: the lab starts on the old binary.
    std::env::set_var("VAULTNIX_BAO", &old);
    let t = tempfile::tempdir().unwrap();
    let spec = spec_in(t.path(), spec_text);
    let dir = t.path().join("lab");
    let lab = LabHandle::up(Some(&spec), &dir).expect("lab up on 2.6.2");
    let c = lab.cluster_with_root().unwrap();

    // The plan: standbys first, then step-down, then the old leader.
    let steps = block_on(upgrade::plan_for(&c)).unwrap();
    eprintln!("plan: {steps:#?}");
    assert_eq!(steps.len(), 4);
    assert!(matches!(steps[2], upgrade::Step::StepDown { .. }));

    // A client writing through the LB, sequential, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let lb = c.lb.clone().with_timeout(Duration::from_secs(10));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let (mut acked, mut failed, mut ambiguous, mut errors) = (Vec::new(), 0usize, Vec::new(), Vec::new());
                let t0 = Instant::now();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) && i < 200_000 && t0.elapsed() < Duration::from_secs(600) {
                    match lb.kv_put("secret", &format!("upg/{i}"), &json!({ "i": i })).await {
                        Ok(_) => acked.push(i),
                        Err(e) => {
                            use vaultnix::api::client::ErrorKind;
                            if matches!(e.kind, ErrorKind::Http { .. } | ErrorKind::ConnectionRefused) {
                                failed += 1;
                            } else {
                                ambiguous.push(i);
                            }
                            if errors.len() < 10 {
                                errors.push(format!("{:.2} s: write {i}: {e:#}", t0.elapsed().as_secs_f64()));
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    i += 1;
                }
                (acked, failed, ambiguous, errors, i)
            })
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let r = block_on(upgrade::run_lab_upgrade(&UpgradeOptions {
        lab_dir: dir.clone(),
        to_bao: new.clone(),
        node_wait: Duration::from_secs(120),
    }));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (acked, failed, ambiguous, errors, sent) = writer.join().unwrap();
    for e in &errors {
        eprintln!("unanswered request: {e}");
    }
    let r = r.expect("upgrade");
    for s in &r.steps {
        eprintln!("{:>6.1} s  {}", s.seconds, s.detail);
    }
    eprintln!("upgrade {} -> {} in {:.1} s", r.from_version, r.to_version, r.seconds);

    // Every node runs 2.7.2 now.
    let hs = block_on(vaultnix::ops::common::health_all(&c));
    for (n, h) in &hs {
        let h = h.as_ref().expect("health");
        assert_eq!(h.body.version, "2.7.2", "{}", n.name);
        assert!(h.state.is_up(), "{} is {:?}", n.name, h.state);
    }
    // No acknowledged write lost.
    let active = block_on(vaultnix::ops::common::find_active(&c)).expect("active");
    let lost: Vec<usize> = block_on(async {
        let mut lost = Vec::new();
        for i in &acked {
            match active.kv_get("secret", &format!("upg/{i}")).await {
                Ok(Some(v)) if v["i"] == json!(i) => {}
                _ => lost.push(*i),
            }
        }
        lost
    });
    // What became of the ambiguous writes (either outcome is allowed; it is reported).
    let committed = block_on(async {
        let mut n = 0;
        for i in &ambiguous {
            if let Ok(Some(v)) = active.kv_get("secret", &format!("upg/{i}")).await {
                n += usize::from(v["i"] == json!(i));
            }
        }
        n
    });
    eprintln!(
        "client through the LB: {sent} writes sent, {} acknowledged, {failed} failed, {} ambiguous ({committed} of them committed), {} acknowledged lost",
        acked.len(),
        ambiguous.len(),
        lost.len()
    );
    let st = std::fs::read_to_string(dir.join("lab.json")).unwrap();
    assert!(st.contains("bao-2.7.2"), "the lab now starts the new binary: {st}");
    lab.down().unwrap();
    UpgradeRun { sent, acked: acked.len(), failed, ambiguous: ambiguous.len(), errors, lost }
}
