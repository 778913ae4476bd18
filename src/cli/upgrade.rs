//! `vaultnix upgrade`: rolling upgrade — standbys first, then step-down, then the old leader.

use super::{CliError, CliResult, Shell};
use crate::ops::upgrade::{self, UpgradeOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Rolling upgrade to a new server binary. Order: every standby first (stop, switch the binary, \
start, unseal, wait until healthy on the new version and a voter again), then the active node is drained at \
HAProxy and stepped down so that an upgraded node leads (never fail over from new to old), then the old leader \
is upgraded the same way. On a `vaultnix lab` directory vaultnix runs it; on NixOS hosts the binary switch is \
the deployment of the new package, host by host in the printed order.",
    after_help = "Examples:\n  vaultnix upgrade --out lab --to-bao /opt/bao-2.7.2/bao --plan\n  vaultnix upgrade --out lab --to-bao /opt/bao-2.7.2/bao"
)]
pub struct Args {
    /// The new `bao` binary.
    #[arg(long, value_name = "PATH")]
    pub to_bao: PathBuf,
    /// Only print the plan (asks the cluster which node is active).
    #[arg(long)]
    pub plan: bool,
    /// The cluster spec (default: the built-in example; a lab directory knows its own).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The generated output directory, or a `vaultnix lab` directory.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Per node: how long to wait for it to be unsealed, healthy and a voter again (seconds).
    #[arg(long, default_value_t = 90)]
    pub node_wait: u64,
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::OutputFormat,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    if !a.to_bao.is_file() {
        return Err(CliError::invalid(format!("--to-bao {}: no such file", a.to_bao.display())));
    }
    let to = upgrade::binary_version(&a.to_bao)?;
    let plan = super::status::live_plan(shell, a.spec.as_deref(), &a.out)?;
    let rt = super::status::runtime()?;
    let cluster = crate::api::Cluster::from_out(&plan, &a.out)?;
    let steps = rt.block_on(upgrade::plan_for(&cluster))?;
    if a.plan || !plan.lab {
        shell.status(format!("upgrade plan to {to}:"));
        for (i, s) in steps.iter().enumerate() {
            shell.status(format!("  {}. {s}", i + 1));
        }
        if !a.plan {
            return Err(CliError::invalid(
                "running the upgrade is automated on a `vaultnix lab` directory only; on NixOS deploy the new package host by host in this order (`vaultnix step-down` before the leader)",
            ));
        }
        return Ok(());
    }
    let o = UpgradeOptions {
        lab_dir: a.out.clone(),
        to_bao: a.to_bao.clone(),
        node_wait: Duration::from_secs(a.node_wait),
    };
    let r = rt.block_on(upgrade::run_lab_upgrade(&o))?;
    if a.output == super::OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(());
    }
    for s in &r.steps {
        shell.status(format!("{:>6.1} s  {}", s.seconds, s.detail));
    }
    shell.status(format!("upgraded {} -> {} in {:.1} s", r.from_version, r.to_version, r.seconds));
    Ok(())
}
