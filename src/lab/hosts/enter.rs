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
    /// umount2(2) with MNT_DETACH.
    Detach {
        target: CString,
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
    /// A recursive bind mount (a directory with what is mounted below it).
    pub fn rbind(source: &Path, target: &Path) -> Result<MountOp> {
        Ok(MountOp::Mount {
            source: cstr(source)?,
            target: cstr(target)?,
            fstype: cstr("none")?,
            flags: libc::MS_BIND | libc::MS_REC,
            data: cstr("")?,
        })
    }
    pub fn detach(target: &Path) -> Result<MountOp> {
        Ok(MountOp::Detach { target: cstr(target)? })
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
                MountOp::Detach { target } => libc::umount2(target.as_ptr(), libc::MNT_DETACH),
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

/// A directory of the host's own, as a VM has its own /tmp and /root: an empty tmpfs on `target`
/// (mode `mode`), through which each of `keep` (directories under `target` the lab's processes
/// need: the lab directory, the binaries' directories) shows the machine's directory at the same
/// path. The machine's `target` is reached during the setup at `stash` (under the host's /run
/// tmpfs, detached afterwards). Nothing is written to the machine's `target`; a `target` that is a
/// symlink, or that a `keep` path is not strictly under, stays the machine's.
pub fn private_dir(target: &Path, mode: &str, keep: &[std::path::PathBuf], stash: &Path) -> Result<Vec<MountOp>> {
    let is_dir = std::fs::symlink_metadata(target).map(|m| m.is_dir()).unwrap_or(false);
    let mut keep: Vec<&Path> = keep.iter().map(|p| p.as_path()).filter(|p| p.starts_with(target)).collect();
    if !is_dir || keep.contains(&target) {
        return Ok(Vec::new());
    }
    keep.sort();
    keep.dedup();
    // A kept directory inside another kept one comes with it (recursive bind).
    let keep: Vec<&Path> = keep.iter().copied().filter(|p| !keep.iter().any(|o| o != p && p.starts_with(o))).collect();
    let mut ops = vec![MountOp::mkdir(&stash.display().to_string(), 0o700)?, MountOp::rbind(target, stash)?];
    ops.push(MountOp::tmpfs(&target.display().to_string(), mode)?);
    for p in keep {
        let rel = p.strip_prefix(target)?;
        let mut at = target.to_path_buf();
        for c in rel.components() {
            at.push(c);
            ops.push(MountOp::mkdir(&at.display().to_string(), 0o755)?);
        }
        ops.push(MountOp::rbind(&stash.join(rel), p)?);
    }
    ops.push(MountOp::detach(stash)?);
    Ok(ops)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn shown(ops: &[MountOp]) -> Vec<String> {
        ops.iter()
            .map(|o| match o {
                MountOp::Mount { source, target, fstype, .. } => {
                    format!(
                        "mount {} {} {}",
                        fstype.to_string_lossy(),
                        source.to_string_lossy(),
                        target.to_string_lossy()
                    )
                }
                MountOp::Mkdir { path, .. } => format!("mkdir {}", path.to_string_lossy()),
                MountOp::Touch { path } => format!("touch {}", path.to_string_lossy()),
                MountOp::Detach { target } => format!("detach {}", target.to_string_lossy()),
            })
            .collect()
    }

    #[test]
    fn a_private_dir_keeps_what_the_lab_needs_and_only_that() {
        let keep: Vec<PathBuf> =
            ["/tmp/lab/x", "/tmp/lab/x/y", "/usr/bin", "/tmp/bin"].iter().map(PathBuf::from).collect();
        let ops = private_dir(Path::new("/tmp"), "1777", &keep, Path::new("/run/stash")).unwrap();
        assert_eq!(
            shown(&ops),
            [
                "mkdir /run/stash",
                "mount none /tmp /run/stash",
                "mount tmpfs tmpfs /tmp",
                "mkdir /tmp/bin",
                "mount none /run/stash/bin /tmp/bin",
                "mkdir /tmp/lab",
                "mkdir /tmp/lab/x",
                "mount none /run/stash/lab/x /tmp/lab/x",
                "detach /run/stash",
            ]
        );
        // The lab directory is /tmp itself: /tmp stays the machine's.
        let ops = private_dir(Path::new("/tmp"), "1777", &[PathBuf::from("/tmp")], Path::new("/run/stash")).unwrap();
        assert!(ops.is_empty());
        // No such directory (or a symlink): left alone.
        let ops = private_dir(Path::new("/nonexistent-vx"), "0700", &[], Path::new("/run/stash")).unwrap();
        assert!(ops.is_empty());
    }
}
