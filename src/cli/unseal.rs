//! `vaultnix unseal`: unseal every sealed node (keys from a file or a hidden prompt).

use super::{CliError, CliResult, Shell};
use crate::ops::unseal::{unseal_all, Keys};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vaultnix unseal --spec cluster.toml            # prompts for keys (hidden)\n  vaultnix unseal --out lab --key-file lab/secrets/init.json"
)]
pub struct Args {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The generated output directory (for the CA).
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// An init.json, or a file with one key per line. Without it: prompt (input hidden).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Seconds to keep trying a node (a restarted follower may need a moment to rejoin).
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let plan = super::status::live_plan(shell, a.spec.as_deref(), &a.out)?;
    let keys = match &a.key_file {
        Some(p) => Keys::from_file(p).map_err(|e| CliError::invalid(format!("{e:#}")))?,
        None => prompt(plan.seal.threshold)?,
    };
    let cluster = crate::api::Cluster::from_out(&plan, &a.out)?;
    let rep = super::status::runtime()?.block_on(unseal_all(&cluster, &keys, Duration::from_secs(a.wait)));
    for n in &rep.unsealed {
        shell.status(format!("  unsealed {n}"));
    }
    if rep.unsealed.is_empty() && rep.failed.is_empty() {
        shell.status("every node is already unsealed: nothing to do");
    }
    if !rep.failed.is_empty() {
        let msg = rep.failed.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>().join("\n  ");
        return Err(CliError::failure(format!("could not unseal every node:\n  {msg}")));
    }
    Ok(())
}

fn prompt(threshold: u8) -> Result<Keys, CliError> {
    let mut keys = Vec::new();
    for i in 1..=threshold {
        let k = rpassword::prompt_password(format!("unseal key {i} of {threshold} (hidden): "))
            .map_err(|e| CliError::failure(format!("cannot read a key from the terminal: {e}")))?;
        let k = k.trim().to_string();
        if k.is_empty() {
            return Err(CliError::invalid("empty key"));
        }
        keys.push(k);
    }
    Ok(Keys(keys))
}
