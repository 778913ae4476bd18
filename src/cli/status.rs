//! `vaultnix status`: every node, raft peers, autopilot. Also the helpers the live commands share.

use super::{CliError, CliResult, OutputFormat, Shell};
use crate::plan::Plan;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  vaultnix status --spec cluster.toml --out out\n  vaultnix status --output json")]
pub struct Args {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The generated output directory (for the CA and tokens).
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let plan = live_plan(shell, a.spec.as_deref(), &a.out)?;
    show(shell, &plan, &a.out, a.output)
}

pub fn show(_shell: &Shell, plan: &Plan, out: &Path, output: OutputFormat) -> CliResult {
    let st = runtime()?.block_on(crate::ops::status::status(plan, out))?;
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default()),
        OutputFormat::Text => print!("{}", crate::ops::status::render_text(&st)),
    }
    if st.nodes.iter().any(|n| !n.reachable) {
        return Err(CliError { code: super::EXIT_FAILURE, message: String::new(), report: None });
    }
    Ok(())
}

/// The plan live commands act on: the spec's plan, or — when `out` is a lab directory (it has
/// lab.json) — the lab's loopback plan.
pub fn live_plan(shell: &Shell, spec: Option<&Path>, out: &Path) -> Result<Plan, CliError> {
    if crate::lab::read_state(out)?.is_some() {
        let lab = crate::lab::Lab::open(out, spec)?;
        return Ok(lab.plan);
    }
    let loaded = super::load_spec(shell, spec)?;
    Ok(Plan::from_loaded(&loaded))
}

/// A tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))
}
