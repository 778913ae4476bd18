//! `vaultnix doctor --live` on a real lab (OpenBao + HAProxy on its own loopback range): quiet on a good
//! cluster; a stopped node's unreachable cluster port (and API) is found.

mod common_lab;

use std::time::{Duration, Instant};
use vaultnix::doctor::{self, OfflineOptions, Report, Severity};
use vaultnix::lab::LabHandle;
use vaultnix::recover::Target;

fn problems(r: &Report) -> String {
    r.at_least(Severity::Info)
        .map(|f| format!("{:?} [{}] {:?}: {}", f.severity, f.check, f.node, f.what))
        .collect::<Vec<_>>()
        .join("\n")
}

fn full(t: &Target) -> Report {
    let mut o = OfflineOptions::new(t.out.clone(), t.layout.clone());
    o.render = t.render.clone();
    let mut r = doctor::offline(&t.plan, &o);
    r.extend(vaultnix::api::block_on(doctor::live(&t.plan, &doctor::LiveOptions::new(t.out.clone()))));
    r
}

#[test]
fn live_doctor_quiet_then_finds_stopped_node() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = common_lab::spec_in(tmp.path());
    let dir = tmp.path().join("lab");
    let lab = LabHandle::up(Some(&spec), &dir).unwrap();
    let plan0 = vaultnix::plan::Plan::from_loaded(&vaultnix::spec::load_file(&spec).unwrap());
    let t = Target::open(plan0, lab.dir(), Some(&spec)).unwrap();
    assert!(t.is_lab());
    assert!(t.plan.nodes.iter().all(|n| n.ip.is_loopback()), "live traffic only to loopback");

    // Right after bootstrap autopilot may still be promoting the joiners: wait (bounded) for quiet.
    let start = Instant::now();
    let mut r = full(&t);
    while r.at_least(Severity::Warning).count() > 0 && start.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_secs(2));
        r = full(&t);
    }
    assert_eq!(r.at_least(Severity::Warning).count(), 0, "a good lab cluster must be quiet:\n{}", problems(&r));
    for n in ["vault-1", "vault-2", "vault-3"] {
        assert!(r.has("tls-api", Severity::Ok, Some(n)));
        assert!(r.has("cluster-port", Severity::Ok, Some(n)));
    }
    assert!(r.has("raft-peers", Severity::Ok, None), "{}", problems(&r));
    assert!(r.has("autopilot", Severity::Ok, None), "{}", problems(&r));
    assert!(r.has("tls-lb", Severity::Ok, None), "{}", problems(&r));
    eprintln!("doctor: good lab quiet after {:.1} s", start.elapsed().as_secs_f64());

    // Stop a standby: its cluster port and API must be reported, the rest stays fine.
    let active = vaultnix::api::block_on(async {
        vaultnix::ops::common::find_active(&lab.cluster().unwrap()).await.map(|n| n.name)
    })
    .unwrap();
    let victim = lab.node_names().into_iter().find(|n| *n != active).unwrap();
    assert!(lab.stop(&victim).unwrap());
    let r = full(&t);
    assert!(r.has("cluster-port", Severity::Error, Some(&victim)), "{}", problems(&r));
    assert!(r.has("health", Severity::Error, Some(&victim)), "{}", problems(&r));
    assert!(r.has("cluster-port", Severity::Ok, Some(&active)));
    assert_eq!(r.exit_code(), 1);
    lab.down().unwrap();
}
