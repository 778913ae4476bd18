//! `vaultnix drill`: failover drills with a lost-write checker.

use super::{CliError, CliResult, OutputFormat, Shell};
use crate::drill::lab_target::{self, DrillOptions};
use crate::drill::run::Scenario;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vaultnix drill leader-crash --spec tests/specs/lab.toml --trials 7\n  vaultnix drill leader-crash --trials 7 --compare-seed --output json\n  vaultnix drill leader-stepdown --drain --trials 5\n  vaultnix drill leader-stepdown --drain --trials 10 --timeout-ms 6000 --compare-mode\n  vaultnix drill partition --dir ./lab      # against a running `vaultnix lab`\n  vaultnix drill ca-rollover --trials 2 --rate 25 --compare-mode   # begin/reissue/finish under the writer\n  vaultnix drill cert-renewal --trials 3 --rate 25\n  vaultnix drill restore --secrets 10000    # save, restore into a fresh cluster, read back\n  vaultnix drill restore --secrets 10000 --from-repo   # the same through a restic repository: RPO/RTO\n  vaultnix drill leader-crash --trials 2 --compare-mode --report ./report   # SVGs + offline index.html\n  sudo vaultnix drill partition --hosts --spec tests/specs/hosts.toml --wan rtt=80ms   # real partition on a hosts lab"
)]
pub struct Args {
    /// What to break (`restore`: a snapshot restore rehearsal into a fresh cluster).
    #[arg(value_enum)]
    pub scenario: Kind,
    /// restore: number of secrets to write, save, restore and read back.
    #[arg(long, default_value_t = 1000)]
    pub secrets: usize,
    /// restore: work directory (labs and the snapshot go inside; removed afterwards unless --keep).
    #[arg(long, default_value = "restore-drill")]
    pub workdir: PathBuf,
    /// The cluster spec (default: the built-in example). A fresh lab is built from it on loopback.
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// Use the running lab in this directory instead of bringing up a fresh one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Trials per configuration.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub trials: u16,
    /// Writes per second through the load balancer.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Per-request timeout of the drill's client, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// leader-stepdown: drain the active node at the load balancer first (the planned path).
    #[arg(long)]
    pub drain: bool,
    /// leader-crash: also run the trials against seed 000's configuration (raft multiplier 5, TCP-check
    /// round-robin HAProxy) in a second fresh lab, and report the ratio of the disruption windows.
    #[arg(long, conflicts_with = "dir")]
    pub compare_seed: bool,
    /// Run the trials twice in two fresh labs from the same spec, with `load_balancer.mode =
    /// "passthrough"` and `"terminate"` (HAProxy L7), and report both side by side.
    #[arg(long, conflicts_with_all = ["dir", "compare_seed"])]
    pub compare_mode: bool,
    /// restore: copy through a restic repository and restore from it; prints RPO and RTO.
    #[arg(long)]
    pub from_repo: bool,
    /// Drill a hosts lab (root): a fresh one from --spec (torn down after), or the running one in --dir.
    /// The faults are real: kill -9 on the host, partition = raft's port dropped both ways on the node.
    #[arg(long, conflicts_with_all = ["compare_seed", "compare_mode"])]
    pub hosts: bool,
    /// --hosts: WAN between sites first, e.g. `rtt=80ms,jitter=10ms,loss=1%`.
    #[arg(long, requires = "hosts")]
    pub wan: Option<String>,
    /// Required to drill anything that is not a lab this command (or `vaultnix lab`) started.
    #[arg(long)]
    pub allow_destructive: bool,
    /// Also write DIR/<scenario>-<config>.svg (every request by latency, failures by kind, the fault,
    /// the election and the LB's state changes; all trials overlaid relative to the fault) and
    /// DIR/index.html (the summary side by side per configuration, the SVGs inline; opens offline).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Keep the fresh lab's directory (and stop its processes) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// The drills: the failover scenarios, and the restore rehearsal (`vaultnix snapshot drill-restore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    LeaderCrash,
    LeaderStepdown,
    FollowerCrash,
    Partition,
    FullRestart,
    /// A staged CA rollover (begin, reissue, finish), each step applied and verified on the wire.
    CaRollover,
    /// `certs renew --all` (same CA), reloaded and verified on the wire.
    CertRenewal,
    /// Stop the active node through its service's stop path (ExecStop drain, SIGTERM), restart it.
    LeaderStop,
    /// --hosts only: a standby cut off the network for 10 s.
    FollowerIsolate,
    Restore,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let scenario = match a.scenario {
        Kind::LeaderCrash => Scenario::LeaderCrash,
        Kind::LeaderStepdown => Scenario::LeaderStepdown,
        Kind::FollowerCrash => Scenario::FollowerCrash,
        Kind::Partition => Scenario::Partition,
        Kind::FullRestart => Scenario::FullRestart,
        Kind::CaRollover => Scenario::CaRollover,
        Kind::CertRenewal => Scenario::CertRenewal,
        Kind::LeaderStop => Scenario::LeaderStop,
        Kind::FollowerIsolate if !a.hosts => {
            return Err(CliError::invalid("follower-isolate needs a network to cut: add --hosts"));
        }
        Kind::FollowerIsolate => Scenario::FollowerIsolate,
        Kind::Restore => {
            if a.dir.is_some() || a.compare_seed || a.compare_mode || a.drain || a.hosts {
                return Err(CliError::invalid(
                    "the restore drill brings up its own labs: --dir, --compare-seed, --compare-mode, --drain and --hosts do not apply",
                ));
            }
            if a.report.is_some() {
                return Err(CliError::invalid("--report applies to the failover drills, not to restore"));
            }
            let d = super::snapshot::DrillArgs {
                secrets: a.secrets,
                spec: a.spec,
                workdir: a.workdir,
                concurrency: 16,
                keep: a.keep,
                from_repo: a.from_repo,
                output: a.output,
            };
            return super::snapshot::drill_restore(shell, &d);
        }
    };
    if a.from_repo {
        return Err(CliError::invalid("--from-repo applies to the restore drill only"));
    }
    if !(0.1..=200.0).contains(&a.rate) {
        return Err(CliError::invalid("--rate must be between 0.1 and 200 writes per second"));
    }
    if a.compare_seed && scenario != Scenario::LeaderCrash {
        return Err(CliError::invalid("--compare-seed is defined for leader-crash only"));
    }
    if a.drain && scenario != Scenario::LeaderStepdown {
        return Err(CliError::invalid("--drain applies to leader-stepdown only"));
    }
    if let Some(r) = &a.report {
        // Checked before the drill runs: minutes of trials must not end in an unwritable report.
        if r.exists() && !r.is_dir() {
            return Err(CliError::invalid(format!("--report {}: exists and is not a directory", r.display())));
        }
    }
    let wan = match &a.wan {
        Some(w) => Some(
            w.parse::<crate::lab::hosts::wan::WanProfile>().map_err(|e| CliError::invalid(format!("--wan: {e:#}")))?,
        ),
        None => None,
    };
    if a.hosts {
        if let Some(dir) = &a.dir {
            if crate::lab::hosts::read_state(dir).map_err(CliError::from)?.is_none() {
                return Err(CliError::invalid(format!(
                    "{} is not a hosts lab (no hosts.json): `vaultnix lab up --hosts --dir {}` first",
                    dir.display(),
                    dir.display()
                )));
            }
        }
    } else if let Some(dir) = &a.dir {
        // A directory `vaultnix lab` manages holds lab.json; anything else is not ours to break.
        if crate::lab::read_state(dir).map_err(CliError::from)?.is_none() {
            if !a.allow_destructive {
                return Err(CliError::invalid(format!(
                    "{} is not a lab directory; drilling anything but a lab needs --allow-destructive",
                    dir.display()
                )));
            }
            return Err(CliError::failure(
                "drilling a cluster that is not a lab is not implemented: the faults need process control on \
                 the hosts (use `vaultnix step-down` for a planned step-down)",
            ));
        }
    }
    let opts = DrillOptions {
        scenario,
        spec: a.spec,
        dir: a.dir,
        trials: a.trials as usize,
        rate_hz: a.rate,
        timeout: Duration::from_millis(a.timeout_ms.clamp(100, 60_000)),
        drain: a.drain,
        compare_seed: a.compare_seed,
        compare_mode: a.compare_mode,
        keep: a.keep,
        progress: !shell.quiet && a.output == OutputFormat::Text,
    };
    let report = if a.hosts {
        crate::lab::hosts::preflight().map_err(|e| CliError::failure(format!("{e:#}")))?;
        let bar = lab_target::progress_bar(opts.progress, opts.trials as u64);
        let r = crate::drill::hosts_target::drill(&opts, wan, &bar, shell);
        bar.finish();
        r?
    } else {
        crate::api::block_on(lab_target::drill(&opts, shell))?
    };
    if let Some(dir) = &a.report {
        let files = crate::drill::plot::write(&report, dir).map_err(CliError::from)?;
        shell.note(format!("report: {} ({} files)", dir.join("index.html").display(), files.len()));
    }
    if a.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        shell.status(report.table());
    }
    if !report.ok {
        return Err(CliError::failure("acknowledged writes were lost or the history was inconsistent (see above)"));
    }
    if scenario.is_rotation() && report.goals.iter().any(|g| !g.met) {
        return Err(CliError::failure(format!("requests failed during the {} (see above)", scenario.as_str())));
    }
    Ok(())
}
