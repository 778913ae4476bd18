//! The vaultnix binary: parse arguments, dispatch to one command, print any error once.

// No panics on user input: unwrap/expect only in tests (see docs/security.md, "No panic on any CLI path").
#![warn(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = vaultnix::cli::Cli::parse();
    vaultnix::cli::run(cli)
}
