//! TLS policy: every listener TLS 1.2+ (the metrics listener included: it is scraped across the overlay);
//! HAProxy passes client TLS through and verifies node certificates on health checks, or, in
//! `load_balancer.mode = "terminate"`, terminates with the LB certificate and re-encrypts with `ssl verify
//! required` + `verifyhost`. Proven live against a real `bao server` started from the generated lab
//! config: TLS 1.1 refused (with a positive control showing the client really offers 1.1), TLS 1.3
//! negotiated, and the served certificate chains to our CA. The API client's refusal of a certificate
//! from another CA is tested live in tests/lab_cluster.rs (`lab_cluster_end_to_end`).

mod fuzz_support;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vaultnix::generate::{self, GenerateOptions};
use vaultnix::plan::Plan;
use vaultnix::render::{self, Layout, RenderOptions};
use vaultnix::secrets::Rotate;

fn variants() -> Vec<(String, String)> {
    let ex = vaultnix::spec::EXAMPLE;
    let mut v: Vec<(String, String)> =
        fuzz_support::seeds().into_iter().enumerate().map(|(i, s)| (format!("seed #{i}"), s)).collect();
    v.push((
        "tls13".into(),
        ex.replace("node_validity_days = 365", "node_validity_days = 365\nmin_version = \"tls13\""),
    ));
    v.push(("openbao 2.4 (no metrics listener)".into(), ex.replace("version = \"2.7.2\"", "version = \"2.4.0\"")));
    v.push((
        "vault engine".into(),
        ex.replace("engine = \"openbao\"", "engine = \"vault\"").replace("version = \"2.7.2\"", "version = \"1.17.0\""),
    ));
    v
}

