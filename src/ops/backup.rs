//! The scheduled backup job: `vaultnix backup run --config backup.json`, the command the NixOS unit
//! (modules/backup.nix) and the lab both run. The config is rendered by Rust from the plan
//! (`nodes/<node>.backup.json`). One implementation: the snapshot is taken by [`snapshot::save`] (always
//! from the ACTIVE node: a standby's own raft state can lag), written with the same sidecar
//! `vaultnix snapshot save` writes, then checked with [`snapshot::verify`] (the restore path's check)
//! before old snapshots are pruned and the success metric is written.

use crate::ops::snapshot::{self, SealInfo};
use crate::output;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `nodes/<node>.backup.json`: public data only (paths, addresses, the seal's fingerprint).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub format: u32,
    pub cluster: String,
    pub engine: String,
    /// The host this config is for; its node is asked first.
    pub node: String,
    /// Every server (name, API URL), this host's first: any of them leads to the active node.
    pub nodes: Vec<BackupNode>,
    pub ca_file: String,
    /// A token allowed to read sys/storage/raft/snapshot (`vaultnix bootstrap --backup-token`).
    pub token_file: String,
    /// Where snapshots and their sidecars are written (root-only).
    pub dir: String,
    pub retention_days: u32,
    /// The node exporter's textfile directory (vaultnix_backup_* metrics); none: no metrics.
    pub textfile_dir: Option<String>,
    pub seal: SealInfo,
    pub timeout_seconds: u64,
    /// `[backup.restic]`: the verified snapshot is copied off the host (see [`crate::ops::restic`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restic: Option<crate::ops::restic::ResticConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupNode {
    pub name: String,
    pub api_url: String,
}

/// The policy of the backup token: raft snapshots only (sys/health and sys/leader need no token).
pub const BACKUP_POLICY: &str = r#"# vaultnix backup: raft snapshots only (created by `vaultnix bootstrap --backup-token`).
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
"#;
pub const BACKUP_POLICY_NAME: &str = "vaultnix-backup";

pub fn backup_token_path(out: &Path) -> PathBuf {
    out.join("secrets/backup-token")
}

pub fn load_config(path: &Path) -> Result<BackupConfig> {
    let t = fs::read_to_string(path).with_context(|| format!("cannot read the backup config {}", path.display()))?;
    let c: BackupConfig = serde_json::from_str(&t).with_context(|| {
        format!("{} is not a vaultnix backup config (rendered by `vaultnix generate`)", path.display())
    })?;
    if c.format != 1 {
        bail!("{}: backup config format {} is not supported by this vaultnix (1)", path.display(), c.format);
    }
    if c.nodes.is_empty() {
        bail!("{}: no nodes to take the snapshot from", path.display());
    }
    Ok(c)
}

/// Reads the backup token, saying plainly what to do when it is not there.
pub fn read_token(path: &Path) -> Result<String> {
    let t = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no backup token: {} does not exist. Create one with `vaultnix bootstrap --backup-token` (it writes \
             secrets/backup-token, policy {BACKUP_POLICY_NAME}) and install it on the host as \
             <secretsDir>/backup-token; no snapshot was taken",
            path.display()
        ),
        Err(e) => bail!("cannot read the backup token {}: {e}; no snapshot was taken", path.display()),
    };
    let t = t.trim().to_string();
    if t.is_empty() {
        bail!("the backup token file {} is empty; no snapshot was taken", path.display());
    }
    Ok(t)
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub save: snapshot::SaveReport,
    /// The node that was asked (this host's, unless it did not answer).
    pub asked: String,
    pub pruned: Vec<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    /// False when renew-self failed (a non-periodic token, or one without the default policy).
    pub token_renewed: bool,
    /// The restic copy's id, when `[backup.restic]` is configured.
    pub offsite: Option<String>,
    /// The canary written just before the snapshot (none without `[backup.restic]`).
    pub canary: Option<String>,
}

