//! Nix files: data-only modules that set options of vaultnix's modules/, rendered from minijinja
//! templates in templates/. Values are turned into Nix literals by the `nix` filter; no logic lives in
//! the templates beyond loops and presence checks.

use super::Layout;
use crate::plan::{Machine, Plan, Role};
use crate::spec::OverlayKind;
use anyhow::{Context, Result};
use minijinja::{Environment, Value as JValue};
use serde::Serialize;
use std::collections::BTreeMap;

const NODE_TEMPLATE: &str = include_str!("../../templates/node.nix.j2");
const LB_TEMPLATE: &str = include_str!("../../templates/lb.nix.j2");
const OVERLAY_TEMPLATE: &str = include_str!("../../templates/overlay.nix.j2");
const FLAKE_TEMPLATE: &str = include_str!("../../templates/flake.nix.j2");
const REHEARSAL_TEMPLATE: &str = include_str!("../../templates/rehearsal.nix.j2");

/// A Nix literal for a JSON-like value: strings quoted and escaped, lists, attrsets, null, bools, ints.
pub fn to_nix(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => nix_string(s),
        serde_json::Value::Array(a) => {
            if a.is_empty() {
                "[ ]".into()
            } else {
                format!("[ {} ]", a.iter().map(to_nix).collect::<Vec<_>>().join(" "))
            }
        }
        serde_json::Value::Object(o) => {
            if o.is_empty() {
                "{ }".into()
            } else {
                let body: Vec<String> = o.iter().map(|(k, v)| format!("{} = {};", nix_attr(k), to_nix(v))).collect();
                format!("{{ {} }}", body.join(" "))
            }
        }
    }
}

pub fn nix_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn nix_attr(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '\'');
    if plain {
        k.to_string()
    } else {
        nix_string(k)
    }
}

fn env() -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("nix", |v: JValue| -> Result<String, minijinja::Error> {
        let j: serde_json::Value = serde_json::to_value(&v)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
        Ok(to_nix(&j))
    });
    env.add_template("overlay.nix.j2", OVERLAY_TEMPLATE).context("templates/overlay.nix.j2")?;
    env.add_template("node.nix.j2", NODE_TEMPLATE).context("templates/node.nix.j2")?;
    env.add_template("lb.nix.j2", LB_TEMPLATE).context("templates/lb.nix.j2")?;
    env.add_template("flake.nix.j2", FLAKE_TEMPLATE).context("templates/flake.nix.j2")?;
    env.add_template("rehearsal.nix.j2", REHEARSAL_TEMPLATE).context("templates/rehearsal.nix.j2")?;
    Ok(env)
}

#[derive(Serialize)]
struct MachineCtx<'a> {
    name: &'a str,
    role: Role,
    provider: &'a str,
    system: &'a str,
    fqdn: &'a str,
}

/// One WireGuard peer as modules/overlay.nix configures it (`vaultnix.overlay.peers`).
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub name: String,
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
}

#[derive(Serialize)]
struct OverlayCtx {
    kind: &'static str,
    interface: String,
    address: String,
    prefix_length: u8,
    listen_port: u16,
    private_key_file: String,
    persistent_keepalive: u16,
    peers: Vec<Peer>,
    auth_key_file: Option<String>,
    hostname: Option<String>,
}

/// Public WireGuard keys per machine (from the private keys in secrets/).
pub type WgPublicKeys = BTreeMap<String, String>;

/// The WireGuard peers of machine `me`: every other machine (full mesh). Empty unless the overlay is
/// WireGuard. The generated `nodes/<machine>.nix` and the hosts lab both take them from here.
pub fn wireguard_peers(plan: &Plan, me: &str, all: &[Machine], wg: &WgPublicKeys) -> Vec<Peer> {
    if plan.overlay.kind != OverlayKind::Wireguard {
        return vec![];
    }
    all.iter()
        .filter(|m| m.name != me)
        .map(|m| Peer {
            name: m.name.clone(),
            public_key: wg.get(&m.name).cloned().unwrap_or_default(),
            endpoint: m.public_address.map(|a| crate::plan::sock(a, plan.overlay.listen_port)),
            allowed_ips: vec![host_cidr(m.ip)],
        })
        .collect()
}

