//! Rolling upgrade order: standbys first (one at a time, each back healthy and a voter before the
//! next), then a step-down of the active node (drained at the load balancer first) so that leadership
//! moves to an already-upgraded node, then the old leader. Never fail over from new to old.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Stop, switch the binary, start, unseal, wait until healthy and a voter again.
    Upgrade { node: String },
    /// Drain `node` at the load balancer, step it down, wait for another (upgraded) node to lead.
    StepDown { node: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Upgrade { node } => {
                write!(f, "upgrade {node}: stop, switch binary, start, unseal, wait healthy + voter")
            }
            Step::StepDown { node } => {
                write!(f, "step down {node}: drain at the LB, step-down, wait for an upgraded leader")
            }
        }
    }
}

/// The steps for nodes `(name, is_active)` in spec order. With no active node known the order is spec
/// order (nothing to step down).
pub fn plan(nodes: &[(String, bool)]) -> Vec<Step> {
    let mut steps: Vec<Step> =
        nodes.iter().filter(|(_, active)| !active).map(|(n, _)| Step::Upgrade { node: n.clone() }).collect();
    for (n, _) in nodes.iter().filter(|(_, active)| *active) {
        steps.push(Step::StepDown { node: n.clone() });
        steps.push(Step::Upgrade { node: n.clone() });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standbys_first_then_step_down_then_old_leader() {
        let n = |s: &str, a: bool| (s.to_string(), a);
        let p = plan(&[n("a", false), n("b", true), n("c", false)]);
        assert_eq!(
            p,
            vec![
                Step::Upgrade { node: "a".into() },
                Step::Upgrade { node: "c".into() },
                Step::StepDown { node: "b".into() },
                Step::Upgrade { node: "b".into() },
            ]
        );
        assert!(p[2].to_string().contains("drain"));
        assert_eq!(plan(&[n("a", false)]).len(), 1);
    }
}
