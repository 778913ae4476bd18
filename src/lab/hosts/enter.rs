//! Entering a host: its network namespace and its private mount namespace.
//!
//! Every host has one "anchor" process (`sleep infinity`, argv[0] naming the lab and host) that
//! creates the host's mount namespace: `/` made private (nothing propagates back to the machine),
//! overlays on /etc, /var/lib and /var/log whose upper directories live in the lab directory, a tmpfs
//! on /run, and bind mounts that give the NixOS layout. Every other process of the host (bao, HAProxy,
//! wireguard-go, `wg`, `nft`, `lab exec`) joins the anchor's network and mount namespaces with
//! `setns`. The mounts exist only inside those namespaces and vanish with the host's last process.

use anyhow::{anyhow, Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// One step of building a host's mount namespace (all strings prepared before fork).
#[derive(Debug)]
pub enum MountOp {
    /// mount(2) with a source, a file system type and data.
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    Mkdir {
        path: CString,
        mode: libc::mode_t,
    },
    /// Creates an empty file (a bind-mount target).
    Touch {
        path: CString,
    },
}

pub fn cstr(p: impl AsRef<Path>) -> Result<CString> {
    CString::new(p.as_ref().as_os_str().as_bytes()).map_err(|_| anyhow!("{} contains a NUL byte", p.as_ref().display()))
}

impl MountOp {
    pub fn overlay(target: &str, upper: &Path, work: &Path) -> Result<MountOp> {
        let data = format!("lowerdir={target},upperdir={},workdir={}", upper.display(), work.display());
        Ok(MountOp::Mount {
            source: cstr("overlay")?,
            target: cstr(target)?,
            fstype: cstr("overlay")?,
            flags: 0,
            data: cstr(data)?,
        })
    }
    pub fn tmpfs(target: &str, mode: &str) -> Result<MountOp> {
        Ok(MountOp::Mount {
            source: cstr("tmpfs")?,
            target: cstr(target)?,
            fstype: cstr("tmpfs")?,
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: cstr(format!("mode={mode}"))?,
        })
    }
    pub fn bind(source: &Path, target: &str) -> Result<MountOp> {
        Ok(MountOp::Mount {
            source: cstr(source)?,
            target: cstr(target)?,
            fstype: cstr("none")?,
            flags: libc::MS_BIND,
            data: cstr("")?,
        })
    }
    pub fn mkdir(path: &str, mode: libc::mode_t) -> Result<MountOp> {
        Ok(MountOp::Mkdir { path: cstr(path)?, mode })
    }
    pub fn touch(path: &str) -> Result<MountOp> {
        Ok(MountOp::Touch { path: cstr(path)? })
    }

    /// Runs in the forked child: only syscalls on prepared data.
    fn apply(&self) -> std::io::Result<()> {
        // SAFETY: plain syscalls on NUL-terminated strings owned by `self`.
        let rc = unsafe {
            match self {
                MountOp::Mount { source, target, fstype, flags, data } => {
                    let d = if data.as_bytes().is_empty() { std::ptr::null() } else { data.as_ptr().cast() };
                    libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), *flags, d)
                }
                MountOp::Mkdir { path, mode } => {
                    let r = libc::mkdir(path.as_ptr(), *mode);
                    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                        0
                    } else {
                        r
                    }
                }
                MountOp::Touch { path } => {
                    let fd = libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o600);
                    if fd >= 0 {
                        libc::close(fd);
                        0
                    } else {
                        -1
                    }
                }
            }
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

fn setns(fd: RawFd, kind: libc::c_int) -> std::io::Result<()> {
    // SAFETY: setns on an open namespace fd.
    if unsafe { libc::setns(fd, kind) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn chdir(p: &CString) -> std::io::Result<()> {
    // SAFETY: chdir on a NUL-terminated path.
    if unsafe { libc::chdir(p.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd` create a host's mount namespace inside network namespace `netns` (a /run/netns name).
pub fn create(cmd: &mut Command, netns: &str, ops: Vec<MountOp>, cwd: &Path) -> Result<()> {
    let net = File::open(format!("/run/netns/{netns}")).with_context(|| format!("network namespace {netns}"))?;
    let root = cstr("/")?;
    let cwd = cstr(cwd)?;
    // SAFETY: the closure runs between fork and exec and only makes syscalls on data prepared here.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            setns(net.as_raw_fd(), libc::CLONE_NEWNET)?;
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing mounted from here on propagates to the machine's namespace.
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for op in &ops {
                op.apply()?;
            }
            chdir(&cwd)
        });
    }
    Ok(())
}

/// Makes `cmd` run inside the host whose anchor is `anchor` (its network and mount namespaces).
/// `detach`: also start a new session (for long-running processes).
pub fn join(cmd: &mut Command, anchor: u32, cwd: &Path, detach: bool) -> Result<()> {
    let net = File::open(format!("/proc/{anchor}/ns/net")).with_context(|| format!("host anchor pid {anchor}"))?;
    let mnt = File::open(format!("/proc/{anchor}/ns/mnt")).with_context(|| format!("host anchor pid {anchor}"))?;
    let cwd = cstr(cwd)?;
    // SAFETY: the closure runs between fork and exec and only makes syscalls on data prepared here.
    unsafe {
        cmd.pre_exec(move || {
            if detach && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            setns(net.as_raw_fd(), libc::CLONE_NEWNET)?;
            setns(mnt.as_raw_fd(), libc::CLONE_NEWNS)?;
            chdir(&cwd)
        });
    }
    Ok(())
}

/// Runs `f` on a thread inside network namespace `netns` (sockets it opens live there). Only the
/// network namespace: the files are the machine's. `f` should build its own runtime.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let net = File::open(format!("/run/netns/{netns}")).with_context(|| format!("network namespace {netns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            setns(net.as_raw_fd(), libc::CLONE_NEWNET).context("setns")?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
