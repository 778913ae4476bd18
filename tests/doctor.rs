//! `vaultnix doctor` (offline): each seeded mistake is found, and a good cluster stays quiet.
//! Real files written by the real `generate`; real `bao operator validate-config`.

use std::path::{Path, PathBuf};
use vaultnix::doctor::{self, OfflineOptions, Report, Severity};
use vaultnix::generate::{generate, GenerateOptions};
use vaultnix::plan::Plan;
use vaultnix::render::{Layout, RenderOptions};
use vaultnix::secrets::Rotate;

/// Three voters in one datacenter (LAN): multiplier 1 is right, so nothing should be flagged.
fn lan_spec(nodes: usize) -> String {
    let mut s = String::from(
        r#"
[cluster]
name = "lan"
domain = "vault.lan"

[load_balancer]
hostname = "vault.example.com"
address = "192.0.2.10"
provider = "onprem"

[overlay]
kind = "none"
"#,
    );
    for i in 1..=nodes {
        s.push_str(&format!(
            "\n[[nodes]]\nname = \"vault-{i}\"\nprovider = \"onprem\"\naddress = \"192.0.2.{}\"\n",
            10 + i
        ));
    }
    s
}

fn bao() -> PathBuf {
    let p = std::env::var_os("VAULTNIX_BAO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.7.2/bao")));
    assert!(p.is_file(), "bao not found at {} (set VAULTNIX_BAO): this test needs the real binary", p.display());
    p
}

struct Fixture {
    _dir: tempfile::TempDir,
    out: PathBuf,
    plan: Plan,
}

fn generated(spec: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let loaded = vaultnix::spec::load_str("cluster.toml", spec, dir.path()).unwrap();
    let plan = Plan::from_loaded(&loaded);
    let out = dir.path().join("out");
    let opts =
        GenerateOptions { out: out.clone(), check: false, rotate: Rotate::default(), render: RenderOptions::default() };
    generate(&plan, &Layout::NixOs, &opts).unwrap();
    Fixture { _dir: dir, out, plan }
}

fn opts(out: &Path) -> OfflineOptions {
    let mut o = OfflineOptions::new(out, Layout::NixOs);
    o.bao = Some(bao());
    o
}

fn run(f: &Fixture) -> Report {
    doctor::offline(&f.plan, &opts(&f.out))
}

fn problems(r: &Report) -> String {
    r.at_least(Severity::Info)
        .map(|f| format!("{:?} [{}] {:?}: {}", f.severity, f.check, f.node, f.what))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Signs `pem`'s replacement for `node` with the cluster CA, with the given SANs and validity.
fn reissue(out: &Path, node: &str, sans: &vaultnix::pki::Sans, not_before: i64, not_after: i64) {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(out.join("secrets/ca.key")).unwrap()).unwrap();
    let ca_pem = std::fs::read_to_string(out.join("flake/pki/ca.crt")).unwrap();
    let issuer = CertificateParams::from_ca_cert_pem(&ca_pem).unwrap().self_signed(&ca_key).unwrap();
    let key = KeyPair::from_pem(&std::fs::read_to_string(out.join(format!("secrets/{node}.key"))).unwrap()).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, format!("{node}.vault.lan"));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let mut names: Vec<SanType> = sans.dns.iter().map(|d| SanType::DnsName(d.clone().try_into().unwrap())).collect();
    names.extend(sans.ips.iter().map(|i| SanType::IpAddress(*i)));
    p.subject_alt_names = names;
    p.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &issuer, &ca_key).unwrap();
    std::fs::write(out.join(format!("flake/pki/{node}.crt")), cert.pem()).unwrap();
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn good_lan_cluster_is_quiet() {
    let f = generated(&lan_spec(3));
    let r = run(&f);
    assert_eq!(r.at_least(Severity::Info).count(), 0, "expected no findings above ok:\n{}", problems(&r));
    assert_eq!(r.exit_code(), 0);
    // The server's own validator ran on each rendered config.
    for n in ["vault-1", "vault-2", "vault-3"] {
        assert!(r.has("validate-config", Severity::Ok, Some(n)), "validate-config did not run for {n}");
        assert!(r.has("join-san", Severity::Ok, Some(n)));
        assert!(r.has("cert-chain", Severity::Ok, Some(n)));
    }
    assert!(r.has("drift", Severity::Ok, None));
    assert!(r.has("ca-key", Severity::Ok, None));
}

#[test]
fn join_address_missing_from_san_is_found() {
    let f = generated(&lan_spec(3));
    // vault-1 is told to dial vault-2 at an address its certificate does not cover.
    let p = f.out.join("flake/nodes/vault-1.server.json");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("https://192.0.2.12:8200"));
    std::fs::write(&p, text.replace("https://192.0.2.12:8200", "https://192.0.2.99:8200")).unwrap();
    let r = run(&f);
    assert!(r.has("join-san", Severity::Error, Some("vault-1")), "{}", problems(&r));
    let msg = r.findings.iter().find(|x| x.check == "join-san" && x.severity == Severity::Error).unwrap();
    assert!(msg.what.contains("192.0.2.99") && msg.what.contains("vault-2"), "{}", msg.what);
    assert!(msg.fix.contains("192.0.2.12"), "the fix names the right address: {}", msg.fix);
    assert!(r.has("drift", Severity::Error, None), "a hand-edited config is drift too");
    assert!(!r.has("join-san", Severity::Error, Some("vault-3")));
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn certificate_reissued_without_the_dialled_ip_is_found() {
    let f = generated(&lan_spec(3));
    let n2 = f.plan.node("vault-2").unwrap();
    let mut sans = vaultnix::pki::node_sans(&f.plan, n2);
    assert!(sans.ips.remove(&n2.ip));
    reissue(&f.out, "vault-2", &sans, now() - 3600, now() + 200 * 86400);
    let r = run(&f);
    // Both peers dial vault-2 by its IP; vault-2's own api_addr is no longer covered either.
    assert!(r.has("join-san", Severity::Error, Some("vault-1")), "{}", problems(&r));
    assert!(r.has("join-san", Severity::Error, Some("vault-3")), "{}", problems(&r));
    assert!(r.has("addr-san", Severity::Error, Some("vault-2")), "{}", problems(&r));
    // The chain is still fine: only the SANs are wrong.
    assert!(r.has("cert-chain", Severity::Ok, Some("vault-2")));
}

