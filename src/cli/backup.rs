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
    /// Restore the newest copy from the restic repository into a throwaway server and read the canary back.
    #[command(
        long_about = "The restore rehearsal ([backup.restic]; the vaultnix-rehearse timer runs it, on the load \
balancer by default). The newest copy in the repository is dumped into a private directory and checked (restic's \
authentication, the sidecar's size and sha256, the sha256 / cluster / cluster id recorded as tags), restored with \
snapshot-force into a single-node server started for it on loopback (the same bao binary, a free port, a temp dir), \
unsealed with the original cluster's seal, and the canary `backup run` wrote just before the snapshot is read back \
with the backup token. vaultnix_restore_rehearsal_* metrics are written for the node exporter, success or not; \
the server is stopped and its directory wiped. Exit 1 when any step fails.",
        after_help = "Example (what the vaultnix-rehearse unit runs):\n  vaultnix backup rehearse --config /etc/vaultnix/rehearsal.json"
    )]
    Rehearse(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The rendered backup config (nodes/<node>.backup.json; /etc/vaultnix/backup.json on a host).
    #[arg(long)]
    pub config: PathBuf,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
        Cmd::Rehearse(r) => {
            let c = crate::ops::rehearse::load_config(&r.config)?;
            let res = super::status::runtime()?.block_on(crate::ops::rehearse::rehearse(&c));
            if let Some(d) = &c.textfile_dir {
                crate::ops::rehearse::record(std::path::Path::new(d), &c, &res)?;
            }
            let rep = res.map_err(|e| super::CliError::failure(format!("restore rehearsal failed: {e:#}")))?;
            shell.status(format!(
                "restore rehearsal: copy {} ({} bytes, saved {}, {} s old) restored into a throwaway server and the canary read back in {:.2} s",
                rep.copy_id, rep.snapshot_bytes, rep.created_at, rep.copy_age_seconds, rep.seconds
            ));
            Ok(())
        }
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
            if let Some(id) = &rep.offsite {
                shell.status(format!("copied to the restic repository: snapshot {id}"));
            }
            if !rep.token_renewed {
                shell.warn("the backup token could not be renewed (auth/token/renew-self): it will expire; create a periodic one with `vaultnix bootstrap --backup-token`");
            }
            Ok(())
        }
    }
}
