//! `vaultnix init [PATH]`: write the commented starter spec.

use super::{CliError, CliResult, Shell};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  vaultnix init cluster.toml && $EDITOR cluster.toml")]
pub struct Args {
    /// Where to write the spec.
    #[arg(default_value = "cluster.toml")]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    if a.path.exists() && !a.force {
        return Err(CliError::failure(format!("{} already exists; pass --force to overwrite it", a.path.display())));
    }
    if a.path.is_dir() {
        return Err(CliError::failure(format!("{} is a directory", a.path.display())));
    }
    crate::output::write_file_atomic(&a.path, crate::spec::EXAMPLE.as_bytes(), false)
        .map_err(|e| CliError::failure(format!("{e:#}")))?;
    shell.status(format!(
        "wrote {} (a 3-node hybrid cluster over WireGuard); next: vaultnix generate --spec {}",
        a.path.display(),
        a.path.display()
    ));
    Ok(())
}
