//! Rolling upgrade on a real lab in `load_balancer.mode = "terminate"`, OpenBao 2.6.2 → 2.7.2, every
//! node stopped through the stop path (`vaultnix node drain`, then SIGTERM), while a client that does
//! not retry writes through the load balancer: 0 failed, 0 lost (issue 16).

mod common_ops;

#[test]
fn rolling_upgrade_in_terminate_mode_fails_no_request() {
    let text = common_ops::SPEC
        .replace("provider = \"onprem\"\n\n[overlay]", "provider = \"onprem\"\nmode = \"terminate\"\n\n[overlay]");
    assert!(text.contains("mode = \"terminate\""), "the spec's [load_balancer] is where the test expects it");
    let r = common_ops::rolling_upgrade_under_writer(&text);
    assert!(r.sent >= 1000, "at least 1,000 requests, got {}", r.sent);
    assert_eq!(r.failed, 0, "failed requests during the rolling upgrade in terminate mode: {:?}", r.errors);
    assert_eq!(r.ambiguous, 0, "ambiguous requests during the rolling upgrade in terminate mode: {:?}", r.errors);
    assert!(r.lost.is_empty(), "acknowledged writes lost: {:?}", r.lost);
}