fn host_cidr(ip: std::net::IpAddr) -> String {
    format!("{}/{}", ip, if ip.is_ipv4() { 32 } else { 128 })
}

/// What `vaultnix.firewall` is set to for one machine (the data of modules/firewall.nix).
#[derive(Debug, Clone, Serialize)]
pub struct FirewallData {
    /// `apiAllowedCIDRs`: for a server the LB and the client networks (port 8200); for the LB the
    /// client networks (used only when its frontend is not open to everyone).
    pub api_allowed_cidrs: Vec<String>,
    /// `clusterAllowedCIDRs`: without an overlay, the other servers (8200 and 8201).
    pub cluster_allowed_cidrs: Vec<String>,
    pub ssh_allowed_cidrs: Vec<String>,
    /// `agentAllowedCIDRs`: for a server the LB only (its drain agent, HAProxy agent-check).
    pub agent_allowed_cidrs: Vec<String>,
}

pub fn firewall_data(plan: &Plan, machine: &Machine) -> FirewallData {
    let clients = plan.firewall.client_cidrs.iter().map(|c| c.to_string());
    let ssh_allowed_cidrs = plan.firewall.ssh_cidrs.iter().map(|c| c.to_string()).collect();
    match machine.role {
        Role::Server => {
            // Clients allowed to reach 8200 directly: the LB (over the overlay) and the spec's client CIDRs.
            let mut api = vec![host_cidr(plan.lb.ip)];
            api.extend(clients);
            FirewallData {
                api_allowed_cidrs: api,
                cluster_allowed_cidrs: cluster_allowed(plan, &machine.name),
                ssh_allowed_cidrs,
                agent_allowed_cidrs: vec![host_cidr(plan.lb.ip)],
            }
        }
        Role::Lb => FirewallData {
            api_allowed_cidrs: clients.collect(),
            cluster_allowed_cidrs: vec![],
            ssh_allowed_cidrs,
            agent_allowed_cidrs: vec![],
        },
    }
}

fn overlay_ctx(plan: &Plan, me: &Machine, all: &[Machine], wg: &WgPublicKeys) -> OverlayCtx {
    let kind = plan.overlay.kind.as_str();
    let peers = wireguard_peers(plan, &me.name, all, wg);
    OverlayCtx {
        kind,
        interface: plan.overlay.interface.clone(),
        address: me.ip.to_string(),
        prefix_length: plan.overlay.prefix_len,
        listen_port: plan.overlay.listen_port,
        private_key_file: format!("{}/wg.key", plan.secrets_dir),
        persistent_keepalive: plan.overlay.persistent_keepalive,
        peers,
        auth_key_file: plan.overlay.auth_key_file.clone(),
        hostname: plan.node(&me.name).and_then(|n| n.tailnet_name.clone()).or_else(|| Some(me.name.clone())),
    }
}

/// `nodes/<machine>.nix` for every machine (servers and the load balancer), keyed by relative path.
pub fn render_nix(plan: &Plan, wg: &WgPublicKeys) -> Result<Vec<(String, String)>> {
    render_nix_with(plan, wg, None)
}

