//! Live tests against real OpenBao (VAULTNIX_BAO or `bao` on PATH) and real HAProxy, on loopback only.
//! One lab is shared by the scenario to keep CI time down; every wait is bounded.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vaultnix::api::{block_on, Cluster, NodeClient, NodeState};
use vaultnix::lab::{alloc_base, lab_plan, LabHandle};
use vaultnix::ops::bootstrap::{bootstrap, BootstrapOptions};
use vaultnix::ops::unseal::{unseal_all, unseal_node, Keys};

fn spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/lab.toml")
}

/// Polls `f` until it returns Some, at most `limit`; panics with `what` otherwise.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn lab_cluster_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabHandle::up(Some(&spec()), &tmp.path().join("lab")).expect("lab up");
    let dir = lab.dir().to_path_buf();
    let plan = lab.plan().clone();
    assert!(plan.nodes.iter().all(|n| n.ip.is_loopback()) && plan.lb.bind.is_loopback());
    let boot = lab.up.bootstrap.as_ref().expect("bootstrap ran");
    assert!(boot.changes.iter().any(|c| c.starts_with("initialized vault-1")), "{:?}", boot.changes);
    let init = dir.join("secrets/init.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&init).unwrap().permissions().mode() & 0o777, 0o600);
    let c = lab.cluster_with_root().unwrap();

    block_on(async {
        // "up" means ready (issue 15): right after `up` returns, every planned voter votes and autopilot
        // reports the planned failure tolerance, with no waiting here.
        let ap = c.nodes[0].autopilot_state().await.expect("autopilot state");
        assert!(ap.healthy && ap.failure_tolerance >= plan.quorum.tolerates as i64, "{ap:?}");
        let conf = c.nodes[0].raft_configuration().await.expect("raft configuration");
        assert_eq!(conf.servers.iter().filter(|s| s.voter).count(), plan.nodes.len(), "{conf:?}");
        // kv through the load balancer, verified against the lab CA under the LB hostname.
        let v = c.lb.kv_put("secret", "e2e/hello", &json!({ "answer": "42" })).await.expect("kv put via LB");
        assert!(v >= 1);
        let got = c.lb.kv_get("secret", "e2e/hello").await.expect("kv get via LB");
        assert_eq!(got, Some(json!({ "answer": "42" })));

        // status: 1 active, 2 standby, and (after autopilot promotes them) 3 healthy voters.
        let st = wait_for("3 healthy voters", Duration::from_secs(60), || async {
            let st = vaultnix::ops::status::status(&plan, &dir).await.ok()?;
            let ok = st.voters() == 3 && st.autopilot.as_ref().is_some_and(|a| a.healthy_voters == 3);
            ok.then_some(st)
        })
        .await;
        assert_eq!(st.count(NodeState::Active), 1, "{st:?}");
        assert_eq!(st.count(NodeState::Standby), 2, "{st:?}");
        assert!(st.nodes.iter().all(|n| n.cert_days_left.is_some_and(|d| d > 300)), "{st:?}");
        assert!(st.nodes.iter().all(|n| n.version.as_deref() == Some("2.7.2")));
        assert_eq!(st.autopilot.as_ref().unwrap().failure_tolerance, 1);

        // Bootstrap again: a no-op.
        let mut o = BootstrapOptions::new(&dir);
        o.kv = true;
        let rep = bootstrap(&plan, &o).await.expect("bootstrap re-run");
        assert!(rep.nothing_to_do(), "re-run changed: {:?}", rep.changes);
        assert!(rep.init_saved.is_none());

        // A certificate that does not match: dial vault-2's address but expect vault-1's name.
        let ca = std::fs::read(dir.join("flake/pki/ca.crt")).unwrap();
        let wrong = NodeClient::new("vault-1", "vault-1.vault.internal", plan.nodes[1].ip, 8200, &ca).unwrap();
        let e = wrong.health().await.expect_err("name mismatch must fail");
        assert!(e.is_certificate(), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("TLS certificate problem") && msg.contains("vault-1.vault.internal"), "{msg}");
        assert!(msg.contains(&plan.nodes[1].ip.to_string()), "{msg}");
        // A CA that did not sign the node certificates.
        let k = vaultnix::pki::generate_key(vaultnix::spec::KeyAlgorithm::EcdsaP256).unwrap();
        let other_ca = vaultnix::pki::new_ca_cert("other", &k, 10).unwrap();
        let other = Cluster::new(&plan, other_ca.as_bytes()).unwrap();
        let e = other.nodes[0].health().await.expect_err("foreign CA must fail");
        assert!(e.to_string().contains("not signed by the cluster CA"), "{e}");

        // kill -9 a standby, start it again: it comes back sealed.
        let active = vaultnix::ops::common::find_active(&c).await.expect("an active node");
        let victim = plan.nodes.iter().find(|n| n.name != active.name).unwrap().name.clone();
        assert!(lab.kill(&victim).unwrap());
        assert!(lab.pid(&victim).is_none());
        lab.start(&victim).unwrap();
        let vn = c.node(&victim).unwrap().clone();
        wait_for("restarted node answers sealed", Duration::from_secs(30), || async {
            matches!(vn.health().await, Ok(h) if h.state == NodeState::Sealed).then_some(())
        })
        .await;

        // A wrong key: clear error naming the node, nothing changed (still sealed, no progress).
        let good = Keys::from_file(&init).unwrap();
        let mut bad = good.clone();
        bad.0[1] = flip(&bad.0[1]);
        let e = unseal_node(&vn, &bad, Duration::from_secs(20)).await.expect_err("wrong key must fail");
        let msg = format!("{e:#}");
        assert!(msg.contains(&victim) && msg.contains("nothing changed"), "{msg}");
        let ss = vn.seal_status().await.unwrap();
        assert!(ss.sealed && ss.progress == 0, "{ss:?}");

        // `unseal` (every sealed node) brings it back, as a voter.
        let rep = unseal_all(&c, &good, Duration::from_secs(60)).await;
        assert_eq!(rep.unsealed, vec![victim.clone()], "{rep:?}");
        assert!(rep.failed.is_empty(), "{rep:?}");
        wait_for("restarted node healthy voter again", Duration::from_secs(60), || async {
            let st = vaultnix::ops::status::status(&plan, &dir).await.ok()?;
            let a = st.autopilot.as_ref()?;
            let up = st.nodes.iter().find(|n| n.name == victim)?.state == Some(NodeState::Standby);
            (up && a.healthy_voters == 3 && st.voters() == 3).then_some(())
        })
        .await;
        // The data written before the crash is still there, through the LB.
        assert_eq!(c.lb.kv_get("secret", "e2e/hello").await.unwrap(), Some(json!({ "answer": "42" })));
    });

    // HAProxy down and up again: the LB path recovers.
    assert!(lab.stop_haproxy().unwrap());
    let e = block_on(c.lb.health()).expect_err("LB is down");
    assert!(e.is_unreachable() && e.to_string().contains("load balancer"), "{e}");
    lab.start_haproxy().unwrap();
    block_on(wait_for("LB routes to the active node", Duration::from_secs(20), || async {
        matches!(c.lb.health().await, Ok(h) if h.state == NodeState::Active).then_some(())
    }));

    // Every node, its drain agent (`vaultnix node agent`, as the NixOS unit) and HAProxy.
    let names: Vec<String> = lab
        .node_names()
        .iter()
        .flat_map(|n| [n.clone(), vaultnix::lab::agent_name(n)])
        .chain(["haproxy".to_string()])
        .collect();
    let pids: Vec<u32> = names.iter().filter_map(|n| lab.pid(n)).collect();
    assert_eq!(pids.len(), 7, "{names:?}");
    let stopped = lab.down().unwrap();
    assert_eq!(stopped.len(), 7, "{stopped:?}");
    for p in pids {
        assert!(!vaultnix::lab::process::alive(p), "pid {p} still alive after down");
    }
    assert!(dir.join("data/vault-1").exists(), "down keeps data");
}

