//! `load_balancer.mode = "terminate"` (the L7 mode) on a real lab (OpenBao 2.7.2 + the rendered HAProxy
//! on a loopback range of its own): the drill client trusts the cluster CA and connects to the LB
//! hostname, HAProxy terminates TLS with the LB certificate and re-encrypts to the active node. Drained
//! planned step-downs must fail no request, lose no acknowledged write and duplicate none (issue 16). A
//! leader crash (kill -9) must answer no request with HAProxy's 503: a request the dead node refused
//! waits in the second hold (frontend vault_hold) for the next active node.
//! Needs `bao` (VAULTNIX_BAO) and `haproxy`: a missing tool fails the test.

use std::path::Path;
use vaultnix::drill::lab_target::LabTarget;
use vaultnix::drill::run::{run_trials, NoProgress, Scenario, TrialOptions};
use vaultnix::lab::{alloc_base, Lab, LabHandle, LabOptions};

#[test]
fn drained_step_down_in_terminate_mode_fails_nothing() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/lab-terminate.toml");
    let tmp = tempfile::tempdir().unwrap();
    let mut lo = LabOptions::new(Some(spec.clone()), tmp.path().join("lab"));
    lo.base = Some(alloc_base().unwrap());
    lo.kv = false;
    let handle = LabHandle::up_with(lo).expect("lab up (are bao and haproxy installed?)");
    let cfg = std::fs::read_to_string(handle.dir().join("flake/haproxy/haproxy.cfg")).unwrap();
    assert!(cfg.contains("mode http") && cfg.contains(" ssl crt "), "the lab runs the terminate config:\n{cfg}");
    let lab = Lab::open(handle.dir(), Some(&spec)).unwrap();

    let report = vaultnix::api::block_on(async move {
        let mut t = LabTarget::new(lab)?;
        // The client's timeout covers HAProxy's 5 s hold, as in tests/drill.rs.
        let o = TrialOptions {
            scenario: Scenario::LeaderStepdown,
            trials: 2,
            drain: true,
            timeout: std::time::Duration::from_secs(6),
            trial_limit: std::time::Duration::from_secs(60),
            ..TrialOptions::default()
        };
        let stepdown = run_trials(&mut t, "terminate", &o, &NoProgress).await?;
        let o = TrialOptions { scenario: Scenario::LeaderCrash, trials: 1, drain: false, rate_hz: 50.0, ..o };
        let crash = run_trials(&mut t, "terminate", &o, &NoProgress).await?;
        Ok::<_, anyhow::Error>((stepdown, crash))
    })
    .unwrap();
    handle.down().unwrap();
    let (report, crash) = report;

    // The crash: only requests in flight on the killed node may fail (a reset: `transport`, ambiguous,
    // never lost); every request sent after it is refused by the dead node or held, then served.
    for t in &crash.trials {
        assert_ne!(t.leader_after.as_deref(), Some(t.leader_before.as_str()), "crash: leadership did not move");
        assert!(t.acked >= 50, "crash: only {} acknowledged writes", t.acked);
        let other: Vec<_> = t.errors.iter().filter(|(k, _)| k.as_str() != "transport").collect();
        assert!(other.is_empty(), "crash: refused or timed out (HTTP 503: HAProxy gave up): {:?}", t.errors);
        assert!(t.errors.get("transport").copied().unwrap_or(0) <= 2, "crash: {:?}", t.errors);
    }
    assert!(crash.verdict.lost.is_empty() && crash.verdict.duplicates.is_empty(), "{:?}", crash.verdict);

    for t in &report.trials {
        let new = t.leader_after.as_deref().expect("no new leader observed");
        assert_ne!(new, t.leader_before, "trial {}: leadership did not move", t.trial);
        assert!(t.acked >= 40, "trial {}: only {} acknowledged writes", t.trial, t.acked);
        assert!(t.errors.is_empty(), "trial {}: failed requests {:?}", t.trial, t.errors);
        assert_eq!(t.ambiguous, 0, "trial {}: ambiguous requests", t.trial);
    }
    let v = &report.verdict;
    assert_eq!(v.failed, 0, "{v:?}");
    assert_eq!(v.writes, v.acked, "every write acknowledged: {v:?}");
    assert!(v.lost.is_empty() && v.duplicates.is_empty(), "{v:?}");
    assert!(v.ok(), "{v:?}");
}
