//! Starting and stopping the lab's processes. Each process gets a pid file under `<dir>/run/`; stopping
//! reads it and checks `/proc/<pid>/cmdline` still names this lab's config before signalling, so a
//! recycled pid (or another lab) is never touched.

use crate::render::paths;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const HAPROXY: &str = "haproxy";

/// What identifies one lab process: its name, how to start it, and the argument its cmdline must carry.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// An argument unique to this lab process (the config path); checked in /proc/<pid>/cmdline.
    pub marker: String,
}

pub fn node_spec(dir: &Path, bao: &Path, node: &str) -> ProcSpec {
    server_spec(node, bao, &dir.join(paths::server_json(node)))
}

/// `bao server -config=<cfg>` named `name` (a node's, or a hosts-lab spare's with its own JSON).
pub fn server_spec(name: &str, bao: &Path, cfg: &Path) -> ProcSpec {
    let marker = format!("-config={}", cfg.display());
    ProcSpec { name: name.to_string(), program: bao.to_path_buf(), args: vec!["server".into(), marker.clone()], marker }
}

/// A node's drain agent (`vaultnix node agent`, ops::agent), named `agent-<node>`.
pub fn agent_spec(dir: &Path, vaultnix: &Path, node: &str) -> ProcSpec {
    let cfg = dir.join(paths::drain_json(node)).display().to_string();
    ProcSpec {
        name: crate::lab::agent_name(node),
        program: vaultnix.to_path_buf(),
        args: vec!["node".into(), "agent".into(), format!("--config={cfg}")],
        marker: format!("--config={cfg}"),
    }
}

pub fn haproxy_spec(dir: &Path, haproxy: &Path) -> ProcSpec {
    let cfg = dir.join(paths::HAPROXY_CFG).display().to_string();
    ProcSpec {
        name: HAPROXY.into(),
        program: haproxy.to_path_buf(),
        args: vec!["-db".into(), "-f".into(), cfg.clone()],
        marker: cfg,
    }
}

/// The HAProxy processes a reload replaced that may still be finishing their sessions.
pub fn old_haproxy_specs(dir: &Path, haproxy: &Path) -> Vec<ProcSpec> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(dir.join("run")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_prefix("haproxy-old-").and_then(|r| r.strip_suffix(".pid")) {
                let mut spec = haproxy_spec(dir, haproxy);
                spec.name = format!("haproxy-old-{stem}");
                v.push(spec);
            }
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// See `Lab::reload_haproxy`.
pub fn reload_haproxy(dir: &Path, spec: &ProcSpec) -> Result<(u32, u32)> {
    let old = running(dir, spec).ok_or_else(|| anyhow!("HAProxy is not running in {}", dir.display()))?;
    let socket = dir.join("run/haproxy.sock");
    // The old process is tracked under its own name from now on.
    let old_name = format!("haproxy-old-{old}");
    fs::rename(pid_file(dir, &spec.name), pid_file(dir, &old_name))?;
    let mut next = spec.clone();
    next.args.extend(["-x".into(), socket.display().to_string(), "-sf".into(), old.to_string()]);
    let new = match start(dir, &next) {
        Ok(p) => p,
        Err(e) => {
            let _ = fs::rename(pid_file(dir, &old_name), pid_file(dir, &spec.name));
            return Err(e);
        }
    };
    // A configuration HAProxy refuses makes the new process exit at once (the old one keeps running).
    std::thread::sleep(Duration::from_millis(300));
    reap(new);
    if !alive(new) {
        let _ = fs::rename(pid_file(dir, &old_name), pid_file(dir, &spec.name));
        bail!(
            "the reloaded HAProxy exited at once; pid {old} keeps serving (see {})",
            log_file(dir, &spec.name).display()
        );
    }
    Ok((old, new))
}

pub fn pid_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("run/{name}.pid"))
}

pub fn log_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("logs/{name}.log"))
}

/// The pid recorded for `name`, if that process is still alive and still ours.
pub fn running(dir: &Path, spec: &ProcSpec) -> Option<u32> {
    let pid: u32 = fs::read_to_string(pid_file(dir, &spec.name)).ok()?.trim().parse().ok()?;
    (alive(pid) && cmdline_has(pid, &spec.marker)).then_some(pid)
}

/// Alive and not a zombie (a child that died but was not reaped yet counts as dead).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // The state follows the last ')' (the command name may contain spaces or parentheses).
            let state = s.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

fn cmdline_has(pid: u32, marker: &str) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(b) => b.split(|c| *c == 0).any(|a| a == marker.as_bytes()),
        Err(_) => false,
    }
}

/// Starts the process detached (own session, stdin closed, output appended to its log) and records its
/// pid. Does nothing when it is already running; returns the pid either way.
pub fn start(dir: &Path, spec: &ProcSpec) -> Result<u32> {
    if let Some(pid) = running(dir, spec) {
        return Ok(pid);
    }
    fs::create_dir_all(dir.join("run"))?;
    fs::create_dir_all(dir.join("logs"))?;
    let log_path = log_file(dir, &spec.name);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let err = log.try_clone()?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args).stdin(Stdio::null()).stdout(log).stderr(err).current_dir(dir);
    // SAFETY: setsid() is async-signal-safe and touches no memory of the parent; it detaches the child
    // from our terminal and process group so Ctrl-C on `vaultnix lab up` does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| anyhow!("cannot start {} ({}): {e}", spec.name, spec.program.display()))?;
    let pid = child.id();
    // The Child handle is dropped on purpose: the process outlives `lab up`; stop() reaps it when it is
    // our child.
    drop(child);
    crate::output::write_file_atomic(&pid_file(dir, &spec.name), format!("{pid}\n").as_bytes(), false)?;
    Ok(pid)
}

/// Sends `signal` to the recorded process (only if it is still ours) and waits up to `wait` for it to
/// exit, then SIGKILLs it. Returns false when it was not running. Removes the pid file.
pub fn stop(dir: &Path, spec: &ProcSpec, signal: i32, wait: Duration) -> Result<bool> {
    let Some(pid) = running(dir, spec) else {
        let _ = fs::remove_file(pid_file(dir, &spec.name));
        return Ok(false);
    };
    send(pid, signal)?;
    if !wait_exit(pid, wait) {
        send(pid, libc::SIGKILL)?;
        if !wait_exit(pid, Duration::from_secs(5)) {
            bail!("{} (pid {pid}) did not exit after SIGKILL", spec.name);
        }
    }
    let _ = fs::remove_file(pid_file(dir, &spec.name));
    Ok(true)
}

fn send(pid: u32, signal: i32) -> Result<()> {
    let p = i32::try_from(pid).map_err(|_| anyhow!("pid {pid} out of range"))?;
    // SAFETY: plain syscall; the pid was checked to be our lab process just before.
    let rc = unsafe { libc::kill(p, signal) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            bail!("cannot signal pid {pid}: {e}");
        }
    }
    Ok(())
}

/// Waits for the process to exit, reaping it if it is our child. Bounded by `wait`.
fn wait_exit(pid: u32, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        reap(pid);
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reap(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let mut status = 0;
        // SAFETY: WNOHANG never blocks; for a pid that is not our child it returns -1/ECHILD.
        unsafe {
            libc::waitpid(p, &mut status, libc::WNOHANG);
        }
    }
}
