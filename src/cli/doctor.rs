//! `vaultnix doctor`: pre-flight checks of the generated tree against the plan.

use super::{CliError, CliResult, OutputFormat, Shell};
use crate::doctor::{self, OfflineOptions, Report, Severity};
use crate::render::RenderOptions;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(after_help = "Checks (offline): retry_join addresses and leader_tls_servername against each target's \
certificate SANs, the LB hostname in every certificate, chains to flake/pki/ca.crt, EKU serverAuth+clientAuth, the CA key \
against the CA certificate, days left, voter count and quorum, raft performance_multiplier against the sites, \
autopilot settings, node IDs, drift of the rendered files against the spec, and `bao operator validate-config` on each \
rendered server config when bao is found ($VAULTNIX_BAO or PATH).

Checks (--live, added to the offline ones): a TLS handshake to every node's API verified against flake/pki/ca.crt and the \
node's DNS name (and whether it serves the current flake/pki/<node>.crt), health of each node, exactly one active node, \
the LB hostname through HAProxy, TCP reachability of every cluster port (OpenBao's cluster port speaks its own \
internal TLS with its own CA, so only reachability can be checked from outside), the raft configuration against the \
plan (missing/extra peers, voter status, addresses), dead voters lowering failure tolerance (autopilot state), and \
the age of the newest snapshot with --snapshot-dir. A directory made by `vaultnix lab` is detected (lab.json).

Exit codes:
  0  no problem (only ok/info findings)
  1  at least one error
  2  invalid input (spec or arguments)
  3  warnings, no errors

Examples:
  vaultnix doctor --spec cluster.toml --out out
  vaultnix doctor --spec cluster.toml --out out --live
  vaultnix doctor --out lab --live                      # a `vaultnix lab` directory
  vaultnix doctor --spec cluster.toml --out out --output json | jq '.findings[] | select(.severity != \"ok\")'")]
pub struct Args {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The generated output directory to check.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Flake URL the tree was generated with (for the drift check).
    /// (default: the URL the output tree was generated with, else github:vaultnix/vaultnix)
    #[arg(long)]
    pub vaultnix_url: Option<String>,
    /// Also check the running cluster (TLS, health, cluster ports, raft peers, autopilot, snapshots).
    #[arg(long)]
    pub live: bool,
    /// With --live: where raft snapshots are (the newest *.snap's age is checked).
    #[arg(long, requires = "live")]
    pub snapshot_dir: Option<PathBuf>,
    /// Do not run `bao operator validate-config`.
    #[arg(long)]
    pub no_validate_config: bool,
    /// Print the findings as JSON.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let t = super::recover::target(shell, a.spec.as_deref(), &a.out)?;
    let mut o = OfflineOptions::new(t.out.clone(), t.layout.clone());
    o.render = RenderOptions {
        vaultnix_url: crate::output::remembered_vaultnix_url(&t.out, a.vaultnix_url.as_deref()),
        nix: t.render.nix,
        initialized: None,
    };
    o.skip_validate_config = a.no_validate_config;
    if t.is_lab() {
        shell.note(format!("{} is a lab directory: checking the lab plan (loopback addresses)", t.out.display()));
    }
    let mut report = doctor::offline(&t.plan, &o);
    if a.live {
        let mut lo = doctor::LiveOptions::new(t.out.clone());
        lo.snapshot_dir = a.snapshot_dir.clone();
        report.extend(crate::api::block_on(doctor::live(&t.plan, &lo)));
    }
    print_report(shell, &report, a.output, &t.plan.name);
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
        code => Err(CliError { code, message: String::new(), report: None }),
    }
}
