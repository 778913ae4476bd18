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
