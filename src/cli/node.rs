//! `vaultnix node`: membership changes.

use super::{CliResult, Shell};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Wipe a node's raft data and rejoin it (after a lost quorum, or for a removed node).
    Replace(super::recover::ReplaceArgs),
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
        Cmd::Replace(x) => super::recover::node_replace(shell, x),
    }
}