/// Where the backup job writes its canary, with the backup token: the token's own cubbyhole (every
/// token with the default policy may write it; no mount or policy is needed), restored with the data.
/// The rehearsal reads it back with the same token from the restored snapshot.
pub const CANARY_PATH: &str = "/v1/cubbyhole/vaultnix-canary";

/// Writes `value` to [`CANARY_PATH`] through any node (a standby forwards or redirects).
pub async fn write_canary(c: &BackupConfig, ca_pem: &[u8], token: &str, value: &str) -> Result<()> {
    let http = crate::ops::live::Http::new(ca_pem, Duration::from_secs(30))?;
    let mut errors = Vec::new();
    for n in &c.nodes {
        let body = serde_json::json!({ "value": value });
        match http.json(reqwest::Method::PUT, &n.api_url, CANARY_PATH, Some(token), Some(body)).await {
            Ok((s, _)) if s.is_success() => return Ok(()),
            Ok((s, v)) => errors.push(format!("{}: {s} {v}", n.name)),
            Err(e) => errors.push(format!("{}: {e:#}", n.name)),
        }
    }
    bail!("cannot write the backup canary ({CANARY_PATH}): {}", errors.join("; "))
}

/// One backup run: snapshot from the active node, verify, prune, metrics.
pub async fn run(c: &BackupConfig) -> Result<RunReport> {
    let token = read_token(Path::new(&c.token_file))?;
    let ca_pem = fs::read(&c.ca_file).with_context(|| format!("cannot read the CA certificate {}", c.ca_file))?;
    let dir = PathBuf::from(&c.dir);
    let node_names: Vec<(String, String)> = c.nodes.iter().map(|n| (n.api_url.clone(), n.name.clone())).collect();
    // The canary first: the snapshot taken next holds it, and the rehearsal reads it back.
    let canary = match &c.restic {
        Some(_) => {
            let v = format!(
                "{}-{}",
                time::OffsetDateTime::now_utc().unix_timestamp(),
                hex::encode(crate::secrets::random_bytes::<6>()?)
            );
            write_canary(c, &ca_pem, &token, &v).await?;
            Some(v)
        }
        None => None,
    };
    let mut errors = Vec::new();
    let mut done = None;
    // This host's node first; if it cannot serve (down, sealed), any other leads to the active node too.
    for n in &c.nodes {
        let o = snapshot::SaveOptions {
            address: n.api_url.clone(),
            token: token.clone(),
            ca_pem: ca_pem.clone(),
            dir: dir.clone(),
            cluster: c.cluster.clone(),
            seal: c.seal.clone(),
            engine: c.engine.clone(),
            node_names: node_names.clone(),
            timeout: Duration::from_secs(c.timeout_seconds.max(1)),
        };
        match snapshot::save(&o).await {
            Ok(r) => {
                done = Some((n.name.clone(), r));
                break;
            }
            Err(e) => {
                let msg = format!("{e:#}");
                // A refused token is the same on every node: say it once, plainly.
                if msg.contains("403") {
                    bail!(
                        "the backup token in {} was refused ({msg}): it needs policy {BACKUP_POLICY_NAME} \
                         (read on sys/storage/raft/snapshot); create a new one with `vaultnix bootstrap --backup-token`",
                        c.token_file
                    );
                }
                errors.push(format!("{}: {msg}", n.name));
            }
        }
    }
    let (asked, save) = done.ok_or_else(|| anyhow!("no snapshot taken: {}", errors.join("; ")))?;
    // The restore path's own check: what the timer wrote is what `snapshot restore` accepts.
    let meta = snapshot::verify(&save.path).context("the snapshot just written does not verify")?;
    if meta != save.meta {
        bail!("{}: the sidecar changed after it was written", save.path.display());
    }
    // The token is periodic (bootstrap: 768 h): each successful run renews it, so a daily job keeps it alive.
    let renewed = match crate::ops::live::Http::new(&ca_pem, Duration::from_secs(30)) {
        Ok(http) => {
            let base = c.nodes.iter().find(|n| n.name == asked).map(|n| n.api_url.as_str()).unwrap_or_default();
            matches!(
                http.json(reqwest::Method::POST, base, "/v1/auth/token/renew-self", Some(&token), None).await,
                Ok((s, _)) if s.is_success()
            )
        }
        Err(_) => false,
    };
    // Off the host right after the verification; a failed copy fails the run (and its metric stays old).
    let offsite = match &c.restic {
        Some(rc) => Some(copy_offsite(c, rc, &save, canary.as_deref().unwrap_or_default())?),
        None => None,
    };
    let pruned = snapshot::prune(&dir, c.retention_days, time::OffsetDateTime::now_utc(), false)?.removed;
    let metrics_file = match &c.textfile_dir {
        Some(d) => Some(write_metrics(Path::new(d), c, &save)?),
        None => None,
    };
    if let (Some(d), Some(_)) = (&c.textfile_dir, &offsite) {
        write_offsite_metrics(Path::new(d), c)?;
    }
    Ok(RunReport { save, asked, pruned, metrics_file, token_renewed: renewed, offsite, canary })
}