/// Changes one character of a base64 key (keeps its length, so the server sees a wrong share, not junk).
fn flip(k: &str) -> String {
    let mut b: Vec<char> = k.chars().collect();
    b[0] = if b[0] == 'A' { 'B' } else { 'A' };
    b.into_iter().collect()
}

#[test]
fn unreachable_node_is_named_with_its_address() {
    let base = alloc_base().unwrap();
    let plan = lab_plan(Some(&spec()), base).unwrap();
    let k = vaultnix::pki::generate_key(vaultnix::spec::KeyAlgorithm::EcdsaP256).unwrap();
    let ca = vaultnix::pki::new_ca_cert("lab", &k, 10).unwrap();
    let c = Cluster::new(&plan, ca.as_bytes()).unwrap();
    let e = block_on(c.nodes[1].health()).expect_err("nothing listens there");
    let msg = e.to_string();
    assert!(e.is_unreachable(), "{msg}");
    assert!(msg.starts_with(&format!("vault-2 (https://{}:8200): connection refused", plan.nodes[1].ip)), "{msg}");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("flake/pki")).unwrap();
    std::fs::write(tmp.path().join("flake/pki/ca.crt"), &ca).unwrap();
    let st = block_on(vaultnix::ops::status::status(&plan, tmp.path())).unwrap();
    assert!(st.nodes.iter().all(|n| !n.reachable && n.error.as_deref().is_some_and(|e| e.contains(&n.address))));
    let text = vaultnix::ops::status::render_text(&st);
    assert!(text.contains("unreachable") && text.contains("connection refused"), "{text}");
}
