//! The vaultnix binary: parse arguments, dispatch to one command, print any error once.

// No panics on user input: unwrap/expect only in tests (see docs/security.md, "No panic on any CLI path").
#![warn(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = vaultnix::cli::Cli::parse();
    vaultnix::cli::run(cli)
}

/// `vaultnix … | head -1`: a closed stdout/stderr makes `print!` panic (Rust ignores SIGPIPE). That is
/// not an error of ours: exit quietly with 141, what a shell reports for a process killed by SIGPIPE.
/// SIGPIPE itself stays ignored, so a closed pipe to a child process (bao, haproxy) stays an error
/// the code handles.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") || msg.contains("BrokenPipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
