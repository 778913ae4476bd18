//! `vaultnix node`: add or remove a node (the spec file is edited in place, comments kept).

use super::{CliResult, Shell};
use crate::generate::{generate, GenerateOptions};
use crate::ops::membership::{self, NewNode};
use crate::plan::Plan;
use crate::render::{Layout, RenderOptions};
use crate::secrets::Rotate;
use crate::spec::{Arch, Provider};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Append a node to the spec and regenerate (certificate, configs, retry_join on every node).
    #[command(
        after_help = "Example:\n  vaultnix node add vault-4 --provider linode --address 203.0.113.40 --overlay-address 10.88.0.4 --spec cluster.toml\nThen deploy the new host and the updated peers; it joins through retry_join, `vaultnix unseal` unseals it, and autopilot promotes it to voter after server_stabilization_time."
    )]
    Add(AddArgs),
    /// Remove a node: raft remove-peer (on a lab directory), then the spec and the output tree.
    Remove(RemoveArgs),
    /// Wipe a node's raft data and rejoin it (after a lost quorum, or for a removed node).
    Replace(super::recover::ReplaceArgs),
    /// Before this node's server stops: if it is the active node, step it down (verified), wait until
    /// another node is active and the LB's fall window has passed. The server unit's ExecStop; never
    /// fails (exit 0), bounded by the config's timeout_seconds.
    #[command(
        after_help = "Example:\n  vaultnix node drain --config /etc/vaultnix/drain.json\nThe config is the rendered nodes/<node>.drain.json; its token is `vaultnix bootstrap --drain-token`'s."
    )]
    Drain(DrainArgs),
    /// The drain agent HAProxy's agent-check polls on this node (the `vaultnix-drain-agent` unit): it
    /// answers `up`, or `down` while this node's stop is draining it at the LB.
    #[command(
        after_help = "Example:\n  vaultnix node agent --config /etc/vaultnix/drain.json\nListens on the config's agent.ip:agent.port (cluster.agent_port, default 8202); reachable from the LB only."
    )]
    Agent(AgentArgs),
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The rendered nodes/<node>.drain.json (its `agent` section).
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The rendered nodes/<node>.drain.json.
    #[arg(long)]
    pub config: PathBuf,
    /// The server process being stopped: the agent answers `down` only while it runs. Default: $MAINPID,
    /// which systemd sets for ExecStop.
    #[arg(long, env = "MAINPID")]
    pub pid: Option<u32>,
    /// Only renew the drain token (periodic, 768 h) and exit; fails if it could not (the daily
    /// `vaultnix-drain-token-renew` timer).
    #[arg(long)]
    pub renew_token: bool,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    pub name: String,
    #[arg(long, value_parser = parse_provider)]
    pub provider: Provider,
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    #[arg(long)]
    pub address: Option<IpAddr>,
    #[arg(long)]
    pub overlay_address: Option<IpAddr>,
    /// Add it as a non-voter.
    #[arg(long)]
    pub non_voter: bool,
    /// The cluster spec to edit.
    #[arg(short, long, env = "VAULTNIX_SPEC", default_value = "cluster.toml")]
    pub spec: PathBuf,
    /// The output directory; a `vaultnix lab` directory also starts, joins, unseals the node and waits
    /// until autopilot reports it a voter (its spec is the lab's).
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    pub name: String,
    /// Only edit the spec and regenerate; do not call raft remove-peer (cluster unreachable or already done).
    #[arg(long)]
    pub spec_only: bool,
    #[arg(short, long, env = "VAULTNIX_SPEC", default_value = "cluster.toml")]
    pub spec: PathBuf,
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    toml::Value::String(s.into())
        .try_into()
        .map_err(|_| format!("unknown provider {s:?} (onprem, oracle, linode, digitalocean)"))
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    toml::Value::String(s.into()).try_into().map_err(|_| format!("unknown arch {s:?} (x86_64, aarch64)"))
}

