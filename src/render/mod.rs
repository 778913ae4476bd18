//! Pure renderers: Plan (+ key material) → file contents. Nothing here touches the disk.

pub mod alerts;
pub mod haproxy;
pub mod layout;
pub mod nix;
pub mod prometheus;
pub mod server;

pub use alerts::{render_alerts, render_alerts_with, AlertTiming};
pub use haproxy::{render_haproxy, render_haproxy_profile, HaproxyProfile};
pub use layout::Layout;
pub use prometheus::{render_prometheus, PrometheusParams};
pub use server::{render_server_config, to_json_text, version_notes};

use crate::plan::Plan;
use crate::secrets::Material;
use anyhow::Result;

/// One file of the output tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// Relative path inside the output directory, with '/' separators.
    pub path: String,
    pub contents: Vec<u8>,
    /// Secret files are written 0600 inside a 0700 directory and never printed.
    pub secret: bool,
}

impl OutFile {
    fn public(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        OutFile { path: path.into(), contents: contents.into(), secret: false }
    }
    fn secret(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        OutFile { path: path.into(), contents: contents.into(), secret: true }
    }
}

#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The flake URL the generated flake.nix takes vaultnix from.
    pub vaultnix_url: String,
    /// Also write the Nix files (off for the lab, which runs processes directly).
    pub nix: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { vaultnix_url: "github:vaultnix/vaultnix".into(), nix: true }
    }
}

/// Everything `generate` writes, except manifest.json, in a stable order.
pub fn render_all(plan: &Plan, m: &Material, layout: &Layout, opts: &RenderOptions) -> Result<Vec<OutFile>> {
    let mut files = Vec::new();
    files.push(OutFile::secret("secrets/ca.key", m.ca_key.clone()));
    files.push(OutFile::public("pki/ca.crt", m.ca_cert.clone()));
    for n in &plan.nodes {
        if let Some(k) = m.node_keys.get(&n.name) {
            files.push(OutFile::secret(format!("secrets/{}.key", n.name), k.clone()));
        }
        if let Some(c) = m.node_certs.get(&n.name) {
            files.push(OutFile::public(format!("pki/{}.crt", n.name), c.clone()));
        }
        let cfg = render_server_config(plan, n, layout);
        files.push(OutFile::public(format!("nodes/{}.server.json", n.name), to_json_text(&cfg)));
    }
    for (name, k) in &m.wg_private {
        files.push(OutFile::secret(format!("secrets/{name}.wg.key"), format!("{k}\n")));
    }
    if let Some(k) = &m.seal_key {
        files.push(OutFile::secret("secrets/seal.key", k.clone()));
    }
    if let (Some(k), Some(c)) = (&m.admin_key, &m.admin_cert) {
        files.push(OutFile::secret("secrets/admin.key", k.clone()));
        files.push(OutFile::public("pki/admin.crt", c.clone()));
    }
    files.push(OutFile::public("haproxy/haproxy.cfg", render_haproxy(plan, layout)));
    files.push(OutFile::public("monitoring/alerts.yml", render_alerts(plan)));
    files.push(OutFile::public(
        "monitoring/prometheus.yml",
        render_prometheus(plan, layout, &PrometheusParams::for_layout(layout)),
    ));
    if opts.nix {
        let wg = m.wg_public()?;
        for (path, text) in nix::render_nix(plan, &wg)? {
            files.push(OutFile::public(path, text));
        }
        files.push(OutFile::public("flake.nix", nix::render_flake(plan, &opts.vaultnix_url)?));
        files.push(OutFile::public("cluster.json", nix::render_cluster_json(plan)));
    }
    Ok(files)
}
