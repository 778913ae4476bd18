//! The part of the NixOS test driver's `Machine` API that is lab logic, for vm-tests/hosts_driver.py
//! (the VM test scripts run on the hosts lab): a host crashes (power failure: every process of the
//! host killed, its link down) and boots again (firewall reloaded as at boot, link up, WireGuard,
//! then its services), its cable is unplugged and plugged back (`block`/`unblock`), and the state of
//! a systemd unit is mapped to what the lab runs for it. A unit the lab does not have is an error
//! naming the units it has: a script waiting for it fails instead of passing.
//!
//! Commands run as the VM's root shell would run them: inside the host, with a clean environment
//! (no BAO_ADDR or token from the lab), PATH holding what the VM test's NixOS configuration puts on
//! the machine (`bao` and `vaultnix` on servers only).

use super::{process, wg_spec, HostsLab};
use crate::plan::Role;
use crate::spec::OverlayKind;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A unit's `ActiveState`, as `systemctl show --property=ActiveState` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitState {
    Active,
    Failed,
}

impl UnitState {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Active => "active",
            UnitState::Failed => "failed",
        }
    }
}

/// What stands behind a unit name on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unit {
    Server,
    Haproxy,
    Wireguard,
    /// `prometheus-node-exporter.service`.
    NodeExporter,
    /// `vaultnix-backup.timer` (timer.rs).
    BackupTimer,
}

