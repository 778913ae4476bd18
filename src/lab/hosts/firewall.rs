//! The nftables ruleset a host of the hosts lab loads: the effect of the NixOS firewall our modules
//! configure (networking.firewall with the nftables backend, plus modules/firewall.nix's
//! extraInputRules), built from the same data the generated `nodes/<machine>.nix` carries
//! (`render::nix::firewall_data`, `wireguard_peers`' ports): default drop; loopback, established
//! traffic and ping (NixOS `allowPing`) accepted; SSH open unless restricted; the overlay's UDP port;
//! on a server 8200 and 8201 on the overlay interface, 8200 from the LB and `client_cidrs`, and without
//! an overlay both ports from the other servers; on the LB its frontend and stats port.

use crate::plan::{Machine, Plan, Role};
use crate::render::nix::firewall_data;
use crate::spec::OverlayKind;

fn accept_from(cidrs: &[String], ports: &[u16], comment: &str) -> Vec<String> {
    // modules/lib.nix nftAcceptFrom: one rule per address family.
    let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    let (v6, v4): (Vec<&String>, Vec<&String>) = cidrs.iter().partition(|c| c.contains(':'));
    let mut out = Vec::new();
    for (fam, cs) in [("ip", v4), ("ip6", v6)] {
        if !cs.is_empty() {
            let cs = cs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            out.push(format!("{fam} saddr {{ {cs} }} tcp dport {{ {ports} }} accept comment \"{comment}\""));
        }
    }
    out
}

/// The ruleset for `machine` (`nft -f -` input).
pub fn ruleset(plan: &Plan, machine: &Machine) -> String {
    let fw = firewall_data(plan, machine);
    let mut rules: Vec<String> = vec![
        "iifname \"lo\" accept".into(),
        "ct state vmap { invalid : drop, established : accept, related : accept }".into(),
        "icmp type echo-request accept".into(),
        "icmpv6 type != { nd-redirect, 139 } accept".into(),
    ];
    let mut tcp: Vec<u16> = Vec::new();
    if fw.ssh_allowed_cidrs.is_empty() {
        tcp.push(22);
    }
    let lb_open = true; // vaultnix.loadBalancer.openFirewall defaults to true; the generated lb.nix keeps it.
    if machine.role == Role::Lb && lb_open {
        tcp.push(plan.lb.port);
        tcp.push(plan.lb.stats_port);
    }
    if !tcp.is_empty() {
        let t = tcp.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        rules.push(format!("tcp dport {{ {t} }} accept"));
    }
    if plan.overlay.kind == OverlayKind::Wireguard {
        rules.push(format!("udp dport {{ {} }} accept", plan.overlay.listen_port));
    }
    if machine.role == Role::Server && plan.overlay.kind != OverlayKind::None {
        rules.push(format!(
            "iifname \"{}\" tcp dport {{ {}, {} }} accept",
            plan.overlay.interface, plan.api_port, plan.cluster_port
        ));
    }
    let api_ports: Vec<u16> = match machine.role {
        Role::Server => vec![plan.api_port],
        Role::Lb if !lb_open => vec![plan.lb.port],
        Role::Lb => vec![],
    };
    if !api_ports.is_empty() {
        rules.extend(accept_from(&fw.api_allowed_cidrs, &api_ports, "vaultnix: API from load balancer and clients"));
    }
    if machine.role == Role::Server {
        rules.extend(accept_from(
            &fw.cluster_allowed_cidrs,
            &[plan.api_port, plan.cluster_port],
            "vaultnix: raft peers by address",
        ));
    }
    if machine.role == Role::Server {
        rules.extend(accept_from(
            &fw.agent_allowed_cidrs,
            &[plan.agent_port],
            "vaultnix: drain agent from the load balancer",
        ));
    }
    if !fw.ssh_allowed_cidrs.is_empty() {
        rules.extend(accept_from(&fw.ssh_allowed_cidrs, &[22], "vaultnix: ssh"));
    }
    let body = rules.iter().map(|r| format!("    {r}\n")).collect::<String>();
    format!(
        "table inet nixos-fw {{\n  chain input {{\n    type filter hook input priority filter; policy drop;\n{body}  }}\n}}\n"
    )
}

/// The client host accepts only replies (it is a laptop, not a server).
pub fn client_ruleset() -> String {
    "table inet nixos-fw {\n  chain input {\n    type filter hook input priority filter; policy drop;\n    iifname \"lo\" accept\n    ct state established,related accept\n    icmp type echo-request accept\n  }\n}\n".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_server_ruleset_follows_the_module_data() {
        let plan = Plan::from_loaded(&crate::spec::example());
        let m = plan.machines().into_iter().find(|m| m.name == "vault-1").unwrap();
        let r = ruleset(&plan, &m);
        assert!(r.contains("policy drop;"), "{r}");
        assert!(r.contains("iifname \"wg0\" tcp dport { 8200, 8201 } accept"), "{r}");
        assert!(r.contains("ip saddr { 10.88.0.10/32, 192.0.2.0/24 } tcp dport { 8200 } accept"), "{r}");
        assert!(r.contains("udp dport { 51820 } accept"), "{r}");
        assert!(!r.contains("8201 } accept comment"), "8201 must be open on the overlay only: {r}");
        assert!(r.contains("ip saddr { 10.88.0.10/32 } tcp dport { 8202 } accept"), "agent from the LB only: {r}");
        let lb = plan.machines().into_iter().find(|m| m.role == Role::Lb).unwrap();
        let r = ruleset(&plan, &lb);
        assert!(r.contains("tcp dport { 22, 8200, 8404 } accept"), "{r}");
        assert!(!r.contains("8201"), "{r}");
    }
}
