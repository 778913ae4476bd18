//! Where files live on the machine that runs a rendering. The renderers are the same everywhere; only
//! these paths (and the plan's addresses) differ between a NixOS host and the loopback lab.

use crate::plan::{NodePlan, Plan};
use crate::spec::Engine;
use std::path::{Path, PathBuf};

/// Every path inside an output directory (`generate --out DIR`), relative, '/'-separated. The one place
/// that knows the layout: renderers, `generate`, the lab and every live command go through it.
///
/// `DIR/flake/` holds everything Nix may copy into the store (flake.nix, cluster.json, nodes/,
/// haproxy/, monitoring/, pki/*.crt); key material (`DIR/secrets/`), the manifest and lab state stay
/// outside it, so `nix build ./DIR/flake#…` cannot copy a key by construction.
pub mod paths {
    /// The flake's source tree: public files only.
    pub const FLAKE: &str = "flake";
    /// Private key material, bootstrap output and tokens (0700, files 0600). Never inside `FLAKE`.
    pub const SECRETS: &str = "secrets";
    pub const FLAKE_NIX: &str = "flake/flake.nix";
    pub const CLUSTER_JSON: &str = "flake/cluster.json";
    pub const HAPROXY_CFG: &str = "flake/haproxy/haproxy.cfg";
    pub const HOLD_LUA: &str = "flake/haproxy/hold.lua";
    pub const ALERTS: &str = "flake/monitoring/alerts.yml";
    pub const PROMETHEUS: &str = "flake/monitoring/prometheus.yml";
    pub const CA_CRT: &str = "flake/pki/ca.crt";
    pub const ADMIN_CRT: &str = "flake/pki/admin.crt";
    pub const CA_KEY: &str = "secrets/ca.key";
    pub const SEAL_KEY: &str = "secrets/seal.key";
    /// The static seal's key ids (current, previous, retired); absent before the first rotation.
    pub const SEAL_IDS: &str = "secrets/seal.json";
    /// A static seal key that is no longer the current one, by its id: the previous key during a
    /// rotation (`generate --rotate-seal-key`, rendered as `previous_key`), then a retired key (kept:
    /// snapshots taken before the rotation need it). The same name on the hosts, in secretsDir.
    pub fn seal_key_by_id(id: &str) -> String {
        format!("secrets/seal.{id}.key")
    }
    /// A staged CA rollover (`vaultnix ca rollover`): its phase and the retired CAs' ids.
    pub const CA_ROLLOVER: &str = "secrets/ca-rollover.json";
    /// What the live check of the current rollover phase saw (written by `ca rollover verify`, not by
    /// `generate`): the next step is refused until it matches the tree.
    pub const CA_ROLLOVER_VERIFIED: &str = "secrets/ca-rollover.verified.json";
    /// The new CA's key while the rollover trusts both CAs (before the leaves are reissued).
    pub const CA_NEXT_KEY: &str = "secrets/ca.next.key";
    /// A CA replaced by a rollover, kept (key and certificate) by its number: never deleted.
    pub fn ca_retired_key(n: u32) -> String {
        format!("secrets/ca.retired-{n}.key")
    }
    pub fn ca_retired_crt(n: u32) -> String {
        format!("secrets/ca.retired-{n}.crt")
    }
    pub const ADMIN_KEY: &str = "secrets/admin.key";
    pub const ADMIN_TOKEN: &str = "secrets/admin-token";
    pub const INIT_JSON: &str = "secrets/init.json";
    /// `load_balancer.mode = "terminate"`: the LB's TLS key, its certificate (public) and the two
    /// combined as HAProxy's `crt` file (secret, rendered from the other two on every `generate`).
    pub const LB_KEY: &str = "secrets/lb.key";
    pub const LB_CRT: &str = "flake/pki/lb.crt";
    pub const LB_PEM: &str = "secrets/lb.pem";
    /// Written by `generate` (unless the user has their own): keeps secrets/ and lab state out of git.
    pub const GITIGNORE: &str = ".gitignore";
    pub fn node_crt(node: &str) -> String {
        format!("flake/pki/{node}.crt")
    }
    pub fn node_key(node: &str) -> String {
        format!("secrets/{node}.key")
    }
    pub fn wg_key(machine: &str) -> String {
        format!("secrets/{machine}.wg.key")
    }
    pub fn server_json(node: &str) -> String {
        format!("flake/nodes/{node}.server.json")
    }
    pub fn backup_json(node: &str) -> String {
        format!("flake/nodes/{node}.backup.json")
    }
    /// The server unit's ExecStop config (`vaultnix node drain`, [`crate::ops::drain`]).
    pub fn drain_json(node: &str) -> String {
        format!("flake/nodes/{node}.drain.json")
    }
    /// The restore rehearsal's config, on the host that runs it (`[backup.restic]`).
    pub fn rehearsal_json(host: &str) -> String {
        format!("flake/nodes/{host}.rehearsal.json")
    }
    pub fn node_nix(machine: &str) -> String {
        format!("flake/nodes/{machine}.nix")
    }
    /// Whether a relative path is private material (never removed by `generate`).
    pub fn is_secret(rel: &str) -> bool {
        rel.starts_with("secrets/")
    }
    /// Where a file of the flake tree sat in the layout before `flake/` existed (everything at the
    /// top of DIR, secrets/ included): `flake/pki/ca.crt` -> `pki/ca.crt`.
    pub fn legacy(rel: &str) -> Option<&str> {
        rel.strip_prefix("flake/")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A NixOS host deployed by modules/: public files from the store under /etc/vaultnix, secrets via
    /// systemd LoadCredential, state in the unit's StateDirectory.
    NixOs,
    /// `vaultnix lab`: everything under one directory, the same tree `generate` writes.
    Lab(PathBuf),
}

impl Layout {
    fn unit(engine: Engine) -> &'static str {
        match engine {
            Engine::Openbao => "openbao",
            Engine::Vault => "vault",
        }
    }
    /// The lab directory (None on a NixOS host).
    pub fn lab_dir(&self) -> Option<&Path> {
        self.lab()
    }
    fn lab(&self) -> Option<&Path> {
        match self {
            Layout::Lab(d) => Some(d),
            Layout::NixOs => None,
        }
    }
    pub fn ca_file(&self, _plan: &Plan) -> String {
        match self.lab() {
            Some(d) => path(d.join(paths::CA_CRT)),
            None => "/etc/vaultnix/ca.crt".into(),
        }
    }
    pub fn cert_file(&self, _plan: &Plan, n: &NodePlan) -> String {
        match self.lab() {
            Some(d) => path(d.join(paths::node_crt(&n.name))),
            None => "/etc/vaultnix/tls.crt".into(),
        }
    }
    pub fn key_file(&self, plan: &Plan, n: &NodePlan) -> String {
        match self.lab() {
            Some(d) => path(d.join(paths::node_key(&n.name))),
            None => format!("/run/credentials/{}.service/tls.key", Self::unit(plan.engine)),
        }
    }
    pub fn seal_key_file(&self, plan: &Plan) -> String {
        match self.lab() {
            Some(d) => path(d.join(paths::SEAL_KEY)),
            None => format!("/run/credentials/{}.service/seal.key", Self::unit(plan.engine)),
        }
    }
    pub fn previous_seal_key_file(&self, plan: &Plan, id: &str) -> String {
        match self.lab() {
            Some(d) => path(d.join(paths::seal_key_by_id(id))),
            None => format!("/run/credentials/{}.service/seal.previous.key", Self::unit(plan.engine)),
        }
    }
    pub fn data_dir(&self, plan: &Plan, n: &NodePlan) -> String {
        match self.lab() {
            Some(d) => path(d.join(format!("data/{}", n.name))),
            None => format!("/var/lib/{}", Self::unit(plan.engine)),
        }
    }
    /// The same path on every node: config-declared audit devices are replicated through raft, and a
    /// standby whose declared options differ from the table refuses to finish unsealing ("modifications
    /// to audit devices are not allowed", seen with per-node lab paths on OpenBao 2.7.2). In the lab the
    /// nodes therefore share one append-only file.
    pub fn audit_file(&self, plan: &Plan, _n: &NodePlan) -> String {
        match self.lab() {
            Some(d) => path(d.join("logs/audit.log")),
            None => format!("/var/log/{}/audit.log", Self::unit(plan.engine)),
        }
    }
    /// The CA file HAProxy verifies the nodes' certificates with.
    pub fn haproxy_ca_file(&self, plan: &Plan) -> String {
        self.ca_file(plan)
    }
    /// HAProxy's certificate + key for terminating TLS (`load_balancer.mode = "terminate"`); on NixOS
    /// modules/haproxy.nix installs the host's secrets/lb.pem there (0600, HAProxy's user, in its
    /// RuntimeDirectory) before every start and every reload, so a reload serves a renewed
    /// certificate (a LoadCredential copy is fixed for the unit's lifetime); never the store.
    pub fn haproxy_lb_pem(&self) -> String {
        match self.lab() {
            Some(d) => path(d.join(paths::LB_PEM)),
            None => "/run/haproxy/vaultnix-lb.pem".into(),
        }
    }
    /// The Lua action HAProxy loads to hold new connections while no server is UP
    /// (`render::haproxy::HOLD_LUA`; deployed by modules/haproxy.nix on NixOS).
    pub fn haproxy_hold_lua(&self) -> String {
        match self.lab() {
            Some(d) => path(d.join(paths::HOLD_LUA)),
            None => "/etc/haproxy/vaultnix-hold.lua".into(),
        }
    }
    /// HAProxy's admin socket (drain/ready a server before a planned step-down).
    pub fn haproxy_admin_socket(&self) -> String {
        match self.lab() {
            Some(d) => path(d.join("run/haproxy.sock")),
            None => "/run/haproxy/admin.sock".into(),
        }
    }
    /// The Unix socket of HAProxy's second hold (`frontend vault_hold`): vault_active's backup server,
    /// where a request a crashed node refused waits for the next active node. Beside the admin socket.
    pub fn haproxy_hold_socket(&self) -> String {
        match self.lab() {
            Some(d) => path(d.join("run/haproxy-hold.sock")),
            None => "/run/haproxy/hold.sock".into(),
        }
    }
    /// The backup token as the backup job sees it (NixOS: LoadCredential name `backup-token`).
    pub fn backup_token_file(&self) -> String {
        match self.lab() {
            Some(d) => path(d.join("secrets/backup-token")),
            None => "/run/credentials/vaultnix-backup.service/backup-token".into(),
        }
    }
    /// The drain agent's control socket (ops::agent) the node's stop path talks to. NixOS: in the
    /// agent unit's RuntimeDirectory (modules/node.nix).
    pub fn agent_control_socket(&self, node: &str) -> String {
        match self.lab() {
            Some(d) => path(d.join("run").join(format!("agent-{node}.sock"))),
            None => "/run/vaultnix-drain-agent/control.sock".into(),
        }
    }
    /// The drain token as the server unit's ExecStop sees it (NixOS: LoadCredential `drain-token`).
    pub fn drain_token_file(&self, plan: &Plan) -> String {
        match self.lab() {
            Some(d) => path(d.join("secrets").join(crate::ops::drain::DRAIN_TOKEN)),
            None => format!("/run/credentials/{}.service/{}", plan.engine.as_str(), crate::ops::drain::DRAIN_TOKEN),
        }
    }
    /// Where the backup job writes snapshots.
    pub fn backup_dir(&self, plan: &Plan) -> String {
        match self.lab() {
            Some(d) => path(d.join("backups")),
            None => plan.backup.destination.clone(),
        }
    }
    /// The node exporter's textfile directory (modules/monitoring.nix `textfileDir` default; the backup
    /// module asserts they agree).
    pub fn textfile_dir(&self) -> String {
        match self.lab() {
            Some(d) => path(d.join("textfile")),
            None => "/var/lib/vaultnix/textfile".into(),
        }
    }
    /// Port of the metrics listener on every node's cluster address (scraped by every Prometheus of the
    /// cluster; the firewall admits only the servers).
    pub fn metrics_port(&self) -> u16 {
        9102
    }

    // --- [backup.restic] (issue 17): the secrets as the backup and rehearsal units see them.
    /// A secret of `unit` (NixOS: LoadCredential `name`; the lab: `secrets/<name>`).
    pub fn unit_credential(&self, unit: &str, name: &str) -> String {
        match self.lab() {
            Some(d) => path(d.join("secrets").join(name)),
            None => format!("/run/credentials/{unit}.service/{name}"),
        }
    }
    /// The rehearsal's scratch directory (a throwaway server's data; wiped after each run).
    pub fn rehearsal_dir(&self) -> String {
        match self.lab() {
            Some(d) => path(d.join("rehearsal")),
            None => "/var/lib/vaultnix-rehearsal".into(),
        }
    }
}

fn path(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}