pub(super) const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl HostsLab {
    pub(super) fn crashed_marker(&self, host: &str) -> PathBuf {
        self.host_dir(host).join("crashed")
    }

    /// Whether `host` was crashed and not started again.
    pub fn is_crashed(&self, host: &str) -> bool {
        self.crashed_marker(host).exists()
    }

    fn wireguard_host(&self, host: &str) -> Result<bool> {
        Ok(self.plan.overlay.kind == OverlayKind::Wireguard && self.host(host)?.machine.is_some())
    }

    /// The systemd units of `host` the lab runs, by their NixOS names.
    fn units(&self, host: &str) -> Result<Vec<(String, Unit)>> {
        let h = self.host(host)?;
        let mut v = Vec::new();
        if self.spare(host).is_some() {
            // spare.rs: a server, and nothing else of ours.
            v.push((format!("{}.service", self.unit_name()), Unit::Server));
            return Ok(v);
        }
        if self.wireguard_host(host)? {
            // networking.wireguard (scripted): one oneshot unit per interface.
            v.push((format!("wireguard-{}.service", self.plan.overlay.interface), Unit::Wireguard));
        }
        match h.machine.as_ref().map(|m| m.role) {
            Some(Role::Server) => {
                v.push((format!("{}.service", self.unit_name()), Unit::Server));
                if super::timer::node_exporter_spec(self, host).is_some() {
                    v.push(("prometheus-node-exporter.service".into(), Unit::NodeExporter));
                }
                if self.has_backup_timer(host) {
                    v.push((format!("{}.timer", super::timer::UNIT), Unit::BackupTimer));
                }
            }
            Some(Role::Lb) => v.push(("haproxy.service".into(), Unit::Haproxy)),
            None => {}
        }
        Ok(v)
    }

    /// The state of systemd unit `unit` on `host`: active while the lab's process for it runs, failed
    /// when it is gone. Errors for a unit the lab does not run on that host, and on a crashed host.
    pub fn unit_state(&self, host: &str, unit: &str) -> Result<UnitState> {
        let units = self.units(host)?;
        let Some((_, kind)) = units.iter().find(|(n, _)| n == unit) else {
            let have = units.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>();
            bail!(
                "host {host} of the hosts lab has no unit {unit:?} (it runs: {})",
                if have.is_empty() { "no units".to_string() } else { have.join(", ") }
            );
        };
        if self.is_crashed(host) {
            bail!("host {host} is down (crashed): start it first");
        }
        let running = match kind {
            Unit::Server => process::running(&self.dir, &self.bao_spec(host)).is_some(),
            Unit::Haproxy => process::running(&self.dir, &self.haproxy_spec()).is_some(),
            Unit::Wireguard => {
                let iface = &self.plan.overlay.interface;
                process::running(&self.dir, &wg_spec(&self.dir, host, iface)?).is_some()
                    && self.output(host, "wg", &["show", iface, "private-key"], None)?.status.success()
            }
            Unit::NodeExporter | Unit::BackupTimer => {
                self.unit_spec(host, kind)?.is_some_and(|s| process::running(&self.dir, &s).is_some())
            }
        };
        Ok(if running { UnitState::Active } else { UnitState::Failed })
    }

    /// The process behind a unit.
    fn unit_spec(&self, host: &str, unit: &Unit) -> Result<Option<process::ProcSpec>> {
        Ok(match unit {
            Unit::Server => Some(self.bao_spec(host)),
            Unit::Haproxy => Some(self.haproxy_spec()),
            Unit::Wireguard => Some(wg_spec(&self.dir, host, &self.plan.overlay.interface)?),
            Unit::NodeExporter => super::timer::node_exporter_spec(self, host),
            Unit::BackupTimer => self.backup_timer_spec(host),
        })
    }

    /// The host's service processes (not its anchor: the "disk" and namespaces stay), and its
    /// drain agent.
    fn service_specs(&self, host: &str) -> Result<Vec<process::ProcSpec>> {
        let mut v = Vec::new();
        for (_, u) in self.units(host)? {
            v.extend(self.unit_spec(host, &u)?);
        }
        v.extend(self.agent_spec(host));
        Ok(v)
    }

    /// `Machine.crash()`: a power failure. Every service process of the host is killed (SIGKILL) and
    /// its link goes down, so the others see silence, not refused connections. Data stays.
    pub fn crash(&self, host: &str) -> Result<()> {
        self.anchor(host)?;
        std::fs::write(self.crashed_marker(host), b"")?;
        for s in self.service_specs(host)? {
            process::stop(&self.dir, &s, libc::SIGKILL, Duration::from_secs(10))?;
        }
        if self.spare(host).is_some() {
            return Ok(()); // no link to take down
        }
        self.isolate(host)
    }

    /// `Machine.start()`: boots a crashed host again as NixOS would: the firewall is loaded afresh
    /// (rules added at run time are gone), the link comes up, WireGuard is configured, the services
    /// start. A host that is up is left alone (the real driver's `start` returns when booted).
    pub fn boot(&self, host: &str) -> Result<()> {
        if !self.is_crashed(host) {
            return Ok(());
        }
        let h = self.host(host)?.clone();
        if self.spare(host).is_none() {
            self.run(host, "nft", &["flush", "ruleset"], None)?;
            self.load_firewall(&h)?;
            self.unisolate(host)?;
        }
        if self.wireguard_host(host)? {
            // A killed wireguard-go leaves its UAPI socket behind; the new one must not find it.
            let anchor = self.anchor(host)?;
            let sock = format!("/proc/{anchor}/root/run/wireguard/{}.sock", self.plan.overlay.interface);
            let _ = std::fs::remove_file(sock);
            self.start_wireguard(&h)?;
        }
        // The drain agent before the server (the server unit is ordered after it).
        if let Some(a) = self.agent_spec(host) {
            self.start_proc(&a, host)?;
        }
        for (_, u) in self.units(host)? {
            if u == Unit::Wireguard {
                continue;
            }
            if u == Unit::Haproxy {
                // Its ExecStartPre first (terminate mode: the certificate, /run being fresh at boot).
                self.start_haproxy()?;
            } else if let Some(s) = self.unit_spec(host, &u)? {
                self.start_proc(&s, host)?;
            }
        }
        std::fs::remove_file(self.crashed_marker(host))?;
        Ok(())
    }

    /// `Machine.block()`: the machine's cable to the other machines is unplugged (its link goes down).
    pub fn block(&self, host: &str) -> Result<()> {
        self.isolate(host)
    }

    /// `Machine.unblock()`.
    pub fn unblock(&self, host: &str) -> Result<()> {
        self.unisolate(host)
    }

    /// A command as the VM's root shell runs it on `host`: inside the host, clean environment.
    pub fn machine_command(&self, host: &str, program: &str) -> Result<Command> {
        let h = self.host(host)?;
        let anchor = self.anchor(host)?;
        let mut path: Vec<String> = Vec::new();
        let server = matches!(h.machine.as_ref().map(|m| m.role), Some(Role::Server));
        if server || self.spare(host).is_some() {
            // vm-tests/common.nix: services.openbao puts bao on servers, common.server adds vaultnix
            // (a spare has only services.openbao).
            let vaultnix = if server { std::env::current_exe().ok() } else { None };
            for p in [Some(self.state.bao.clone()), vaultnix].into_iter().flatten() {
                if let Some(d) = p.parent() {
                    path.push(d.display().to_string());
                }
            }
        }
        path.push(SYSTEM_PATH.into());
        let mut cmd = Command::new(program);
        cmd.env_clear().env("PATH", path.join(":")).env("HOME", "/root").env("LANG", "C.UTF-8");
        super::enter::join(&mut cmd, anchor, Path::new("/"), false)?;
        Ok(cmd)
    }
}

impl HostsLab {
    /// Processes inside the lab's network namespaces that no pid file names (a script's background
    /// job, e.g. `nc -lk … &`): `down` kills them, so nothing the lab ran outlives it.
    pub fn namespace_processes(&self) -> Vec<u32> {
        use std::os::unix::fs::MetadataExt;
        let ours: Vec<(u64, u64)> = self
            .state
            .netns
            .iter()
            .filter_map(|n| std::fs::metadata(Path::new("/run/netns").join(n)).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect();
        let me = std::process::id();
        let mut v = Vec::new();
        let Ok(rd) = std::fs::read_dir("/proc") else { return v };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if pid == me {
                continue;
            }
            if let Ok(m) = std::fs::metadata(e.path().join("ns/net")) {
                if ours.contains(&(m.dev(), m.ino())) {
                    v.push(pid);
                }
            }
        }
        v
    }

    /// SIGKILL to every process `namespace_processes` finds (by pid, only inside this lab).
    pub fn kill_namespace_processes(&self) {
        for pid in self.namespace_processes() {
            // SAFETY: kill(2) on a pid inside one of this lab's namespaces.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}
