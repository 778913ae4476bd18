//! Real Prometheus running the exact prometheus.yml and alert rules vaultnix renders (the files
//! modules/monitoring.nix deploys; only intervals and `for` durations are shortened through the
//! renderers' parameters) against a real lab: every target up and nothing firing on a healthy
//! cluster, the sealed-node alert on a sealed node, no-active-node when quorum is lost, and the
//! certificate-expiry alert for a short-lived certificate reported by `vaultnix metrics` through the
//! real node exporter's textfile collector.

mod common_lab;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vaultnix::lab::LabHandle;
use vaultnix::render::{render_alerts_with, render_prometheus, AlertTiming, Layout, PrometheusParams};

/// Kills the Prometheus it started (by pid) when the test ends, also on failure.
struct Prom {
    child: Child,
    url: String,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool").args(args).output().expect("promtool (Debian prometheus) is installed");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills the node exporter it started (by pid).
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_node_exporter(textfile: &Path, listen: &str) -> Exporter {
    let child = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address={listen}"))
        .arg("--collector.disable-defaults")
        .arg("--collector.textfile")
        .arg(format!("--collector.textfile.directory={}", textfile.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-node-exporter (Debian package, scripts/install-tools.sh) is installed");
    Exporter(child)
}

/// The same command modules/monitoring.nix's timer runs.
fn vaultnix_metrics(textfile: &Path, certs: &[(&str, &Path)], raft_dir: &Path) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vaultnix"));
    c.args(["--quiet", "metrics", "--textfile"]).arg(textfile);
    for (n, p) in certs {
        c.arg("--cert").arg(format!("{n}={}", p.display()));
    }
    let out = c.arg("--raft-dir").arg(raft_dir).output().unwrap();
    assert!(out.status.success(), "vaultnix metrics: {}", String::from_utf8_lossy(&out.stderr));
}

fn start_prometheus(dir: &Path, config: &Path) -> Prom {
    // A free loopback port (bound then released; Prometheus binds it right after).
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian package) is installed");
    Prom { child, url: format!("http://{listen}") }
}

/// One bounded API request (5 s), the `data` of the answer.
fn api(p: &Prom, path: &str) -> Option<serde_json::Value> {
    let out = Command::new("curl").args(["-sf", "--max-time", "5", &format!("{}{path}", p.url)]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    (v["status"] == "success").then(|| v["data"].clone())
}

/// (scrape URL, health) of every active target.
fn targets(p: &Prom) -> Vec<(String, String)> {
    api(p, "/api/v1/targets?state=active")
        .and_then(|d| d["activeTargets"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|t| (t["scrapeUrl"].as_str().unwrap_or("").to_string(), t["health"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// (alertname, labels) of every firing alert.
fn firing(p: &Prom) -> Vec<(String, serde_json::Value)> {
    api(p, "/api/v1/alerts")
        .and_then(|d| d["alerts"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| (a["labels"]["alertname"].as_str().unwrap_or("").to_string(), a["labels"].clone()))
        .collect()
}

fn scalar(p: &Prom, q: &str) -> Option<f64> {
    let d = api(
        p,
        &format!(
            "/api/v1/query?query={}",
            q.replace(' ', "%20").replace('"', "%22").replace('{', "%7B").replace('}', "%7D")
        ),
    )?;
    d["result"].as_array()?.first()?["value"][1].as_str()?.parse().ok()
}

/// Polls `f` every 500 ms for at most `secs` seconds.
fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_on_lab_healthy_sealed_no_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = common_lab::spec_in(tmp.path());
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("\n[monitoring]\nalert_for = \"2s\"\n");
    std::fs::write(&spec, text).unwrap();
    let dir = tmp.path().join("lab");
    let lab = LabHandle::up(Some(&spec), &dir).unwrap();
    let plan = lab.plan().clone();
    assert!(plan.nodes.iter().all(|n| n.ip.is_loopback()), "live traffic only to loopback");

    // The exact renderers generate uses; only the timing parameters differ.
    let pdir = tmp.path().join("prom");
    std::fs::create_dir_all(&pdir).unwrap();
    // What the host timer reports: the node's real certificate, the CA, vault-1's raft databases.
    let textfile = pdir.join("textfile");
    std::fs::create_dir_all(&textfile).unwrap();
    let ca = lab.dir().join("flake/pki/ca.crt");
    let node_cert = lab.dir().join("flake/pki/vault-1.crt");
    let raft_dir = lab.dir().join("data/vault-1");
    vaultnix_metrics(&textfile, &[("node", &node_cert), ("ca", &ca)], &raft_dir);
    let exporter_addr = format!("127.0.0.1:{}", free_port());
    let _exporter = start_node_exporter(&textfile, &exporter_addr);
    let rules = pdir.join("alerts.yml");
    let timing = AlertTiming { no_active_for: "2s".into(), slow_for: "2s".into(), ..AlertTiming::default() };
    std::fs::write(&rules, render_alerts_with(&plan, &timing)).unwrap();
    let params = PrometheusParams {
        scrape_interval: "1s".into(),
        evaluation_interval: "1s".into(),
        rules_file: rules.to_string_lossy().into_owned(),
        node_exporter: Some(exporter_addr.clone()),
        // The lab's load balancer runs no node exporter (HAProxy only).
        lb_node_exporter_port: None,
    };
    let config = pdir.join("prometheus.yml");
    std::fs::write(&config, render_prometheus(&plan, &Layout::Lab(lab.dir().to_path_buf()), &params)).unwrap();
    promtool(&["check", "rules", rules.to_str().unwrap()]);
    promtool(&["check", "config", config.to_str().unwrap()]);
    let p = start_prometheus(&pdir, &config);

    // Healthy: every node's metrics listener is up, autopilot settles, and then nothing fires.
    wait_for(60, "all four targets up (three servers, the node exporter)", || {
        let t = targets(&p);
        t.len() == 4 && t.iter().all(|(_, h)| h == "up")
    });
    wait_for(30, "the textfile metrics scraped", || {
        scalar(&p, "count(vaultnix_cert_not_after_timestamp_seconds)") == Some(2.0)
            && scalar(&p, "count(vaultnix_raft_db_size_bytes)") == Some(2.0)
    });
    wait_for(90, "autopilot failure tolerance 1", || {
        scalar(&p, "max(vault_autopilot_failure_tolerance{job=\"vaultnix\"})") == Some(1.0)
    });
    assert_eq!(scalar(&p, "sum(vault_core_active{job=\"vaultnix\"})"), Some(1.0), "one active node across the cluster");
    // Several evaluation rounds longer than every shortened `for`.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_secs(1));
        let f = firing(&p);
        assert!(f.is_empty(), "alerts firing on a healthy cluster: {f:?}");
    }

    // A short-lived node certificate (1 day, below the 21-day threshold): the expiry alert fires.
    let short = pdir.join("short.crt");
    let key = pdir.join("short.key");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=short",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&short)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    vaultnix_metrics(&textfile, &[("node", &short), ("ca", &ca)], &raft_dir);
    wait_for(60, "VaultnixNodeCertExpiring for the short-lived certificate", || {
        firing(&p).iter().any(|(a, l)| a == "VaultnixNodeCertExpiring" && l["cert"] == "node")
    });
    assert!(!firing(&p).iter().any(|(a, _)| a == "VaultnixCaCertExpiring"), "the CA is long-lived");
    vaultnix_metrics(&textfile, &[("node", &node_cert), ("ca", &ca)], &raft_dir);
    wait_for(60, "VaultnixNodeCertExpiring resolved with the real certificate", || {
        !firing(&p).iter().any(|(a, _)| a == "VaultnixNodeCertExpiring")
    });

    // Sealed: seal a standby; VaultnixNodeSealed fires for that node (and only for it).
    let root = lab.root_token().unwrap();
    let active = vaultnix::api::block_on(async {
        vaultnix::ops::common::find_active(&lab.cluster().unwrap()).await.map(|n| n.name)
    })
    .unwrap();
    let victim = lab.node_names().into_iter().find(|n| *n != active).unwrap();
    let node = plan.node(&victim).unwrap();
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "10", "-X", "PUT", "--cacert"])
        .arg(lab.dir().join("flake/pki/ca.crt"))
        .args(["-H", &format!("X-Vault-Token: {root}")])
        .arg(format!("https://{}:{}/v1/sys/seal", node.ip, plan.api_port))
        .output()
        .unwrap();
    assert!(out.status.success(), "sealing {victim}: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(60, "VaultnixNodeSealed for the sealed node", || {
        firing(&p).iter().any(|(a, l)| a == "VaultnixNodeSealed" && l["node"] == victim.as_str())
    });
    let f = firing(&p);
    assert!(
        f.iter().filter(|(a, _)| a == "VaultnixNodeSealed").all(|(_, l)| l["node"] == victim.as_str()),
        "only the sealed node is reported sealed: {f:?}"
    );
    assert!(!f.iter().any(|(a, _)| a == "VaultnixNoActiveNode" || a == "VaultnixNodeDown"), "{f:?}");

    // Unsealed again: the alert resolves.
    lab.unseal(&victim).unwrap();
    wait_for(60, "VaultnixNodeSealed resolved after unseal", || {
        !firing(&p).iter().any(|(a, _)| a == "VaultnixNodeSealed")
    });

    // Quorum lost: kill the two other nodes (the active one among them). The unsealed survivor
    // cannot become active alone: VaultnixNoActiveNode fires, the killed ones are down.
    for n in lab.node_names().into_iter().filter(|n| *n != victim) {
        assert!(lab.kill(&n).unwrap());
    }
    wait_for(60, "VaultnixNoActiveNode after losing quorum", || {
        firing(&p).iter().any(|(a, _)| a == "VaultnixNoActiveNode")
    });
    wait_for(30, "VaultnixNodeDown for the killed nodes", || {
        firing(&p).iter().filter(|(a, _)| a == "VaultnixNodeDown").count() == 2
    });
    drop(p);
    lab.down().unwrap();
}
