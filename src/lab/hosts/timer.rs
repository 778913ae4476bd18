//! What systemd does for a server's backup on NixOS, in a hosts lab: `vaultnix-backup.timer` fires
//! `vaultnix-backup.service` (modules/backup.nix), a oneshot that runs `vaultnix backup run --config
//! /etc/vaultnix/backup.json` with the unit's credentials loaded (`LoadCredential=backup-token:…`,
//! plus restic's when the spec copies off-host) and `UMask=0077`. The job is the `vaultnix` binary
//! with the generated backup.json, byte for byte; only the scheduling and the credential loading are
//! done here, by a small process of the host (`vaultnix lab backup-timer`, hidden).
//!
//! The schedule is the unit's, as systemd runs it (modules/backup.nix: `OnCalendar=` the spec's
//! `backup.schedule`, `Persistent=true`, `RandomizedDelaySec=` its `randomized_delay_seconds`):
//! - each elapse is the calendar event's next one after the last trigger ([`next_elapse`], the same
//!   arithmetic as systemd's timer_enter_waiting), plus a random delay below `RandomizedDelaySec`;
//! - `Persistent=`: the last trigger is the mtime of `/var/lib/systemd/timers/stamp-vaultnix-backup.timer`
//!   on the host's own disk, touched at every trigger. A host that was down over an elapse runs the
//!   job at boot (plus the random delay, as systemd does); without a stamp (first boot) the first run
//!   is the next elapse after boot and the stamp is created.
//!
//! `lab up --hosts --backup-timer NODE=WHEN` replaces the schedule (any calendar expression, or a
//! number of seconds: a monotonic period, first run one period after boot, no stamp) and
//! `--backup-delay NODE=SPAN` the random delay: vm-tests/cluster.nix sets node1's to `minutely` and
//! `0`, and hosts_driver.py passes what the test's NixOS configuration sets.

use super::{process::ProcSpec, HostsLab};
use crate::render::{paths, Layout};
use crate::spec::calendar::{self, Event};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const UNIT: &str = "vaultnix-backup";
/// Where modules/backup.nix puts the job's configuration (`environment.etc."vaultnix/backup.json"`).
pub const ETC_CONFIG: &str = "/etc/vaultnix/backup.json";
/// A run longer than this is killed (the unit has no TimeoutStartSec; the job bounds itself by the
/// config's `timeout_seconds`, this is the lab's own bound).
const RUN_BOUND: Duration = Duration::from_secs(1800);
/// The timer process ends after this many firings (every loop of the lab is bounded).
const MAX_FIRINGS: u64 = 100_000;

/// Where systemd keeps the timer's `Persistent=` stamp (its mtime is the last trigger).
pub const STAMP: &str = "/var/lib/systemd/timers/stamp-vaultnix-backup.timer";

/// What `--backup-timer` / `--backup-delay` set for one node's timer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerOverride {
    /// An `OnCalendar=` expression, or a whole number of seconds (a monotonic period).
    #[serde(default)]
    pub schedule: Option<String>,
    /// `RandomizedDelaySec=`, seconds.
    #[serde(default)]
    pub delay: Option<u64>,
}

/// When a timer elapses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// `OnCalendar=` (with `Persistent=true`, as modules/backup.nix sets it).
    Calendar(String, Event),
    /// A monotonic period: first one period after boot, then one period after each trigger.
    Every(u64),
}

impl When {
    /// A calendar expression (checked as systemd checks it) or a whole number of seconds > 0.
    pub fn parse(s: &str) -> Result<When> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u64>() {
            if n == 0 {
                bail!("a period of 0 seconds");
            }
            return Ok(When::Every(n));
        }
        match calendar::parse(s) {
            Ok(e) => Ok(When::Calendar(s.to_string(), e)),
            Err(why) => match calendar::suggestion(s) {
                Some(k) => {
                    bail!("{s:?} is neither a number of seconds nor a systemd calendar event (did you mean {k:?}?)")
                }
                None => bail!("{s:?} is neither a number of seconds nor a systemd calendar event: {why}"),
            },
        }
    }
}

/// Parses `NODE=VALUE` (`--backup-timer`, `--backup-delay`).
pub fn parse_assignment(s: &str) -> Result<(String, String)> {
    let (node, v) = s.split_once('=').context("expected NODE=VALUE, e.g. node1=minutely")?;
    let (node, v) = (node.trim(), v.trim());
    if node.is_empty() || v.is_empty() {
        bail!("expected NODE=VALUE, e.g. node1=minutely");
    }
    Ok((node.to_string(), v.to_string()))
}

