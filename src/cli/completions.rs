//! `vaultnix completions <shell>`.

use super::CliResult;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn exec(a: Args) -> CliResult {
    let mut cmd = super::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "vaultnix", &mut std::io::stdout());
    Ok(())
}
