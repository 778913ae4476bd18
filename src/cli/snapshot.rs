//! `vaultnix snapshot`: save, verify, prune and restore Raft snapshots.

use super::{CliError, CliResult, Shell};
use crate::ops::snapshot;
use crate::plan::Plan;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Save a Raft snapshot (from any node: a standby's redirect is followed) with a sha256 sidecar.
    #[command(
        after_help = "Examples:\n  vaultnix snapshot save --spec cluster.toml --out out --dir /var/backups/vaultnix\n  vaultnix snapshot save --address https://10.88.0.2:8200 --dir snaps"
    )]
    Save(SaveArgs),
    /// Restore a snapshot after verifying it (checksum, size, and that the target can open it).
    #[command(
        long_about = "Restores a snapshot. First the file is checked against its sidecar (size and sha256): a \
truncated or modified file is refused and nothing is sent. Then the target is checked: a snapshot restores \
normally only onto the cluster that produced it (same cluster id). A snapshot from ANOTHER cluster (disaster \
recovery onto a freshly built cluster, whose own barrier keys differ) needs --force: it is sent to \
sys/storage/raft/snapshot-force, the target then runs on the snapshot's keyring and seals itself; unseal it \
with the ORIGINAL cluster's unseal keys (Shamir) and use the original cluster's tokens. With a static or KMS \
seal the target must be configured with the original seal key: that is checked (fingerprint) and cannot be \
forced, since no node could unseal afterwards.",
        after_help = "Examples:\n  vaultnix snapshot restore snaps/hybrid-20261123T085530Z.snap\n  vaultnix snapshot restore --force old-cluster.snap   # onto a fresh cluster; then unseal with the old keys"
    )]
    Restore(RestoreArgs),
    /// Rehearse disaster recovery on two labs: write N secrets, save from a standby, restore onto a fresh
    /// cluster with --force, unseal with the original keys, read every secret back. Prints the times.
    DrillRestore(DrillArgs),
    /// Check a snapshot against its sidecar (size and sha256).
    Verify(VerifyArgs),
    /// Delete snapshots older than N days (the newest one is always kept).
    Prune(PruneArgs),
    /// List the copies in the restic repository (`[backup.restic]`), oldest first.
    #[command(
        after_help = "Examples:\n  vaultnix snapshot list --from-repo --spec cluster.toml --password-file /run/agenix/restic\n  vaultnix snapshot list --from-repo rest:https://backup.example:8000/vault --password-file pw --output json"
    )]
    List(ListArgs),
}

/// Where the restic repository is and how to open it (`[backup.restic]` of the spec unless given).
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// Use the restic repository: the spec's `[backup.restic] repository`, or the one given.
    #[arg(long, value_name = "REPOSITORY", num_args = 0..=1, default_missing_value = "")]
    pub from_repo: Option<String>,
    /// The repository password file (default: the spec's `password_file`). Never a password itself.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// KEY=VALUE lines for restic, e.g. S3 credentials (default: the spec's `environment_file`).
    #[arg(long)]
    pub environment_file: Option<PathBuf>,
    /// A copy's id (full or short; default: the newest).
    #[arg(long = "snapshot", value_name = "ID")]
    pub snapshot_id: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// Output directory of `generate` or a lab directory (for its plan).
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::OutputFormat,
}