/// The overrides of `--backup-timer NODE=WHEN` and `--backup-delay NODE=SPAN` (each checked).
pub fn overrides(timers: &[String], delays: &[String]) -> Result<BTreeMap<String, TimerOverride>> {
    let mut m: BTreeMap<String, TimerOverride> = BTreeMap::new();
    for t in timers {
        let (n, v) = parse_assignment(t).with_context(|| format!("--backup-timer {t}"))?;
        When::parse(&v).with_context(|| format!("--backup-timer {t}"))?;
        m.entry(n).or_default().schedule = Some(v);
    }
    for d in delays {
        let (n, v) = parse_assignment(d).with_context(|| format!("--backup-delay {d}"))?;
        let secs = calendar::parse_timespan(&v).map_err(|e| anyhow::anyhow!("--backup-delay {d}: {e}"))?;
        m.entry(n).or_default().delay = Some(secs);
    }
    Ok(m)
}

/// The next elapse (Unix seconds) of an `OnCalendar=` timer, as systemd's timer_enter_waiting computes
/// it: the event's first elapse after the last trigger (with `Persistent=`, the stamp's; else, or on
/// a first boot, after `now`), moved up to `boot` when it is earlier (the run a down host missed
/// comes at boot), plus `random` (a draw below `RandomizedDelaySec`). A time in the past elapses at
/// once.
pub fn next_elapse(event: &Event, last_trigger: Option<i64>, now: i64, boot: i64, random: u64) -> Option<i64> {
    let next = event.next_after(last_trigger.unwrap_or(now))?.max(boot);
    Some(next.saturating_add(i64::try_from(random).unwrap_or(i64::MAX)))
}

/// The last trigger a `Persistent=` timer starts from: the stamp's mtime when it is in the past (systemd
/// ignores one in the future: the clock is wrong); none without a stamp.
pub fn last_trigger(stamp_mtime: Option<i64>, now: i64) -> Option<i64> {
    stamp_mtime.filter(|&t| t < now)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn stamp_mtime(p: &Path) -> Option<i64> {
    let m = std::fs::metadata(p).ok()?.modified().ok()?;
    Some(m.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Sets the stamp's mtime to `at` (creating it and its directory, as systemd's touch_file does).
fn touch_stamp(p: &Path, at: i64) -> Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    let f = std::fs::OpenOptions::new().create(true).append(true).open(p)?;
    f.set_modified(UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0)))?;
    Ok(())
}

/// A draw in `0..delay` seconds (systemd: random_u64() % RandomizedDelaySec).
fn random_delay(delay: u64) -> u64 {
    if delay == 0 {
        return 0;
    }
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b) % delay
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t).map_or_else(|_| t.to_string(), crate::ops::snapshot::rfc3339)
}

