//! OpenBao declarative self-initialization, live: a 3-node static-seal lab whose bootstrap node
//! initializes itself from the rendered `initialize` stanza. Real bao 2.7.2 and HAProxy on loopback
//! (a base from `lab::alloc_base()`); every wait is bounded.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vaultnix::api::{block_on, NodeState};
use vaultnix::lab::LabHandle;
use vaultnix::ops::bootstrap::{bootstrap, BootstrapOptions};
use vaultnix::ops::common::{admin_identity, resolve_token};

fn spec() -> PathBuf {
    let bao = std::env::var_os("VAULTNIX_BAO").map(PathBuf::from);
    let bao = bao.unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.7.2/bao")));
    assert!(bao.is_file(), "no bao at {} (set VAULTNIX_BAO): live tests need the real server", bao.display());
    std::env::set_var("VAULTNIX_BAO", &bao);
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/selfinit.toml")
}

#[test]
fn self_initialized_cluster_is_reachable_only_through_the_operator_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabHandle::up(Some(&spec()), &tmp.path().join("lab")).expect("lab up (self-init bootstrap)");
    let dir = lab.dir().to_path_buf();
    let plan = lab.plan().clone();
    assert!(plan.nodes.iter().all(|n| n.ip.is_loopback()) && plan.lb.bind.is_loopback());

    // The bootstrap verified the outcome and said there is no root material.
    let boot = lab.up.bootstrap.as_ref().expect("bootstrap ran");
    assert!(boot.init_saved.is_none(), "{boot:?}");
    assert!(!dir.join("secrets/init.json").exists(), "self-init must not write init.json");
    let notes = boot.notes.join("\n");
    assert!(notes.contains("NO recovery keys and NO root token"), "{notes}");
    assert!(notes.contains("cert login works"), "{notes}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.join("secrets/admin.key")).unwrap().permissions().mode() & 0o777, 0o600);

    // Only the bootstrap node carries the initialize stanza.
    for n in &plan.nodes {
        let cfg = std::fs::read_to_string(dir.join(format!("flake/nodes/{}.server.json", n.name))).unwrap();
        assert_eq!(cfg.contains("\"initialize\""), n.name == plan.bootstrap_node, "{}", n.name);
    }

    let c = lab.cluster().unwrap();
    block_on(async {
        // Without the client certificate there is no way in: the login is refused.
        let e = c.lb.login_cert("vaultnix-admin").await.expect_err("login without a client certificate");
        assert!(matches!(e.status(), Some(400..=403)), "{e}");

        // Cert login through the load balancer (TLS passthrough carries the client certificate).
        let id = admin_identity(&dir).expect("flake/pki/admin.crt + secrets/admin.key");
        let lb = c.lb.clone().with_identity(&id).unwrap();
        let auth = lb.login_cert("vaultnix-admin").await.expect("cert login via LB");
        assert!(auth.policies.iter().any(|p| p == "vaultnix-admin"), "{auth:?}");
        let lb = lb.with_token(Some(auth.client_token.clone()));

        // kv-v2 from the initialize stanza, through the LB.
        let v = lb.kv_put("secret", "selfinit/hello", &json!({ "answer": "42" })).await.expect("kv put via LB");
        assert!(v >= 1);
        assert_eq!(lb.kv_get("secret", "selfinit/hello").await.unwrap(), Some(json!({ "answer": "42" })));

        // The admin policy reaches sudo paths (raft configuration) and the audit device is active.
        let cfg = lb.raft_configuration().await.expect("raft configuration with the cert-login token");
        assert_eq!(cfg.servers.iter().filter(|s| s.voter).count(), 3, "{cfg:?}");
        assert!(!lb.audit_devices().await.unwrap().is_empty(), "no audit device");

        // Live commands find a token without init.json: the cert login fallback.
        let active = vaultnix::ops::common::find_active(&c).await.expect("an active node");
        let t = resolve_token(&active, &dir).await.expect("token via cert login");
        assert!(!t.is_empty());

        // status: 1 active, 2 standby, 3 healthy voters (autopilot promotes them after stabilization).
        let start = Instant::now();
        let st = loop {
            let st = vaultnix::ops::status::status(&plan, &dir).await.expect("status");
            if st.voters() == 3 && st.autopilot.as_ref().is_some_and(|a| a.healthy_voters == 3) {
                break st;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no 3 healthy voters within 60 s: {st:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(st.count(NodeState::Active), 1, "{st:?}");
        assert_eq!(st.count(NodeState::Standby), 2, "{st:?}");
        // One cluster id everywhere, and status says nothing about a split.
        let ids: std::collections::BTreeSet<_> = st.nodes.iter().map(|n| n.cluster_id.clone()).collect();
        assert!(ids.len() == 1 && ids.iter().all(|i| i.is_some()), "cluster ids: {ids:?}");
        assert!(!st.warnings.iter().any(|w| w.contains("different clusters")), "{:?}", st.warnings);
        // Bootstrap recorded that one cluster id in the tree: the next generate drops the initialize stanza.
        let m = vaultnix::output::read_manifest(&dir).unwrap().expect("manifest.json");
        assert_eq!(m.initialized.as_ref(), ids.iter().next().unwrap().as_ref(), "manifest initialized record");

        // A second bootstrap changes nothing.
        let mut o = BootstrapOptions::new(&dir);
        o.kv = true;
        let rep = bootstrap(&plan, &o).await.expect("bootstrap re-run");
        assert!(rep.nothing_to_do(), "re-run changed: {:?}", rep.changes);
        assert!(rep.init_saved.is_none());
    });
    lab.down().unwrap();
}

/// The operator certificate is issued once and kept: re-running generate leaves the key and certificate
/// byte-identical; it is a client-only certificate of the cluster CA (checked by openssl).
#[test]
fn operator_certificate_is_kept_across_generate_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let gen = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vaultnix"))
            .args(["generate", "--quiet", "--spec"])
            .arg(spec())
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    gen();
    let key = std::fs::read(out.join("secrets/admin.key")).unwrap();
    let crt = std::fs::read(out.join("flake/pki/admin.crt")).unwrap();
    gen();
    assert_eq!(std::fs::read(out.join("secrets/admin.key")).unwrap(), key);
    assert_eq!(std::fs::read(out.join("flake/pki/admin.crt")).unwrap(), crt);

    let info = vaultnix::pki::inspect(&String::from_utf8(crt).unwrap()).unwrap();
    assert!(info.client_auth && !info.server_auth && info.subject.contains("CN=vaultnix-admin"), "{info:?}");
    let verify = |purpose: &str| {
        let o = std::process::Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(out.join("flake/pki/ca.crt"))
            .arg(out.join("flake/pki/admin.crt"))
            .output()
            .expect("openssl must be installed");
        o.status.success()
    };
    assert!(verify("sslclient"), "openssl refuses flake/pki/admin.crt as a client certificate");
    assert!(!verify("sslserver"), "flake/pki/admin.crt must not be usable as a server certificate");
}

/// Self-init is one-shot: once the tree records the cluster as initialized (what `bootstrap` writes),
/// `generate` renders no `initialize` stanza on any node, says so, and keeps the record on every later
/// run. Before that the bootstrap node alone carries the stanza.
#[test]
fn initialize_stanza_is_dropped_once_the_tree_records_initialization() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let gen = |extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vaultnix"))
            .args(["generate", "--output", "json", "--spec"])
            .arg(spec())
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        // `--check` exits non-zero on drift; every other run must succeed.
        assert!(o.status.success() || extra == ["--check"], "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("generate --output json")
    };
    let loaded = vaultnix::spec::load_file(&spec()).unwrap();
    let plan = vaultnix::plan::Plan::from_loaded(&loaded);
    let has_init = |n: &str| {
        let cfg = std::fs::read_to_string(out.join(format!("flake/nodes/{n}.server.json"))).unwrap();
        serde_json::from_str::<serde_json::Value>(&cfg).unwrap().get("initialize").is_some()
    };
    let manifest = || vaultnix::output::read_manifest(&out).unwrap().expect("manifest.json");

    gen(&[]);
    for n in &plan.nodes {
        assert_eq!(has_init(&n.name), n.name == plan.bootstrap_node, "{}", n.name);
    }
    assert_eq!(manifest().initialized, None);

    assert!(vaultnix::output::record_initialized(&out, "c0ffee-1").unwrap());
    assert!(!vaultnix::output::record_initialized(&out, "c0ffee-1").unwrap(), "same id twice: no change");
    // The recorded tree is drift now: the bootstrap node's config must be regenerated and deployed.
    let chk = gen(&["--check"]);
    assert_eq!(chk["drift"], serde_json::json!(true), "{chk}");

    let g = gen(&[]);
    let events = g["events"].to_string();
    assert!(events.contains("no longer rendered"), "{events}");
    assert!(g["changed"].to_string().contains(&format!("{}.server.json", plan.bootstrap_node)), "{g}");
    for n in &plan.nodes {
        assert!(!has_init(&n.name), "{} still carries the initialize stanza", n.name);
    }
    assert_eq!(manifest().initialized.as_deref(), Some("c0ffee-1"));
    // Kept on every later run, and the tree is then in sync.
    gen(&[]);
    assert_eq!(manifest().initialized.as_deref(), Some("c0ffee-1"));
    assert!(!plan.nodes.iter().any(|n| has_init(&n.name)));
    assert_eq!(gen(&["--check"])["drift"], serde_json::json!(false));
}

/// The node-replace path: after bootstrap, regenerate (the stanza is dropped), wipe the bootstrap
/// node's raft data and start it with the new config: it joins the existing cluster through
/// retry_join instead of initializing a second one, and one cluster id is seen everywhere.
#[test]
fn bootstrap_node_with_empty_storage_joins_after_regenerate() {
    use vaultnix::generate::{generate, GenerateOptions};
    use vaultnix::render::{Layout, RenderOptions};
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabHandle::up(Some(&spec()), &tmp.path().join("lab")).expect("lab up (self-init bootstrap)");
    let dir = lab.dir().to_path_buf();
    let plan = lab.plan().clone();
    let boot = plan.bootstrap_node.clone();
    let first = vaultnix::output::read_manifest(&dir).unwrap().unwrap().initialized.expect("recorded by bootstrap");

    let g = generate(
        &plan,
        &Layout::Lab(dir.clone()),
        &GenerateOptions {
            out: dir.clone(),
            check: false,
            rotate: Default::default(),
            render: RenderOptions { nix: false, ..RenderOptions::default() },
        },
    )
    .expect("regenerate");
    assert!(g.diff.changed.iter().any(|p| p.ends_with(&format!("{boot}.server.json"))), "{:?}", g.diff);
    let cfg = std::fs::read_to_string(dir.join(format!("flake/nodes/{boot}.server.json"))).unwrap();
    assert!(!cfg.contains("\"initialize\""), "{cfg}");

    assert!(lab.stop(&boot).unwrap(), "{boot} was running");
    let data = dir.join(format!("data/{boot}"));
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap()
        } else {
            std::fs::remove_file(&p).unwrap()
        }
    }
    lab.start(&boot).unwrap();

    block_on(async {
        let start = Instant::now();
        let st = loop {
            let st = vaultnix::ops::status::status(&plan, &dir).await.expect("status");
            let up = st.count(NodeState::Active) + st.count(NodeState::Standby);
            if up == 3 && st.nodes.iter().all(|n| n.cluster_id.is_some()) {
                break st;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{boot} did not rejoin within 60 s: {st:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let ids: std::collections::BTreeSet<_> = st.nodes.iter().map(|n| n.cluster_id.clone()).collect();
        assert_eq!(ids.len(), 1, "cluster ids after the wipe: {ids:?}");
        assert_eq!(ids.into_iter().next().unwrap().as_deref(), Some(first.as_str()), "a second cluster formed");
    });
    lab.down().unwrap();
}
