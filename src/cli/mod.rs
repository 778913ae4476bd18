//! Command-line layer: one module per subcommand, each an argument struct and an `exec` that calls
//! library code. No business logic here.

pub mod backup;
pub mod bootstrap;
pub mod ca;
pub mod certs;
pub mod completions;
pub mod doctor;
pub mod drill;
pub mod generate;
pub mod init;
pub mod lab;
pub mod metrics;
pub mod node;
pub mod recover;
pub mod root_token;

pub mod snapshot;
pub mod status;
pub mod step_down;
pub mod unseal;
pub mod upgrade;

pub use crate::shell::Shell;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes: 0 ok; 1 failure (or drift found by --check); 2 invalid input (spec or arguments).
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_INVALID: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "vaultnix",
    version,
    about = "One TOML spec → a highly-available OpenBao/Vault Raft cluster on NixOS",
    long_about = "vaultnix validates a cluster spec and generates everything per node: server configs (JSON), \
a private CA and node certificates, WireGuard/Tailscale overlay, HAProxy that routes only to the active node, \
backup timers, monitoring and NixOS modules. It also bootstraps, runs a local lab cluster and drills failover.",
    after_help = "Examples:\n  vaultnix init cluster.toml\n  vaultnix generate --spec cluster.toml --out out\n  vaultnix generate --spec cluster.toml --out out --check   # drift detection in CI\n  vaultnix lab up && eval \"$(vaultnix lab env)\"",
    propagate_version = true
)]
pub struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter spec (the built-in example).
    Init(init::Args),
    /// Validate a spec and generate configs, certificates, keys, HAProxy, alerts and Nix modules.
    Generate(generate::Args),
    /// Initialize, unseal and join the cluster (idempotent, resumable).
    Bootstrap(bootstrap::Args),
    /// Show every node: reachable, sealed, active/standby, raft peers, autopilot.
    Status(status::Args),
    /// Unseal every sealed node (keys from a prompt or a file).
    Unseal(unseal::Args),
    /// Ask the active node to step down (drained at the LB first).
    StepDown(step_down::Args),
    /// Run a real cluster on loopback: real bao processes behind the generated HAProxy.
    Lab(lab::Args),
    /// Failover drills with a lost-write checker (leader-crash, step-down, partition, ...).
    Drill(drill::Args),
    /// Save, prune and restore Raft snapshots (checksummed).
    Snapshot(snapshot::Args),
    /// The scheduled backup job (snapshot from the active node, verified, pruned).
    Backup(backup::Args),
    /// Add, remove or replace a node.
    Node(node::Args),
    /// Rolling upgrade: standbys first, then step-down, then the old leader.
    Upgrade(upgrade::Args),
    /// Renew node certificates under the same CA and verify what listeners serve.
    Certs(certs::Args),
    /// Staged CA rollover: new CA trusted first, certificates reissued, old CA removed (verified).
    Ca(ca::Args),
    /// Write certificate-expiry and raft-size metrics for the node exporter's textfile collector.
    Metrics(metrics::Args),
    /// Pre-flight checks of the generated cluster (offline, and --live).
    Doctor(doctor::Args),
    /// A new root token from key shares (operator generate-root), written to a 0600 file.
    RootToken(root_token::Args),
    /// Guided recovery (lost quorum).
    Recover(recover::Args),
    /// Print shell completions.
    Completions(completions::Args),
}

/// An error with the exit code it maps to. Its message is printed once by `run`.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    /// The located diagnostics, when the error is an invalid spec (for `--output json`).
    pub report: Option<crate::spec::Report>,
}

impl CliError {
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError { code: EXIT_INVALID, message: message.into(), report: None }
    }
    pub fn failure(message: impl Into<String>) -> Self {
        CliError { code: EXIT_FAILURE, message: message.into(), report: None }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        if let Some(le) = e.downcast_ref::<crate::spec::LoadError>() {
            return CliError::invalid(le.to_string());
        }
        CliError::failure(format!("{e:#}"))
    }
}

impl From<crate::spec::LoadError> for CliError {
    fn from(e: crate::spec::LoadError) -> Self {
        let message = e.to_string();
        match e {
            crate::spec::LoadError::Invalid(r) => CliError { report: Some(r), ..CliError::invalid(message) },
            crate::spec::LoadError::Io { .. } => CliError::invalid(message),
        }
    }
}

pub type CliResult = Result<(), CliError>;

pub fn run(cli: Cli) -> ExitCode {
    let shell = Shell::new(cli.quiet, cli.verbose);
    let r = match cli.command {
        Command::Init(a) => init::exec(&shell, a),
        Command::Generate(a) => generate::exec(&shell, a),
        Command::Bootstrap(a) => bootstrap::exec(&shell, a),
        Command::Status(a) => status::exec(&shell, a),
        Command::Unseal(a) => unseal::exec(&shell, a),
        Command::StepDown(a) => step_down::exec(&shell, a),
        Command::Lab(a) => lab::exec(&shell, a),
        Command::Drill(a) => drill::exec(&shell, a),
        Command::Snapshot(a) => snapshot::exec(&shell, a),
        Command::Backup(a) => backup::exec(&shell, a),
        Command::Node(a) => node::exec(&shell, a),
        Command::Upgrade(a) => upgrade::exec(&shell, a),
        Command::Certs(a) => certs::exec(&shell, a),
        Command::Ca(a) => ca::exec(&shell, a),
        Command::Metrics(a) => metrics::exec(&shell, a),
        Command::Doctor(a) => doctor::exec(&shell, a),
        Command::Recover(a) => recover::exec(&shell, a),
        Command::RootToken(a) => root_token::exec(&shell, a),
        Command::Completions(a) => completions::exec(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                shell.error(&e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

/// Loads the spec named on the command line, or the built-in example.
pub fn load_spec(shell: &Shell, path: Option<&std::path::Path>) -> Result<crate::spec::Loaded, CliError> {
    let loaded = match path {
        Some(p) => crate::spec::load_file(p)?,
        None => {
            shell.note("no --spec given: using the built-in example (write it out with `vaultnix init`)");
            crate::spec::example()
        }
    };
    for w in loaded.warnings.warnings() {
        shell.warn_diag(w);
    }
    Ok(loaded)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}
