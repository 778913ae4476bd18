//! `vaultnix certs`: renew node certificates under the same CA.

use super::{CliError, CliResult, Shell};
use crate::ops::certs::{self, RenewOptions};
use crate::plan::Plan;
use crate::render::{Layout, RenderOptions};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Reissue node certificates that expire soon (same keys, same CA) and rewrite the output tree.
    #[command(
        long_about = "Reissues the node certificates that expire within --within (default: the spec's \
tls.renew_within_days) under the existing CA, with the same keys, and rewrites the output tree through \
`generate` (manifest included). Deploy the tree afterwards; OpenBao listeners reload the certificate \
themselves (tls_auto_reload_interval) or on SIGHUP (`systemctl reload openbao`) — no restart, so Shamir \
nodes stay unsealed. The CA and keys are never created here.",
        after_help = "Examples:\n  vaultnix certs renew --spec cluster.toml --out out --within 30d\n  vaultnix certs renew --spec cluster.toml --all --dry-run"
    )]
    Renew(RenewArgs),
    /// Check over TLS that every listener serves the certificate in <out>/pki/<node>.crt.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The output directory, or a `vaultnix lab` directory.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Tries per node (2 s apart): reloads are asynchronous.
    #[arg(long, default_value_t = 30)]
    pub tries: usize,
}

#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// Output directory written by `vaultnix generate`; on a `vaultnix lab` directory the nodes are also
    /// sent SIGHUP and the served certificates verified.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Renew certificates expiring within this duration (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION")]
    pub within: Option<String>,
    /// Renew every node certificate, whatever its expiry.
    #[arg(long, conflicts_with = "within")]
    pub all: bool,
    /// Only show what would be renewed.
    #[arg(long)]
    pub dry_run: bool,
    /// Flake URL the generated flake.nix takes vaultnix from (as given to `generate`).
    /// (default: the URL the output tree was generated with, else github:vaultnix/vaultnix)
    #[arg(long)]
    pub vaultnix_url: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::OutputFormat,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
        Cmd::Renew(r) => renew(shell, r),
        Cmd::Verify(v) => {
            let plan = super::status::live_plan(shell, v.spec.as_deref(), &v.out)?;
            verify(shell, &plan, &v.out, v.tries)
        }
    }
}

fn verify(shell: &Shell, plan: &Plan, out: &std::path::Path, tries: usize) -> CliResult {
    let rt = super::status::runtime()?;
    let served = rt.block_on(certs::verify_served(plan, out, tries, std::time::Duration::from_secs(2)))?;
    let mut bad = Vec::new();
    for s in &served {
        if s.ok {
            shell.status(format!(
                "{}: serves {} (sha256 {}…, {} handshake(s))",
                s.node,
                s.file,
                &s.expected[..16],
                s.attempts
            ));
        } else {
            bad.push(s.node.clone());
            shell.status(format!(
                "{}: serves {} instead of {} ({}…) after {} handshake(s)",
                s.node,
                s.served
                    .as_deref()
                    .map(|f| format!("sha256 {}…", &f[..16]))
                    .unwrap_or_else(|| "nothing (unreachable)".into()),
                s.file,
                &s.expected[..16],
                s.attempts
            ));
        }
    }
    if !bad.is_empty() {
        return Err(CliError::failure(format!(
            "{} still serve(s) another certificate: reload them (`systemctl reload {}` sends SIGHUP) or restart and unseal",
            bad.join(", "),
            plan.engine.as_str()
        )));
    }
    Ok(())
}

fn renew(shell: &Shell, a: RenewArgs) -> CliResult {
    let lab = crate::lab::read_state(&a.out)?.is_some();
    let plan = super::status::live_plan(shell, a.spec.as_deref(), &a.out)?;
    let within_secs = match &a.within {
        Some(w) => crate::spec::parse_duration(w)
            .ok_or_else(|| CliError::invalid(format!("--within {w:?}: expected a duration such as 30d or 12h")))?,
        None => plan.tls.renew_within_days as u64 * 86400,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let o = RenewOptions {
        out: a.out.clone(),
        within_secs,
        all: a.all,
        dry_run: a.dry_run,
        layout: if lab { Layout::Lab(crate::output::absolute(&a.out)?) } else { Layout::NixOs },
        render: RenderOptions {
            vaultnix_url: crate::output::remembered_vaultnix_url(&a.out, a.vaultnix_url.as_deref()),
            nix: !lab,
            initialized: None,
        },
        now,
    };
    let r = certs::renew(&plan, &o)?;
    if a.output == super::OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(());
    }
    for w in &r.warnings {
        shell.warn(w);
    }
    let verb = if a.dry_run { "would renew" } else { "renewed" };
    for x in &r.renewed {
        shell.status(format!(
            "{verb} {}: {} days left -> {} days (sha256 {}…)",
            x.node,
            x.old.days_left,
            x.new.days_left,
            &x.new.sha256[..16]
        ));
    }
    for k in &r.kept {
        shell.status(format!("kept {}: {} days left", k.node, k.days_left));
    }
    shell.status(format!("CA: {} days left", r.ca_days_left));
    if lab && !a.dry_run && !r.renewed.is_empty() {
        let l = crate::lab::Lab::open(&a.out, None)?;
        for d in certs::reload_lab(&l)? {
            shell.status(d);
        }
        return verify(shell, &plan, &a.out, 30);
    }
    if !a.dry_run && !r.renewed.is_empty() {
        shell.status(format!(
            "{}: {} file(s) changed; deploy it — listeners reload the certificate within a minute or on SIGHUP (`systemctl reload {}`)",
            a.out.display(),
            r.diff.changed.len() + r.diff.added.len(),
            plan.engine.as_str()
        ));
        if r.renewed.iter().any(|x| x.node == plan.lb.name && plan.lb.mode == crate::spec::LbMode::Terminate) {
            shell.status(format!(
                "the load balancer's certificate was renewed: install {} as {}/lb.pem on {} (a secret: not in the flake), `systemctl reload haproxy` (the reload installs it for HAProxy first), then `vaultnix certs verify` (it checks what the LB serves)",
                crate::render::paths::LB_PEM,
                plan.secrets_dir,
                plan.lb.name
            ));
        }
    }
    Ok(())
}
