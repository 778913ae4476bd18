//! Raft snapshots on disk: `<dir>/<cluster>-<UTC timestamp>.snap` plus a sidecar `<file>.snap.json`
//! recording what is needed to trust and restore it (checksum, size, which cluster and seal produced
//! it). Verification always happens before anything is sent to a server.

use crate::ops::live::{health, Http};
use crate::output;
use crate::plan::Plan;
use crate::render::paths;
use crate::spec::SealKind;
use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

pub const SNAP_EXT: &str = "snap";
const STAMP: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// What the sidecar `<file>.snap.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sidecar {
    pub format: u32,
    /// The snapshot's file name (no directory).
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub cluster: String,
    /// The cluster id the server reported when saving (sys/health): a snapshot restores without
    /// `--force` only onto the cluster that produced it.
    pub cluster_id: Option<String>,
    pub seal: SealInfo,
    pub engine: String,
    pub version: String,
    /// The node the snapshot was streamed from (after following a standby's redirect).
    pub source_node: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SealInfo {
    pub kind: String,
    /// sha256 of the static seal key, or of an auto-unseal seal's parameters; none for Shamir (the
    /// unseal keys are not known offline: the cluster id stands in).
    pub fingerprint: Option<String>,
}

/// The seal identity of the cluster `plan` describes, with the key material under `out`.
pub fn seal_info(plan: &Plan, out: &Path) -> Result<SealInfo> {
    let key = match plan.seal.kind {
        SealKind::Static => {
            let p = out.join(paths::SEAL_KEY);
            Some(fs::read(&p).with_context(|| format!("cannot read the static seal key {}", p.display()))?)
        }
        _ => None,
    };
    seal_info_with(plan, key.as_deref())
}

/// [`seal_info`] with the static seal key given (the renderer has it in memory).
pub fn seal_info_with(plan: &Plan, static_key: Option<&[u8]>) -> Result<SealInfo> {
    let kind = plan.seal.kind;
    let fingerprint = match kind {
        SealKind::Shamir => None,
        SealKind::Static => {
            let k = static_key.ok_or_else(|| anyhow!("the static seal key is missing"))?;
            Some(output::sha256_hex(k))
        }
        _ => {
            // The KMS key is identified by the seal's parameters (region, key id, ...).
            let v = serde_json::json!({ "kind": kind.as_str(), "params": plan.seal.params });
            Some(output::sha256_hex(serde_json::to_string(&v)?.as_bytes()))
        }
    };
    Ok(SealInfo { kind: kind.as_str().to_string(), fingerprint })
}

pub fn sidecar_path(snap: &Path) -> PathBuf {
    let mut s = snap.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

pub fn file_name(cluster: &str, at: OffsetDateTime) -> String {
    let stamp = at.to_offset(time::UtcOffset::UTC).format(STAMP).unwrap_or_else(|_| at.unix_timestamp().to_string());
    format!("{cluster}-{stamp}.{SNAP_EXT}")
}

/// The cluster and time encoded in a snapshot file name, if it is one of ours.
pub fn parse_file_name(name: &str) -> Option<(String, OffsetDateTime)> {
    let stem = name.strip_suffix(&format!(".{SNAP_EXT}"))?;
    let (cluster, stamp) = stem.rsplit_once('-')?;
    let pdt = time::PrimitiveDateTime::parse(stamp, STAMP).ok()?;
    Some((cluster.to_string(), pdt.assume_utc()))
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A snapshot being written: a 0600 temporary file in the target directory, hashed as it is written;
/// `finish` fsyncs it, renames it into place and writes the sidecar. Dropped unfinished, it removes
/// the temporary file.
pub struct SnapWriter {
    dir: PathBuf,
    name: String,
    tmp: PathBuf,
    file: Option<fs::File>,
    hash: Sha256,
    size: u64,
}

impl SnapWriter {
    pub fn create(dir: &Path, cluster: &str, at: OffsetDateTime) -> Result<SnapWriter> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let name = file_name(cluster, at);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        // Snapshots hold the whole (barrier-encrypted) store: owner-only like every other secret.
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        Ok(SnapWriter { dir: dir.to_path_buf(), name, tmp, file: Some(f), hash: Sha256::new(), size: 0 })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let f = self.file.as_mut().ok_or_else(|| anyhow!("snapshot already finished"))?;
        f.write_all(chunk).context("writing the snapshot")?;
        self.hash.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    pub fn finish(mut self, mut meta: Sidecar, at: OffsetDateTime) -> Result<PathBuf> {
        let f = self.file.take().ok_or_else(|| anyhow!("snapshot already finished"))?;
        if self.size == 0 {
            bail!("the server sent an empty snapshot");
        }
        f.sync_all()?;
        drop(f);
        meta.format = 1;
        meta.file = self.name.clone();
        meta.sha256 = hex::encode(std::mem::take(&mut self.hash).finalize());
        meta.size = self.size;
        meta.created_at = rfc3339(at);
        let path = self.dir.join(&self.name);
        // link + unlink instead of rename: never replaces an existing snapshot of the same second.
        fs::hard_link(&self.tmp, &path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!("{} already exists (one snapshot per second): try again", path.display())
            } else {
                anyhow!("cannot move the snapshot into {}: {e}", path.display())
            }
        })?;
        let _ = fs::remove_file(&self.tmp);
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let mut text = serde_json::to_string_pretty(&meta)?;
        text.push('\n');
        output::write_file_atomic(&sidecar_path(&path), text.as_bytes(), false)?;
        Ok(path)
    }
}