#[test]
fn wrong_ca_is_found() {
    let f = generated(&lan_spec(3));
    let other = generated(&lan_spec(3));
    std::fs::copy(other.out.join("flake/pki/ca.crt"), f.out.join("flake/pki/ca.crt")).unwrap();
    let r = run(&f);
    assert!(r.has("ca-key", Severity::Error, None), "{}", problems(&r));
    for n in ["vault-1", "vault-2", "vault-3"] {
        assert!(r.has("cert-chain", Severity::Error, Some(n)), "{n}: {}", problems(&r));
    }
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn expired_and_expiring_certificates_are_found() {
    let f = generated(&lan_spec(3));
    let n3 = f.plan.node("vault-3").unwrap();
    let sans = vaultnix::pki::node_sans(&f.plan, n3);
    reissue(&f.out, "vault-3", &sans, now() - 40 * 86400, now() - 5 * 86400);
    let r = run(&f);
    assert!(r.has("cert-expiry", Severity::Error, Some("vault-3")), "{}", problems(&r));
    let e = r.findings.iter().find(|x| x.check == "cert-expiry" && x.severity == Severity::Error).unwrap();
    assert!(e.what.contains("expired"), "{}", e.what);
    assert!(r.has("cert-expiry", Severity::Ok, Some("vault-1")));

    // 350 days from now the 365-day certificates are inside the 21-day warning window.
    let mut o = opts(&f.out);
    o.now = now() + 350 * 86400;
    o.skip_validate_config = true;
    let later = doctor::offline(&f.plan, &o);
    assert!(later.has("cert-expiry", Severity::Warning, Some("vault-1")), "{}", problems(&later));
}

#[test]
fn even_voter_count_is_a_warning() {
    let f = generated(&lan_spec(4));
    let r = run(&f);
    assert!(r.has("quorum", Severity::Warning, None), "{}", problems(&r));
    assert_eq!(r.count(Severity::Error), 0, "{}", problems(&r));
    assert_eq!(r.exit_code(), doctor::EXIT_WARNINGS);
}

#[test]
fn wan_multiplier_and_autopilot_mistakes_are_found() {
    let mut spec = lan_spec(3).replace(
        "[overlay]",
        "[raft]\nperformance_multiplier = 1\n[raft.autopilot]\ncleanup_dead_servers = false\n\n[overlay]",
    );
    // Spread the voters over three providers (a WAN).
    spec = spec.replacen(
        "provider = \"onprem\"\naddress = \"192.0.2.12\"",
        "provider = \"linode\"\naddress = \"192.0.2.12\"",
        1,
    );
    spec = spec.replacen(
        "provider = \"onprem\"\naddress = \"192.0.2.13\"",
        "provider = \"oracle\"\naddress = \"192.0.2.13\"",
        1,
    );
    let mut f = generated(&spec);
    let r = run(&f);
    assert!(r.has("raft-timing", Severity::Warning, None), "{}", problems(&r));
    assert!(r.has("autopilot", Severity::Warning, None), "{}", problems(&r));
    // min_quorum below quorum cannot pass spec validation; doctor still checks the plan it is given.
    f.plan.raft.min_quorum = 1;
    let mut o = opts(&f.out);
    o.skip_validate_config = true;
    let r = doctor::offline(&f.plan, &o);
    assert!(r.has("autopilot", Severity::Error, None), "{}", problems(&r));
}

#[test]
fn invalid_rendered_config_is_rejected_by_bao() {
    let f = generated(&lan_spec(3));
    let p = f.out.join("flake/nodes/vault-2.server.json");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replacen("\"listener\": {", "\"listener\": 5, \"x\": {", 1)).unwrap();
    let r = run(&f);
    assert!(r.has("validate-config", Severity::Error, Some("vault-2")), "{}", problems(&r));
    assert!(r.has("validate-config", Severity::Ok, Some("vault-1")));
}

#[test]
fn cli_exit_codes_and_json() {
    let f = generated(&lan_spec(3));
    let spec = f.out.parent().unwrap().join("cluster.toml");
    std::fs::write(&spec, lan_spec(3)).unwrap();
    let ok = assert_cmd::Command::cargo_bin("vaultnix")
        .unwrap()
        .env("VAULTNIX_BAO", bao())
        .args(["doctor", "--output", "json", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&f.out)
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["worst"], "ok");
    assert!(v["findings"].as_array().unwrap().len() > 20);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(!text.contains("PRIVATE KEY"), "no key material in the output");

    std::fs::write(&spec, lan_spec(4)).unwrap();
    // The tree was generated for 3 nodes: drift (error) plus the even-count warning.
    let bad = assert_cmd::Command::cargo_bin("vaultnix")
        .unwrap()
        .env("VAULTNIX_BAO", bao())
        .args(["doctor", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&f.out)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("[quorum]") && text.contains("[drift]"), "{text}");
}
