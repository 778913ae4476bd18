//! Rolling upgrade on a real lab, OpenBao 2.6.2 → 2.7.2, while a client writes through the load
//! balancer: no acknowledged write may be lost; failed requests are counted and reported.

mod common_ops;

#[test]
fn rolling_upgrade_2_6_to_2_7_loses_no_acknowledged_write() {
    let r = common_ops::rolling_upgrade_under_writer(common_ops::SPEC);
    assert!(r.acked > 100, "the writer made progress");
    assert!(r.lost.is_empty(), "acknowledged writes lost: {:?}", r.lost);
}
