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

// ---- Live, on the lab: start + join + unseal + voter; remove-peer + stop.

/// What `node add`/`node remove` did on the lab.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveReport {
    pub node: String,
    pub seconds: f64,
    pub voters: Vec<String>,
    pub peers: usize,
}

fn regenerate_lab(lab: &crate::lab::Lab) -> Result<()> {
    use crate::generate::{generate, GenerateOptions};
    use crate::render::{Layout, RenderOptions};
    generate(
        &lab.plan,
        &Layout::Lab(lab.dir.clone()),
        &GenerateOptions {
            out: lab.dir.clone(),
            check: false,
            rotate: crate::secrets::Rotate::default(),
            render: RenderOptions { nix: false, ..RenderOptions::default() },
        },
    )?;
    Ok(())
}

fn lab_spec(dir: &Path) -> Result<std::path::PathBuf> {
    let st = crate::lab::read_state(dir)?.ok_or_else(|| anyhow!("{} is not a lab directory", dir.display()))?;
    st.spec.ok_or_else(|| {
        anyhow!(
            "this lab runs the built-in example; membership changes need a spec file (`vaultnix lab up --spec FILE`)"
        )
    })
}

/// Adds `n` to a running lab: spec edited, tree regenerated, process started, joined through retry_join,
/// unsealed, and waited for until autopilot reports it a healthy voter (bounded by `wait`).
pub async fn lab_add_node(dir: &Path, n: &NewNode, wait: std::time::Duration) -> Result<LiveReport> {
    use crate::ops::common;
    let t0 = std::time::Instant::now();
    let spec_file = lab_spec(dir)?;
    edit_spec_file(&spec_file, |t| add_node_text(t, n))?;
    let lab = crate::lab::Lab::open(dir, None)?;
    regenerate_lab(&lab)?;
    let data = dir.join(format!("data/{}", n.name));
    std::fs::create_dir_all(&data)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
    }
    // Its drain agent first, as the NixOS unit ordering has it (labs recorded without agents have none).
    let agent = crate::lab::agent_name(&n.name);
    if lab.proc(&agent).is_ok() {
        lab.start(&agent)?;
    }
    lab.start(&n.name)?;
    let init = common::read_init(dir)?.ok_or_else(|| anyhow!("the lab has no secrets/init.json"))?;
    let keys = crate::ops::unseal::Keys(if init.keys_base64.is_empty() {
        init.keys.clone()
    } else {
        init.keys_base64.clone()
    });
    let c = lab.cluster()?.with_token(Some(init.root_token.clone()));
    let node = c.node(&n.name).ok_or_else(|| anyhow!("no client for {}", n.name))?.clone();
    crate::ops::unseal::unseal_node(&node, &keys, wait).await?;
    let name = n.name.clone();
    let voters = common::poll(wait, std::time::Duration::from_millis(500), || async {
        let a = common::find_active(&c).await?;
        let st = a.autopilot_state().await.ok()?;
        let s = st.servers.get(&name)?;
        (s.healthy && s.status == "voter").then(|| st.voters.clone())
    })
    .await
    .ok_or_else(|| anyhow!("{name} did not become a healthy voter within {wait:?}"))?;
    let peers = match common::find_active(&c).await {
        Some(a) => a.raft_configuration().await.map(|r| r.servers.len()).unwrap_or(0),
        None => 0,
    };
    Ok(LiveReport { node: name, seconds: t0.elapsed().as_secs_f64(), voters, peers })
}

/// `sys/storage/raft/remove-peer` for `name` through the active node (`c` carries a token). When `name`
/// is the leader, leadership is handed over first.
pub async fn remove_peer(c: &crate::api::Cluster, name: &str, wait: std::time::Duration) -> Result<()> {
    use crate::ops::common;
    let mut active =
        common::find_active(c).await.ok_or_else(|| anyhow!("no active node: cannot remove a raft peer"))?;
    if active.name == name {
        let _ = active.step_down().await;
        active = common::poll(wait, std::time::Duration::from_millis(250), || async {
            common::find_active(c).await.filter(|a| a.name != name)
        })
        .await
        .ok_or_else(|| anyhow!("{name} is active and did not step down"))?;
    }
    active
        .call(reqwest::Method::POST, "sys/storage/raft/remove-peer", Some(&serde_json::json!({ "server_id": name })))
        .await?;
    Ok(())
}

/// Removes `name` from a running lab: raft remove-peer through the active node, process stopped, spec
/// edited and the tree regenerated.
pub async fn lab_remove_node(dir: &Path, name: &str, wait: std::time::Duration) -> Result<LiveReport> {
    use crate::ops::common;
    let t0 = std::time::Instant::now();
    let spec_file = lab_spec(dir)?;
    let lab = crate::lab::Lab::open(dir, None)?;
    if lab.plan.node(name).is_none() {
        bail!("node {name:?} is not in this lab");
    }
    let c = lab.cluster()?;
    let init = common::read_init(dir)?.ok_or_else(|| anyhow!("the lab has no secrets/init.json"))?;
    let c = c.with_token(Some(init.root_token.clone()));
    remove_peer(&c, name, wait).await?;
    lab.stop(name)?;
    // Its drain agent too: once the node is out of the spec, `lab down` no longer knows it.
    let agent = crate::lab::agent_name(name);
    if lab.proc(&agent).is_ok() {
        lab.stop(&agent)?;
    }
    edit_spec_file(&spec_file, |t| remove_node_text(t, name))?;
    let lab = crate::lab::Lab::open(dir, None)?;
    regenerate_lab(&lab)?;
    // Its raft data would make it rejoin as the old member: gone with it.
    let _ = std::fs::remove_dir_all(dir.join(format!("data/{name}")));
    let c = lab.cluster()?.with_token(Some(init.root_token.clone()));
    let want = lab.plan.nodes.len();
    let (peers, voters) = common::poll(wait, std::time::Duration::from_millis(500), || async {
        let a = common::find_active(&c).await?;
        let r = a.raft_configuration().await.ok()?;
        let st = a.autopilot_state().await.ok()?;
        let gone = !st.voters.iter().any(|v| v == name) && !st.servers.contains_key(name);
        (r.servers.len() == want && gone).then(|| (r.servers.len(), st.voters.clone()))
    })
    .await
    .ok_or_else(|| anyhow!("raft did not settle at {want} peers within {wait:?}"))?;
    Ok(LiveReport { node: name.to_string(), seconds: t0.elapsed().as_secs_f64(), voters, peers })
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