/// `render_nix`, with `previous_seal_key`: the id of the previous static seal key while a rotation is
/// in progress (the servers also load `seal.<id>.key` from the secrets directory).
pub fn render_nix_with(
    plan: &Plan,
    wg: &WgPublicKeys,
    previous_seal_key: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let env = env()?;
    let machines = plan.machines();
    let mut out = Vec::new();
    let generator = format!("vaultnix {}", env!("CARGO_PKG_VERSION"));
    // Every server's Prometheus scrapes every server's metrics listener (render::prometheus).
    let metrics_allowed: Vec<String> =
        plan.nodes.iter().map(|n| format!("{}/{}", n.ip, if n.ip.is_ipv4() { 32 } else { 128 })).collect();
    for m in &machines {
        let mctx = MachineCtx {
            name: &m.name,
            role: m.role,
            provider: m.provider.as_str(),
            system: m.system(),
            fqdn: &m.fqdn,
        };
        let overlay = overlay_ctx(plan, m, &machines, wg);
        let fw = firewall_data(plan, m);
        let text = match m.role {
            Role::Server => {
                let node = plan.node(&m.name).context("machine without node")?;
                let ctx = minijinja::context! {
                    generator => generator,
                    cluster_name => plan.name,
                    machine => mctx,
                    secrets_dir => plan.secrets_dir,
                    admin_ssh_keys => plan.admin_ssh_keys,
                    ca_cert_file => "../pki/ca.crt",
                    server => minijinja::context! {
                        engine => plan.engine.as_str(),
                        settings_file => format!("./{}.server.json", node.name),
                        cert_file => format!("../pki/{}.crt", node.name),
                        key_file => format!("{}/tls.key", plan.secrets_dir),
                        seal_key_file => (plan.seal.kind == crate::spec::SealKind::Static).then(|| format!("{}/seal.key", plan.secrets_dir)),
                        environment_file => plan.seal.environment_file,
                        previous_seal_key_file => previous_seal_key.map(|id| format!("{}/seal.{id}.key", plan.secrets_dir)),
                        api_port => plan.api_port,
                        cluster_port => plan.cluster_port,
                        version => plan.version_string,
                        single_node => plan.nodes.len() == 1,
                    },
                    overlay => overlay,
                    firewall => minijinja::context! {
                        api_allowed_cidrs => fw.api_allowed_cidrs,
                        ssh_allowed_cidrs => fw.ssh_allowed_cidrs,
                        // The LB only: HAProxy's agent-check of the drain agent.
                        agent_allowed_cidrs => fw.agent_allowed_cidrs,
                        // Without an overlay, raft's cluster port is opened to the other servers only.
                        cluster_allowed_cidrs => fw.cluster_allowed_cidrs,
                    },
                    backup => minijinja::context! {
                        enable => plan.backup.enabled,
                        on_calendar => plan.backup.schedule,
                        randomized_delay => format!("{}s", plan.backup.randomized_delay_seconds),
                        config_file => format!("./{}.backup.json", node.name),
                        token_file => format!("{}/backup-token", plan.secrets_dir),
                        restic => plan.backup.restic.as_ref().map(|r| minijinja::context! {
                            password_file => r.password_file,
                            environment_file => r.environment_file,
                        }),
                    },
                    rehearsal => rehearsal_ctx(plan, &m.name),
                    monitoring => minijinja::context! {
                        enable => plan.monitoring.enabled,
                        alert_rules_file => "../monitoring/alerts.yml",
                        config_file => "../monitoring/prometheus.yml",
                        metrics_port => Layout::NixOs.metrics_port(),
                        metrics_allowed_cidrs => metrics_allowed,
                        raft_dir => Layout::NixOs.data_dir(plan, node),
                    },
                };
                env.get_template("node.nix.j2")?
                    .render(ctx)
                    .with_context(|| format!("rendering flake/nodes/{}.nix", m.name))?
            }
            Role::Lb => {
                let ctx = minijinja::context! {
                    generator => generator,
                    cluster_name => plan.name,
                    machine => mctx,
                    secrets_dir => plan.secrets_dir,
                    admin_ssh_keys => plan.admin_ssh_keys,
                    ca_cert_file => "../pki/ca.crt",
                    lb => minijinja::context! {
                        config_file => "../haproxy/haproxy.cfg",
                        hold_script => "../haproxy/hold.lua",
                        frontend_port => plan.lb.port,
                        stats_port => (plan.lb.stats != crate::spec::StatsAccess::Off).then_some(plan.lb.stats_port),
                        stats_on_overlay => plan.lb.stats == crate::spec::StatsAccess::Overlay,
                        tls_pem_file => (plan.lb.mode == crate::spec::LbMode::Terminate).then(|| format!("{}/lb.pem", plan.secrets_dir)),
                    },
                    overlay => overlay,
                    firewall => minijinja::context! { api_allowed_cidrs => fw.api_allowed_cidrs, ssh_allowed_cidrs => fw.ssh_allowed_cidrs },
                    rehearsal => rehearsal_ctx(plan, &m.name),
                    // Only the node exporter (no Prometheus), on the LB's overlay/cluster address,
                    // admitted from the servers, whose Prometheus scrapes it (job `lb`).
                    monitoring => plan.monitoring.enabled.then(|| minijinja::context! {
                        node_exporter_address => plan.lb.ip.to_string(),
                        node_exporter_port => super::prometheus::LB_NODE_EXPORTER_PORT,
                        node_exporter_allowed_cidrs => metrics_allowed,
                    }),
                };
                env.get_template("lb.nix.j2")?
                    .render(ctx)
                    .with_context(|| format!("rendering flake/nodes/{}.nix", m.name))?
            }
        };
        out.push((super::paths::node_nix(&m.name), text));
    }
    Ok(out)
}