fn regenerate(shell: &Shell, loaded: &crate::spec::Loaded, out: &std::path::Path) -> CliResult {
    let plan = Plan::from_loaded(loaded);
    let opts = GenerateOptions {
        out: out.to_path_buf(),
        check: false,
        rotate: Rotate::default(),
        render: RenderOptions::default(),
    };
    let g = generate(&plan, &Layout::NixOs, &opts)?;
    for e in &g.events {
        shell.status(format!("  {e}"));
    }
    shell.status(format!(
        "{}: {} added, {} changed, {} removed",
        out.display(),
        g.diff.added.len(),
        g.diff.changed.len(),
        g.diff.removed.len()
    ));
    Ok(())
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
        Cmd::Add(x) => {
            let n = NewNode {
                name: x.name.clone(),
                provider: x.provider,
                arch: x.arch,
                address: x.address,
                overlay_address: x.overlay_address,
                voter: !x.non_voter,
            };
            if crate::lab::read_state(&x.out)?.is_some() {
                let r = super::status::runtime()?.block_on(membership::lab_add_node(
                    &x.out,
                    &n,
                    Duration::from_secs(120),
                ))?;
                shell.status(format!(
                    "{} joined, unsealed and is a voter after {:.1} s; voters: {}; raft peers: {}",
                    r.node,
                    r.seconds,
                    r.voters.join(", "),
                    r.peers
                ));
                return Ok(());
            }
            let loaded = membership::edit_spec_file(&x.spec, |t| membership::add_node_text(t, &n))
                .map_err(|e| super::CliError::invalid(format!("{e:#}")))?;
            shell.status(format!("{}: added node {}", x.spec.display(), x.name));
            regenerate(shell, &loaded, &x.out)
        }
        Cmd::Replace(x) => super::recover::node_replace(shell, x),
        Cmd::Drain(x) if x.renew_token => {
            let c = crate::ops::drain::load_config(&x.config)?;
            let (node, ttl) = super::status::runtime()?.block_on(crate::ops::drain::renew_token(&c))?;
            shell.status(format!("drain token renewed on {node}: valid for {} h", ttl / 3600));
            Ok(())
        }
        Cmd::Drain(x) => {
            // A stop must go on whatever happens here: report and exit 0.
            shell.status(crate::ops::drain::drain_for_stop(&x.config, x.pid));
            Ok(())
        }
        Cmd::Agent(x) => {
            let c = crate::ops::drain::load_config(&x.config)?;
            let a = c.agent.ok_or_else(|| {
                super::CliError::invalid(format!(
                    "{}: no `agent` section (re-run `vaultnix generate`)",
                    x.config.display()
                ))
            })?;
            super::status::runtime()?.block_on(crate::ops::agent::serve(&a))?;
            Ok(())
        }
        Cmd::Remove(x) => {
            if crate::lab::read_state(&x.out)?.is_some() {
                let r = super::status::runtime()?.block_on(membership::lab_remove_node(
                    &x.out,
                    &x.name,
                    Duration::from_secs(120),
                ))?;
                shell.status(format!(
                    "{} removed from raft and the spec in {:.1} s; voters: {}; raft peers: {}",
                    r.node,
                    r.seconds,
                    r.voters.join(", "),
                    r.peers
                ));
                return Ok(());
            }
            if x.spec_only {
                shell.warn(format!(
                    "--spec-only: {} stays a raft peer until removed (`bao operator raft remove-peer {}`)",
                    x.name, x.name
                ));
            } else {
                // Raft first: a peer dropped from the spec but not from raft would still count for quorum.
                let loaded = super::load_spec(shell, Some(&x.spec))?;
                let plan = Plan::from_loaded(&loaded);
                let rt = super::status::runtime()?;
                let c = crate::api::Cluster::from_out(&plan, &x.out)?;
                let probe =
                    c.nodes.first().cloned().ok_or_else(|| super::CliError::invalid("the spec has no nodes"))?;
                let token = rt.block_on(crate::ops::common::resolve_token(&probe, &x.out)).ok_or_else(|| {
                    super::CliError::failure("remove-peer needs a token (secrets/admin-token, secrets/init.json, $BAO_TOKEN); or pass --spec-only")
                })?;
                rt.block_on(membership::remove_peer(&c.with_token(Some(token)), &x.name, Duration::from_secs(60)))
                    .map_err(|e| {
                        super::CliError::failure(format!(
                            "{e:#}; nothing changed (pass --spec-only to edit the spec without the cluster)"
                        ))
                    })?;
                shell.status(format!("{} removed from raft", x.name));
            }
            let loaded = membership::edit_spec_file(&x.spec, |t| membership::remove_node_text(t, &x.name))
                .map_err(|e| super::CliError::invalid(format!("{e:#}")))?;
            shell.status(format!("{}: removed node {}", x.spec.display(), x.name));
            regenerate(shell, &loaded, &x.out)
        }
    }
}