impl Drop for SnapWriter {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Writes a snapshot read from `reader` into `dir` (see [`SnapWriter`]). Returns its path.
pub fn write_snapshot(dir: &Path, reader: &mut dyn Read, meta: Sidecar, at: OffsetDateTime) -> Result<PathBuf> {
    let mut w = SnapWriter::create(dir, &meta.cluster, at)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = reader.read(&mut buf).context("reading the snapshot stream")?;
        if k == 0 {
            break;
        }
        w.write(&buf[..k])?;
    }
    w.finish(meta, at)
}

fn copy_hashing(r: &mut dyn Read, w: &mut dyn Write) -> Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).context("reading the snapshot stream")?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        w.write_all(&buf[..k]).context("writing the snapshot")?;
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

pub fn read_sidecar(snap: &Path) -> Result<Sidecar> {
    let p = sidecar_path(snap);
    let t = fs::read_to_string(&p).map_err(|e| {
        anyhow!(
            "cannot read {} ({e}): without its sidecar the snapshot cannot be verified; refusing to use it",
            p.display()
        )
    })?;
    serde_json::from_str(&t).with_context(|| format!("{} is not a vaultnix snapshot sidecar", p.display()))
}

/// Checks a snapshot against its sidecar (size, then sha256). Nothing may be restored unless this passes.
pub fn verify(snap: &Path) -> Result<Sidecar> {
    let meta = read_sidecar(snap)?;
    let md = fs::metadata(snap).with_context(|| format!("cannot read {}", snap.display()))?;
    if md.len() != meta.size {
        bail!(
            "{} is {} bytes but its sidecar records {} bytes: the file is {}; refusing to restore it",
            snap.display(),
            md.len(),
            meta.size,
            if md.len() < meta.size { "truncated" } else { "not the one that was saved" }
        );
    }
    let mut f = fs::File::open(snap).with_context(|| format!("cannot open {}", snap.display()))?;
    let (sha, _) = copy_hashing(&mut f, &mut std::io::sink())?;
    if sha != meta.sha256 {
        bail!(
            "{}: sha256 {} does not match {} recorded when it was saved: the file was modified or corrupted; refusing to restore it",
            snap.display(),
            sha,
            meta.sha256
        );
    }
    Ok(meta)
}

/// What the target cluster is, for the pre-restore check.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInfo {
    pub cluster: String,
    pub cluster_id: Option<String>,
    pub seal: SealInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// Same cluster: `POST sys/storage/raft/snapshot`.
    Normal,
    /// Another cluster's snapshot: `POST sys/storage/raft/snapshot-force`; afterwards the target runs on
    /// the snapshot's keyring (Shamir: the ORIGINAL cluster's unseal keys open it).
    Force,
}

