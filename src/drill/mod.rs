//! Failover drills: inject a fault into a running cluster while a bounded client writes through the
//! load balancer, measure what the client saw, and prove no acknowledged write was lost.

pub mod checker;
pub mod client;
pub mod hosts_target;
pub mod lab_target;
pub mod measure;
pub mod plot;
pub mod probe;
pub mod report;
pub mod rotation;
pub mod run;
