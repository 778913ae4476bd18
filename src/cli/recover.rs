//! `vaultnix recover lost-quorum` and `vaultnix node replace` (the library is `crate::recover`).

use super::{CliError, CliResult, OutputFormat, Shell};
use crate::ops::unseal::Keys;
use crate::plan::Plan;
use crate::recover::{self, LostQuorumOptions, ReplaceOptions, Target};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Bring back a cluster that cannot elect a leader, with its surviving nodes (raft/peers.json).
    #[command(after_help = "Resumable: progress is kept in <out>/recover/lost-quorum.json; re-run the same command \
after an interruption or after running the printed per-host commands.

In a `vaultnix lab` directory the tool does everything itself (stop, peers.json, start, unseal, verify). For real \
hosts it cannot ssh: the first run prints the exact commands per host (pause the backup timer, drain HAProxy, stop the \
survivors, write peers.json, start them); the second run checks they answer, unseals them in order and verifies a \
leader and a write. Then replace each lost node with `vaultnix node replace NAME`. See docs/recovery.md.

Examples:
  vaultnix recover lost-quorum --out lab                          # lab: survivors = nodes that answer
  vaultnix recover lost-quorum --spec cluster.toml --out out --survivors vault-1 --keys-file keys.txt")]
    LostQuorum(LostQuorumArgs),
}

#[derive(Debug, clap::Args)]
pub struct LostQuorumArgs {
    /// The cluster spec (default: the built-in example; a lab directory knows its own).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The generated output directory (or a `vaultnix lab` directory).
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// The nodes whose data survived, comma-separated (default: the nodes whose API answers).
    #[arg(long, value_delimiter = ',')]
    pub survivors: Option<Vec<String>>,
    /// Unseal keys: an init.json or one key per line (default: <out>/secrets/init.json).
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    /// Bound in seconds for each wait (stop, unseal, election).
    #[arg(long, default_value_t = 90)]
    pub wait: u64,
    /// Proceed although a node is active or a quorum of voters answers.
    #[arg(long)]
    pub force: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// `vaultnix node replace NAME`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Removes the node from raft (remove-peer via the active node), wipes its data directory, \
starts it so it rejoins through retry_join, unseals it, and waits until autopilot reports it a healthy voter. In a \
lab directory the tool does all of it; for real hosts it prints the commands to run on the node and waits for it.

Example:
  vaultnix node replace vault-2 --out lab")]
pub struct ReplaceArgs {
    /// The node to replace.
    pub name: String,
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Unseal keys: an init.json or one key per line (default: <out>/secrets/init.json).
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    /// Bound in seconds for each wait (rejoin + unseal, promotion to voter).
    #[arg(long, default_value_t = 120)]
    pub wait: u64,
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

fn keys(p: &Option<PathBuf>) -> Result<Option<Keys>, CliError> {
    p.as_deref().map(Keys::from_file).transpose().map_err(|e| CliError::invalid(format!("{e:#}")))
}

/// The target of a live command: a lab directory (it knows its spec) or the spec's hosts.
pub(crate) fn target(shell: &Shell, spec: Option<&std::path::Path>, out: &std::path::Path) -> Result<Target, CliError> {
    let is_lab = out.join(crate::lab::STATE_FILE).is_file();
    let plan = if is_lab && spec.is_none() {
        // The lab knows its spec; the plan below is replaced by the lab's.
        Plan::from_loaded(&crate::spec::example())
    } else {
        Plan::from_loaded(&super::load_spec(shell, spec)?)
    };
    Ok(Target::open(plan, out, spec)?)
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
        Cmd::LostQuorum(x) => lost_quorum(shell, x),
    }
}

fn lost_quorum(shell: &Shell, x: LostQuorumArgs) -> CliResult {
    let t = target(shell, x.spec.as_deref(), &x.out)?;
    let o = LostQuorumOptions {
        survivors: x.survivors.clone(),
        keys: keys(&x.keys_file)?,
        wait: Duration::from_secs(x.wait),
        force: x.force,
    };
    let json = x.output == OutputFormat::Json;
    let mut log = |m: &str| {
        if json {
            eprintln!("{m}");
        } else {
            shell.status(m);
        }
    };
    let r = crate::api::block_on(recover::lost_quorum(&t, &o, &mut log))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(());
    }
    if r.waiting_for_operator {
        shell.status(format!("waiting for the operator; progress saved in {}", r.state_file.display()));
        return Ok(());
    }
    for (step, secs) in &r.steps {
        shell.detail(format!("  {step}: {secs:.1} s"));
    }
    shell.status(format!(
        "recovered: {} active with {}; cluster down for {}; this run {:.1} s",
        r.leader.as_deref().unwrap_or("?"),
        r.survivors.join(", "),
        r.seconds_down.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "?".into()),
        r.seconds_this_run
    ));
    if !r.next.is_empty() {
        shell.status("next, one at a time (each wipes the node's data and rejoins it):");
        for n in &r.next {
            shell.status(format!("  {n}"));
        }
    }
    Ok(())
}

pub fn node_replace(shell: &Shell, x: ReplaceArgs) -> CliResult {
    let t = target(shell, x.spec.as_deref(), &x.out)?;
    let o = ReplaceOptions { node: x.name.clone(), keys: keys(&x.keys_file)?, wait: Duration::from_secs(x.wait) };
    let json = x.output == OutputFormat::Json;
    let mut log = |m: &str| {
        if json {
            eprintln!("{m}");
        } else {
            shell.status(m);
        }
    };
    let r = crate::api::block_on(recover::replace_node(&t, &o, &mut log))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else if r.waiting_for_operator {
        shell.status(format!("{} has not rejoined yet; re-run once the commands above ran", r.node));
    } else {
        shell.status(format!("{} replaced in {:.1} s", r.node, r.seconds));
    }
    if r.waiting_for_operator {
        return Err(CliError::failure(""));
    }
    Ok(())
}
