//! Where files live on the machine that runs a rendering. The renderers are the same everywhere; only
//! these paths (and the plan's addresses) differ between a NixOS host and the loopback lab.

use crate::plan::{NodePlan, Plan};
use crate::spec::Engine;
use std::path::{Path, PathBuf};

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
            Some(d) => path(d.join("pki/ca.crt")),
            None => "/etc/vaultnix/ca.crt".into(),
        }
    }
    pub fn cert_file(&self, _plan: &Plan, n: &NodePlan) -> String {
        match self.lab() {
            Some(d) => path(d.join(format!("pki/{}.crt", n.name))),
            None => "/etc/vaultnix/tls.crt".into(),
        }
    }
    pub fn key_file(&self, plan: &Plan, n: &NodePlan) -> String {
        match self.lab() {
            Some(d) => path(d.join(format!("secrets/{}.key", n.name))),
            None => format!("/run/credentials/{}.service/tls.key", Self::unit(plan.engine)),
        }
    }
    pub fn seal_key_file(&self, plan: &Plan) -> String {
        match self.lab() {
            Some(d) => path(d.join("secrets/seal.key")),
            None => format!("/run/credentials/{}.service/seal.key", Self::unit(plan.engine)),
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
    /// HAProxy's admin socket (drain/ready a server before a planned step-down).
    pub fn haproxy_admin_socket(&self) -> String {
        match self.lab() {
            Some(d) => path(d.join("run/haproxy.sock")),
            None => "/run/haproxy/admin.sock".into(),
        }
    }
    /// Port of the metrics listener on every node's cluster address (scraped by every Prometheus of the
    /// cluster; the firewall admits only the servers).
    pub fn metrics_port(&self) -> u16 {
        9102
    }
}

fn path(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}