/// The repository of `r` for `plan`'s cluster (the spec's `[backup.restic]` fills what is not given).
fn repo_for(plan: &Plan, r: &RepoArgs) -> Result<crate::ops::restic::Restic, CliError> {
    let spec = plan.backup.restic.as_ref();
    let repository = match r.from_repo.as_deref() {
        Some("") | None => spec.map(|s| s.repository.clone()).ok_or_else(|| {
            CliError::invalid("--from-repo without a repository, and the spec has no [backup.restic]")
        })?,
        Some(x) => x.to_string(),
    };
    let password_file = match (&r.password_file, spec) {
        (Some(p), _) => p.to_string_lossy().into_owned(),
        (None, Some(s)) => s.password_file.clone(),
        (None, None) => {
            return Err(CliError::invalid("--from-repo needs --password-file (the repository password file)"))
        }
    };
    let environment_file = match (&r.environment_file, spec) {
        (Some(p), _) => Some(p.to_string_lossy().into_owned()),
        (None, Some(s)) => s.environment_file.clone(),
        (None, None) => None,
    };
    let cfg = crate::ops::restic::ResticConfig {
        repository,
        password_file,
        environment_file,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
    };
    Ok(crate::ops::restic::Restic::new(&cfg, Duration::from_secs(3600))?)
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// Output directory of `generate` (CA, seal key, tokens in secrets/), or a `vaultnix lab` directory.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// The node to talk to (default: the first node of the plan that answers).
    #[arg(long, env = "VAULTNIX_ADDR")]
    pub address: Option<String>,
    /// Token (default: $BAO_TOKEN, $VAULT_TOKEN, secrets/admin-token, the root token in secrets/init.json).
    #[arg(long, hide_env_values = true)]
    pub token: Option<String>,
    /// Request timeout in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    #[command(flatten)]
    pub target: Target,
    /// Directory the snapshot is written to.
    #[arg(long, default_value = "snapshots")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The .snap file (its sidecar FILE.json must be next to it); with --from-repo: none.
    #[arg(required_unless_present = "from_repo", conflicts_with = "from_repo")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub target: Target,
    /// Restore a snapshot from a different cluster (different barrier keys) via snapshot-force; the target
    /// then needs the ORIGINAL cluster's unseal keys.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// Number of secrets to write and read back.
    #[arg(long, default_value_t = 1000)]
    pub secrets: usize,
    /// The spec both labs run (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// Work directory (labs and the snapshot go inside; removed afterwards unless --keep).
    #[arg(long, default_value = "restore-drill")]
    pub workdir: PathBuf,
    /// Concurrent writers/readers.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Keep the labs' files (processes are always stopped).
    #[arg(long)]
    pub keep: bool,
    /// Go the off-host way: copy the snapshot into a restic repository (a path repository in the work
    /// directory), copy a second one after a small change (deduplication), and restore the fresh cluster
    /// from the newest copy; prints the recovery point (RPO) and recovery time (RTO).
    #[arg(long)]
    pub from_repo: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The .snap file (its sidecar is FILE.json).
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  vaultnix snapshot prune --keep-days 30 --dir /var/backups/vaultnix")]
pub struct PruneArgs {
    /// Keep snapshots younger than this many days.
    #[arg(long)]
    pub keep_days: u32,
    /// Directory holding the snapshots.
    #[arg(long, default_value = "snapshots")]
    pub dir: PathBuf,
    /// Only list what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

struct Resolved {
    plan: Plan,
    address: String,
    token: String,
    ca_pem: Vec<u8>,
    seal: snapshot::SealInfo,
    timeout: Duration,
}

fn resolve(shell: &Shell, t: &Target) -> Result<Resolved, CliError> {
    // A `vaultnix lab` directory as --out: its loopback plan.
    let plan = super::status::live_plan(shell, t.spec.as_deref(), &t.out)?;
    resolve_plan(plan, t)
}

fn resolve_plan(plan: Plan, t: &Target) -> Result<Resolved, CliError> {
    let ca_path = t.out.join(crate::render::paths::CA_CRT);
    let ca_pem = std::fs::read(&ca_path).map_err(|e| {
        CliError::invalid(format!("cannot read {} ({e}): run `vaultnix generate` first", ca_path.display()))
    })?;
    let token = match &t.token {
        Some(x) => x.clone(),
        None => token_from_env_or_out(&t.out).ok_or_else(|| {
            CliError::invalid(
                "no token: pass --token, set BAO_TOKEN, or keep secrets/admin-token / secrets/init.json in --out",
            )
        })?,
    };
    let seal = snapshot::seal_info(&plan, &t.out)?;
    let address = match &t.address {
        Some(a) => a.trim_end_matches('/').to_string(),
        None => {
            plan.nodes.first().map(|n| plan.api_url(n)).ok_or_else(|| CliError::invalid("the spec has no nodes"))?
        }
    };
    Ok(Resolved { plan, address, token, ca_pem, seal, timeout: Duration::from_secs(t.timeout) })
}

/// Token candidates: the environment, then what `bootstrap` left in the output directory.
pub fn token_from_env_or_out(out: &std::path::Path) -> Option<String> {
    for v in ["BAO_TOKEN", "VAULT_TOKEN"] {
        if let Ok(t) = std::env::var(v) {
            if !t.trim().is_empty() {
                return Some(t.trim().to_string());
            }
        }
    }
    if let Ok(t) = std::fs::read_to_string(out.join(crate::render::paths::ADMIN_TOKEN)) {
        if !t.trim().is_empty() {
            return Some(t.trim().to_string());
        }
    }
    let init: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(crate::render::paths::INIT_JSON)).ok()?).ok()?;
    init.get("root_token").and_then(|v| v.as_str()).map(str::to_string)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    super::status::runtime()
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
        Cmd::Save(s) => {
            let r = resolve(shell, &s.target)?;
            let o = snapshot::SaveOptions {
                address: r.address.clone(),
                token: r.token,
                ca_pem: r.ca_pem,
                dir: s.dir,
                cluster: r.plan.name.clone(),
                seal: r.seal,
                engine: r.plan.engine.as_str().to_string(),
                node_names: r.plan.nodes.iter().map(|n| (r.plan.api_url(n), n.name.clone())).collect(),
                timeout: r.timeout,
            };
            let rep = runtime()?.block_on(snapshot::save(&o))?;
            if rep.redirected {
                shell.note(format!("{} is a standby: saved from the active node {}", r.address, rep.meta.source_node));
            }
            shell.status(format!(
                "saved {} ({} bytes, sha256 {}) from {} in {:.2} s",
                rep.path.display(),
                rep.meta.size,
                rep.meta.sha256,
                rep.meta.source_node,
                rep.seconds
            ));
            Ok(())
        }
        Cmd::Restore(x) => {
            // From the repository: dump into a private temp dir, checked there (restic, sidecar, tags);
            // then the same path as a local file.
            let mut fetched_dir = None;
            let file = match &x.file {
                Some(f) => f.clone(),
                None => {
                    let plan = super::status::live_plan(shell, x.target.spec.as_deref(), &x.target.out)?;
                    let repo = repo_for(&plan, &x.repo)?;
                    let copy = repo.pick(&plan.name, x.repo.snapshot_id.as_deref())?;
                    let d = crate::ops::restic::PrivateTemp::new("vaultnix-restore-")?;
                    let (snap, meta) = repo.fetch_verified(&copy, &d.path().join("copy"))?;
                    shell.note(format!(
                        "copy {} from {}: {} ({} bytes, sha256 {}) verified",
                        copy.short_id, repo.cfg.repository, meta.file, meta.size, meta.sha256
                    ));
                    fetched_dir = Some(d);
                    snap
                }
            };
            // Verify before anything else, so a bad file is refused even when the cluster is unreachable.
            snapshot::verify(&file)?;
            let r = resolve(shell, &x.target)?;
            let o = snapshot::RestoreOptions {
                address: r.address,
                token: r.token,
                ca_pem: r.ca_pem,
                file: file.clone(),
                force: x.force,
                target_seal: r.seal,
                target_cluster: r.plan.name.clone(),
                timeout: r.timeout,
            };
            let rep = runtime()?.block_on(snapshot::restore(&o))?;
            drop(fetched_dir);
            shell.status(format!(
                "restored {} (cluster {:?}, saved {}) onto {} in {:.2} s{}",
                file.display(),
                rep.meta.cluster,
                rep.meta.created_at,
                rep.answered_by,
                rep.seconds,
                if rep.forced { " with snapshot-force" } else { "" }
            ));
            if rep.forced {
                shell.warn("the cluster now runs on the snapshot's keyring and has sealed itself: unseal every node with the ORIGINAL cluster's unseal keys (`vaultnix unseal --keys OLD-init.json`), and use the original cluster's tokens");
            }
            Ok(())
        }
        Cmd::DrillRestore(d) => drill_restore(shell, &d),
        Cmd::List(l) => {
            if l.repo.from_repo.is_none() {
                return Err(CliError::invalid("snapshot list reads the restic repository: pass --from-repo"));
            }
            let plan = super::status::live_plan(shell, l.spec.as_deref(), &l.out)?;
            let repo = repo_for(&plan, &l.repo)?;
            let all = repo.list(&plan.name)?;
            if l.output == super::OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else {
                for s in &all {
                    println!(
                        "{}  {}  node={}  cluster_id={}  sha256={}",
                        s.short_id,
                        s.time,
                        s.tag("node").unwrap_or("?"),
                        s.tag("cluster_id").unwrap_or("?"),
                        s.tag("sha256").unwrap_or("?")
                    );
                }
                shell.status(format!("{} copies of cluster {} in {}", all.len(), plan.name, repo.cfg.repository));
            }
            Ok(())
        }
        Cmd::Verify(v) => {
            let m = snapshot::verify(&v.file)?;
            shell.status(format!(
                "{}: ok ({} bytes, sha256 {}), cluster {:?}, saved {} from {}",
                v.file.display(),
                m.size,
                m.sha256,
                m.cluster,
                m.created_at,
                m.source_node
            ));
            Ok(())
        }
        Cmd::Prune(p) => {
            if !p.dir.is_dir() {
                return Err(CliError::invalid(format!("{} is not a directory", p.dir.display())));
            }
            let r = snapshot::prune(&p.dir, p.keep_days, time::OffsetDateTime::now_utc(), p.dry_run)?;
            let verb = if p.dry_run { "would delete" } else { "deleted" };
            for f in &r.removed {
                shell.status(format!("{verb} {}", f.display()));
            }
            shell.status(format!("{} kept, {} {verb}", r.kept.len(), r.removed.len()));
            Ok(())
        }
    }
}

