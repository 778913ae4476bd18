//! `nodes/<node>.backup.json`: the backup job's configuration (see [`crate::ops::backup`]). Public data
//! only: addresses, paths, the seal's fingerprint; the token is a path to a secret.

use super::Layout;
use crate::ops::backup::{BackupConfig, BackupNode};
use crate::ops::snapshot::seal_info_with;
use crate::plan::{NodePlan, Plan};
use anyhow::Result;

pub fn backup_config(
    plan: &Plan,
    node: &NodePlan,
    layout: &Layout,
    static_seal_key: Option<&[u8]>,
) -> Result<BackupConfig> {
    let mut nodes = vec![BackupNode { name: node.name.clone(), api_url: plan.api_url(node) }];
    for n in plan.nodes.iter().filter(|n| n.name != node.name) {
        nodes.push(BackupNode { name: n.name.clone(), api_url: plan.api_url(n) });
    }
    Ok(BackupConfig {
        format: 1,
        cluster: plan.name.clone(),
        engine: plan.engine.as_str().to_string(),
        node: node.name.clone(),
        nodes,
        ca_file: layout.ca_file(plan),
        token_file: layout.backup_token_file(),
        dir: layout.backup_dir(plan),
        retention_days: plan.backup.retention_days,
        textfile_dir: plan.monitoring.enabled.then(|| layout.textfile_dir()),
        seal: seal_info_with(plan, static_seal_key)?,
        timeout_seconds: 600,
    })
}

pub fn render_backup_config(
    plan: &Plan,
    node: &NodePlan,
    layout: &Layout,
    static_seal_key: Option<&[u8]>,
) -> Result<String> {
    let mut t = serde_json::to_string_pretty(&backup_config(plan, node, layout, static_seal_key)?)?;
    t.push('\n');
    Ok(t)
}
