//! `vaultnix ca rollover begin|reissue|finish|verify|status`: a staged CA rollover (ops::ca_rollover).

use super::{CliError, CliResult, Shell};
use crate::ops::ca_rollover::{self, StepOptions, Verification};
use crate::plan::Plan;
use crate::render::{Layout, RenderOptions};
use crate::secrets::CaStep;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Replace the cluster CA in three verified steps without ever breaking trust.
    #[command(
        long_about = "Replaces the cluster CA in three steps; each is rendered into the output tree (through \
`generate`), deployed, and verified on the wire before the next one is allowed:\n\
  begin    a new CA beside the old one; flake/pki/ca.crt (trusted by the nodes, HAProxy, clients, \
retry_join and vaultnix) becomes the bundle old + new; no certificate changes\n\
  reissue  every certificate (nodes, the LB's, the operator's) is reissued by the new CA; both stay trusted\n\
  finish   flake/pki/ca.crt holds the new CA only; the old CA is archived in secrets/ca.retired-<n>.* \
(never deleted)\n\
On a `vaultnix lab` directory each step is also applied (SIGHUP to the nodes, a seamless HAProxy reload) and \
verified. On a NixOS tree: deploy (`nixos-rebuild switch` reloads the servers and HAProxy), then run `vaultnix \
ca rollover verify`.",
        after_help = "Examples:\n  vaultnix ca rollover begin --out out\n  vaultnix ca rollover verify --out out\n  vaultnix ca rollover reissue --out out\n  vaultnix ca rollover finish --out out\n  vaultnix ca rollover status --out out"
    )]
    Rollover(RolloverArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Add a new CA to the trust bundle (leaves unchanged).
    Begin,
    /// Reissue every certificate with the new CA (both CAs still trusted).
    Reissue,
    /// Trust only the new CA; archive the old one.
    Finish,
    /// Check on the wire that the current phase is in force, and record it.
    Verify,
    /// Show the phase, the trusted and archived CAs, and whether the phase was verified.
    Status,
}

#[derive(Debug, clap::Args)]
pub struct RolloverArgs {
    #[arg(value_enum)]
    pub action: Action,
    /// The cluster spec (default: the built-in example; a lab directory knows its own).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The output directory, or a `vaultnix lab` directory.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// verify: tries per listener (2 s apart): reloads are asynchronous.
    #[arg(long, default_value_t = 30)]
    pub tries: usize,
    /// Flake URL the generated flake.nix takes vaultnix from (as given to `generate`).
    #[arg(long)]
    pub vaultnix_url: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::OutputFormat,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let Cmd::Rollover(r) = a.command;
    rollover(shell, r)
}

