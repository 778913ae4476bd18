//! The L7 mode (`load_balancer.mode = "terminate"`, issue 16) on the hosts lab (issue 15): HAProxy on
//! its own host terminates TLS with the certificate its unit installs before every start
//! (modules/haproxy.nix: secrets/lb.pem into /run/haproxy, checked byte for byte), the NixOS stop
//! path of the active node fails no request, and a rebooted LB host serves again (its /run is
//! fresh: the install runs again). Needs root; without it FAILS with the reason (it never skips).

mod common;

use std::time::{Duration, Instant};
use vaultnix::drill::run::{NoProgress, Scenario, TrialOptions};
use vaultnix::lab::hosts::{self, HostsLab};

/// `bao status` through the LB's name from the client host: exit 0 (unsealed and reachable).
fn status_through_lb(lab: &HostsLab) -> bool {
    let env = lab.env_vars();
    let addr = env.iter().find(|(k, _)| k == "BAO_ADDR").map(|(_, v)| v.clone()).unwrap_or_default();
    lab.output(
        hosts::CLIENT,
        "curl",
        &[
            "-sf",
            "-o",
            "/dev/null",
            "--cacert",
            &lab.dir.join("flake/pki/ca.crt").display().to_string(),
            &format!("{addr}/v1/sys/health"),
        ],
        None,
    )
    .map(|o| o.status.success())
    .unwrap_or(false)
}

#[test]
fn hosts_lab_terminate_mode_stop_fails_nothing_and_the_lb_reboots() {
    common::hosts_preflight();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let guard = common::HostsGuard(dir.clone());
    let t0 = Instant::now();
    let lab = HostsLab::up(Some(&common::spec("hosts-terminate.toml")), &dir, false).expect("hosts lab up");
    eprintln!("hosts lab (terminate) ready in {:.1}s", t0.elapsed().as_secs_f64());

    // HAProxy binds the certificate its unit installed: the generated secrets/lb.pem, byte for byte.
    let pem = lab.state.checks.iter().find(|c| c.path == "/run/haproxy/vaultnix-lb.pem");
    assert!(pem.is_some_and(|c| c.equal() && c.generated == "secrets/lb.pem"), "{:?}", lab.state.checks);
    let mode =
        std::fs::metadata(format!("/proc/{}/root/run/haproxy/vaultnix-lb.pem", lab.anchor(&lab.plan.lb.name).unwrap()))
            .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600, "the installed key is 0600");
    assert!(status_through_lb(&lab), "the client reaches the cluster through the terminating LB");

    // HAProxy reaches the drain agents, then the active node is stopped the NixOS way, twice.
    let agents = common::wait_drain_agents(&lab);
    assert!(agents.iter().all(|s| s == "L7OK"), "HAProxy reaches every drain agent: {agents:?}");
    let o = TrialOptions {
        scenario: Scenario::LeaderStop,
        trials: 2,
        rate_hz: 20.0,
        timeout: Duration::from_secs(6),
        trial_limit: Duration::from_secs(90),
        ..Default::default()
    };
    let stop = vaultnix::drill::hosts_target::trials(&lab, "stop", &o, &NoProgress).unwrap();
    let requests: usize = stop.trials.iter().map(|t| t.figures.requests).sum();
    for t in &stop.trials {
        eprintln!("terminate, leader stop on the hosts: {} requests, errors {:?}", t.figures.requests, t.errors);
        assert_ne!(t.leader_after.as_deref(), Some(t.leader_before.as_str()), "leadership did not move");
        assert!(t.errors.is_empty(), "the stop path failed requests in terminate mode: {:?}", t.errors);
    }
    assert_eq!(stop.lost, 0, "{:?}", stop.verdict);
    eprintln!("terminate, leader stop on the hosts: 0 failed of {requests}, 0 lost");
    assert!(requests >= 100, "too few requests to mean anything: {requests}");

    // A power failure of the LB host: its /run is gone at boot, so the unit installs the
    // certificate again before HAProxy starts, and the client is served again.
    let lb = lab.plan.lb.name.clone();
    lab.crash(&lb).unwrap();
    assert!(!status_through_lb(&lab), "the crashed LB still answered");
    let anchor = lab.anchor(&lb).unwrap();
    std::fs::remove_file(format!("/proc/{anchor}/root/run/haproxy/vaultnix-lb.pem")).unwrap();
    lab.boot(&lb).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status_through_lb(&lab) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(status_through_lb(&lab), "the rebooted LB host does not serve");

    let st = lab.state.clone();
    lab.down(false).unwrap();
    let left = hosts::leftovers(&dir, &st);
    assert!(left.is_empty(), "left behind: {left:?}");
    drop(guard);
}
