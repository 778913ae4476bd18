//! The server's stop path (`vaultnix node drain`, the unit's ExecStop, then SIGTERM) on a real lab in
//! `load_balancer.mode = "terminate"`: stopping the active node is a planned step-down. Under the drill's
//! non-retrying writer: 0 failed, 0 lost, 0 duplicated acknowledged writes (issue 16). Needs `bao`
//! (VAULTNIX_BAO) and `haproxy`: a missing tool fails the test.

use std::path::Path;
use vaultnix::drill::lab_target::LabTarget;
use vaultnix::drill::run::{run_trials, NoProgress, Scenario, TrialOptions};
use vaultnix::lab::{alloc_base, Lab, LabHandle, LabOptions};

#[test]
fn stopping_the_active_node_through_the_stop_path_fails_nothing() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/lab-terminate.toml");
    let tmp = tempfile::tempdir().unwrap();
    let mut lo = LabOptions::new(Some(spec.clone()), tmp.path().join("lab"));
    lo.base = Some(alloc_base().unwrap());
    lo.kv = false;
    let handle = LabHandle::up_with(lo).expect("lab up (are bao and haproxy installed?)");
    // The stop path's inputs: the rendered config and the least-privilege token bootstrap created.
    let cfg = vaultnix::ops::drain::load_config(&handle.dir().join("flake/nodes/vault-1.drain.json")).unwrap();
    assert_eq!(cfg.node, "vault-1");
    assert!(handle.dir().join("secrets/drain-token").is_file());
    // The same stop path as on NixOS, where the LB is another host: through each node's drain agent
    // (HAProxy agent-check), not the admin socket. Every node's agent answers HAProxy.
    let agent = cfg.agent.clone().expect("the drain config names the node's agent");
    assert_eq!(agent.port, 8202);
    let sock = handle.dir().join("run/haproxy.sock");
    vaultnix::api::block_on(async {
        for n in ["vault-1", "vault-2", "vault-3"] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let st = vaultnix::ops::lb::stat_field(&sock, "vault_active", n, "agent_status").await.unwrap();
                if st.trim() == "L7OK" {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{n}: HAProxy's agent check is {st:?}, not L7OK");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        // A drain request from anyone but root or the server's user is refused (here: no such process).
        assert!(vaultnix::ops::agent::set(&agent, "down", 4_294_967_294).await.is_err());
        assert_eq!(vaultnix::ops::agent::request(&agent, "status").await.unwrap().split(' ').next(), Some("up"));
    });
    // The daily renewal (`node drain --renew-token`): the periodic token gets its full period again.
    let (renewed_on, ttl) = vaultnix::api::block_on(vaultnix::ops::drain::renew_token(&cfg)).unwrap();
    assert_eq!(ttl, 768 * 3600, "renewed on {renewed_on}");
    let lab = Lab::open(handle.dir(), Some(&spec)).unwrap();

    let report = vaultnix::api::block_on(async move {
        let mut t = LabTarget::new(lab)?;
        let o = TrialOptions {
            scenario: Scenario::LeaderStop,
            trials: 3,
            rate_hz: 50.0,
            timeout: std::time::Duration::from_secs(6),
            trial_limit: std::time::Duration::from_secs(90),
            ..TrialOptions::default()
        };
        run_trials(&mut t, "terminate", &o, &NoProgress).await
    })
    .unwrap();
    handle.down().unwrap();

    let mut requests = 0;
    for t in &report.trials {
        let new = t.leader_after.as_deref().expect("no new leader observed");
        assert_ne!(new, t.leader_before, "trial {}: leadership did not move", t.trial);
        assert!(t.errors.is_empty(), "trial {}: failed requests {:?}", t.trial, t.errors);
        assert_eq!(t.ambiguous, 0, "trial {}: ambiguous requests", t.trial);
        requests += t.acked;
    }
    let v = &report.verdict;
    eprintln!(
        "stop path, terminate: {} writes, {} acknowledged, {} failed, {} lost",
        v.writes,
        v.acked,
        v.failed,
        v.lost.len()
    );
    assert!(requests >= 1000, "at least 1,000 requests across the stops, got {requests}");
    assert_eq!(v.failed, 0, "{v:?}");
    assert_eq!(v.writes, v.acked, "every write acknowledged: {v:?}");
    assert!(v.lost.is_empty() && v.duplicates.is_empty(), "{v:?}");
    assert!(v.ok(), "{v:?}");
}
