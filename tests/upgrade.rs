//! Rolling upgrade on a real lab, OpenBao 2.6.2 → 2.7.2, while a client writes through the load
//! balancer (passthrough): no acknowledged write lost, no request refused; requests cut in flight
//! (ambiguous, as the drill counts them) are reported and bounded.

mod common_ops;

#[test]
fn rolling_upgrade_2_6_to_2_7_loses_no_acknowledged_write() {
    let r = common_ops::rolling_upgrade_under_writer(common_ops::SPEC);
    assert!(r.sent >= 1000, "at least 1,000 requests, got {}", r.sent);
    assert!(r.lost.is_empty(), "acknowledged writes lost: {:?}", r.lost);
    // No request refused (HTTP error, refused connection). In passthrough HAProxy cannot end a
    // client's keep-alive session at a request boundary, so a request in flight on the session the
    // stop cuts is ambiguous (docs/failover.md): reported, bounded, never lost when acknowledged.
    assert_eq!(r.failed, 0, "refused requests during the rolling upgrade: {:?}", r.errors);
    assert!(r.ambiguous <= 3, "{} ambiguous requests: {:?}", r.ambiguous, r.errors);
}
