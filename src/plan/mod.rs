//! The derived cluster model. Everything downstream (renderers, the live commands, Nix data) reads the
//! plan, never the spec text or generated files.

use crate::spec::{self, Arch, Engine, Network, OverlayKind, Provider, Quorum, SealKind, Spec};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    pub engine: Engine,
    pub version: (u32, u32, u32),
    pub version_string: String,
    pub domain: String,
    pub api_port: u16,
    pub cluster_port: u16,
    /// The drain agent's port on every server (HAProxy `agent-check`, ops::agent).
    pub agent_port: u16,
    pub ui: bool,
    pub nodes: Vec<NodePlan>,
    pub lb: LbPlan,
    pub overlay: OverlayPlan,
    pub seal: SealPlan,
    pub raft: RaftPlan,
    pub quorum: Quorum,
    pub bootstrap_node: String,
    pub tls: spec::Tls,
    pub backup: spec::Backup,
    pub monitoring: spec::Monitoring,
    pub firewall: spec::Firewall,
    pub audit: bool,
    pub secrets_dir: String,
    /// Root's authorized SSH keys on every machine.
    pub admin_ssh_keys: Vec<String>,
    /// Directory the spec's relative paths are resolved against.
    #[serde(skip)]
    pub spec_dir: PathBuf,
    /// True for a plan rewritten onto loopback by `Plan::for_lab`.
    pub lab: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    pub name: String,
    /// Raft node_id: stable, equal to the name.
    pub node_id: String,
    /// `<name>.<domain>`: the TLS server name peers and clients verify.
    pub fqdn: String,
    pub provider: Provider,
    pub arch: Arch,
    pub site: String,
    /// Public/host address (WireGuard endpoint), if any.
    pub public_address: Option<IpAddr>,
    /// The address peers and the LB dial: the overlay address, else the host address.
    pub ip: IpAddr,
    pub voter: bool,
    /// Tailscale machine name.
    pub tailnet_name: Option<String>,
}

impl NodePlan {
    pub fn system(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "x86_64-linux",
            Arch::Aarch64 => "aarch64-linux",
        }
    }
    /// The NixOS image variant (system.build.images.<variant>) for this node's provider.
    pub fn image_variant(&self) -> &'static str {
        image_variant(self.provider)
    }
}