/// Sleeps until the wall clock reaches `t` (Unix seconds), in steps of at most 5 s, so that a clock
/// that jumps is followed as systemd's CLOCK_REALTIME timers follow it.
fn sleep_until(t: i64) {
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let target = Duration::from_secs(u64::try_from(t).unwrap_or(0));
        if now >= target {
            return;
        }
        std::thread::sleep((target - now).min(Duration::from_secs(5)));
    }
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

    /// When `node`'s timer elapses: `--backup-timer`'s, else the spec's schedule.
    pub fn backup_when(&self, node: &str) -> Result<When> {
        let o = self.state.backup_timers.get(node).and_then(|o| o.schedule.as_deref());
        When::parse(o.unwrap_or(&self.plan.backup.schedule))
    }

    /// `node`'s timer's `RandomizedDelaySec=` in seconds: `--backup-delay`'s, else the spec's.
    pub fn backup_delay(&self, node: &str) -> u64 {
        self.state
            .backup_timers
            .get(node)
            .and_then(|o| o.delay)
            .unwrap_or(u64::from(self.plan.backup.randomized_delay_seconds))
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

/// The body of `vaultnix lab backup-timer --dir D NODE`, run inside the node's host: the timer unit,
/// one run of the service at each elapse. Each elapse and run is logged (to the process's log file).
pub fn run(dir: &Path, node: &str) -> Result<()> {
    let lab = HostsLab::open(dir)?;
    if !lab.has_backup_timer(node) {
        bail!("{node} of the hosts lab in {} runs no backup timer", dir.display());
    }
    let bin = lab.state.vaultnix.clone().context("no vaultnix binary recorded")?;
    let when = lab.backup_when(node)?;
    let delay = lab.backup_delay(node);
    let creds = lab.backup_credentials();
    let cred_dir = PathBuf::from(format!("/run/credentials/{UNIT}.service"));
    let stamp = Path::new(STAMP);
    let boot = unix_now();
    // The last trigger: the stamp's (Persistent=true), or none, and then the stamp is created.
    let mut last = match &when {
        When::Calendar(..) => {
            let m = stamp_mtime(stamp);
            if m.is_none() {
                touch_stamp(stamp, boot)?;
            }
            last_trigger(m, boot)
        }
        When::Every(_) => None,
    };
    match &when {
        When::Calendar(expr, _) => eprintln!(
            "{UNIT}.timer on {node}: OnCalendar={expr} Persistent=true RandomizedDelaySec={delay}s; last trigger: {}",
            last.map_or("none (no stamp)".to_string(), rfc3339)
        ),
        When::Every(p) => eprintln!("{UNIT}.timer on {node}: every {p} s (monotonic), RandomizedDelaySec={delay}s"),
    }
    for n in 1..=MAX_FIRINGS {
        let now = unix_now();
        let elapse = match &when {
            When::Calendar(_, e) => match next_elapse(e, last, now, boot, random_delay(delay)) {
                Some(t) => t,
                None => {
                    eprintln!("{UNIT}.timer on {node}: the calendar event elapses no more");
                    return Ok(());
                }
            },
            When::Every(p) => last.unwrap_or(boot) + *p as i64 + random_delay(delay) as i64,
        };
        eprintln!("{UNIT}.timer: next elapse {}", rfc3339(elapse));
        sleep_until(elapse);
        let trigger = unix_now();
        last = Some(trigger);
        if matches!(when, When::Calendar(..)) {
            if let Err(e) = touch_stamp(stamp, trigger) {
                eprintln!("{UNIT}.timer: cannot touch {STAMP}: {e:#}");
            }
        }
        let t0 = Instant::now();
        match run_once(&bin, &creds, &cred_dir) {
            Ok(status) => eprintln!(
                "{UNIT}.service run {n} (triggered {}): {} after {:.1} s",
                rfc3339(trigger),
                if status.success() { "succeeded".to_string() } else { format!("failed ({status})") },
                t0.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("{UNIT}.service run {n} (triggered {}): failed: {e:#}", rfc3339(trigger)),
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
    fn overrides_parse_and_are_checked() {
        let m =
            overrides(&["node1=minutely".into(), "node2=90".into()], &["node1=0".into(), "node3=10m".into()]).unwrap();
        assert_eq!(m["node1"], TimerOverride { schedule: Some("minutely".into()), delay: Some(0) });
        assert_eq!(m["node2"], TimerOverride { schedule: Some("90".into()), delay: None });
        assert_eq!(m["node3"], TimerOverride { schedule: None, delay: Some(600) });
        assert_eq!(When::parse("90").unwrap(), When::Every(90));
        assert!(matches!(When::parse("*-*-* 03:00").unwrap(), When::Calendar(..)));
        for bad in ["node1=dialy", "node1", "node1=0", "=60", "node1=Fri..Mon"] {
            assert!(overrides(&[bad.into()], &[]).is_err(), "{bad}");
        }
        assert!(overrides(&[], &["node1=1.5h".into()]).is_err());
    }

    /// systemd's arithmetic for `OnCalendar=` + `Persistent=true` (timer.c timer_enter_waiting).
    #[test]
    fn calendar_timers_elapse_as_systemd_schedules_them() {
        let daily = calendar::parse("daily").unwrap();
        let day = 86_400;
        // 01:00 UTC, the host booted 10 s ago.
        let now = 20_000 * day + 3_600;
        let boot = now - 10;
        // First boot, no stamp: the next midnight, plus the random draw.
        assert_eq!(next_elapse(&daily, last_trigger(None, now), now, boot, 0), Some(20_001 * day));
        assert_eq!(next_elapse(&daily, last_trigger(None, now), now, boot, 599), Some(20_001 * day + 599));
        // Last triggered yesterday 00:02: today's midnight passed while the host was down: at boot
        // (already past: at once), plus the random draw (RandomizedDelaySec applies at boot too).
        let stamp = 19_999 * day + 120;
        assert_eq!(next_elapse(&daily, last_trigger(Some(stamp), now), now, boot, 0), Some(boot));
        assert_eq!(next_elapse(&daily, last_trigger(Some(stamp), now), now, boot, 300), Some(boot + 300));
        // Triggered today at 00:05: next midnight.
        let today = 20_000 * day + 300;
        assert_eq!(next_elapse(&daily, last_trigger(Some(today), now), now, boot, 0), Some(20_001 * day));
        // A stamp from the future (a wrong clock) is ignored.
        assert_eq!(last_trigger(Some(now + 10), now), None);
        // A weekday schedule over a weekend: 2024-11-15 is a Friday.
        let weekdays = calendar::parse("Mon..Fri 03:00").unwrap();
        let friday = 20_042 * day + 4 * 3_600;
        assert_eq!(next_elapse(&weekdays, Some(friday), friday, 0, 0), Some(20_045 * day + 3 * 3_600));
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