#[test]
fn every_rendered_listener_is_tls12_plus_or_loopback_metrics() {
    let mut listeners = 0;
    let mut metrics = 0;
    for (name, text) in variants() {
        let loaded = vaultnix::spec::load_str(&name, &text, Path::new(".")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = Plan::from_loaded(&loaded);
        let lab = plan.for_lab(Ipv4Addr::new(127, 55, 1, 10));
        for (p, layout) in [(&plan, Layout::NixOs), (&lab, Layout::Lab(PathBuf::from("/tmp/x")))] {
            for n in &p.nodes {
                let cfg = render::render_server_config(p, n, &layout);
                fuzz_support::check_listeners(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
                for (lname, l) in cfg["listener"].as_object().unwrap() {
                    listeners += 1;
                    // Every listener is TLS, the metrics listener included (it is scraped across the
                    // overlay by every server's Prometheus, without a token).
                    assert!(l.get("tls_disable").is_none(), "{name}: {lname} without TLS");
                    if lname == "metrics" {
                        metrics += 1;
                        assert_eq!(l["telemetry"]["unauthenticated_metrics_access"], true, "{name}");
                    }
                    let v = l["tls_min_version"].as_str().unwrap();
                    assert!(v == "tls12" || v == "tls13", "{name}: {v}");
                    assert_eq!(v, p.tls.min_version, "{name}: the spec's min_version is what renders");
                    assert!(l["tls_cert_file"].is_string() && l["tls_key_file"].is_string(), "{name}");
                }
            }
        }
    }
    assert!(listeners > 20 && metrics > 5, "{listeners} listeners, {metrics} metrics listeners");
    // The checker itself rejects what it must.
    let bad = serde_json::json!({"listener": {"api": {"address": "0.0.0.0:8200", "tls_disable": true}}});
    assert!(fuzz_support::check_listeners(&bad).is_err());
    let bad = serde_json::json!({"listener": {"api": {"address": "10.0.0.1:8200", "tls_min_version": "tls10"}}}); // fixture value, never dialled
    assert!(fuzz_support::check_listeners(&bad).is_err());
    let bad = serde_json::json!({"listener": {"m": {"address": "10.0.0.1:9102", "tls_disable": true, "telemetry": {"metrics_only": true}}}}); // fixture value, never dialled
    assert!(fuzz_support::check_listeners(&bad).is_err());
}

#[test]
fn haproxy_passes_tls_through_and_verifies_nodes() {
    let mut terminated = 0;
    for (name, text) in variants() {
        let loaded = vaultnix::spec::load_str(&name, &text, Path::new(".")).unwrap();
        let plan = Plan::from_loaded(&loaded);
        let lab = plan.for_lab(Ipv4Addr::new(127, 55, 1, 10));
        for (p, layout) in [(&plan, Layout::NixOs), (&lab, Layout::Lab(PathBuf::from("/tmp/x")))] {
            let cfg = render::render_haproxy(p, &layout);
            fuzz_support::check_haproxy(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
            if p.lb.mode == vaultnix::spec::LbMode::Terminate {
                // The L7 mode: TLS ends at HAProxy (the LB key from the secrets) and is re-encrypted to
                // each node, verified against the CA for the node's name.
                let backend = section(&cfg, "backend vault_active");
                for n in &p.nodes {
                    let want = format!(" ssl verify required ca-file {} sni str({})", layout.ca_file(p), n.fqdn);
                    assert!(backend.contains(&want), "{name}: {backend}");
                }
                assert!(section(&cfg, "frontend vault_api").contains(&format!("ssl crt {}", layout.haproxy_lb_pem())));
                terminated += 1;
                continue;
            }
            let api = section(&cfg, "frontend vault_api");
            assert!(!api.contains("mode http"), "{name}: API frontend must stay mode tcp");
            assert!(!api.contains("ssl") && !api.contains("crt"), "{name}: API frontend terminates TLS:\n{api}");
            let backend = section(&cfg, "backend vault_active");
            assert!(!backend.contains("mode http"), "{name}");
            let servers: Vec<&str> = backend.lines().map(str::trim).filter(|l| l.starts_with("server ")).collect();
            assert_eq!(servers.len(), p.nodes.len(), "{name}");
            for s in servers {
                assert!(s.contains(" check-ssl verify required ca-file "), "{name}: {s}");
                assert!(s.contains(" verifyhost "), "{name}: {s}");
                // Client traffic to the node is not re-encrypted by HAProxy: no `ssl` on the server line
                // itself, only on the health check (check-ssl).
                assert!(!s.split_whitespace().any(|w| w == "ssl"), "{name}: {s}");
            }
            assert!(cfg.contains("ssl-default-server-options ssl-min-ver TLSv1.2"), "{name}");
            assert!(!cfg.contains("ssl crt"), "{name}");
        }
    }
    // tests/specs/lab-terminate.toml is among the seeds: once per layout.
    assert!(terminated >= 2, "no terminate-mode variant checked");
}

fn section<'a>(cfg: &'a str, header: &str) -> &'a str {
    let start = cfg.find(&format!("\n{header}\n")).unwrap_or_else(|| panic!("no {header}"));
    let rest = &cfg[start + 1..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    &rest[..end]
}

// ----------------------------------------------------------------------------------------------------
// Live: a real bao server on loopback
// ----------------------------------------------------------------------------------------------------

/// Kills and reaps the server when the test ends, however it ends.
struct Server {
    child: Child,
    log: PathBuf,
}
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free 127.X.Y.10 base (the shared allocator `vaultnix::lab::alloc_base` is not on this branch yet):
/// random X.Y, checked by binding every port the single node will use.
fn alloc_base(ports: &[u16]) -> Ipv4Addr {
    for attempt in 0..200u32 {
        let mut b = [0u8; 2];
        getrandom::getrandom(&mut b).unwrap();
        let base = Ipv4Addr::new(127, 100 + b[0] % 150, b[1].max(1), 10);
        let node = Ipv4Addr::from(u32::from(base) + 1);
        let free = ports.iter().all(|p| TcpListener::bind((node, *p)).is_ok());
        if free {
            return base;
        }
        assert!(attempt < 199, "no free loopback address found");
    }
    unreachable!()
}

fn bao() -> PathBuf {
    let p = std::env::var("VAULTNIX_BAO")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.7.2/bao").into());
    let p = PathBuf::from(p);
    assert!(p.is_file(), "bao not found at {} (set VAULTNIX_BAO): this test needs a real server", p.display());
    p
}

fn start_server(dir: &Path, min_version: &str) -> (Server, SocketAddr, Plan) {
    let text = format!(
        r#"
[cluster]
name = "tlstest"
allow_single_node = true
[load_balancer]
hostname = "vault.example.com"
address = "192.0.2.1"
[overlay]
kind = "none"
[tls]
min_version = "{min_version}"
[[nodes]]
name = "n1"
provider = "onprem"
address = "192.0.2.11"
"#
    );
    let loaded = vaultnix::spec::load_str("tls.toml", &text, dir).unwrap();
    let layout = Layout::Lab(dir.to_path_buf());
    let base = alloc_base(&[8200, 8201, 9102]);
    let plan = Plan::from_loaded(&loaded).for_lab(base);
    let opts = GenerateOptions {
        out: dir.to_path_buf(),
        check: false,
        rotate: Rotate::default(),
        render: RenderOptions { nix: false, ..RenderOptions::default() },
    };
    generate::generate(&plan, &layout, &opts).unwrap();
    std::fs::create_dir_all(dir.join("data/n1")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let log = dir.join("bao.log");
    let logf = std::fs::File::create(&log).unwrap();
    let child = Command::new(bao())
        .arg("server")
        .arg(format!("-config={}", dir.join("flake/nodes/n1.server.json").display()))
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server { child, log };
    let addr = SocketAddr::new(plan.nodes[0].ip, plan.api_port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        if let Ok(Some(st)) = server.child.try_wait() {
            panic!("bao exited ({st}):\n{}", read(&server.log));
        }
        assert!(Instant::now() < deadline, "bao did not listen on {addr} within 60 s:\n{}", read(&server.log));
        std::thread::sleep(Duration::from_millis(200));
    }
    (server, addr, plan)
}

fn read(p: &Path) -> String {
    let mut s = String::new();
    let _ = std::fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
    s
}

struct Handshake {
    ok: bool,
    protocol: Option<String>,
    verified: bool,
    output: String,
}

/// One handshake with openssl s_client, bounded in time. `-cipher DEFAULT@SECLEVEL=0` lets the client
/// offer TLS 1.0/1.1 at all (OpenSSL 3 refuses to by default), so a refusal is the server's.
fn handshake(addr: SocketAddr, servername: &str, ca: &Path, proto: &str) -> Handshake {
    let o = Command::new("timeout")
        .args(["20", "openssl", "s_client"])
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-servername", servername, proto, "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile"])
        .arg(ca)
        .arg("-verify_return_error")
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    let output = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let protocol = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Protocol  : ").or_else(|| l.trim().strip_prefix("Protocol: ")))
        .map(|s| s.trim().to_string())
        .or_else(|| {
            output.lines().find_map(|l| l.strip_prefix("New, ")).and_then(|l| l.split(',').next()).map(str::to_string)
        });
    let verified = output.contains("Verify return code: 0 (ok)");
    Handshake {
        ok: o.status.success() && protocol.as_deref().is_some_and(|p| p != "(NONE)"),
        protocol,
        verified,
        output,
    }
}

/// Positive control: an openssl server that does allow TLS 1.1, so "refused" below is not the client's doing.
fn client_can_speak_tls11(dir: &Path, ip: Ipv4Addr) {
    let port = {
        let l = TcpListener::bind((ip, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = Command::new("openssl")
        .args(["s_server", "-accept"])
        .arg(format!("{ip}:{port}"))
        .arg("-cert")
        .arg(dir.join("flake/pki/n1.crt"))
        .arg("-key")
        .arg(dir.join("secrets/n1.key"))
        .args(["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-www"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::new(ip.into(), port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = handshake(addr, "n1.vault.internal", &dir.join("flake/pki/ca.crt"), "-tls1_1");
    let _ = s.kill();
    let _ = s.wait();
    assert_eq!(h.protocol.as_deref(), Some("TLSv1.1"), "control: client cannot do TLS 1.1 here:\n{}", h.output);
}

#[test]
fn live_listener_refuses_tls11_and_negotiates_tls13() {
    let t = tempfile::tempdir().unwrap();
    let (server, addr, plan) = start_server(t.path(), "tls12");
    let ca = t.path().join("flake/pki/ca.crt");
    let name = plan.nodes[0].fqdn.clone();
    let std::net::IpAddr::V4(ip) = addr.ip() else { panic!("ipv4 lab") };
    client_can_speak_tls11(t.path(), ip);

    let h11 = handshake(addr, &name, &ca, "-tls1_1");
    assert!(!h11.ok, "TLS 1.1 was accepted:\n{}", h11.output);
    assert!(
        h11.output.contains("alert protocol version")
            || h11.output.contains("unsupported protocol")
            || h11.output.contains("wrong version number"),
        "TLS 1.1 failed for another reason than the protocol version:\n{}",
        h11.output
    );
    let h13 = handshake(addr, &name, &ca, "-tls1_3");
    assert!(h13.ok, "TLS 1.3 handshake failed:\n{}\n{}", h13.output, read(&server.log));
    assert_eq!(h13.protocol.as_deref(), Some("TLSv1.3"), "{}", h13.output);
    assert!(h13.verified, "the listener's certificate does not verify against our CA:\n{}", h13.output);
    // With no version forced, the best is chosen: 1.3 preferred.
    let best = handshake(addr, &name, &ca, "-no_ssl3");
    assert_eq!(best.protocol.as_deref(), Some("TLSv1.3"), "{}", best.output);
    let h12 = handshake(addr, &name, &ca, "-tls1_2");
    assert_eq!(h12.protocol.as_deref(), Some("TLSv1.2"), "min_version tls12 must still allow 1.2:\n{}", h12.output);
    // The metrics listener is plain HTTP, on loopback only.
    let metrics = SocketAddr::new(addr.ip(), 9102);
    assert!(metrics.ip().is_loopback());
    drop(server);
}

#[test]
fn live_listener_with_tls13_minimum_refuses_tls12() {
    let t = tempfile::tempdir().unwrap();
    let (server, addr, plan) = start_server(t.path(), "tls13");
    let ca = t.path().join("flake/pki/ca.crt");
    let name = plan.nodes[0].fqdn.clone();
    let h12 = handshake(addr, &name, &ca, "-tls1_2");
    assert!(!h12.ok, "TLS 1.2 accepted with min_version tls13:\n{}", h12.output);
    let h13 = handshake(addr, &name, &ca, "-tls1_3");
    assert_eq!(h13.protocol.as_deref(), Some("TLSv1.3"), "{}\n{}", h13.output, read(&server.log));
    assert!(h13.verified, "{}", h13.output);
    drop(server);
}