/// `vaultnix snapshot drill-restore` and `vaultnix drill restore`: write secrets to a lab, save, restore
/// into a fresh cluster, unseal with the original keys, read everything back.
pub fn drill_restore(shell: &Shell, d: &DrillArgs) -> CliResult {
    let o = crate::ops::restore_drill::RestoreDrillOptions {
        spec: d.spec.clone(),
        workdir: d.workdir.clone(),
        secrets: d.secrets,
        concurrency: d.concurrency,
        keep_files: d.keep,
        from_repo: d.from_repo,
    };
    let r = crate::ops::restore_drill::run_restore_drill(&o)?;
    if d.output == super::OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        shell.status(format!(
            "restore drill: {} secrets, snapshot {} bytes, saved from {}{}",
            r.secrets,
            r.snapshot_bytes,
            r.saved_from,
            if r.saved_via_redirect { " via a redirect to the active node" } else { "" }
        ));
        shell.status(format!(
                "  write {:.2} s | save {:.2} s | restore (snapshot-force) {:.2} s | unseal with original keys {:.2} s | verify {:.2} s",
                r.write_seconds, r.save_seconds, r.restore_seconds, r.unseal_seconds, r.verify_seconds
            ));
        shell.status(format!(
                "  save + restore: {:.2} s; until every node runs the original cluster again: {:.2} s; plain restore refused: {}; read back {}/{} (missing {}, wrong {})",
                r.save_restore_seconds,
                r.recovered_seconds,
                r.plain_restore_refused,
                r.read_back,
                r.secrets,
                r.missing,
                r.wrong
            ));
        if let Some(f) = &r.repo {
            shell.status(format!(
                "  restic repository {}: first copy {:.2} s ({} bytes), {} secrets changed, second copy {:.2} s ({} bytes more for a {}-byte snapshot: dedup ratio {:.2})",
                f.repository.display(),
                f.first_copy_seconds,
                f.repo_bytes_after_first,
                f.changed_secrets,
                f.second_copy_seconds,
                f.repo_bytes_after_second.saturating_sub(f.repo_bytes_after_first),
                f.second_snapshot_bytes,
                f.dedup_ratio
            ));
            shell.status(format!(
                "  RPO {:.2} s (age of the newest copy when the restore started) | RTO {:.2} s (repository -> first verified read; fetch + verify {:.2} s)",
                f.rpo_seconds, f.rto_seconds, f.fetch_seconds
            ));
        }
        shell.status("  after the restore:");
        for l in &r.unseal_timeline {
            shell.status(format!("    {l}"));
        }
    }
    if !r.ok() {
        return Err(CliError::failure("the restored cluster does not hold every secret"));
    }
    Ok(())
}