/// The restore rehearsal's options on `machine`, when it is the host that runs it ([backup.restic]).
fn rehearsal_ctx(plan: &Plan, machine: &str) -> Option<minijinja::Value> {
    let r = plan.backup.restic.as_ref()?;
    if super::backup::rehearsal_host(plan).as_deref() != Some(machine) {
        return None;
    }
    let static_seal = plan.seal.kind == crate::spec::SealKind::Static;
    Some(minijinja::context! {
        config_file => format!("./{machine}.rehearsal.json"),
        on_calendar => r.rehearse_schedule,
        randomized_delay => format!("{}s", crate::spec::REHEARSAL_RANDOMIZED_DELAY_SECONDS),
        token_file => format!("{}/backup-token", plan.secrets_dir),
        password_file => r.password_file,
        environment_file => r.environment_file,
        unseal_keys_file => (!static_seal).then(|| format!("{}/unseal-keys", plan.secrets_dir)),
        seal_key_file => static_seal.then(|| format!("{}/seal.key", plan.secrets_dir)),
    })
}

/// Sources admitted to a server's API and cluster ports besides the overlay interface: the other
/// servers. With WireGuard the interface itself carries only the cluster's machines (its peers are
/// exactly them), so it is trusted; a tailnet carries every device of the tailnet, and no overlay
/// carries nothing, so there the other servers are admitted by address (their overlay or host address).
fn cluster_allowed(plan: &Plan, me: &str) -> Vec<String> {
    if plan.overlay.kind == OverlayKind::Wireguard {
        return vec![];
    }
    plan.nodes.iter().filter(|n| n.name != me).map(|n| host_cidr(n.ip)).collect()
}

/// The small flake written into the output directory.
pub fn render_flake(plan: &Plan, vaultnix_url: &str) -> Result<String> {
    let env = env()?;
    let ctx = minijinja::context! {
        generator => format!("vaultnix {}", env!("CARGO_PKG_VERSION")),
        cluster_name => plan.name,
        vaultnix_url => vaultnix_url,
    };
    Ok(env.get_template("flake.nix.j2")?.render(ctx)?)
}

/// cluster.json: the machines as data for the flake's `lib.mkCluster`.
pub fn render_cluster_json(plan: &Plan) -> String {
    let machines: Vec<serde_json::Value> = plan
        .machines()
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.name,
                "role": m.role,
                "provider": m.provider.as_str(),
                "system": m.system(),
                "image": crate::plan::image_variant(m.provider),
            })
        })
        .collect();
    let v = serde_json::json!({ "name": plan.name, "engine": plan.engine.as_str(), "machines": machines });
    super::server::to_json_text(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_literals() {
        assert_eq!(nix_string("a\"b${c}\\"), "\"a\\\"b\\${c}\\\\\"");
        let v = serde_json::json!({"a": [1, "x"], "b c": null, "d": true});
        assert_eq!(to_nix(&v), "{ a = [ 1 \"x\" ]; \"b c\" = null; d = true; }");
        assert_eq!(to_nix(&serde_json::json!([])), "[ ]");
    }
}
