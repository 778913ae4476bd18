//! `vaultnix doctor`: pre-flight checks of the generated tree against the plan.

use super::{CliError, CliResult, OutputFormat, Shell};
use crate::doctor::{self, OfflineOptions, Report, Severity};
use crate::plan::Plan;
use crate::render::{Layout, RenderOptions};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(after_help = "Checks (offline): retry_join addresses and leader_tls_servername against each target's \
certificate SANs, the LB hostname in every certificate, chains to pki/ca.crt, EKU serverAuth+clientAuth, the CA key \
against the CA certificate, days left, voter count and quorum, raft performance_multiplier against the sites, \
autopilot settings, node IDs, drift of the rendered files against the spec, and `bao operator validate-config` on each \
rendered server config when bao is found ($VAULTNIX_BAO or PATH).

Exit codes:
  0  no problem (only ok/info findings)
  1  at least one error
  2  invalid input (spec or arguments)
  3  warnings, no errors

Examples:
  vaultnix doctor --spec cluster.toml --out out
  vaultnix doctor --spec cluster.toml --out out --output json | jq '.findings[] | select(.severity != \"ok\")'")]
pub struct Args {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The generated output directory to check.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Flake URL the tree was generated with (for the drift check).
    #[arg(long, default_value = "github:vaultnix/vaultnix")]
    pub vaultnix_url: String,
    /// Do not run `bao operator validate-config`.
    #[arg(long)]
    pub no_validate_config: bool,
    /// Print the findings as JSON.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let loaded = super::load_spec(shell, a.spec.as_deref())?;
    let plan = Plan::from_loaded(&loaded);
    let mut o = OfflineOptions::new(a.out.clone(), Layout::NixOs);
    o.render = RenderOptions { vaultnix_url: a.vaultnix_url.clone(), nix: true };
    o.skip_validate_config = a.no_validate_config;
    let report = doctor::offline(&plan, &o);
    print_report(shell, &report, a.output, &plan.name);
    finish(&report)
}

/// Prints a report: problems always, passed checks with --verbose, then a summary line.
pub fn print_report(shell: &Shell, report: &Report, format: OutputFormat, cluster: &str) {
    if format == OutputFormat::Json {
        let v = serde_json::json!({
            "cluster": cluster,
            "worst": report.worst(),
            "exit_code": report.exit_code(),
            "counts": {
                "ok": report.count(Severity::Ok),
                "info": report.count(Severity::Info),
                "warning": report.count(Severity::Warning),
                "error": report.count(Severity::Error),
            },
            "findings": report.findings,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let min = if shell.verbose { Severity::Ok } else { Severity::Info };
    for f in report.at_least(min) {
        let who = f.node.as_deref().map(|n| format!(" {n}:")).unwrap_or_default();
        let line = format!("{:<7} [{}]{who} {}", f.severity.as_str(), f.check, f.what);
        if f.severity >= Severity::Warning {
            // Problems go to stdout as the command's result, even with --quiet.
            println!("{line}");
        } else {
            shell.status(line);
        }
        if !f.fix.is_empty() && f.severity > Severity::Ok {
            if f.severity >= Severity::Warning {
                println!("        fix: {}", f.fix);
            } else {
                shell.status(format!("        fix: {}", f.fix));
            }
        }
    }
    shell.status(format!(
        "{}: {} check(s) — {} ok, {} info, {} warning(s), {} error(s)",
        cluster,
        report.findings.len(),
        report.count(Severity::Ok),
        report.count(Severity::Info),
        report.count(Severity::Warning),
        report.count(Severity::Error)
    ));
}

/// Maps the worst severity to the exit code (message already printed).
pub fn finish(report: &Report) -> CliResult {
    match report.exit_code() {
        0 => Ok(()),
        code => Err(CliError { code, message: String::new() }),
    }
}
