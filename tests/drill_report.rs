//! `vaultnix drill leader-stepdown --drain --trials 1 --report DIR` against a fresh lab (real OpenBao +
//! HAProxy on a loopback range of its own): the JSON carries the timeline (every request, the fault,
//! the election, the LB's state changes), and DIR holds one SVG per configuration that parses as XML
//! with one point per request and a mark per LB change, and an offline index.html with the summary.
//! Needs `bao` (VAULTNIX_BAO) and `haproxy`: a missing tool fails the test.

use assert_cmd::Command;
use std::path::Path;

#[test]
fn drill_report_writes_one_point_per_request_and_every_mark() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = root.join("tests/specs/lab.toml");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("report");
    let out = Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["drill", "leader-stepdown", "--drain", "--trials", "1", "--timeout-ms", "6000", "--output", "json"])
        .arg("--spec")
        .arg(&spec)
        .arg("--report")
        .arg(&dir)
        .env("TMPDIR", tmp.path())
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "drill failed: {stderr}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let c = &j["configs"][0];
    assert_eq!(c["name"], "ours");
    let t = &c["trials"][0];
    let tl = &t["timeline"];
    let requests = tl["requests"].as_array().expect("timeline.requests");
    assert_eq!(requests.len() as u64, t["requests"].as_u64().unwrap(), "one record per request");
    assert!(requests.len() >= 40, "only {} requests", requests.len());
    let failed = requests.iter().filter(|r| r["outcome"] != "ok").count();
    assert!(tl["fault_ms"].as_f64().unwrap() > 0.0);
    assert!(tl["new_leader_ms"].as_f64().unwrap() >= tl["fault_ms"].as_f64().unwrap());
    // Drained step-down: the old leader leaves HAProxy's rotation and the new one enters it.
    let changes: Vec<&serde_json::Value> =
        tl["lb_events"].as_array().unwrap().iter().filter(|e| !e["from"].is_null()).collect();
    assert!(!changes.is_empty(), "no LB state change seen: {}", tl["lb_events"]);
    let old = t["leader_before"].as_str().unwrap();
    let new = t["leader_after"].as_str().unwrap();
    assert!(changes.iter().any(|e| e["server"] == old && e["to"] != "UP"), "{old} never left rotation: {changes:?}");
    assert!(changes.iter().any(|e| e["server"] == new && e["to"] == "UP"), "{new} never came UP: {changes:?}");

    let svg = std::fs::read_to_string(dir.join("leader-stepdown-ours.svg")).expect("the SVG");
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let circles: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("circle")).collect();
    assert_eq!(circles.len(), requests.len(), "one point per request");
    let big = circles.iter().filter(|n| n.attribute("r") == Some("4")).count();
    assert_eq!(big, failed, "every failed request marked");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|s| s.trim().into())
        .collect();
    assert!(texts.iter().any(|s| s == "fault"), "{texts:?}");
    assert!(texts.iter().any(|s| s == "elected #1"), "{texts:?}");
    for e in &changes {
        let label = format!("{} {} #1", e["server"].as_str().unwrap(), e["to"].as_str().unwrap());
        assert!(texts.contains(&label), "no mark {label:?} in {texts:?}");
    }

    let page = std::fs::read_to_string(dir.join("index.html")).expect("index.html");
    assert!(page.contains("<tr><th>lost</th><td>0</td></tr>"), "{page}");
    assert!(page.contains(&format!("<tr><th>requests</th><td>{}</td></tr>", requests.len())), "{page}");
    assert!(
        page.contains(&format!(
            "<tr><th>failed (sent after the fault)</th><td>{}</td></tr>",
            c["summary"]["failed_total"]
        )),
        "{page}"
    );
    assert_eq!(page.matches("<svg ").count(), 1);
    for bad in ["<script", "<link", "src=", "@import", "url(", "https://"] {
        assert!(!page.contains(bad), "{bad} in the page");
    }
    eprintln!(
        "drill report: {} requests, {failed} failed, {} LB changes, {} B SVG",
        requests.len(),
        changes.len(),
        svg.len()
    );
}

#[test]
fn report_into_a_file_or_for_restore_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["drill", "leader-crash", "--trials", "1", "--report"])
        .arg(&file)
        .env("TMPDIR", tmp.path())
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not-a-dir: exists and is not a directory"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    // No lab was brought up: the only thing in TMPDIR is the file.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    let out = Command::cargo_bin("vaultnix")
        .unwrap()
        .args(["drill", "restore", "--report"])
        .arg(tmp.path().join("r"))
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--report applies to the failover drills"), "{stderr}");
    assert!(!tmp.path().join("r").exists());
}
