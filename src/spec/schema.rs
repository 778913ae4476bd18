//! The TOML spec as users write it. Everything has a sensible default except the cluster name, the load
//! balancer hostname and the nodes, so a short spec works. Unknown keys are errors (a misspelled key
//! must not be silently ignored).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub cluster: Cluster,
    pub load_balancer: LoadBalancer,
    #[serde(default)]
    pub overlay: Overlay,
    #[serde(default)]
    pub unseal: Unseal,
    #[serde(default)]
    pub raft: Raft,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub backup: Backup,
    #[serde(default)]
    pub monitoring: Monitoring,
    #[serde(default)]
    pub firewall: Firewall,
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Openbao,
    Vault,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Openbao => "openbao",
            Engine::Vault => "vault",
        }
    }
    /// The CLI binary name.
    pub fn binary(self) -> &'static str {
        match self {
            Engine::Openbao => "bao",
            Engine::Vault => "vault",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default)]
    pub engine: Engine,
    /// The engine version the configs target (features differ between OpenBao 2.4 and 2.7).
    #[serde(default = "default_version")]
    pub version: String,
    /// Node DNS names are `<node>.<domain>`.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// The node that initializes the cluster (default: the first voter).
    #[serde(default)]
    pub bootstrap_node: Option<String>,
    /// A one-node cluster tolerates no failure; it must be asked for explicitly.
    #[serde(default)]
    pub allow_single_node: bool,
    #[serde(default = "default_api_port")]
    pub api_port: u16,
    #[serde(default = "default_cluster_port")]
    pub cluster_port: u16,
    /// The drain agent on every server (`vaultnix node agent`): HAProxy's `agent-check` polls it, and
    /// stopping the active node tells the LB through it to drain the node before it steps down.
    #[serde(default = "default_agent_port")]
    pub agent_port: u16,
    /// Where keys live on the hosts (root-only; agenix/sops-nix compatible).
    #[serde(default = "default_secrets_dir")]
    pub secrets_dir: String,
    #[serde(default = "default_true")]
    pub ui: bool,
    /// OpenSSH public keys allowed to log in as root on every machine (servers and the LB), for
    /// `nixos-rebuild --target-host` and the bad day. On-prem and Linode machines have no other way in
    /// (SSH is key-only, root has no password); Oracle and DigitalOcean also take the provider's keys.
    #[serde(default)]
    pub admin_ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Onprem,
    Oracle,
    Linode,
    Digitalocean,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Onprem => "onprem",
            Provider::Oracle => "oracle",
            Provider::Linode => "linode",
            Provider::Digitalocean => "digitalocean",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(default = "default_lb_name")]
    pub name: String,
    /// The name clients use (in every node certificate's SANs).
    pub hostname: String,
    /// Public/host address clients connect to.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// Address on the overlay (required when an overlay is used).
    #[serde(default)]
    pub overlay_address: Option<IpAddr>,
    #[serde(default = "default_provider")]
    pub provider: Provider,
    #[serde(default)]
    pub arch: Option<Arch>,
    #[serde(default = "default_api_port")]
    pub port: u16,
    #[serde(default = "default_stats_port")]
    pub stats_port: u16,
    /// Who may read HAProxy's statistics page (plain HTTP, no authentication): `loopback` (the LB
    /// host itself, e.g. through an SSH tunnel), `overlay` (the overlay address; the firewall opens the
    /// port on the overlay interface only) or `off` (no stats frontend). Never the public address.
    #[serde(default)]
    pub stats: StatsAccess,
    /// How HAProxy carries the client API: `passthrough` (TLS to the nodes, HAProxy sees no plaintext)
    /// or `terminate` (HAProxy terminates TLS with a certificate from the cluster CA, re-encrypts to
    /// the active node and retries requests that provably were not applied; docs/failover.md).
    #[serde(default)]
    pub mode: LbMode,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LbMode {
    #[default]
    Passthrough,
    Terminate,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StatsAccess {
    Off,
    #[default]
    Loopback,
    Overlay,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub provider: Provider,
    /// Default: aarch64 on Oracle (Ampere A1 free tier), x86_64 elsewhere.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Public or host address (IP). Required when there is no overlay.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// Address on the overlay network (required with wireguard or tailscale).
    #[serde(default)]
    pub overlay_address: Option<IpAddr>,
    #[serde(default = "default_true")]
    pub voter: bool,
    /// Site label used to tell LAN from WAN (default: the provider).
    #[serde(default)]
    pub site: Option<String>,
    /// Tailscale machine name (tailscale overlay only; default: the node name).
    #[serde(default)]
    pub tailnet_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverlayKind {
    #[default]
    Wireguard,
    Tailscale,
    None,
}

impl OverlayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayKind::Wireguard => "wireguard",
            OverlayKind::Tailscale => "tailscale",
            OverlayKind::None => "none",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    #[serde(default)]
    pub kind: OverlayKind,
    /// WireGuard: the overlay subnet every overlay address must lie in.
    #[serde(default)]
    pub subnet: Option<IpNet>,
    #[serde(default = "default_wg_port")]
    pub listen_port: u16,
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default = "default_keepalive")]
    pub persistent_keepalive: u16,
    /// Tailscale: path of the auth key file on the hosts.
    #[serde(default)]
    pub auth_key_file: Option<String>,
    /// Tailscale: the tailnet's DNS suffix, e.g. "tail1234.ts.net".
    #[serde(default)]
    pub tailnet: Option<String>,
}

