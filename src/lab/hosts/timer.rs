//! What systemd does for a server's backup on NixOS, in a hosts lab: `vaultnix-backup.timer` fires
//! `vaultnix-backup.service` (modules/backup.nix), a oneshot that runs `vaultnix backup run --config
//! /etc/vaultnix/backup.json` with the unit's credentials loaded (`LoadCredential=backup-token:…`,
//! plus restic's when the spec copies off-host) and `UMask=0077`. The job is the `vaultnix` binary
//! with the generated backup.json, byte for byte; only the scheduling and the credential loading are
//! done here, by a small process of the host (`vaultnix lab backup-timer`, hidden).
//!
//! The schedule: the spec's `OnCalendar` shorthand as a period (`minutely` = every 60 s, `hourly`,
//! `daily`, …; a full calendar expression counts as daily), or what `lab up --hosts --backup-timer
//! NODE=SECS` set (vm-tests/cluster.nix forces node1's to `minutely`). Like systemd's monotonic
//! timers the first run comes one period after the host booted.

use super::{process::ProcSpec, HostsLab};
use crate::render::{paths, Layout};
use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const UNIT: &str = "vaultnix-backup";
/// Where modules/backup.nix puts the job's configuration (`environment.etc."vaultnix/backup.json"`).
pub const ETC_CONFIG: &str = "/etc/vaultnix/backup.json";
/// A run longer than this is killed (the unit has no TimeoutStartSec; the job bounds itself by the
/// config's `timeout_seconds`, this is the lab's own bound).
const RUN_BOUND: Duration = Duration::from_secs(1800);
/// The timer process ends after this many firings (every loop of the lab is bounded).
const MAX_FIRINGS: u64 = 100_000;

/// The period of a systemd `OnCalendar=` shorthand; anything else is treated as daily.
pub fn period_of(calendar: &str) -> Duration {
    let day = 86_400;
    Duration::from_secs(match calendar.trim() {
        "minutely" => 60,
        "hourly" => 3_600,
        "weekly" => 7 * day,
        "monthly" => 30 * day,
        "quarterly" => 91 * day,
        "semiannually" => 182 * day,
        "yearly" | "annually" => 365 * day,
        _ => day,
    })
}

/// Parses `NODE=SECONDS` or `NODE=<OnCalendar shorthand>` (`lab up --hosts --backup-timer`).
pub fn parse_override(s: &str) -> Result<(String, u64)> {
    let usage = "expected NODE=SECONDS (> 0) or NODE=minutely|hourly|daily|…, e.g. node1=60";
    let (node, when) = s.split_once('=').context(usage)?;
    let (node, when) = (node.trim(), when.trim());
    let secs = match when.parse::<u64>() {
        Ok(n) => n,
        Err(_) if crate::spec::calendar::SHORTHANDS.contains(&when) => period_of(when).as_secs(),
        Err(_) => bail!("{when:?} is neither a number of seconds nor an OnCalendar shorthand; {usage}"),
    };
    if secs == 0 || node.is_empty() {
        bail!("{usage}");
    }
    Ok((node.to_string(), secs))
}

/// Where a backup destination lives inside a host: under /var/backups or /var/lib, the two trees the
/// host's mount namespace overlays (anything written elsewhere would land on the real machine).
pub fn destination_tree(dest: &str) -> Option<(&'static str, String)> {
    for tree in ["/var/backups", "/var/lib"] {
        if let Some(rel) = dest.strip_prefix(tree).and_then(|r| r.strip_prefix('/')) {
            let rel = rel.trim_end_matches('/');
            if !rel.is_empty() && !rel.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
                return Some((tree, rel.to_string()));
            }
        }
    }
    None
}

impl HostsLab {
    /// Whether `node`'s host runs the backup timer: backups on, its backup.json generated, and a
    /// destination inside the host's overlaid trees.
    pub fn has_backup_timer(&self, node: &str) -> bool {
        self.plan.backup.enabled
            && self.plan.node(node).is_some()
            && self.dir.join(paths::backup_json(node)).exists()
            && destination_tree(&self.plan.backup.destination).is_some()
            && self.state.vaultnix.is_some()
    }

    /// The period of `node`'s timer.
    pub fn backup_period(&self, node: &str) -> Duration {
        match self.state.backup_every.get(node) {
            Some(s) => Duration::from_secs(*s),
            None => period_of(&self.plan.backup.schedule),
        }
    }

    pub fn backup_timer_spec(&self, node: &str) -> Option<ProcSpec> {
        let bin = self.state.vaultnix.clone()?;
        if !self.has_backup_timer(node) {
            return None;
        }
        let dir = self.dir.display().to_string();
        Some(ProcSpec {
            name: format!("{node}.backup-timer"),
            program: bin,
            args: vec!["lab".into(), "backup-timer".into(), format!("--dir={dir}"), node.into()],
            marker: format!("--dir={dir}"),
        })
    }

    /// `(credential name, source file on the host)` for the backup unit, as modules/backup.nix's
    /// LoadCredential lists them.
    fn backup_credentials(&self) -> Vec<(String, PathBuf)> {
        let mut v =
            vec![("backup-token".to_string(), PathBuf::from(format!("{}/backup-token", self.plan.secrets_dir)))];
        if let Some(r) = &self.plan.backup.restic {
            v.push((crate::render::backup::RESTIC_PASSWORD.into(), PathBuf::from(&r.password_file)));
            if let Some(e) = &r.environment_file {
                v.push((crate::render::backup::RESTIC_ENV.into(), PathBuf::from(e)));
            }
        }
        v
    }
}

