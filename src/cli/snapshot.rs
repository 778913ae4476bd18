//! `vaultnix snapshot`: save, verify, prune and restore Raft snapshots.

use super::{CliError, CliResult, Shell};
use crate::ops::snapshot;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Check a snapshot against its sidecar (size and sha256).
    Verify(VerifyArgs),
    /// Delete snapshots older than N days (the newest one is always kept).
    Prune(PruneArgs),
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

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
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
