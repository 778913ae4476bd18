//! `vaultnix lab up|down|status|env`: a real cluster on loopback.

use super::{CliError, CliResult, Shell};
use crate::lab::{Lab, LabOptions};
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vaultnix lab up --spec tests/specs/lab.toml\n  eval \"$(vaultnix lab env)\"; bao kv get secret/hello\n  vaultnix lab status\n  vaultnix lab down --purge\n  sudo vaultnix lab up --hosts --dir /tmp/hl --wan rtt=80ms,jitter=10ms,loss=1%\n  sudo vaultnix lab wan --dir /tmp/hl rtt=30ms    # or `off`"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// The cluster spec (default: the one the lab was created from, else the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The lab directory.
    #[arg(short, long, default_value = "lab", env = "VAULTNIX_LAB_DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Generate, start the nodes and HAProxy, bootstrap (idempotent).
    Up {
        #[command(flatten)]
        common: Common,
        /// Loopback base address: the LB gets it, node i gets base+1+i (default: a random free 127.X.Y.10).
        #[arg(long)]
        base: Option<Ipv4Addr>,
        /// Start the processes only; do not bootstrap.
        #[arg(long)]
        no_bootstrap: bool,
        /// Also create an admin policy and token (secrets/admin-token).
        #[arg(long)]
        admin_token: bool,
        /// Real network hosts (root): one network namespace per node, the LB and a client, the spec's
        /// own addresses, real WireGuard, the NixOS firewall, the production files byte for byte.
        #[arg(long)]
        hosts: bool,
        /// With --hosts: WAN latency, jitter and loss between sites, e.g. `rtt=80ms,jitter=10ms,loss=1%`;
        /// per site pair: `rtt=80ms;onprem/oracle:rtt=30ms` (`;`-separated `SITE/SITE:profile`).
        #[arg(long, requires = "hosts")]
        wan: Option<String>,
        /// With --hosts: NODE=WHEN, that node's backup timer: an OnCalendar expression (`minutely`,
        /// `*-*-* 03:00`) or a number of seconds (a monotonic period). Default: the spec's schedule.
        /// Repeatable.
        #[arg(long = "backup-timer", value_name = "NODE=WHEN", requires = "hosts")]
        backup_timer: Vec<String>,
        /// With --hosts: NODE=SPAN, that node's backup timer's RandomizedDelaySec (`0`, `600`, `10m`).
        /// Default: the spec's backup.randomized_delay_seconds. Repeatable.
        #[arg(long = "backup-delay", value_name = "NODE=SPAN", requires = "hosts")]
        backup_delay: Vec<String>,
    },
    /// Set the WAN between the sites of a running hosts lab (`rtt=80ms,jitter=10ms,loss=1%`, per site
    /// pair `rtt=80ms;onprem/oracle:rtt=30ms`, or `off`).
    Wan {
        #[command(flatten)]
        common: Common,
        /// The profile: any of rtt=, jitter=, loss= (comma separated), then `;SITE/SITE:profile`
        /// overrides, or `off` to remove the WAN.
        profile: String,
    },
    /// The WAN relay of a hosts lab (started by `lab up --hosts --wan` / `lab wan`; not for direct use).
    #[command(hide = true)]
    WanRelay {
        #[arg(long)]
        dir: PathBuf,
    },
    /// A server host's backup timer in a hosts lab (started by `lab up --hosts`; not for direct use).
    #[command(hide = true)]
    BackupTimer {
        #[arg(long)]
        dir: PathBuf,
        node: String,
    },
    /// Run a command on a host of a hosts lab (BAO_ADDR etc. point at the load balancer).
    Exec {
        #[command(flatten)]
        common: Common,
        /// A node name, the load balancer's name, or "client".
        host: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// For vm-tests/hosts_driver.py (the NixOS VM test scripts on a hosts lab): one machine operation
    /// of the NixOS test driver on a host.
    #[command(hide = true)]
    Machine {
        #[command(flatten)]
        common: Common,
        /// A node name, the load balancer's name, or "client".
        host: String,
        #[command(subcommand)]
        action: MachineAction,
    },
    /// Stop the lab's processes (only those its pid files name). Data is kept unless --purge.
    Down {
        #[command(flatten)]
        common: Common,
        /// Also delete the lab's data, keys and logs.
        #[arg(long)]
        purge: bool,
    },
    /// Show the lab cluster's status (same as `vaultnix status` for the lab).
    Status {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "text")]
        output: super::OutputFormat,
    },
    /// Print shell exports (BAO_ADDR, BAO_CACERT, BAO_TOKEN, VAULT_*) for the lab's load balancer.
    Env {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum MachineAction {
    /// Power failure: every service process killed, the link down.
    Crash,
    /// Boot a crashed host again (firewall, link, WireGuard, services).
    Start,
    /// Unplug the host's cable.
    Block,
    /// Plug it back.
    Unblock,
    /// Print a systemd unit's ActiveState as the lab maps it (an error for a unit the lab lacks).
    Unit { unit: String },
    /// Add HOST as a spare machine (powered off): a server outside the cluster with its own server
    /// JSON, as the VM cluster test's `spare` (vm-tests/hosts_driver.py reads its configuration from
    /// the test's Nix evaluation). `start` boots it.
    AddServer {
        /// The server JSON it runs (its `vaultnix.server.settingsFile`).
        #[arg(long)]
        settings: std::path::PathBuf,
        /// `vaultnix.server.certFile` (at /etc/vaultnix/tls.crt).
        #[arg(long)]
        cert: std::path::PathBuf,
        /// `vaultnix.pki.caCertFile` (at /etc/vaultnix/ca.crt).
        #[arg(long)]
        ca: std::path::PathBuf,
        /// A tmpfiles `L+` link TARGET=SOURCE putting a secret in place (repeatable).
        #[arg(long = "link")]
        links: Vec<String>,
        /// `vaultnix.server.keyFile` (default: <secretsDir>/tls.key).
        #[arg(long)]
        key_file: Option<String>,
        /// `vaultnix.server.sealKeyFile`.
        #[arg(long)]
        seal_key_file: Option<String>,
    },
    /// Run a command as the machine's root shell (clean environment); exits with its status.
    Exec {
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn machine(common: &Common, host: &str, action: MachineAction) -> CliResult {
    let fail = |e: anyhow::Error| CliError::failure(format!("{e:#}"));
    let mut lab = crate::lab::hosts::HostsLab::open(&common.dir).map_err(fail)?;
    match action {
        MachineAction::AddServer { settings, cert, ca, links, key_file, seal_key_file } => {
            let def = crate::lab::hosts::spare::SpareDef { settings, cert, ca, links, key_file, seal_key_file };
            lab.add_spare(host, &def).map_err(fail)
        }
        MachineAction::Crash => lab.crash(host).map_err(fail),
        MachineAction::Start => lab.boot(host).map_err(fail),
        MachineAction::Block => lab.block(host).map_err(fail),
        MachineAction::Unblock => lab.unblock(host).map_err(fail),
        MachineAction::Unit { unit } => {
            println!("{}", lab.unit_state(host, &unit).map_err(fail)?.as_str());
            Ok(())
        }
        MachineAction::Exec { command } => {
            let mut cmd = lab.machine_command(host, &command[0]).map_err(fail)?;
            let st = cmd.args(&command[1..]).status().map_err(|e| CliError::failure(format!("{}: {e}", command[0])))?;
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(0), _) => Ok(()),
                // The command's own status, as the VM shell's `$?` would give it.
                (Some(c), _) => std::process::exit(c),
                (None, Some(s)) => std::process::exit(128 + s),
                _ => std::process::exit(1),
            }
        }
    }
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    match a.command {
        LabCommand::Machine { common, host, action } => machine(&common, &host, action),
        LabCommand::Up { common, hosts: true, no_bootstrap, wan, backup_timer, backup_delay, .. } => {
            let backup_timers = crate::lab::hosts::timer::overrides(&backup_timer, &backup_delay)
                .map_err(|e| CliError::invalid(format!("{e:#}")))?;
            let wan = match wan {
                Some(w) => Some(
                    w.parse::<crate::lab::hosts::wan::WanMap>()
                        .map_err(|e| CliError::invalid(format!("--wan: {e:#}")))?,
                ),
                None => None,
            };
            let r = crate::lab::hosts::HostsLab::up_with(
                &common.dir,
                crate::lab::hosts::UpOptions {
                    spec: common.spec.clone(),
                    progress: !shell.quiet,
                    bootstrap: !no_bootstrap,
                    wan,
                    backup_timers,
                },
            );
            let lab = match r {
                Ok(l) => l,
                Err(e) => {
                    // Never leave half a lab: remove exactly what the state file records.
                    if let Ok(l) = crate::lab::hosts::HostsLab::open(&common.dir) {
                        if let Err(d) = l.down(false) {
                            shell.status(format!("cleanup after the failure also failed: {d:#}"));
                        }
                    }
                    return Err(CliError::failure(format!("{e:#}")));
                }
            };
            for h in &lab.hosts {
                shell.status(format!("host {} {} (netns {})", h.name, h.addr, lab.netns(&h.name)));
            }
            for c in &lab.state.checks {
                shell.status(format!("{} runs {} = {} (sha256 {})", c.host, c.path, c.generated, &c.sha256[..16]));
            }
            if no_bootstrap {
                shell.status("processes running, cluster not initialized (--no-bootstrap)");
            } else {
                shell.status(format!(
                    "ready; next: vaultnix lab exec --dir {} client -- bao status",
                    common.dir.display()
                ));
            }
            Ok(())
        }
        LabCommand::Exec { common, host, command } => {
            let lab =
                crate::lab::hosts::HostsLab::open(&common.dir).map_err(|e| CliError::failure(format!("{e:#}")))?;
            let mut cmd = lab.command(&host, &command[0]).map_err(|e| CliError::failure(format!("{e:#}")))?;
            let st = cmd.args(&command[1..]).status().map_err(|e| CliError::failure(format!("{}: {e}", command[0])))?;
            if st.success() {
                Ok(())
            } else {
                Err(CliError::failure(format!("{} exited with {st}", command[0])))
            }
        }
        LabCommand::Wan { common, profile } => {
            let p =
                profile.parse::<crate::lab::hosts::wan::WanMap>().map_err(|e| CliError::invalid(format!("{e:#}")))?;
            let lab =
                crate::lab::hosts::HostsLab::open(&common.dir).map_err(|e| CliError::failure(format!("{e:#}")))?;
            if profile.trim() == "off" {
                lab.clear_wan().map_err(|e| CliError::failure(format!("{e:#}")))?;
                shell.status("WAN removed (rules and relay)");
            } else {
                lab.set_wan_map(&p).map_err(|e| CliError::failure(format!("{e:#}")))?;
                shell.status(format!("WAN between sites: {p} ({} cross-site paths)", lab.wan_pairs().len()));
            }
            Ok(())
        }
        LabCommand::BackupTimer { dir, node } => {
            crate::lab::hosts::timer::run(&dir, &node).map_err(|e| CliError::failure(format!("{e:#}")))?;
            Ok(())
        }
        LabCommand::WanRelay { dir } => {
            crate::lab::hosts::wan::run_relay(&dir).map_err(|e| CliError::failure(format!("{e:#}")))?;
            Ok(())
        }
        LabCommand::Up { common, base, no_bootstrap, admin_token, hosts: false, .. } => {
            let mut o = LabOptions::new(common.spec.clone(), &common.dir);
            o.base = base;
            o.bootstrap = !no_bootstrap;
            o.admin_token = admin_token;
            o.progress = !shell.quiet;
            let (lab, rep) = super::status::runtime()?.block_on(Lab::up(&o))?;
            shell.status(format!(
                "lab {:?} in {}: load balancer https://{}:{} ({}), nodes {}",
                lab.plan.name,
                lab.dir.display(),
                lab.plan.lb.hostname,
                lab.plan.lb.port,
                lab.plan.lb.bind,
                lab.plan.nodes.iter().map(|n| format!("{} {}", n.name, n.ip)).collect::<Vec<_>>().join(", ")
            ));
            if !rep.started.is_empty() {
                shell.status(format!("started: {}", rep.started.join(", ")));
            }
            if let Some(b) = &rep.bootstrap {
                super::bootstrap::print_report(shell, b);
            }
            shell.status(format!("next: eval \"$(vaultnix lab env --dir {})\"", common.dir.display()));
            Ok(())
        }
        LabCommand::Down { common, purge } if crate::lab::hosts::read_state(&common.dir).ok().flatten().is_some() => {
            let lab =
                crate::lab::hosts::HostsLab::open(&common.dir).map_err(|e| CliError::failure(format!("{e:#}")))?;
            let stopped = lab.down(purge).map_err(|e| CliError::failure(format!("{e:#}")))?;
            shell.status(format!("stopped: {}; namespaces removed", stopped.join(", ")));
            Ok(())
        }
        LabCommand::Down { common, purge } => {
            let lab = Lab::open(&common.dir, common.spec.as_deref())?;
            let stopped = lab.down(purge)?;
            if stopped.is_empty() {
                shell.status("nothing was running");
            } else {
                shell.status(format!("stopped: {}", stopped.join(", ")));
            }
            if purge {
                shell.status(format!("purged {}", lab.dir.display()));
            } else {
                shell.status(format!("data kept in {} (`vaultnix lab up` resumes it)", lab.dir.display()));
            }
            Ok(())
        }
        LabCommand::Status { common, output }
            if crate::lab::hosts::read_state(&common.dir).ok().flatten().is_some() =>
        {
            let lab =
                crate::lab::hosts::HostsLab::open(&common.dir).map_err(|e| CliError::failure(format!("{e:#}")))?;
            if output == super::OutputFormat::Text {
                for h in &lab.hosts {
                    let up = if lab.anchor(&h.name).is_ok() { "up" } else { "DOWN" };
                    println!(
                        "host {:<10} {:<15} site {:<12} netns {} {up}",
                        h.name,
                        h.addr,
                        lab.site(&h.name),
                        lab.netns(&h.name)
                    );
                }
                match crate::lab::hosts::wan::read_map(&lab.dir).map_err(CliError::from)? {
                    Some(p) => println!("WAN between sites: {p} ({} cross-site paths)", lab.wan_rules().len()),
                    None => println!("WAN between sites: none"),
                }
            }
            // The cluster is reached from the LB host, as the bootstrap does.
            let ns = lab.netns(&lab.plan.lb.name);
            crate::lab::hosts::enter::in_netns(&ns, || super::status::show(shell, &lab.plan, &lab.dir, output))
                .map_err(|e| CliError::failure(format!("{e:#}")))?
        }
        LabCommand::Env { common } if crate::lab::hosts::read_state(&common.dir).ok().flatten().is_some() => {
            let lab =
                crate::lab::hosts::HostsLab::open(&common.dir).map_err(|e| CliError::failure(format!("{e:#}")))?;
            for (k, v) in lab.env_vars() {
                println!("export {k}={}", crate::lab::shell_quote(&v));
            }
            println!(
                "# the addresses live in the lab's network: run clients on a host, e.g. `vaultnix lab exec --dir {} client -- bao status`, or `ip netns exec {} bao status`",
                common.dir.display(),
                lab.netns(crate::lab::hosts::CLIENT)
            );
            Ok(())
        }
        LabCommand::Status { common, output } => {
            let lab = Lab::open(&common.dir, common.spec.as_deref())?;
            super::status::show(shell, &lab.plan, &lab.dir, output)
        }
        LabCommand::Env { common } => {
            let lab =
                Lab::open(&common.dir, common.spec.as_deref()).map_err(|e| CliError::failure(format!("{e:#}")))?;
            print!("{}", lab.env()?);
            Ok(())
        }
    }
}
