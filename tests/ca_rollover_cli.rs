//! `vaultnix ca rollover` offline, through the binary: the order of the steps, the verification gate,
//! `generate --check` after a step, `--rotate-ca` refused mid-rollover, and doctor's note. The live
//! half (apply + verify under a writer) is tests/ca_rollover_live.rs.

use assert_cmd::Command;
use std::path::Path;

fn vaultnix(args: &[&str], out: &Path) -> (i32, String) {
    let o = Command::cargo_bin("vaultnix")
        .unwrap()
        .env_remove("VAULTNIX_SPEC")
        .env_remove("VAULTNIX_OUT")
        .args(args)
        .arg("--out")
        .arg(out)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), text)
}

fn tree(out: &Path) -> Vec<(String, Vec<u8>)> {
    fn go(root: &Path, d: &Path, acc: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                go(root, &p, acc);
            } else {
                acc.push((p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut v = Vec::new();
    go(out, out, &mut v);
    v.sort();
    v
}

#[test]
fn rollover_steps_are_ordered_gated_and_leave_a_clean_tree() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    assert_eq!(vaultnix(&["--quiet", "generate"], &out).0, 0);
    let (code, s) = vaultnix(&["ca", "rollover", "status"], &out);
    assert_eq!(code, 0, "{s}");
    assert!(s.contains("none yet (one CA)"), "{s}");

    let before = tree(&out);
    for step in ["reissue", "finish"] {
        let (code, s) = vaultnix(&["ca", "rollover", step], &out);
        assert_eq!(code, 1, "{s}");
        assert!(s.contains("no CA rollover is in progress") && s.contains("Nothing was written"), "{s}");
    }
    assert_eq!(tree(&out), before, "refused steps write nothing");

    let (code, s) = vaultnix(&["ca", "rollover", "begin"], &out);
    assert_eq!(code, 0, "{s}");
    assert!(s.contains("phase: trust-both") && s.contains("ca rollover verify"), "{s}");
    let (code, s) = vaultnix(&["generate", "--check"], &out);
    assert_eq!(code, 0, "a rollover step is what generate renders: {s}");

    let mid = tree(&out);
    let (code, s) = vaultnix(&["ca", "rollover", "reissue"], &out);
    assert_eq!(code, 1, "{s}");
    assert!(s.contains("has not been verified on the wire"), "{s}");
    let (code, s) = vaultnix(&["ca", "rollover", "finish"], &out);
    assert_eq!(code, 1, "{s}");
    assert!(s.contains("still signed by the old CA"), "{s}");
    let (code, s) = vaultnix(&["generate", "--rotate-ca"], &out);
    assert_eq!(code, 1, "{s}");
    assert!(s.contains("rollover is in progress") && s.contains("ca rollover reissue"), "{s}");
    assert_eq!(tree(&out), mid, "refused steps write nothing");

    let (code, s) = vaultnix(&["ca", "rollover", "status"], &out);
    assert_eq!(code, 0, "{s}");
    assert!(s.contains("trust-both, not verified") && s.contains("next: verify, then"), "{s}");
    let (code, s) = vaultnix(&["doctor"], &out);
    assert_eq!(code, 0, "an in-progress rollover is information, not a problem: {s}");
    assert!(s.contains("[ca-rollover] a CA rollover is in its trust-both phase"), "{s}");
}
