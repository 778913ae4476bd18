//! `nodes/<node>.backup.json`: the backup job's configuration (see [`crate::ops::backup`]). Public data
//! only: addresses, paths, the seal's fingerprint; the token is a path to a secret.

use super::Layout;
use crate::ops::backup::{BackupConfig, BackupNode};
use crate::ops::rehearse::RehearsalConfig;
use crate::ops::restic::ResticConfig;
use crate::ops::snapshot::seal_info_with;
use crate::plan::{NodePlan, Plan};
use crate::spec::{BACKUP_TIMEOUT_SECONDS, REHEARSAL_TIMEOUT_SECONDS};
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
        timeout_seconds: BACKUP_TIMEOUT_SECONDS,
        restic: restic_config(plan, layout, "vaultnix-backup"),
    })
}

/// `[backup.restic]` for one unit: the password and environment files are that unit's credentials.
pub fn restic_config(plan: &Plan, layout: &Layout, unit: &str) -> Option<ResticConfig> {
    let r = plan.backup.restic.as_ref()?;
    Some(ResticConfig {
        repository: r.repository.clone(),
        password_file: layout.unit_credential(unit, RESTIC_PASSWORD),
        environment_file: r.environment_file.as_ref().map(|_| layout.unit_credential(unit, RESTIC_ENV)),
        keep_hourly: r.keep_hourly,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
    })
}

/// Credential names (modules/backup.nix and modules/rehearsal.nix load them under these names).
pub const RESTIC_PASSWORD: &str = "restic-password";
pub const RESTIC_ENV: &str = "restic-env";

/// The host that runs the restore rehearsal, if any.
pub fn rehearsal_host(plan: &Plan) -> Option<String> {
    let r = plan.backup.restic.as_ref()?;
    if !plan.backup.enabled || r.rehearse_schedule.trim().is_empty() {
        return None;
    }
    Some(r.rehearse_on.clone().unwrap_or_else(|| plan.lb.name.clone()))
}

/// `nodes/<host>.rehearsal.json`: the rehearsal job's configuration (see [`crate::ops::rehearse`]).
pub fn rehearsal_config(plan: &Plan, layout: &Layout) -> Result<Option<RehearsalConfig>> {
    let Some(host) = rehearsal_host(plan) else { return Ok(None) };
    let unit = "vaultnix-rehearse";
    let Some(restic) = restic_config(plan, layout, unit) else { return Ok(None) };
    let static_seal = plan.seal.kind == crate::spec::SealKind::Static;
    Ok(Some(RehearsalConfig {
        format: 1,
        cluster: plan.name.clone(),
        host,
        restic,
        ca_file: layout.ca_file(plan),
        token_file: layout.unit_credential(unit, "backup-token"),
        seal_kind: plan.seal.kind.as_str().to_string(),
        static_key_id: static_seal.then(|| format!("{}-1", plan.name)),
        static_key_file: static_seal.then(|| layout.unit_credential(unit, "seal.key")),
        unseal_keys_file: (!static_seal).then(|| layout.unit_credential(unit, "unseal-keys")),
        work_dir: layout.rehearsal_dir(),
        textfile_dir: plan.monitoring.enabled.then(|| layout.textfile_dir()),
        timeout_seconds: REHEARSAL_TIMEOUT_SECONDS,
    }))
}

pub fn render_rehearsal_config(plan: &Plan, layout: &Layout) -> Result<Option<String>> {
    Ok(rehearsal_config(plan, layout)?.map(|c| {
        let mut t = serde_json::to_string_pretty(&c).unwrap_or_default();
        t.push('\n');
        t
    }))
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
