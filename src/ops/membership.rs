//! Cluster membership: editing the spec for `node add` / `node remove` (the user's comments and
//! formatting are kept: toml_edit), and the live steps (join, unseal, wait for voter; remove-peer).

use crate::spec::{self, Arch, Provider};
use anyhow::{anyhow, bail, Context, Result};
use std::net::IpAddr;
use std::path::Path;
use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

#[derive(Debug, Clone)]
pub struct NewNode {
    pub name: String,
    pub provider: Provider,
    pub arch: Option<Arch>,
    pub address: Option<IpAddr>,
    pub overlay_address: Option<IpAddr>,
    pub voter: bool,
}

fn parse(text: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| anyhow!("the spec does not parse: {e}"))
}

fn nodes_mut(doc: &mut DocumentMut) -> Result<&mut ArrayOfTables> {
    if !doc.contains_key("nodes") {
        doc.insert("nodes", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    match doc.get_mut("nodes") {
        Some(Item::ArrayOfTables(a)) => Ok(a),
        _ => bail!("`nodes` in the spec is not written as [[nodes]] tables; edit it by hand"),
    }
}

fn node_names(a: &ArrayOfTables) -> Vec<String> {
    a.iter().filter_map(|t| t.get("name").and_then(|v| v.as_str()).map(str::to_string)).collect()
}

/// The spec text with a `[[nodes]]` table appended for `n`. Everything else is byte-for-byte unchanged.
pub fn add_node_text(text: &str, n: &NewNode) -> Result<String> {
    let mut doc = parse(text)?;
    let nodes = nodes_mut(&mut doc)?;
    if node_names(nodes).iter().any(|x| x == &n.name) {
        bail!("node {:?} is already in the spec", n.name);
    }
    let mut t = Table::new();
    t.insert("name", value(n.name.clone()));
    t.insert("provider", value(n.provider.as_str()));
    if let Some(a) = n.arch {
        t.insert("arch", value(a.as_str()));
    }
    if let Some(a) = n.address {
        t.insert("address", value(a.to_string()));
    }
    if let Some(a) = n.overlay_address {
        t.insert("overlay_address", value(a.to_string()));
    }
    if !n.voter {
        t.insert("voter", value(false));
    }
    t.decor_mut().set_prefix("\n");
    nodes.push(t);
    let mut out = doc.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// The spec text without node `name`'s `[[nodes]]` table.
pub fn remove_node_text(text: &str, name: &str) -> Result<String> {
    let mut doc = parse(text)?;
    let nodes = nodes_mut(&mut doc)?;
    let names = node_names(nodes);
    let idx = names
        .iter()
        .position(|x| x == name)
        .ok_or_else(|| anyhow!("node {name:?} is not in the spec (nodes: {})", names.join(", ")))?;
    nodes.remove(idx);
    Ok(doc.to_string())
}

/// Applies `edit` to the spec file, validates the result like any spec, and writes it atomically.
/// Nothing is written when the edited spec would be invalid.
pub fn edit_spec_file(path: &Path, edit: impl FnOnce(&str) -> Result<String>) -> Result<spec::Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let new = edit(&text)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let loaded = spec::load_str(&path.display().to_string(), &new, dir)
        .map_err(|e| anyhow!("the spec would be invalid after this change; nothing written:\n{e}"))?;
    crate::output::write_file_atomic(path, new.as_bytes(), false)?;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four() -> NewNode {
        NewNode {
            name: "vault-4".into(),
            provider: Provider::Linode,
            arch: None,
            address: Some("203.0.113.40".parse().unwrap()),
            overlay_address: Some("10.88.0.4".parse().unwrap()),
            voter: true,
        }
    }

    #[test]
    fn add_keeps_comments_and_validates() {
        let text = spec::EXAMPLE;
        let new = add_node_text(text, &four()).unwrap();
        assert!(new.starts_with(text.trim_end()), "existing text unchanged");
        assert!(new.contains("# Oracle's free tier is Ampere A1 (ARM)"));
        assert!(new.ends_with("[[nodes]]\nname = \"vault-4\"\nprovider = \"linode\"\naddress = \"203.0.113.40\"\noverlay_address = \"10.88.0.4\"\n"), "{new}");
        let l = spec::load_str("x", &new, Path::new(".")).unwrap();
        assert_eq!(l.spec.nodes.len(), 4);
        let e = add_node_text(&new, &four()).unwrap_err().to_string();
        assert!(e.contains("already"), "{e}");
    }

    #[test]
    fn remove_round_trips() {
        let added = add_node_text(spec::EXAMPLE, &four()).unwrap();
        let removed = remove_node_text(&added, "vault-4").unwrap();
        assert_eq!(removed.trim_end(), spec::EXAMPLE.trim_end());
        let e = remove_node_text(spec::EXAMPLE, "nope").unwrap_err().to_string();
        assert!(e.contains("vault-1, vault-2, vault-3"), "{e}");
    }

    #[test]
    fn invalid_result_writes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("cluster.toml");
        std::fs::write(&p, spec::EXAMPLE).unwrap();
        // Wireguard overlay: a node without an overlay address is invalid.
        let mut n = four();
        n.overlay_address = None;
        let e = edit_spec_file(&p, |t| add_node_text(t, &n)).unwrap_err().to_string();
        assert!(e.contains("nothing written"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), spec::EXAMPLE);
        let l = edit_spec_file(&p, |t| add_node_text(t, &four())).unwrap();
        assert_eq!(l.spec.nodes.len(), 4);
        assert!(std::fs::read_to_string(&p).unwrap().contains("vault-4"));
    }
}