impl Default for Overlay {
    fn default() -> Self {
        Overlay {
            kind: OverlayKind::None,
            subnet: None,
            listen_port: default_wg_port(),
            interface: None,
            persistent_keepalive: default_keepalive(),
            auth_key_file: None,
            tailnet: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SealKind {
    #[default]
    Shamir,
    Static,
    Awskms,
    Gcpckms,
    Azurekeyvault,
    Ocikms,
    Transit,
}

impl SealKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SealKind::Shamir => "shamir",
            SealKind::Static => "static",
            SealKind::Awskms => "awskms",
            SealKind::Gcpckms => "gcpckms",
            SealKind::Azurekeyvault => "azurekeyvault",
            SealKind::Ocikms => "ocikms",
            SealKind::Transit => "transit",
        }
    }
    pub fn is_auto(self) -> bool {
        self != SealKind::Shamir
    }
    /// Cloud KMS seals: plugins since OpenBao 2.6, no longer built in since 2.7.
    pub fn is_cloud_kms(self) -> bool {
        matches!(self, SealKind::Awskms | SealKind::Gcpckms | SealKind::Azurekeyvault | SealKind::Ocikms)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Unseal {
    #[serde(default)]
    pub kind: SealKind,
    /// Shamir: key shares and threshold (with an auto-unseal seal: recovery shares).
    #[serde(default = "default_shares")]
    pub shares: u8,
    #[serde(default = "default_threshold")]
    pub threshold: u8,
    /// Paths (relative to the spec) of PGP public keys, one per share, to encrypt the shares to.
    #[serde(default)]
    pub pgp_keys: Vec<String>,
    /// PGP public key to encrypt the initial root token to.
    #[serde(default)]
    pub root_token_pgp_key: Option<String>,
    /// Seal parameters for auto-unseal kinds (written into the seal stanza as given).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// OpenBao >= 2.6: external KMS plugin binary and its sha256 (required for cloud KMS on >= 2.7).
    #[serde(default)]
    pub plugin_command: Option<String>,
    #[serde(default)]
    pub plugin_sha256: Option<String>,
    #[serde(default = "default_plugin_dir")]
    pub plugin_directory: String,
    /// OpenBao >= 2.4 with an auto-unseal seal: the bootstrap node initializes itself from an
    /// `initialize` stanza (no root token, no recovery keys; access through the operator certificate).
    #[serde(default)]
    pub self_init: bool,
    /// A root-only file on the hosts with the seal's credentials as environment variables
    /// (`AWS_SESSION_TOKEN=…`), given to the server unit as systemd `EnvironmentFile`. Never read by
    /// `generate`, never in the store.
    #[serde(default)]
    pub environment_file: Option<String>,
}

impl Default for Unseal {
    fn default() -> Self {
        Unseal {
            kind: SealKind::Shamir,
            shares: default_shares(),
            threshold: default_threshold(),
            pgp_keys: vec![],
            root_token_pgp_key: None,
            params: BTreeMap::new(),
            plugin_command: None,
            plugin_sha256: None,
            plugin_directory: default_plugin_dir(),
            self_init: false,
            environment_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Lan,
    Wan,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Raft {
    /// 1 (fastest elections) .. 10; default: 1 on a LAN, 3 across a WAN.
    #[serde(default)]
    pub performance_multiplier: Option<u8>,
    /// LAN or WAN between voters (default: WAN when voters are on more than one site).
    #[serde(default)]
    pub network: Option<Network>,
    #[serde(default)]
    pub autopilot: Autopilot,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Autopilot {
    #[serde(default = "default_true")]
    pub cleanup_dead_servers: bool,
    #[serde(default = "default_dead_threshold")]
    pub dead_server_last_contact_threshold: String,
    #[serde(default = "default_last_contact")]
    pub last_contact_threshold: String,
    #[serde(default = "default_stabilization")]
    pub server_stabilization_time: String,
    #[serde(default = "default_trailing_logs")]
    pub max_trailing_logs: u64,
    /// Never prune below this many voters (default: the number of voters in the spec).
    #[serde(default)]
    pub min_quorum: Option<u8>,
}

impl Default for Autopilot {
    fn default() -> Self {
        Autopilot {
            cleanup_dead_servers: true,
            dead_server_last_contact_threshold: default_dead_threshold(),
            last_contact_threshold: default_last_contact(),
            server_stabilization_time: default_stabilization(),
            max_trailing_logs: default_trailing_logs(),
            min_quorum: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
    #[serde(default = "default_ca_days")]
    pub ca_validity_days: u32,
    #[serde(default = "default_node_days")]
    pub node_validity_days: u32,
    /// `generate` and `certs renew` reissue node certs this close to expiry.
    #[serde(default = "default_renew_days")]
    pub renew_within_days: u32,
    /// "tls12" or "tls13".
    #[serde(default = "default_tls_min")]
    pub min_version: String,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            key_algorithm: KeyAlgorithm::EcdsaP256,
            ca_validity_days: default_ca_days(),
            node_validity_days: default_node_days(),
            renew_within_days: default_renew_days(),
            min_version: default_tls_min(),
        }
    }
}

/// Fixed parameters of the generated backup and rehearsal units, which the validator's staleness
/// check counts on: the backup job bounds itself by this (backup.json `timeout_seconds`)…
pub const BACKUP_TIMEOUT_SECONDS: u64 = 600;
/// … and so does the restore rehearsal (rehearsal.json `timeout_seconds`);
pub const REHEARSAL_TIMEOUT_SECONDS: u64 = 900;
/// the rehearsal timer's `RandomizedDelaySec=` (nodes/<host>.nix sets the module's option).
pub const REHEARSAL_RANDOMIZED_DELAY_SECONDS: u64 = 1800;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// systemd OnCalendar expression.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// systemd `RandomizedDelaySec=` of the backup timer, in seconds: each run starts up to this much
    /// later, so the servers do not snapshot at the same instant.
    #[serde(default = "default_backup_delay")]
    pub randomized_delay_seconds: u32,
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    #[serde(default = "default_backup_dest")]
    pub destination: String,
    /// Off-host copies with restic (`[backup.restic]`); none: snapshots stay on the hosts.
    #[serde(default)]
    pub restic: Option<Restic>,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            enabled: true,
            schedule: default_schedule(),
            randomized_delay_seconds: default_backup_delay(),
            retention_days: default_retention(),
            destination: default_backup_dest(),
            restic: None,
        }
    }
}

// --- [backup.restic] (issue 17): off-host, encrypted, deduplicated copies, and restore rehearsals.

/// `[backup.restic]`: every verified snapshot is copied into a restic repository, and a timer restores
/// the newest one into a throwaway server to prove it restores.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Restic {
    /// A restic repository: `rest:https://host:8000/path`, `sftp:user@host:/path`, `s3:https://…/bucket`,
    /// `b2:…`, `azure:…`, `gs:…`, `swift:…`, `rclone:…`, or an absolute path (another disk or a mount).
    pub repository: String,
    /// A file on the hosts holding the repository password (never read by `generate`).
    pub password_file: String,
    /// A file on the hosts with KEY=VALUE lines for restic (S3 credentials and the like).
    #[serde(default)]
    pub environment_file: Option<String>,
    #[serde(default)]
    pub keep_hourly: u32,
    #[serde(default = "default_keep_daily")]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    /// The host that runs the restore rehearsal (default: the load balancer).
    #[serde(default)]
    pub rehearse_on: Option<String>,
    /// systemd OnCalendar expression of the rehearsal; "" disables it.
    #[serde(default = "default_rehearse_schedule")]
    pub rehearse_schedule: String,
    /// `VaultnixRestoreRehearsalStale` fires when the last successful rehearsal is older.
    #[serde(default = "default_rehearse_age")]
    pub rehearse_max_age_hours: u32,
}

fn default_keep_daily() -> u32 {
    30
}
fn default_rehearse_schedule() -> String {
    "daily".into()
}
fn default_rehearse_age() -> u32 {
    50
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_cert_warn")]
    pub cert_expiry_days: u32,
    #[serde(default = "default_backup_age")]
    pub backup_max_age_hours: u32,
    /// How long a condition must hold before an alert fires (Prometheus duration).
    #[serde(default = "default_for")]
    pub alert_for: String,
}

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring {
            enabled: true,
            cert_expiry_days: default_cert_warn(),
            backup_max_age_hours: default_backup_age(),
            alert_for: default_for(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// Client networks allowed to reach the API (8200) directly, besides the load balancer.
    #[serde(default)]
    pub client_cidrs: Vec<IpNet>,
    /// Networks allowed to reach SSH (empty: anywhere; keys only).
    #[serde(default)]
    pub ssh_cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for Audit {
    fn default() -> Self {
        Audit { enabled: true }
    }
}

fn default_version() -> String {
    super::validate::OPENBAO_DEFAULT_VERSION.into()
}
fn default_domain() -> String {
    "vault.internal".into()
}
fn default_api_port() -> u16 {
    8200
}
fn default_cluster_port() -> u16 {
    8201
}
fn default_agent_port() -> u16 {
    8202
}
fn default_stats_port() -> u16 {
    8404
}
fn default_secrets_dir() -> String {
    "/var/lib/vaultnix/secrets".into()
}
fn default_true() -> bool {
    true
}
fn default_lb_name() -> String {
    "vault-lb".into()
}
fn default_provider() -> Provider {
    Provider::Onprem
}
fn default_wg_port() -> u16 {
    51820
}
fn default_keepalive() -> u16 {
    25
}
fn default_shares() -> u8 {
    5
}
fn default_threshold() -> u8 {
    3
}
fn default_plugin_dir() -> String {
    "/var/lib/openbao-plugins".into()
}
fn default_dead_threshold() -> String {
    "10m".into()
}
fn default_last_contact() -> String {
    "10s".into()
}
/// How long a newly joined server must stay healthy before autopilot promotes it to voter. 5 s (Vault's
/// default is 10 s): with the 2 s reconcile interval the renderer sets, a fresh 3-node cluster has 3
/// healthy voters ~10 s after start instead of ~20–24 s. Still safe: the window only gates the promotion
/// of new or re-joined servers (never demotes a voter), and 5 s is dozens of heartbeats at any
/// performance_multiplier; a flapping server keeps resetting it. WAN clusters may raise it in the spec.
fn default_stabilization() -> String {
    "5s".into()
}
fn default_trailing_logs() -> u64 {
    1000
}
fn default_ca_days() -> u32 {
    3650
}
fn default_node_days() -> u32 {
    365
}
fn default_renew_days() -> u32 {
    30
}
fn default_tls_min() -> String {
    "tls12".into()
}
fn default_schedule() -> String {
    "daily".into()
}
fn default_backup_delay() -> u32 {
    600
}
fn default_retention() -> u32 {
    30
}
fn default_backup_dest() -> String {
    "/var/backups/vaultnix".into()
}
fn default_cert_warn() -> u32 {
    21
}
fn default_backup_age() -> u32 {
    26
}
fn default_for() -> String {
    "2m".into()
}
