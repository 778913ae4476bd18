//! `vaultnix completions <shell>`.

use super::CliResult;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn exec(a: Args) -> CliResult {
    use std::io::Write;
    let mut cmd = super::Cli::command();
    // Rendered into memory first: clap_complete panics on a write error, and `| head -1` closes the pipe.
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "vaultnix", &mut buf);
    match std::io::stdout().write_all(&buf).and_then(|_| std::io::stdout().flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(super::CliError::failure(format!("cannot write the completions: {e}"))),
    }
}