/// Decides whether `meta`'s snapshot may be restored onto `target`, explaining a refusal.
pub fn check_restore(meta: &Sidecar, target: &TargetInfo, force: bool) -> Result<RestoreMode> {
    if meta.seal.kind != target.seal.kind {
        bail!(
            "the snapshot was taken with a {} seal, the target uses {}: its root key could not be unsealed there. \
             Restore it onto a cluster configured with the original seal",
            meta.seal.kind,
            target.seal.kind
        );
    }
    if meta.seal.fingerprint != target.seal.fingerprint {
        // Even --force cannot help: the root key inside the snapshot is wrapped by the original seal.
        bail!(
            "the snapshot's seal ({} {}) is not the target's seal ({}): after the restore no node could unseal. \
             Configure the target with the original seal key, then retry",
            meta.seal.kind,
            short(meta.seal.fingerprint.as_deref()),
            short(target.seal.fingerprint.as_deref())
        );
    }
    let same = match (&meta.cluster_id, &target.cluster_id) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(RestoreMode::Normal);
    }
    if force {
        return Ok(RestoreMode::Force);
    }
    let what = match (&meta.cluster_id, &target.cluster_id) {
        (Some(a), Some(b)) => format!("cluster id {a}, the target is {b}"),
        (None, _) => "no cluster id recorded".to_string(),
        (_, None) => "the target did not report a cluster id".to_string(),
    };
    let keys = if meta.seal.kind == "shamir" {
        "; afterwards the target must be unsealed with the ORIGINAL cluster's unseal keys"
    } else {
        ""
    };
    bail!(
        "the snapshot comes from cluster {:?} ({what}): restoring it replaces the target's data and keyring. \
         If that is intended (disaster recovery onto a fresh cluster), re-run with --force{keys}",
        meta.cluster
    )
}

fn short(f: Option<&str>) -> String {
    match f {
        Some(f) => format!("sha256:{}…", &f[..f.len().min(12)]),
        None => "(none)".into(),
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PruneReport {
    pub kept: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
}

/// Removes snapshots (and sidecars) older than `keep_days`, by the time in their names. The newest
/// snapshot of each cluster is always kept, whatever its age. Files that are not vaultnix snapshots
/// are left alone.
pub fn prune(dir: &Path, keep_days: u32, now: OffsetDateTime, dry_run: bool) -> Result<PruneReport> {
    let mut found: Vec<(String, OffsetDateTime, PathBuf)> = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((cluster, at)) = parse_file_name(&name) {
            if e.file_type()?.is_file() {
                found.push((cluster, at, e.path()));
            }
        }
    }
    found.sort_by(|a, b| (&a.0, b.1).cmp(&(&b.0, a.1)));
    let cutoff = now - time::Duration::days(keep_days as i64);
    let mut r = PruneReport::default();
    let mut last_cluster: Option<&str> = None;
    for (cluster, at, path) in &found {
        let newest = last_cluster != Some(cluster.as_str());
        last_cluster = Some(cluster.as_str());
        if newest || *at >= cutoff {
            r.kept.push(path.clone());
            continue;
        }
        if !dry_run {
            fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
            match fs::remove_file(sidecar_path(path)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(anyhow!("cannot remove {}: {e}", sidecar_path(path).display())),
            }
        }
        r.removed.push(path.clone());
    }
    r.kept.sort();
    r.removed.sort();
    Ok(r)
}

/// The newest snapshot in `dir` (by the time in its name).
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let mut best: Option<(OffsetDateTime, PathBuf)> = None;
    for e in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        if let Some((_, at)) = parse_file_name(&e.file_name().to_string_lossy()) {
            if best.as_ref().map(|b| at > b.0).unwrap_or(true) {
                best = Some((at, e.path()));
            }
        }
    }
    Ok(best.map(|b| b.1))
}

#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// Any node (a standby redirects to the active node) or the load balancer.
    pub address: String,
    pub token: String,
    pub ca_pem: Vec<u8>,
    pub dir: PathBuf,
    pub cluster: String,
    pub seal: SealInfo,
    pub engine: String,
    /// (base URL, node name) pairs, to record the source node by name.
    pub node_names: Vec<(String, String)>,
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct SaveReport {
    pub path: PathBuf,
    pub meta: Sidecar,
    /// True when the node asked was a standby and the snapshot came from the active node (found through
    /// sys/leader, or a 307).
    pub redirected: bool,
    pub seconds: f64,
}

fn name_of(names: &[(String, String)], base: &str) -> String {
    names.iter().find(|(u, _)| u.trim_end_matches('/') == base).map(|(_, n)| n.clone()).unwrap_or(base.to_string())
}

