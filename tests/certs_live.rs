//! Certificate renewal on a real lab while a client works through the load balancer: `certs renew
//! --all` reissues under the same CA, SIGHUPs the nodes and verifies, over fresh TLS handshakes, that
//! every listener serves the new certificate. No client request may fail.

mod common_ops;

use assert_cmd::Command;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vaultnix::api::block_on;
use vaultnix::lab::LabHandle;

#[test]
fn renew_reload_and_verify_served_certificates_without_failed_requests() {
    let _g = common_ops::serial();
    let t = tempfile::tempdir().unwrap();
    let spec = common_ops::spec_in(t.path(), common_ops::SPEC);
    let dir = t.path().join("lab");
    let lab = LabHandle::up(Some(&spec), &dir).expect("lab up");
    let c = lab.cluster_with_root().unwrap();
    let plan = lab.plan().clone();
    let before = block_on(vaultnix::ops::certs::verify_served(&plan, &dir, 1, Duration::from_millis(100))).unwrap();
    assert!(before.iter().all(|s| s.ok), "{before:?}");
    let ca_before = std::fs::read(dir.join("flake/pki/ca.crt")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let lb = c.lb.clone().with_timeout(Duration::from_secs(10));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let (mut ok, mut failed, mut errors) = (0usize, 0usize, Vec::new());
                let t0 = Instant::now();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) && i < 100_000 && t0.elapsed() < Duration::from_secs(300) {
                    let r = if i % 2 == 0 {
                        lb.kv_put("secret", &format!("tls/{i}"), &json!({ "i": i })).await.map(|_| ())
                    } else {
                        lb.kv_get("secret", &format!("tls/{}", i - 1)).await.map(|_| ())
                    };
                    match r {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            failed += 1;
                            errors.push(e.to_string());
                        }
                    }
                    i += 1;
                }
                (ok, failed, errors)
            })
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let a = Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["certs", "renew", "--all", "--out"])
        .arg(&dir)
        .timeout(Duration::from_secs(180))
        .assert()
        .success();
    let renew_s = t0.elapsed().as_secs_f64();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    eprintln!("{out}");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, errors) = client.join().unwrap();
    eprintln!(
        "client through the LB during renewal: {ok} ok, {failed} failed; renew + reload + verify took {renew_s:.2} s"
    );
    for n in ["vault-1", "vault-2", "vault-3"] {
        assert!(out.contains(&format!("renewed {n}")), "{out}");
        assert!(out.contains(&format!("{n}: serves flake/pki/{n}.crt")), "{out}");
    }
    let after = block_on(vaultnix::ops::certs::verify_served(&plan, &dir, 1, Duration::from_millis(100))).unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert!(a.ok, "{a:?}");
        assert_ne!(b.served, a.served, "{} serves a new certificate", a.node);
    }
    assert_eq!(std::fs::read(dir.join("flake/pki/ca.crt")).unwrap(), ca_before, "same CA");
    assert!(ok > 50, "the client made progress");
    assert_eq!(failed, 0, "requests failed during the renewal: {errors:?}");
    lab.down().unwrap();
}
