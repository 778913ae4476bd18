//! Writing the output tree: the only code that writes generated files.
//!
//! Atomic: the new tree is built next to the old one (unchanged files and everything vaultnix does not
//! manage are hard-linked, so nothing a user put there is lost), then swapped in with one
//! `renameat2(RENAME_EXCHANGE)`. A crash before the swap leaves the previous output intact.

use crate::render::{paths, OutFile};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Manifest {
    pub generator: String,
    pub cluster: String,
    /// sha256 (hex) of every generated file, by relative path.
    pub files: BTreeMap<String, String>,
    /// The `--vaultnix-url` the flake was generated with, when it is not the default: the next run
    /// without the flag keeps it (and `--check` finds no drift).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vaultnix_url: Option<String>,
    /// The cluster id of the initialized cluster, recorded by `vaultnix bootstrap` once it has seen the
    /// cluster initialized. From then on `generate` omits the self-init `initialize` stanza (a node that
    /// comes back with empty storage joins instead of initializing a second cluster), and every later
    /// `generate` keeps the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialized: Option<String>,
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub fn manifest_for(cluster: &str, files: &[OutFile]) -> Manifest {
    Manifest {
        generator: format!("vaultnix {}", env!("CARGO_PKG_VERSION")),
        cluster: cluster.to_string(),
        files: files.iter().map(|f| (f.path.clone(), sha256_hex(&f.contents))).collect(),
        vaultnix_url: None,
        initialized: None,
    }
}

/// Records in `out`'s manifest that the cluster with `cluster_id` is initialized (see
/// [`Manifest::initialized`]). Returns whether the record changed; a tree without a manifest (never
/// generated) is left alone. The manifest is replaced atomically under the tree lock.
pub fn record_initialized(out: &Path, cluster_id: &str) -> Result<bool> {
    if read_manifest(out)?.is_none() {
        return Ok(false);
    }
    let _lock = lock_tree(out, std::time::Duration::from_secs(30), &|m: &str| eprintln!("vaultnix: {m}"))?;
    let Some(mut m) = read_manifest(out)? else { return Ok(false) };
    if m.initialized.as_deref() == Some(cluster_id) {
        return Ok(false);
    }
    m.initialized = Some(cluster_id.to_string());
    let path = out.join(MANIFEST);
    let tmp = out.join(format!(".{MANIFEST}.vaultnix-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let r = write_unsynced(&tmp, manifest_text(&m).as_bytes(), false)
        .and_then(|f| f.sync_all().map_err(Into::into))
        .and_then(|_| fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display())));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r.map(|_| true)
}

/// The flake URL to generate with: the one given on the command line, else the one the tree at `out`
/// was generated with (its manifest), else the default.
pub fn remembered_vaultnix_url(out: &Path, given: Option<&str>) -> String {
    if let Some(u) = given {
        return u.to_string();
    }
    read_manifest(out)
        .ok()
        .flatten()
        .and_then(|m| m.vaultnix_url)
        .unwrap_or_else(|| crate::render::DEFAULT_VAULTNIX_URL.to_string())
}

pub fn manifest_text(m: &Manifest) -> String {
    let mut s = serde_json::to_string_pretty(m).unwrap_or_default();
    s.push('\n');
    s
}

pub fn read_manifest(out: &Path) -> Result<Option<Manifest>> {
    match fs::read_to_string(out.join(MANIFEST)) {
        Ok(t) => Ok(Some(
            serde_json::from_str(&t)
                .with_context(|| format!("{} is not a vaultnix manifest", out.join(MANIFEST).display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", out.join(MANIFEST).display())),
    }
}

/// What changed between the tree on disk and a rendering.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Diff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Secrets (or the secrets directory) that group or others can access: "path (mode)".
    pub loose_modes: Vec<String>,
    /// Secrets vaultnix generated before and no longer renders (keys of a removed node): kept, never
    /// deleted by `generate`, but reported.
    pub orphaned_secrets: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty() && self.loose_modes.is_empty()
    }
}

/// Compares a rendering (including manifest.json) with the files on disk.
pub fn diff(out: &Path, files: &[OutFile], old_manifest: Option<&Manifest>) -> Result<Diff> {
    let mut d = Diff::default();
    let new: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for f in files {
        match fs::read(out.join(&f.path)) {
            Ok(b) if b == f.contents => d.unchanged += 1,
            Ok(_) => d.changed.push(f.path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => d.added.push(f.path.clone()),
            Err(e) => return Err(anyhow!("cannot read {}: {e}", out.join(&f.path).display())),
        }
    }
    d.loose_modes = loose_secret_modes(out).into_iter().map(|(p, m)| format!("{p} ({m:04o})")).collect();
    if let Some(m) = old_manifest {
        for p in m.files.keys() {
            if !new.contains(p.as_str()) && out.join(p).exists() {
                if paths::is_secret(p) {
                    d.orphaned_secrets.push(p.clone());
                } else {
                    d.removed.push(p.clone());
                }
            }
        }
    }
    Ok(d)
}

/// Writes `files` (and manifest.json) to `out` atomically. Files listed in the old manifest but no
/// longer rendered are removed, except secrets (keys are never deleted by `generate`).
pub fn write_tree(out: &Path, files: &[OutFile], manifest: &Manifest) -> Result<()> {
    let out = resolve_out(out)?;
    let parent = out.parent().ok_or_else(|| anyhow!("{} has no parent directory", out.display()))?;
    let base = out.file_name().ok_or_else(|| anyhow!("{} has no name", out.display()))?.to_string_lossy().into_owned();
    check_out_dir(&out)?;
    create_dirs(parent)?;
    remove_stale_staging(parent, &base)?;
    let staging = parent.join(format!("{}{}", staging_prefix(&base), std::process::id()));
    let result = build_staging(&out, &staging, files, manifest).and_then(|_| swap_in(&staging, &out));
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn staging_prefix(base: &str) -> String {
    format!(".{base}.vaultnix-staging-")
}

/// Removes staging trees left by a run that crashed (its process is gone), so they do not pile up.
fn remove_stale_staging(parent: &Path, base: &str) -> Result<()> {
    let prefix = staging_prefix(base);
    let Ok(entries) = fs::read_dir(parent) else { return Ok(()) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            fs::remove_dir_all(e.path()).with_context(|| format!("cannot remove stale {}", e.path().display()))?;
        }
    }
    Ok(())
}

fn build_staging(out: &Path, staging: &Path, files: &[OutFile], manifest: &Manifest) -> Result<()> {
    fs::create_dir(staging).with_context(|| format!("cannot create {}", staging.display()))?;
    fs::set_permissions(staging, fs::Permissions::from_mode(0o755))?;
    let old_manifest = read_manifest(out).ok().flatten();
    let ours: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).chain([MANIFEST]).collect();
    // Files vaultnix generated before and no longer renders (a removed node): dropped, except secrets.
    let mut stale: BTreeSet<String> = old_manifest
        .map(|m| m.files.into_keys().filter(|p| !ours.contains(p.as_str()) && !paths::is_secret(p)).collect())
        .unwrap_or_default();
    // Migration of a tree written before `flake/` existed: its public files sat at the top, next to
    // secrets/ (inside the flake's source). Their new copies are written under flake/ below, so the old
    // ones are dropped; secrets/ stays where it is, hard-linked byte for byte (never rotated). A
    // flake.lock Nix wrote there moves with the flake.
    if is_legacy(out) {
        stale.extend(files.iter().filter_map(|f| paths::legacy(&f.path)).map(str::to_string));
        let lock = out.join("flake.lock");
        let new_lock = staging.join(paths::FLAKE).join("flake.lock");
        if lock.is_file() && !out.join(paths::FLAKE).join("flake.lock").exists() {
            create_dirs(&staging.join(paths::FLAKE))?;
            fs::hard_link(&lock, &new_lock).or_else(|_| fs::copy(&lock, &new_lock).map(|_| ()))?;
            stale.insert("flake.lock".into());
        }
    }
    // Keep everything else that is in the old tree (user files, init.json, old keys) by hard link.
    let legacy = is_legacy(out);
    if out.is_dir() {
        link_tree(out, staging, Path::new(""), &ours, &stale)?;
    }
    if legacy {
        // The old public directories (nodes/, pki/, …), now empty unless the user kept files there.
        for old in files.iter().filter_map(|f| paths::legacy(&f.path)) {
            let mut d = Path::new(old).parent();
            while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
                let _ = fs::remove_dir(staging.join(p));
                d = p.parent();
            }
        }
    }
    let secrets = staging.join(paths::SECRETS);
    fs::create_dir_all(&secrets)?;
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700))?;
    for f in files {
        write_unsynced(&staging.join(&f.path), &f.contents, f.secret)?;
    }
    write_unsynced(&staging.join(MANIFEST), manifest_text(manifest).as_bytes(), false)?;
    // Everything must be on disk before the swap makes it the output. One syncfs costs one journal
    // commit; an fsync per file cost one each (most of generate's time).
    sync_fs(staging)?;
    Ok(())
}

