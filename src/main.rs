//! The vaultnix binary: parse arguments, dispatch to one command, print any error once.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = vaultnix::cli::Cli::parse();
    vaultnix::cli::run(cli)
}
