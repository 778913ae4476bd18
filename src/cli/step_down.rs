//! `vaultnix step-down`: drain the active node at HAProxy, step it down, verify the leader changed.

use super::{CliResult, Shell};
use crate::ops::step_down::{step_down, StepDownOptions};
use crate::render::Layout;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The generated output directory (CA, tokens).
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// HAProxy admin socket (default: the one in the rendered haproxy.cfg, used when reachable).
    #[arg(long)]
    pub haproxy_socket: Option<PathBuf>,
    /// Step-down requests at most (OpenBao sometimes answers 204 and stays active).
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let plan = super::status::live_plan(shell, a.spec.as_deref(), &a.out)?;
    let layout = if plan.lab { Layout::Lab(crate::output::absolute(&a.out)?) } else { Layout::NixOs };
    let sock = a.haproxy_socket.clone().unwrap_or_else(|| PathBuf::from(layout.haproxy_admin_socket()));
    let o = StepDownOptions {
        out: a.out.clone(),
        haproxy_socket: Some(sock),
        attempts: a.attempts,
        wait: Duration::from_secs(15),
    };
    let r = super::status::runtime()?.block_on(step_down(&plan, &o))?;
    let paused = if r.paused_ms > 0 {
        format!(
            "; waited {:.1} s first: {} had been active for less than 10.5 s, so a standby could still be in \
             the pause after its own step-down",
            r.paused_ms as f64 / 1000.0,
            r.old_leader
        )
    } else {
        String::new()
    };
    shell.status(format!(
        "{} stepped down; {} is active ({} request(s){}{paused})",
        r.old_leader,
        r.new_leader,
        r.attempts,
        if r.drained { ", drained at HAProxy first" } else { "" }
    ));
    Ok(())
}
