//! `vaultnix recover` (not implemented yet).

use super::{CliError, CliResult, Shell};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<std::path::PathBuf>,
}

pub fn exec(_shell: &Shell, _a: Args) -> CliResult {
    Err(CliError::failure("`vaultnix recover` is not implemented yet"))
}