/// The body of `vaultnix lab backup-timer --dir D NODE`, run inside the node's host: every period,
/// one run of the unit. Each run is logged (to the process's log file) with its outcome.
pub fn run(dir: &Path, node: &str) -> Result<()> {
    let lab = HostsLab::open(dir)?;
    if !lab.has_backup_timer(node) {
        bail!("{node} of the hosts lab in {} runs no backup timer", dir.display());
    }
    let bin = lab.state.vaultnix.clone().context("no vaultnix binary recorded")?;
    let period = lab.backup_period(node);
    let creds = lab.backup_credentials();
    let cred_dir = PathBuf::from(format!("/run/credentials/{UNIT}.service"));
    eprintln!("{UNIT}.timer on {node}: every {} s", period.as_secs());
    let mut next = Instant::now() + period;
    for n in 1..=MAX_FIRINGS {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += period;
        let t0 = Instant::now();
        match run_once(&bin, &creds, &cred_dir) {
            Ok(status) => eprintln!(
                "{UNIT}.service run {n}: {} after {:.1} s",
                if status.success() { "succeeded".to_string() } else { format!("failed ({status})") },
                t0.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("{UNIT}.service run {n}: failed: {e:#}"),
        }
        // A run longer than the period skips the firings it overlapped, as systemd does.
        while next < Instant::now() {
            next += period;
        }
    }
    Ok(())
}

/// One run of the oneshot: load the credentials (a missing source fails the unit before it starts,
/// as systemd does), run the job with UMask=0077 and a clean environment, drop the credentials.
fn run_once(bin: &Path, creds: &[(String, PathBuf)], cred_dir: &Path) -> Result<std::process::ExitStatus> {
    let _ = std::fs::remove_dir_all(cred_dir);
    std::fs::create_dir_all(cred_dir)?;
    std::fs::set_permissions(cred_dir, std::fs::Permissions::from_mode(0o700))?;
    let result = (|| {
        for (name, src) in creds {
            let b = std::fs::read(src).with_context(|| format!("LoadCredential={name}:{}", src.display()))?;
            crate::output::write_file_atomic(&cred_dir.join(name), &b, true)?;
            std::fs::set_permissions(cred_dir.join(name), std::fs::Permissions::from_mode(0o400))?;
        }
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["backup", "run", "--config", ETC_CONFIG])
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CREDENTIALS_DIRECTORY", cred_dir)
            .stdin(std::process::Stdio::null());
        // SAFETY: umask(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0o077);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(st);
            }
            if t0.elapsed() > RUN_BOUND {
                let _ = child.kill();
                let st = child.wait()?;
                bail!("killed after {} s ({st})", RUN_BOUND.as_secs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })();
    let _ = std::fs::remove_dir_all(cred_dir);
    result
}

/// The node exporter of a server host (modules/monitoring.nix: `services.prometheus.exporters.node`
/// on 127.0.0.1:<port> with the textfile collector on the backup's textfile directory). The
/// `systemd` collector NixOS also enables is left out: the hosts have no systemd.
pub fn node_exporter_spec(lab: &HostsLab, node: &str) -> Option<ProcSpec> {
    if !lab.plan.monitoring.enabled || lab.plan.node(node).is_none() {
        return None;
    }
    let program = find_node_exporter()?;
    let textfile = format!("--collector.textfile.directory={}", Layout::NixOs.textfile_dir());
    Some(ProcSpec {
        name: format!("{node}.node-exporter"),
        program,
        args: vec![
            format!("--web.listen-address=127.0.0.1:{}", NODE_EXPORTER_PORT),
            textfile.clone(),
            "--collector.textfile".into(),
        ],
        marker: textfile,
    })
}

/// The node exporter binary (Debian's `prometheus-node-exporter`, or upstream's `node_exporter`).
pub fn find_node_exporter() -> Option<PathBuf> {
    crate::lab::which("prometheus-node-exporter")
        .or_else(|| crate::lab::which("node_exporter"))
        .or_else(|| Some(PathBuf::from("/usr/bin/prometheus-node-exporter")).filter(|p| p.is_file()))
}

/// modules/monitoring.nix `nodeExporterPort`'s default.
pub const NODE_EXPORTER_PORT: u16 = 9100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_map_to_their_period_and_overrides_parse() {
        assert_eq!(period_of("minutely"), Duration::from_secs(60));
        assert_eq!(period_of("daily"), Duration::from_secs(86_400));
        assert_eq!(period_of("*-*-* 03:00:00"), Duration::from_secs(86_400));
        assert_eq!(parse_override("node1=60").unwrap(), ("node1".to_string(), 60));
        assert_eq!(parse_override("node1=minutely").unwrap(), ("node1".to_string(), 60));
        assert!(parse_override("node1=*-*-* 03:00").is_err());
        assert!(parse_override("node1").is_err());
        assert!(parse_override("node1=0").is_err());
        assert!(parse_override("node1=abc").is_err());
    }

    #[test]
    fn only_destinations_inside_the_overlaid_trees_are_used() {
        assert_eq!(destination_tree("/var/backups/vaultnix"), Some(("/var/backups", "vaultnix".into())));
        assert_eq!(destination_tree("/var/lib/vaultnix/snaps/"), Some(("/var/lib", "vaultnix/snaps".into())));
        assert_eq!(destination_tree("/srv/backups"), None);
        assert_eq!(destination_tree("/var/backups"), None);
        assert_eq!(destination_tree("/var/backups/../etc"), None);
        assert_eq!(destination_tree("/var/backupsx/a"), None);
    }
}
