//! Both HAProxy profiles (the shipped one and seed 000's, used by `drill --compare-seed`) are valid for
//! the real HAProxy. A missing haproxy binary fails the test.

use std::net::Ipv4Addr;
use std::process::Command;
use vaultnix::generate::{generate, GenerateOptions};
use vaultnix::plan::Plan;
use vaultnix::render::{render_haproxy_profile, HaproxyProfile, Layout, RenderOptions};
use vaultnix::secrets::Rotate;

#[test]
fn haproxy_accepts_both_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan::from_loaded(&vaultnix::spec::example()).for_lab(Ipv4Addr::new(127, 0, 0, 10));
    let layout = Layout::Lab(dir.path().to_path_buf());
    let opts = GenerateOptions {
        out: dir.path().to_path_buf(),
        check: false,
        rotate: Rotate::default(),
        render: RenderOptions { nix: false, ..RenderOptions::default() },
    };
    generate(&plan, &layout, &opts).unwrap();
    for profile in [HaproxyProfile::Tuned, HaproxyProfile::Seed] {
        let cfg = dir.path().join(format!("haproxy-{}.cfg", profile.as_str()));
        std::fs::write(&cfg, render_haproxy_profile(&plan, &layout, profile)).unwrap();
        let out = Command::new("haproxy").arg("-c").arg("-f").arg(&cfg).output().expect("haproxy must be installed");
        assert!(
            out.status.success(),
            "haproxy -c rejected the {} profile:\n{}{}",
            profile.as_str(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `load_balancer.mode = "terminate"` as the lab generates it (LB certificate + key in secrets/lb.pem,
/// `mode http`, re-encryption, retry-on): valid for the real HAProxy, and the rendered file is snapshotted.
#[test]
fn haproxy_accepts_terminate_mode() {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/lab-terminate.toml");
    let loaded = vaultnix::spec::load_file(&spec).unwrap();
    let plan = Plan::from_loaded(&loaded).for_lab(Ipv4Addr::new(127, 0, 0, 10));
    assert_eq!(plan.lb.mode, vaultnix::spec::LbMode::Terminate);
    let layout = Layout::Lab(dir.path().to_path_buf());
    let opts = GenerateOptions {
        out: dir.path().to_path_buf(),
        check: false,
        rotate: Rotate::default(),
        render: RenderOptions { nix: false, ..RenderOptions::default() },
    };
    generate(&plan, &layout, &opts).unwrap();
    let pem = std::fs::read_to_string(dir.path().join("secrets/lb.pem")).unwrap();
    assert!(
        pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"),
        "lb.pem holds the certificate and its key"
    );
    // Re-running generate keeps the LB key and certificate.
    let (key, crt) = (
        std::fs::read(dir.path().join("secrets/lb.key")).unwrap(),
        std::fs::read(dir.path().join("flake/pki/lb.crt")).unwrap(),
    );
    generate(&plan, &layout, &opts).unwrap();
    assert_eq!(std::fs::read(dir.path().join("secrets/lb.key")).unwrap(), key, "LB key rotated by a re-run");
    assert_eq!(std::fs::read(dir.path().join("flake/pki/lb.crt")).unwrap(), crt, "LB certificate reissued by a re-run");
    let cfg = dir.path().join("flake/haproxy/haproxy.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let out = Command::new("haproxy").arg("-c").arg("-f").arg(&cfg).output().expect("haproxy must be installed");
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("WARNING"),
        "haproxy -c on the terminate config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let masked = text
        .replace(&dir.path().display().to_string(), "[lab]")
        .replace(&format!("vaultnix {}", env!("CARGO_PKG_VERSION")), "vaultnix [version]");
    insta::assert_snapshot!("lab_terminate__haproxy.cfg", masked);
}
