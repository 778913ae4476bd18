//! `vaultnix metrics`: writes host metrics (certificate expiry, raft database size) for the node
//! exporter's textfile collector. modules/monitoring.nix runs it from a timer.

use super::{CliError, CliResult, Shell};
use crate::ops::metrics::{parse_cert_arg, write_textfile, MetricsOptions};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Writes <TEXTFILE>/vaultnix.prom (atomically) for the node exporter's textfile collector: \
vaultnix_cert_not_after_timestamp_seconds{cert=NAME} for every --cert, vaultnix_raft_db_size_bytes{file} for the \
raft databases under --raft-dir. The certificate-expiry and raft-growth alerts read these. Nothing is written when \
a certificate cannot be read.",
    after_help = "Example:\n  vaultnix metrics --textfile /var/lib/vaultnix/textfile --cert node=/etc/vaultnix/tls.crt \\\n    --cert ca=/etc/vaultnix/ca.crt --raft-dir /var/lib/openbao"
)]
pub struct Args {
    /// The node exporter's textfile collector directory (must exist).
    #[arg(long)]
    pub textfile: PathBuf,
    /// NAME=PATH of a PEM certificate whose expiry is reported (repeatable).
    #[arg(long = "cert", value_name = "NAME=PATH")]
    pub certs: Vec<String>,
    /// The raft storage directory (storage.raft.path) whose database sizes are reported.
    #[arg(long)]
    pub raft_dir: Option<PathBuf>,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let certs = a
        .certs
        .iter()
        .map(|c| parse_cert_arg(c))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| CliError::invalid(format!("{e:#}")))?;
    if certs.is_empty() && a.raft_dir.is_none() {
        return Err(CliError::invalid("nothing to report: pass --cert NAME=PATH and/or --raft-dir"));
    }
    let path = write_textfile(&a.textfile, &MetricsOptions { certs, raft_dir: a.raft_dir })?;
    shell.detail(format!("wrote {}", path.display()));
    Ok(())
}