fn rollover(shell: &Shell, a: RolloverArgs) -> CliResult {
    let lab = crate::lab::read_state(&a.out)?.is_some();
    let plan = super::status::live_plan(shell, a.spec.as_deref(), &a.out)?;
    let json = a.output == super::OutputFormat::Json;
    let step = match a.action {
        Action::Begin => CaStep::Begin,
        Action::Reissue => CaStep::Reissue,
        Action::Finish => CaStep::Finish,
        Action::Status => {
            let s = ca_rollover::status(&plan, &a.out)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                return Ok(());
            }
            shell.status(format!(
                "CA rollover: {}{}",
                if s.rollover_started { s.phase.as_str() } else { "none yet (one CA)" },
                if s.verified { ", verified on the wire" } else { ", not verified for this tree" }
            ));
            for c in &s.trusted {
                shell.status(format!("  trusted: {} (sha256 {}…) — {}", c.subject, &c.sha256[..16], c.role));
            }
            for c in &s.retired {
                shell.status(format!("  archived: {} (sha256 {}…) — {}", c.subject, &c.sha256[..16], c.role));
            }
            if let Some(n) = s.next {
                shell.status(format!(
                    "next: {}`vaultnix ca rollover {}`",
                    if s.verified { "" } else { "verify, then " },
                    n.as_str()
                ));
            }
            return Ok(());
        }
        Action::Verify => {
            let access = if lab {
                let l = crate::lab::Lab::open(&a.out, None)?;
                let layout = Layout::Lab(l.dir.clone());
                Some(ca_rollover::HaproxyAccess {
                    socket: PathBuf::from(layout.haproxy_admin_socket()),
                    ca_file: layout.haproxy_ca_file(&plan),
                    pid: l.pid(crate::lab::process::HAPROXY),
                })
            } else {
                None
            };
            return verify(shell, &plan, &a.out, access, a.tries, json);
        }
    };
    if lab {
        let l = crate::lab::Lab::open(&a.out, None)?;
        let rt = super::status::runtime()?;
        let r = rt.block_on(ca_rollover::step_lab(&l, step, a.vaultnix_url.as_deref(), a.tries))?;
        if !json {
            print_step(shell, &a.out, &r.report);
            for d in &r.done {
                shell.status(format!("  {d}"));
            }
        }
        return report_verification(shell, &r.verification, true, json);
    }
    let o = StepOptions {
        out: a.out.clone(),
        layout: Layout::NixOs,
        render: RenderOptions {
            vaultnix_url: crate::output::remembered_vaultnix_url(&a.out, a.vaultnix_url.as_deref()),
            nix: true,
            initialized: None,
        },
    };
    let r = ca_rollover::step(&plan, &o, step)?;
    if !json {
        print_step(shell, &a.out, &r);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        shell.status(format!(
            "deploy {} (`nixos-rebuild switch` sends SIGHUP to the servers and reloads HAProxy), then run `vaultnix ca \
             rollover verify --out {}`{}",
            a.out.display(),
            a.out.display(),
            match r.phase {
                crate::secrets::CaPhase::Finished => String::new(),
                _ => " before the next step".into(),
            }
        ));
    }
    Ok(())
}

fn verify(
    shell: &Shell,
    plan: &Plan,
    out: &Path,
    access: Option<ca_rollover::HaproxyAccess>,
    tries: usize,
    json: bool,
) -> CliResult {
    let rt = super::status::runtime()?;
    // The one live write a rollover needs besides deploying files (self-initialized clusters).
    if let Some(done) = rt.block_on(ca_rollover::sync_admin_role(plan, out))? {
        if !json {
            shell.status(format!("  {done}"));
        }
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let v: Verification =
        rt.block_on(ca_rollover::verify(plan, out, access.as_ref(), tries, Duration::from_secs(2), now))?;
    report_verification(shell, &v, access.is_some(), json)
}

fn print_step(shell: &Shell, out: &Path, r: &ca_rollover::StepReport) {
    for e in &r.events {
        shell.status(format!("  {e}"));
    }
    shell.status(format!(
        "{}: {} added, {} changed; CA rollover phase: {}",
        out.display(),
        r.diff.added.len(),
        r.diff.changed.len(),
        r.phase.as_str()
    ));
}

/// Prints a verification (text or JSON); an error unless every check passed.
fn report_verification(shell: &Shell, v: &Verification, haproxy_inspected: bool, json: bool) -> CliResult {
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for c in &v.checks {
            shell.status(format!("  {} {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.what, c.detail));
        }
        if !haproxy_inspected {
            shell.note("HAProxy's in-memory trust store was not inspected (its admin socket is on the LB host)");
        }
    }
    if !v.ok {
        let bad = v.checks.iter().filter(|c| !c.ok).count();
        return Err(CliError::failure(format!(
            "{bad} of {} check(s) failed for the {} phase: the next step stays refused. Deploy the tree (reload the \
             servers and HAProxy) and verify again",
            v.checks.len(),
            v.phase.as_str()
        )));
    }
    shell.status(format!(
        "CA rollover phase {} verified on the wire ({} checks); recorded in {}",
        v.phase.as_str(),
        v.checks.len(),
        crate::render::paths::CA_ROLLOVER_VERIFIED
    ));
    Ok(())
}
