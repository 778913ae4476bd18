//! Guided recovery: `recover lost-quorum` (peers.json on the survivors) and `node replace` (wipe and
//! rejoin). See docs/recovery.md.
//!
//! Both run against a [`Target`]: a lab (the tool stops, writes and starts things itself, because it owns
//! the processes and data directories) or real hosts (the tool cannot ssh: it prints the exact per-host
//! commands, and verifies through the API what it can). Progress is kept in a state file under
//! `<out>/recover/`, so an interrupted run, or a run waiting for the operator, resumes where it stopped.

pub mod lost_quorum;
pub mod replace;

use crate::lab::Lab;
use crate::ops::unseal::Keys;
use crate::plan::{NodePlan, Plan};
use crate::render::{Layout, RenderOptions};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub use lost_quorum::{lost_quorum, peers_json, LostQuorumOptions, LostQuorumReport};
pub use replace::{replace_node, ReplaceOptions, ReplaceReport};

/// What a live command acts on: the plan, where its files are, and (for a lab) the processes.
#[derive(Debug)]
pub struct Target {
    pub plan: Plan,
    pub out: PathBuf,
    pub layout: Layout,
    pub render: RenderOptions,
    /// Some for a `vaultnix lab` directory (it has lab.json): the tool may start/stop/wipe.
    pub lab: Option<Lab>,
}

impl Target {
    /// A lab when `out` holds a lab.json, else real hosts described by `plan`.
    pub fn open(plan: Plan, out: &Path, spec: Option<&Path>) -> Result<Target> {
        if out.join(crate::lab::STATE_FILE).is_file() {
            let lab = Lab::open(out, spec)?;
            return Ok(Target {
                plan: lab.plan.clone(),
                out: lab.dir.clone(),
                layout: Layout::Lab(lab.dir.clone()),
                render: RenderOptions { nix: false, ..RenderOptions::default() },
                lab: Some(lab),
            });
        }
        Ok(Target { plan, out: out.to_path_buf(), layout: Layout::NixOs, render: RenderOptions::default(), lab: None })
    }

    pub fn is_lab(&self) -> bool {
        self.lab.is_some()
    }

    pub fn node(&self, name: &str) -> Result<&NodePlan> {
        self.plan.node(name).ok_or_else(|| {
            anyhow::anyhow!(
                "no node {name:?} in the plan (nodes: {})",
                self.plan.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The server's systemd unit on a NixOS host.
    pub fn unit(&self) -> &'static str {
        self.plan.engine.as_str()
    }

    /// The raft data directory of `node` (on the machine that runs it).
    pub fn data_dir(&self, node: &NodePlan) -> PathBuf {
        PathBuf::from(self.layout.data_dir(&self.plan, node))
    }
}

/// Unseal keys: the given ones, else `<out>/secrets/init.json` when it exists.
pub fn keys_or_default(keys: Option<Keys>, out: &Path) -> Result<Option<Keys>> {
    if keys.is_some() {
        return Ok(keys);
    }
    let p = crate::ops::common::init_json_path(out);
    if p.is_file() {
        return Keys::from_file(&p).map(Some).context("reading the unseal keys");
    }
    Ok(None)
}

/// A progress line sink (the CLI prints; tests collect).
pub type Log<'a> = &'a mut (dyn FnMut(&str) + Send);
