//! `nodes/<node>.drain.json`: the server unit's ExecStop config (see [`crate::ops::drain`]). Public
//! data only: addresses, paths, timings; the token is a path to a secret.

use super::haproxy::{CheckTiming, HaproxyProfile};
use super::Layout;
use crate::ops::agent::AgentConfig;
use crate::ops::drain::{DrainConfig, DrainNode};
use crate::plan::{NodePlan, Plan};

/// HAProxy duration strings as rendered ("1s", "250ms") in milliseconds.
fn ms(s: &str) -> u64 {
    if let Some(v) = s.strip_suffix("ms") {
        v.parse().unwrap_or(0)
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<u64>().unwrap_or(0) * 1000
    } else {
        s.parse().unwrap_or(0)
    }
}

/// The longest time the LB keeps routing to a node after its health check starts failing: the check
/// that just passed (`inter`), then `fall` failed checks at `fastinter`.
pub fn fall_window_ms(t: &CheckTiming) -> u64 {
    ms(t.inter) + u64::from(t.fall) * ms(t.fastinter)
}

pub fn drain_config(plan: &Plan, node: &NodePlan, layout: &Layout) -> DrainConfig {
    let dn =
        |n: &NodePlan| DrainNode { name: n.name.clone(), server_name: n.fqdn.clone(), ip: n.ip, port: plan.api_port };
    let mut nodes = vec![dn(node)];
    nodes.extend(plan.nodes.iter().filter(|n| n.name != node.name).map(dn));
    DrainConfig {
        format: 1,
        cluster: plan.name.clone(),
        node: node.name.clone(),
        nodes,
        ca_file: layout.ca_file(plan),
        token_file: layout.drain_token_file(plan),
        lb_fall_window_ms: fall_window_ms(HaproxyProfile::Tuned.timing()),
        step_down_attempts: 5,
        step_down_wait_ms: 10_000,
        // 5 x 10 s at most plus the fall window, inside modules/node.nix's TimeoutStopSec (90 s).
        timeout_seconds: 60,
        agent: Some(AgentConfig {
            ip: node.ip,
            port: plan.agent_port,
            control_socket: layout.agent_control_socket(&node.name),
            inter_ms: ms(super::haproxy::AGENT_INTER),
            fall: HaproxyProfile::Tuned.timing().fall,
            // The longest a stop takes (modules/node.nix TimeoutStopSec 90 s) and some.
            marker_ttl_seconds: 120,
        }),
    }
}

pub fn render_drain_config(plan: &Plan, node: &NodePlan, layout: &Layout) -> String {
    let mut t = serde_json::to_string_pretty(&drain_config(plan, node, layout)).unwrap_or_default();
    t.push('\n');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_window_of_the_shipped_profile() {
        assert_eq!(fall_window_ms(&super::super::haproxy::TUNED), 1500);
        assert_eq!(fall_window_ms(&super::super::haproxy::SEED), 20_000);
    }
}
