//! Rolling upgrade on a real lab in `load_balancer.mode = "terminate"`, OpenBao 2.6.2 → 2.7.2, every
//! node stopped through the stop path (`vaultnix node drain`, then SIGTERM), while a client that does
//! not retry writes through the load balancer: 0 failed, 0 lost (issue 16).

mod common_ops;

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vaultnix::api::block_on;
use vaultnix::lab::LabHandle;
use vaultnix::ops::upgrade::{self, UpgradeOptions};

const OLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.6.2/bao");

#[test]
fn rolling_upgrade_in_terminate_mode_fails_no_request() {
    let _g = common_ops::serial();
    let old = std::path::PathBuf::from(std::env::var("VAULTNIX_BAO_OLD").unwrap_or_else(|_| OLD.into()));
    assert!(old.is_file(), "no bao 2.6.x at {} (set VAULTNIX_BAO_OLD)", old.display());
    let new = common_ops::bao_2_7();
    assert_eq!(upgrade::binary_version(&old).unwrap(), "2.6.2");
    assert_eq!(upgrade::binary_version(&new).unwrap(), "2.7.2");
    // This test binary runs only this test: the lab starts on the old binary.
    std::env::set_var("VAULTNIX_BAO", &old);
    let t = tempfile::tempdir().unwrap();
    let text = common_ops::SPEC
        .replace("provider = \"onprem\"\n\n[overlay]", "provider = \"onprem\"\nmode = \"terminate\"\n\n[overlay]");
    assert!(text.contains("mode = \"terminate\""), "the spec's [load_balancer] is where the test expects it");
    let spec = common_ops::spec_in(t.path(), &text);
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
                let (mut acked, mut failed) = (Vec::new(), 0usize);
                let t0 = Instant::now();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) && i < 200_000 && t0.elapsed() < Duration::from_secs(600) {
                    match lb.kv_put("secret", &format!("upg/{i}"), &json!({ "i": i })).await {
                        Ok(_) => acked.push(i),
                        Err(_) => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    i += 1;
                }
                (acked, failed, i)
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
    let (acked, failed, sent) = writer.join().unwrap();
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
    eprintln!(
        "client through the LB: {sent} writes sent, {} acknowledged, {failed} failed (reported), {} acknowledged lost",
        acked.len(),
        lost.len()
    );
    assert!(sent >= 1000, "at least 1,000 requests, got {sent}");
    assert_eq!(failed, 0, "failed requests during the rolling upgrade in terminate mode");
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let st = std::fs::read_to_string(dir.join("lab.json")).unwrap();
    assert!(st.contains("bao-2.7.2"), "the lab now starts the new binary: {st}");
    lab.down().unwrap();
}