/// Whether `out` has the layout from before `flake/`: generated public files (flake.nix, pki/ca.crt)
/// at the top, next to secrets/.
pub fn is_legacy(out: &Path) -> bool {
    !out.join(paths::FLAKE).exists()
        && (out.join("flake.nix").is_file() || out.join(paths::legacy(paths::CA_CRT).unwrap_or_default()).is_file())
}

fn link_tree(
    src_root: &Path,
    dst_root: &Path,
    rel: &Path,
    ours: &BTreeSet<&str>,
    stale: &BTreeSet<String>,
) -> Result<()> {
    let dir = src_root.join(rel);
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let rel_child = rel.join(entry.file_name());
        let key = rel_child.to_string_lossy().replace('\\', "/");
        let ft = entry.file_type()?;
        let dst = dst_root.join(&rel_child);
        if ft.is_dir() {
            fs::create_dir_all(&dst)?;
            let mut mode = entry.metadata()?.permissions().mode() & 0o7777;
            if key == "secrets" || key.starts_with("secrets/") {
                mode &= 0o700;
            }
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
            link_tree(src_root, dst_root, &rel_child, ours, stale)?;
        } else if ours.contains(key.as_str()) || stale.contains(&key) {
            continue;
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(target, &dst)?;
        } else {
            fs::hard_link(entry.path(), &dst)
                .or_else(|_| fs::copy(entry.path(), &dst).map(|_| ()))
                .with_context(|| format!("cannot keep {}", entry.path().display()))?;
            // A kept secret (init.json, an old node's key) that someone loosened is tightened: the
            // file is the same inode, so this only ever removes group/other access.
            if key.starts_with("secrets/") && ft.is_file() {
                let mode = entry.metadata()?.permissions().mode() & 0o7777;
                if mode & 0o077 != 0 {
                    fs::set_permissions(&dst, fs::Permissions::from_mode(mode & 0o700))
                        .with_context(|| format!("cannot tighten the mode of {}", entry.path().display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Writes a file with its final mode from the first byte (0600 for secrets, whatever the umask), and
/// fsyncs it.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<()> {
    write_unsynced(path, contents, secret)?.sync_all()?;
    Ok(())
}

/// `write_file` without the fsync: the staging tree is flushed once, as a whole, before the swap.
fn write_unsynced(path: &Path, contents: &[u8], secret: bool) -> Result<fs::File> {
    if let Some(p) = path.parent() {
        create_dirs(p)?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(contents)?;
    Ok(f)
}

/// `create_dir_all` with mode 0755 whatever the umask (a world-writable pki/ would let anyone swap a
/// certificate).
fn create_dirs(p: &Path) -> Result<()> {
    if p.is_dir() {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(p) {
        Ok(()) => fs::set_permissions(p, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        Err(e) => Err(anyhow!("cannot create {}: {e}", p.display())),
    }
}

/// Atomically replaces one file (write to a temporary sibling, fsync, rename).
pub fn write_file_atomic(path: &Path, contents: &[u8], secret: bool) -> Result<()> {
    let parent = path.parent().ok_or_else(|| anyhow!("{} has no parent", path.display()))?;
    // A bare file name ("cluster.toml") has the parent "": the current directory.
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    create_dirs(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    write_file(&tmp, contents, secret)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    sync_dir(parent)?;
    Ok(())
}

#[cfg(target_os = "linux")]
fn sync_fs(p: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let dir = fs::File::open(p)?;
    // SAFETY: a valid open file descriptor; syncfs only flushes the filesystem it lives on.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(anyhow!("cannot flush {} to disk: {}", p.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_fs(p: &Path) -> Result<()> {
    fn walk(p: &Path) -> Result<()> {
        for e in fs::read_dir(p)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                walk(&e.path())?;
            } else {
                fs::File::open(e.path())?.sync_all()?;
            }
        }
        sync_dir(p)
    }
    walk(p)
}

fn sync_dir(p: &Path) -> Result<()> {
    fs::File::open(p)?.sync_all()?;
    Ok(())
}

fn swap_in(staging: &Path, out: &Path) -> Result<()> {
    if !out.exists() {
        fs::rename(staging, out).with_context(|| format!("cannot move the new tree to {}", out.display()))?;
    } else {
        exchange(staging, out)?;
        // `staging` now holds the previous tree.
        fs::remove_dir_all(staging)
            .with_context(|| format!("cannot remove the previous tree at {}", staging.display()))?;
    }
    if let Some(p) = out.parent() {
        sync_dir(p)?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths; renameat2 does not retain them.
    let rc =
        unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc != 0 {
        return Err(anyhow!("cannot swap {} into place: {}", b.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> Result<()> {
    // Not atomic off Linux: move the old tree aside first.
    let old = b.with_extension("vaultnix-old");
    fs::rename(b, &old)?;
    fs::rename(a, b)?;
    fs::rename(&old, a)?;
    Ok(())
}

/// The directory `--out` names, with a symlink followed: the tree is written into the link's target
/// (the link itself is never replaced).
pub fn resolve_out(out: &Path) -> Result<PathBuf> {
    let out = absolute(out)?;
    match fs::symlink_metadata(&out) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::canonicalize(&out).with_context(|| {
                format!("{} is a symlink whose target does not exist; create the target directory first", out.display())
            })?;
            Ok(target)
        }
        _ => Ok(out),
    }
}

/// Refuses an output directory `write_tree` must not take over, before anything is written:
/// - not a directory;
/// - an existing, non-empty directory without a vaultnix manifest (`--out /etc`, a home directory):
///   the tree is rebuilt by hard-linking what it holds, which must only ever be a vaultnix tree;
/// - inside another tree's `secrets/` (it would loosen that directory);
/// - a mount point, or a tree with a mount point inside: the tree is swapped in by renaming it, and a
///   mount cannot move with it (the previous tree, with the mount, would then be deleted). Refused
///   rather than left alone, because leaving it alone would mean not replacing the tree at all.
pub fn check_out_dir(out: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for anc in out.ancestors().skip(1) {
        if anc.file_name().is_some_and(|n| n == "secrets") && anc.parent().is_some_and(|p| p.join(MANIFEST).is_file()) {
            bail!(
                "{} is inside the secrets directory {} of another output tree; choose an output directory outside it",
                out.display(),
                anc.display()
            );
        }
    }
    let meta = match fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow!("cannot inspect {}: {e}", out.display())),
    };
    if !meta.is_dir() {
        bail!("cannot write the output tree into {}: it exists and is not a directory", out.display());
    }
    // A tree restored from a backup (`secrets/` and `pki/` copied into a new directory) is ours.
    let has_manifest = out.join(MANIFEST).is_file() || out.join("secrets/ca.key").is_file();
    if !has_manifest {
        // A fresh git work tree (`.git`, the user's own `.gitignore`) is still an empty output tree.
        let mut entries = fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))?;
        let non_empty =
            entries.any(|e| e.map(|e| !matches!(e.file_name().to_str(), Some(".git" | ".gitignore"))).unwrap_or(true));
        if non_empty {
            bail!(
                "{} is not empty and holds no vaultnix {MANIFEST} (nor secrets/ca.key): refusing to take it over; choose a new or empty directory",
                out.display()
            );
        }
    }
    if let Some(parent) = out.parent() {
        if fs::metadata(parent).map(|p| p.dev() != meta.dev()).unwrap_or(false) {
            bail!(
                "{} is a mount point; vaultnix replaces the output tree by renaming it, which cannot move a mount: \
                 use a directory inside the mounted filesystem as --out",
                out.display()
            );
        }
    }
    if let Some(m) = find_mount(out, meta.dev())? {
        bail!(
            "{} is a mount point inside the output tree {}; vaultnix replaces the tree by renaming it, which \
             cannot carry a mount: unmount it, or mount it outside the output directory; nothing was written",
            m.display(),
            out.display()
        );
    }
    Ok(())
}

/// The first directory under `dir` (not following symlinks) on another device than `dev`.
fn find_mount(dir: &Path, dev: u64) -> Result<Option<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    for e in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        if !e.file_type()?.is_dir() {
            continue;
        }
        let p = e.path();
        let m = fs::symlink_metadata(&p)?;
        if m.dev() != dev {
            return Ok(Some(p));
        }
        if let Some(found) = find_mount(&p, dev)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Secret files and directories under `out/secrets` that group or others can access, with their modes.
pub fn loose_secret_modes(out: &Path) -> Vec<(String, u32)> {
    fn walk(root: &Path, rel: &str, acc: &mut Vec<(String, u32)>) {
        let p = root.join(rel);
        let Ok(m) = fs::symlink_metadata(&p) else { return };
        if m.file_type().is_symlink() {
            return;
        }
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            acc.push((rel.to_string(), mode));
        }
        if m.is_dir() {
            let Ok(rd) = fs::read_dir(&p) else { return };
            let mut names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            for n in names {
                walk(root, &format!("{rel}/{n}"), acc);
            }
        }
    }
    let mut acc = Vec::new();
    walk(out, "secrets", &mut acc);
    acc
}

/// Refuses to rewrite a tree generated for another cluster (a forgotten `--spec` would otherwise
/// replace it with the built-in example).
pub fn check_cluster(out: &Path, cluster: &str) -> Result<()> {
    if let Ok(Some(m)) = read_manifest(out) {
        if m.cluster != cluster {
            bail!(
                "{} holds the output of cluster {:?}, but the spec is for cluster {:?}; check --spec \
                 (pass --replace-cluster to replace it anyway); nothing was written",
                out.display(),
                m.cluster,
                cluster
            );
        }
    }
    Ok(())
}

/// One writer per output directory: an exclusive `flock` on the directory that holds it (no lock file
/// is left behind; two trees in one directory take turns), held until the guard is dropped. Waits at
/// most `wait` for another writer (calling `on_wait` once), then fails clearly.
pub struct TreeLock {
    _file: fs::File,
}

pub fn lock_tree(out: &Path, wait: std::time::Duration, on_wait: &dyn Fn(&str)) -> Result<TreeLock> {
    use std::os::fd::AsRawFd;
    let out = resolve_out(out)?;
    let parent = out.parent().ok_or_else(|| anyhow!("{} has no parent directory", out.display()))?;
    create_dirs(parent)?;
    let path = parent.to_path_buf();
    let file = fs::File::open(&path).with_context(|| format!("cannot open {} to lock it", path.display()))?;
    let deadline = std::time::Instant::now() + wait;
    let mut told = false;
    loop {
        // SAFETY: a valid open file descriptor; flock does not retain it.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(TreeLock { _file: file });
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(anyhow!("cannot lock {}: {err}", path.display()));
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "another vaultnix is still writing {} (the lock on {} was held for more than {} s); try again when it finishes",
                out.display(),
                path.display(),
                wait.as_secs()
            );
        }
        if !told {
            on_wait(&format!("waiting for another vaultnix writing {} (at most {} s)", out.display(), wait.as_secs()));
            told = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &str, c: &str, secret: bool) -> OutFile {
        OutFile { path: p.into(), contents: c.as_bytes().to_vec(), secret }
    }

    #[test]
    fn writes_keeps_user_files_and_drops_stale_ones() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let v1 = vec![f("a.txt", "1", false), f("old.txt", "x", false), f("secrets/k", "s", true)];
        write_tree(&out, &v1, &manifest_for("c", &v1)).unwrap();
        fs::write(out.join("user-notes.md"), "mine").unwrap();
        fs::write(out.join("secrets/init.json"), "{}").unwrap();
        let v2 = vec![f("a.txt", "2", false), f("secrets/k", "s", true)];
        write_tree(&out, &v2, &manifest_for("c", &v2)).unwrap();
        assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "2");
        assert!(!out.join("old.txt").exists(), "stale generated file removed");
        assert_eq!(fs::read_to_string(out.join("user-notes.md")).unwrap(), "mine");
        assert_eq!(fs::read_to_string(out.join("secrets/init.json")).unwrap(), "{}");
        let mode = fs::metadata(out.join("secrets/k")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(out.join("secrets")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        // no staging directory left behind
        let leftovers: Vec<_> = fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
