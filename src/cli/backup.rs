//! `vaultnix backup`: the scheduled backup job (what modules/backup.nix's unit runs).

use super::{CliResult, Shell};
use crate::ops::backup;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Take a raft snapshot from the ACTIVE node (whichever server this runs on), verify it, prune old ones.
    #[command(
        long_about = "Takes a raft snapshot for the backup timer. The config (nodes/<node>.backup.json, rendered by \
`vaultnix generate`) lists the servers, this host's first. The snapshot is always streamed from the active node \
(a standby is asked for the leader through sys/leader: a standby's own raft state can lag), written with the \
same checksummed sidecar `vaultnix snapshot save` writes, verified as `snapshot restore` would verify it, then \
snapshots older than the retention are pruned (the newest is always kept) and \
vaultnix_backup_last_success_timestamp_seconds is written for the node exporter.",
        after_help = "Example (what the vaultnix-backup unit runs):\n  vaultnix backup run --config /etc/vaultnix/backup.json"
    )]
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The rendered backup config (nodes/<node>.backup.json; /etc/vaultnix/backup.json on a host).
    #[arg(long)]
    pub config: PathBuf,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
        Cmd::Run(r) => {
            let c = backup::load_config(&r.config)?;
            let rep = super::status::runtime()?.block_on(backup::run(&c))?;
            if rep.save.redirected {
                shell.note(format!(
                    "{} is a standby: saved from the active node {}",
                    rep.asked, rep.save.meta.source_node
                ));
            }
            shell.status(format!(
                "snapshot written: {} ({} bytes, sha256 {}) from {} in {:.2} s; verified; {} old snapshot(s) pruned",
                rep.save.path.display(),
                rep.save.meta.size,
                rep.save.meta.sha256,
                rep.save.meta.source_node,
                rep.save.seconds,
                rep.pruned.len()
            ));
            if !rep.token_renewed {
                shell.warn("the backup token could not be renewed (auth/token/renew-self): it will expire; create a periodic one with `vaultnix bootstrap --backup-token`");
            }
            Ok(())
        }
    }
}