/// Streams a snapshot from the cluster into `dir` with its sidecar.
pub async fn save(o: &SaveOptions) -> Result<SaveReport> {
    let t0 = std::time::Instant::now();
    let http = Http::new(&o.ca_pem, o.timeout)?;
    let h = health(&http, &o.address).await?;
    if !h.initialized || h.sealed {
        bail!(
            "{} is {}: a snapshot needs an unsealed node",
            o.address,
            if h.sealed { "sealed" } else { "not initialized" }
        );
    }
    // A standby of OpenBao 2.7 does not redirect: it streams a snapshot of its OWN raft state, which can
    // lag the active node (measured: index 154 on the standby vs 155 on the active right after a write
    // burst; 1 of 10,000 acknowledged writes missing after a restore). So the snapshot is always taken
    // from the active node: a standby is asked who leads (sys/leader, no token needed).
    let mut address = o.address.trim_end_matches('/').to_string();
    if h.standby {
        let (s, v) = http.json(Method::GET, &address, "/v1/sys/leader", None, None).await?;
        let leader = v.get("leader_address").and_then(|x| x.as_str()).unwrap_or_default();
        if !s.is_success() || leader.is_empty() {
            bail!("{address} is a standby and does not know the active node (sys/leader: {s}); retry when the cluster has a leader");
        }
        address = leader.trim_end_matches('/').to_string();
    }
    let (mut resp, answered) =
        http.send(Method::GET, &address, "/v1/sys/storage/raft/snapshot", Some(&o.token), None).await?;
    if !resp.status().is_success() {
        let s = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("snapshot save: {answered} answered {s}: {}", body.trim());
    }
    let at = OffsetDateTime::now_utc();
    let mut w = SnapWriter::create(&o.dir, &o.cluster, at)?;
    while let Some(chunk) = resp.chunk().await.context("reading the snapshot stream")? {
        w.write(&chunk)?;
    }
    let meta = Sidecar {
        format: 1,
        file: String::new(),
        sha256: String::new(),
        size: 0,
        created_at: String::new(),
        cluster: o.cluster.clone(),
        cluster_id: h.cluster_id.clone(),
        seal: o.seal.clone(),
        engine: o.engine.clone(),
        version: h.version.clone().unwrap_or_default(),
        source_node: name_of(&o.node_names, &answered),
    };
    let path = w.finish(meta, at)?;
    let meta = read_sidecar(&path)?;
    Ok(SaveReport {
        path,
        meta,
        redirected: answered != o.address.trim_end_matches('/'),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub address: String,
    pub token: String,
    pub ca_pem: Vec<u8>,
    pub file: PathBuf,
    pub force: bool,
    /// The target's seal, from its spec and key material.
    pub target_seal: SealInfo,
    pub target_cluster: String,
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub forced: bool,
    pub meta: Sidecar,
    pub answered_by: String,
    pub seconds: f64,
}

/// Verifies the file, checks that the target can open it, then restores it. Nothing is sent unless the
/// bytes sent are exactly the bytes the sidecar describes.
pub async fn restore(o: &RestoreOptions) -> Result<RestoreReport> {
    let t0 = std::time::Instant::now();
    let meta = verify(&o.file)?;
    let bytes = fs::read(&o.file).with_context(|| format!("cannot read {}", o.file.display()))?;
    if bytes.len() as u64 != meta.size || output::sha256_hex(&bytes) != meta.sha256 {
        bail!("{} changed while it was being verified; refusing to restore it", o.file.display());
    }
    let http = Http::new(&o.ca_pem, o.timeout)?;
    let h = health(&http, &o.address).await?;
    if !h.initialized || h.sealed {
        bail!(
            "{} is {}: restore onto an initialized, unsealed cluster (a fresh one: `bootstrap` it first)",
            o.address,
            if h.sealed { "sealed" } else { "not initialized" }
        );
    }
    let target =
        TargetInfo { cluster: o.target_cluster.clone(), cluster_id: h.cluster_id.clone(), seal: o.target_seal.clone() };
    let mode = check_restore(&meta, &target, o.force)?;
    let path = match mode {
        RestoreMode::Normal => "/v1/sys/storage/raft/snapshot",
        RestoreMode::Force => "/v1/sys/storage/raft/snapshot-force",
    };
    let (resp, answered) = http.send(Method::POST, &o.address, path, Some(&o.token), Some(&bytes)).await?;
    let s = resp.status();
    if !s.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!("restore: {answered} answered {s}: {}", body.trim());
    }
    Ok(RestoreReport {
        forced: mode == RestoreMode::Force,
        meta,
        answered_by: answered,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn meta(cluster: &str) -> Sidecar {
        Sidecar {
            format: 1,
            file: String::new(),
            sha256: String::new(),
            size: 0,
            created_at: String::new(),
            cluster: cluster.into(),
            cluster_id: Some("c-1".into()),
            seal: SealInfo { kind: "shamir".into(), fingerprint: None },
            engine: "openbao".into(),
            version: "2.7.2".into(),
            source_node: "vault-1".into(),
        }
    }

    #[test]
    fn names_round_trip() {
        let at = datetime!(2026-11-23 08:55:30 UTC);
        let n = file_name("hybrid-eu", at);
        assert_eq!(n, "hybrid-eu-20261123T085530Z.snap");
        assert_eq!(parse_file_name(&n), Some(("hybrid-eu".into(), at)));
        assert_eq!(parse_file_name("hybrid.snap.json"), None);
        assert_eq!(parse_file_name("notes.txt"), None);
    }

    #[test]
    fn write_then_verify_and_refuse_tampered_or_truncated() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let p = write_snapshot(t.path(), &mut &data[..], meta("c"), OffsetDateTime::now_utc()).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let m = verify(&p).unwrap();
        assert_eq!(m.size, data.len() as u64);
        assert_eq!(m.sha256, output::sha256_hex(&data));
        assert_eq!(m.file, p.file_name().unwrap().to_string_lossy());
        // no temporary file left behind
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 2);

        // one flipped byte, same size
        let mut bad = data.clone();
        bad[1234] ^= 1;
        fs::write(&p, &bad).unwrap();
        let e = verify(&p).unwrap_err().to_string();
        assert!(e.contains("does not match") && e.contains("refusing"), "{e}");

        // truncated
        fs::write(&p, &data[..data.len() - 10]).unwrap();
        let e = verify(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");

        // sidecar missing
        fs::write(&p, &data).unwrap();
        verify(&p).unwrap();
        fs::remove_file(sidecar_path(&p)).unwrap();
        let e = verify(&p).unwrap_err().to_string();
        assert!(e.contains("cannot be verified"), "{e}");
    }

    #[test]
    fn empty_stream_is_refused_and_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        assert!(write_snapshot(t.path(), &mut &b""[..], meta("c"), OffsetDateTime::now_utc()).is_err());
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[test]
    fn prune_keeps_recent_and_always_the_newest() {
        let t = tempfile::tempdir().unwrap();
        let now = datetime!(2026-11-23 12:00:00 UTC);
        let mk = |cluster: &str, days_ago: i64| {
            let p = t.path().join(file_name(cluster, now - time::Duration::days(days_ago)));
            fs::write(&p, b"x").unwrap();
            fs::write(sidecar_path(&p), b"{}").unwrap();
            p
        };
        let a1 = mk("a", 1);
        let a10 = mk("a", 10);
        let a40 = mk("a", 40);
        let b50 = mk("b", 50); // the only (newest) snapshot of b: kept although old
        let b60 = mk("b", 60);
        fs::write(t.path().join("README"), b"mine").unwrap();

        let dry = prune(t.path(), 30, now, true).unwrap();
        assert_eq!(dry.removed.len(), 2);
        assert!(a40.exists(), "dry run removes nothing");

        let r = prune(t.path(), 30, now, false).unwrap();
        let mut want_removed = vec![a40.clone(), b60.clone()];
        want_removed.sort();
        assert_eq!(r.removed, want_removed);
        assert!(a1.exists() && a10.exists() && b50.exists());
        assert!(!a40.exists() && !sidecar_path(&a40).exists() && !b60.exists());
        assert!(t.path().join("README").exists());

        // keep-days 0: only the newest of each cluster survives
        let r = prune(t.path(), 0, now, false).unwrap();
        assert_eq!(r.kept.len(), 2, "{r:?}");
        assert!(a1.exists() && b50.exists() && !a10.exists());
        assert_eq!(latest(t.path()).unwrap(), Some(a1));
    }

    #[test]
    fn restore_check_explains_refusals() {
        let m = meta("c");
        let same = TargetInfo { cluster: "c".into(), cluster_id: Some("c-1".into()), seal: m.seal.clone() };
        assert_eq!(check_restore(&m, &same, false).unwrap(), RestoreMode::Normal);
        let other = TargetInfo { cluster_id: Some("c-2".into()), ..same.clone() };
        let e = check_restore(&m, &other, false).unwrap_err().to_string();
        assert!(e.contains("--force") && e.contains("ORIGINAL"), "{e}");
        assert_eq!(check_restore(&m, &other, true).unwrap(), RestoreMode::Force);

        let mut sm = meta("c");
        sm.seal = SealInfo { kind: "static".into(), fingerprint: Some("aa".repeat(32)) };
        let st = TargetInfo { seal: SealInfo { kind: "static".into(), fingerprint: Some("bb".repeat(32)) }, ..other };
        let e = check_restore(&sm, &st, true).unwrap_err().to_string();
        assert!(e.contains("could unseal"), "{e}");
        let e = check_restore(&sm, &same, true).unwrap_err().to_string();
        assert!(e.contains("static seal"), "{e}");
    }
}
