//! A short drill against a real lab (OpenBao + HAProxy on a loopback range of its own): one leader-crash
//! trial and one planned step-down trial (drained at HAProxy). A new leader must be elected, writes must
//! resume, and no acknowledged write may be lost; the drained step-down must not fail requests. Needs `bao` (VAULTNIX_BAO) and `haproxy`: a missing
//! tool fails the test.

use std::path::Path;
use vaultnix::drill::lab_target::LabTarget;
use vaultnix::drill::run::{run_trials, NoProgress, Scenario, TrialOptions};
use vaultnix::lab::{alloc_base, Lab, LabHandle, LabOptions};

#[test]
fn leader_crash_and_planned_step_down_lose_no_acknowledged_write() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/lab.toml");
    let tmp = tempfile::tempdir().unwrap();
    let mut lo = LabOptions::new(Some(spec.clone()), tmp.path().join("lab"));
    lo.base = Some(alloc_base().unwrap());
    lo.kv = false;
    let handle = LabHandle::up_with(lo).expect("lab up (are bao and haproxy installed?)");
    let lab = Lab::open(handle.dir(), Some(&spec)).unwrap();

    let reports = vaultnix::api::block_on(async move {
        let mut t = LabTarget::new(lab)?;
        let mut out = Vec::new();
        for (scenario, drain) in [(Scenario::LeaderCrash, false), (Scenario::LeaderStepdown, true)] {
            let mut o = TrialOptions { scenario, trials: 1, drain, ..TrialOptions::default() };
            if drain {
                // HAProxy holds new connections up to 5 s while no node is UP: a client whose timeout
                // covers that sees the election as latency, not as failures.
                o.timeout = std::time::Duration::from_secs(6);
            }
            out.push((scenario, run_trials(&mut t, "ours", &o, &NoProgress).await?));
        }
        Ok::<_, anyhow::Error>(out)
    })
    .unwrap();

    for (scenario, r) in &reports {
        let t = &r.trials[0];
        let name = scenario.as_str();
        let new = t.leader_after.as_deref().unwrap_or_else(|| panic!("{name}: no new leader observed"));
        assert_ne!(new, t.leader_before, "{name}: leadership did not move");
        assert!(t.figures.new_leader.is_some(), "{name}: no time to a new leader");
        // Writes resumed: a request sent after the fault succeeded, and writes were acknowledged.
        assert!(t.figures.outage.is_some(), "{name}: no successful write after the fault");
        assert!(t.acked >= 20, "{name}: only {} acknowledged writes", t.acked);
        assert_eq!(r.lost, 0, "{name}: lost acknowledged writes: {:?}", r.verdict.lost);
        assert!(r.verdict.ok(), "{name}: {:?}", r.verdict);
        assert!(t.figures.old_node_healthy.is_some(), "{name}: the old leader did not come back as a voter");
        if *scenario == Scenario::LeaderStepdown {
            // Planned step-down: no refusal (the standbys' 307s, the old leader's 500s, HAProxy closing
            // for want of a server) and no timeout. The one thing passthrough cannot avoid is a request
            // in flight on the old leader's session when the drain shuts it (`transport`, at most one).
            let refused: Vec<_> = t.errors.iter().filter(|(k, _)| k.as_str() != "transport").collect();
            assert!(refused.is_empty(), "{name}: failed requests {:?}", t.errors);
            assert!(t.errors.get("transport").copied().unwrap_or(0) <= 1, "{name}: {:?}", t.errors);
        }
    }
    handle.down().unwrap();
}