/// `restic backup` of the verified snapshot and its sidecar, then `restic forget --prune` with the policy.
fn copy_offsite(
    c: &BackupConfig,
    rc: &crate::ops::restic::ResticConfig,
    save: &snapshot::SaveReport,
    canary: &str,
) -> Result<String> {
    let r = crate::ops::restic::Restic::new(rc, Duration::from_secs(c.timeout_seconds.max(60)))?;
    r.ensure_repository()?;
    let id = r
        .backup(&save.path, &save.meta, canary)
        .with_context(|| format!("the snapshot was saved and verified but not copied to {}", rc.repository))?;
    r.forget(&c.cluster).context("the copy was made but `restic forget --prune` failed")?;
    Ok(id)
}

fn write_offsite_metrics(dir: &Path, c: &BackupConfig) -> Result<PathBuf> {
    let labels = format!("cluster=\"{}\",node=\"{}\"", c.cluster, c.node);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let text = format!(
        "# HELP vaultnix_backup_offsite_last_success_timestamp_seconds Time of the last snapshot copied to the restic repository.\n\
         # TYPE vaultnix_backup_offsite_last_success_timestamp_seconds gauge\n\
         vaultnix_backup_offsite_last_success_timestamp_seconds{{{labels}}} {now}\n"
    );
    let p = dir.join("vaultnix_backup_offsite.prom");
    output::write_file_atomic(&p, text.as_bytes(), false)?;
    Ok(p)
}

fn write_metrics(dir: &Path, c: &BackupConfig, r: &snapshot::SaveReport) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let labels = format!("cluster=\"{}\",node=\"{}\"", c.cluster, c.node);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let text = format!(
        "# HELP vaultnix_backup_last_success_timestamp_seconds Time of the last successful raft snapshot.\n\
         # TYPE vaultnix_backup_last_success_timestamp_seconds gauge\n\
         vaultnix_backup_last_success_timestamp_seconds{{{labels}}} {now}\n\
         # HELP vaultnix_backup_last_size_bytes Size of the last successful raft snapshot.\n\
         # TYPE vaultnix_backup_last_size_bytes gauge\n\
         vaultnix_backup_last_size_bytes{{{labels}}} {}\n\
         # HELP vaultnix_backup_last_duration_seconds Duration of the last successful backup run.\n\
         # TYPE vaultnix_backup_last_duration_seconds gauge\n\
         vaultnix_backup_last_duration_seconds{{{labels}}} {:.3}\n",
        r.meta.size, r.seconds
    );
    let p = dir.join("vaultnix_backup.prom");
    output::write_file_atomic(&p, text.as_bytes(), false)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_token_says_so_plainly() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("backup-token");
        let e = read_token(&p).unwrap_err().to_string();
        assert!(e.contains("no backup token") && e.contains("--backup-token") && e.contains("no snapshot"), "{e}");
        fs::write(&p, "\n").unwrap();
        let e = read_token(&p).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        fs::write(&p, "s.abc\n").unwrap();
        assert_eq!(read_token(&p).unwrap(), "s.abc");
    }
}