pub fn image_variant(p: Provider) -> &'static str {
    match p {
        Provider::Onprem => "qemu-efi",
        Provider::Oracle => "oci",
        Provider::Linode => "linode",
        Provider::Digitalocean => "digital-ocean",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LbPlan {
    pub name: String,
    pub hostname: String,
    pub public_address: Option<IpAddr>,
    /// The address the LB uses towards the nodes (overlay, else host).
    pub ip: IpAddr,
    /// The address HAProxy binds for clients.
    pub bind: IpAddr,
    pub provider: Provider,
    pub arch: Arch,
    pub port: u16,
    pub stats_port: u16,
    pub stats: crate::spec::schema::StatsAccess,
    pub mode: crate::spec::schema::LbMode,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverlayPlan {
    pub kind: OverlayKind,
    pub interface: String,
    pub prefix_len: u8,
    pub listen_port: u16,
    pub persistent_keepalive: u16,
    pub auth_key_file: Option<String>,
    pub tailnet: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SealPlan {
    pub kind: SealKind,
    pub shares: u8,
    pub threshold: u8,
    /// PGP public key files (resolved paths), one per share.
    pub pgp_keys: Vec<PathBuf>,
    pub root_token_pgp_key: Option<PathBuf>,
    pub params: BTreeMap<String, serde_json::Value>,
    /// Rendered as an external KMS plugin (OpenBao >= 2.6 with plugin_command set, required on >= 2.7).
    pub plugin: Option<KmsPlugin>,
    /// Declarative self-initialization on the bootstrap node (OpenBao >= 2.4, auto-unseal only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub self_init: bool,
    /// Host path of the server unit's EnvironmentFile (seal credentials); never read here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_file: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KmsPlugin {
    pub command: String,
    pub sha256: String,
    pub directory: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RaftPlan {
    pub network: Network,
    pub performance_multiplier: u8,
    pub autopilot: spec::Autopilot,
    /// min_quorum resolved (default: the voter count).
    pub min_quorum: u8,
}

impl Plan {
    pub fn from_loaded(l: &spec::Loaded) -> Plan {
        Plan::from_spec(&l.spec, l.dir.clone())
    }

    /// Derives the plan. The spec must have passed validation.
    pub fn from_spec(s: &Spec, spec_dir: PathBuf) -> Plan {
        let nodes: Vec<NodePlan> = s
            .nodes
            .iter()
            .map(|n| NodePlan {
                name: n.name.clone(),
                node_id: n.name.clone(),
                fqdn: format!("{}.{}", n.name, s.cluster.domain),
                provider: n.provider,
                arch: spec::node_arch(n),
                site: n.site.clone().unwrap_or_else(|| n.provider.as_str().to_string()),
                public_address: n.address,
                ip: match s.overlay.kind {
                    OverlayKind::None => n.address,
                    _ => n.overlay_address,
                }
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                voter: n.voter,
                tailnet_name: match s.overlay.kind {
                    OverlayKind::Tailscale => Some(n.tailnet_name.clone().unwrap_or_else(|| n.name.clone())),
                    _ => None,
                },
            })
            .collect();
        let lbs = &s.load_balancer;
        let lb_ip = match s.overlay.kind {
            OverlayKind::None => lbs.address,
            _ => lbs.overlay_address,
        }
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let lb = LbPlan {
            name: lbs.name.clone(),
            hostname: lbs.hostname.clone(),
            public_address: lbs.address,
            ip: lb_ip,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            provider: lbs.provider,
            arch: lbs.arch.unwrap_or(match lbs.provider {
                Provider::Oracle => Arch::Aarch64,
                _ => Arch::X86_64,
            }),
            port: lbs.port,
            stats_port: lbs.stats_port,
            stats: lbs.stats,
            mode: lbs.mode,
        };
        let voters = nodes.iter().filter(|n| n.voter).count();
        let quorum = Quorum::of(voters);
        let network = spec::effective_network(s);
        let version = spec::parse_version(&s.cluster.version).unwrap_or((2, 7, 2));
        let u = &s.unseal;
        let plugin = match (&u.plugin_command, &u.plugin_sha256) {
            (Some(c), Some(h))
                if u.kind.is_cloud_kms() && s.cluster.engine == Engine::Openbao && version >= (2, 6, 0) =>
            {
                Some(KmsPlugin { command: c.clone(), sha256: h.to_lowercase(), directory: u.plugin_directory.clone() })
            }
            _ => None,
        };
        Plan {
            name: s.cluster.name.clone(),
            engine: s.cluster.engine,
            version,
            version_string: s.cluster.version.clone(),
            domain: s.cluster.domain.clone(),
            api_port: s.cluster.api_port,
            cluster_port: s.cluster.cluster_port,
            agent_port: s.cluster.agent_port,
            ui: s.cluster.ui,
            bootstrap_node: s
                .cluster
                .bootstrap_node
                .clone()
                .or_else(|| nodes.iter().find(|n| n.voter).map(|n| n.name.clone()))
                .unwrap_or_default(),
            nodes,
            lb,
            overlay: OverlayPlan {
                kind: s.overlay.kind,
                interface: s.overlay.interface.clone().unwrap_or_else(|| match s.overlay.kind {
                    OverlayKind::Tailscale => "tailscale0".into(),
                    _ => "wg0".into(),
                }),
                prefix_len: s.overlay.subnet.map(|n| n.prefix_len()).unwrap_or(32),
                listen_port: s.overlay.listen_port,
                persistent_keepalive: s.overlay.persistent_keepalive,
                auth_key_file: s.overlay.auth_key_file.clone(),
                tailnet: s.overlay.tailnet.clone(),
            },
            seal: SealPlan {
                kind: u.kind,
                shares: u.shares,
                threshold: u.threshold,
                pgp_keys: u.pgp_keys.iter().map(|k| spec_dir.join(k)).collect(),
                root_token_pgp_key: u.root_token_pgp_key.as_ref().map(|k| spec_dir.join(k)),
                params: u.params.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect(),
                plugin,
                self_init: u.self_init,
                environment_file: u.environment_file.clone(),
            },
            raft: RaftPlan {
                network,
                performance_multiplier: s.raft.performance_multiplier.unwrap_or(match network {
                    Network::Lan => 1,
                    Network::Wan => 3,
                }),
                autopilot: s.raft.autopilot.clone(),
                min_quorum: s.raft.autopilot.min_quorum.unwrap_or(voters as u8),
            },
            quorum,
            tls: s.tls.clone(),
            backup: s.backup.clone(),
            monitoring: s.monitoring.clone(),
            firewall: s.firewall.clone(),
            audit: s.audit.enabled,
            secrets_dir: s.cluster.secrets_dir.clone(),
            admin_ssh_keys: s.cluster.admin_ssh_keys.clone(),
            spec_dir,
            lab: false,
        }
    }

    /// The same cluster moved onto loopback for `vaultnix lab`: the load balancer at `base`, node i at
    /// base+1+i, same ports, no overlay. Everything else (seal, raft timing, TLS, names) is unchanged, so
    /// the lab runs what production runs.
    pub fn for_lab(&self, base: Ipv4Addr) -> Plan {
        let mut p = self.clone();
        let base_n = u32::from(base);
        for (i, n) in p.nodes.iter_mut().enumerate() {
            // Carry into the next octet rather than overflow (validation caps the node count anyway).
            let off = u32::try_from(i).unwrap_or(u32::MAX - 1).saturating_add(1);
            n.ip = IpAddr::V4(Ipv4Addr::from(base_n.wrapping_add(off)));
            n.public_address = None;
        }
        p.lb.ip = IpAddr::V4(base);
        p.lb.bind = IpAddr::V4(base);
        p.lb.public_address = None;
        p.overlay.kind = OverlayKind::None;
        p.lab = true;
        p
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn voters(&self) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(|n| n.voter)
    }

    pub fn api_url(&self, n: &NodePlan) -> String {
        format!("https://{}", sock(n.ip, self.api_port))
    }

    pub fn cluster_url(&self, n: &NodePlan) -> String {
        format!("https://{}", sock(n.ip, self.cluster_port))
    }

    pub fn lb_url(&self) -> String {
        format!("https://{}", sock(self.lb.bind_or_ip(), self.lb.port))
    }

    /// True when this engine version has the feature (OpenBao only; Vault gets the conservative path).
    pub fn openbao_at_least(&self, v: (u32, u32, u32)) -> bool {
        self.engine == Engine::Openbao && self.version >= v
    }

    /// Which overlay peers each machine has (all servers + the LB, minus itself).
    pub fn machines(&self) -> Vec<Machine> {
        let mut m: Vec<Machine> = self
            .nodes
            .iter()
            .map(|n| Machine {
                name: n.name.clone(),
                role: Role::Server,
                provider: n.provider,
                arch: n.arch,
                ip: n.ip,
                public_address: n.public_address,
                fqdn: n.fqdn.clone(),
            })
            .collect();
        m.push(Machine {
            name: self.lb.name.clone(),
            role: Role::Lb,
            provider: self.lb.provider,
            arch: self.lb.arch,
            ip: self.lb.ip,
            public_address: self.lb.public_address,
            fqdn: self.lb.hostname.clone(),
        });
        m
    }
}

impl LbPlan {
    fn bind_or_ip(&self) -> IpAddr {
        if self.bind.is_unspecified() {
            self.public_address.unwrap_or(self.ip)
        } else {
            self.bind
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Lb,
}

/// A NixOS machine of the cluster: a server node or the load balancer.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub name: String,
    pub role: Role,
    pub provider: Provider,
    pub arch: Arch,
    pub ip: IpAddr,
    pub public_address: Option<IpAddr>,
    pub fqdn: String,
}

impl Machine {
    pub fn system(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "x86_64-linux",
            Arch::Aarch64 => "aarch64-linux",
        }
    }
}

/// `ip:port`, with brackets for IPv6.
pub fn sock(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v) => format!("{v}:{port}"),
        IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_plan() {
        let p = Plan::from_loaded(&spec::example());
        assert_eq!(p.nodes.len(), 3);
        assert_eq!(p.quorum.tolerates, 1);
        assert_eq!(p.bootstrap_node, "vault-1");
        assert_eq!(p.raft.network, Network::Wan);
        assert_eq!(p.raft.performance_multiplier, 3);
        assert_eq!(p.nodes[1].arch, Arch::Aarch64);
        assert_eq!(p.api_url(&p.nodes[0]), "https://10.88.0.1:8200");
        assert_eq!(p.nodes[0].fqdn, "vault-1.vault.internal");
    }

    #[test]
    fn lab_plan_is_on_loopback() {
        let p = Plan::from_loaded(&spec::example()).for_lab(Ipv4Addr::new(127, 0, 0, 10));
        let ips: Vec<String> = p.nodes.iter().map(|n| n.ip.to_string()).collect();
        assert_eq!(ips, ["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
        assert_eq!(p.lb_url(), "https://127.0.0.10:8200");
        assert!(p.nodes.iter().all(|n| n.ip.is_loopback()));
        assert_eq!(p.overlay.kind, OverlayKind::None);
    }
}
