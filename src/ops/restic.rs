//! Off-host copies of verified raft snapshots in a restic repository (issue 17). One implementation,
//! used by `vaultnix backup run` (copy + forget), `vaultnix snapshot list|restore --from-repo` and
//! `vaultnix backup rehearse`: every restic call goes through [`Restic::run`], which passes the
//! password as RESTIC_PASSWORD_FILE (never on a command line), adds the environment file's KEY=VALUE
//! lines (S3 credentials and the like) and bounds the call in time.
//!
//! A copy is one restic snapshot holding the `.snap` file and its sidecar, host = the cluster name,
//! tagged `vaultnix`, `cluster=<name>`, `cluster_id=<id>`, `node=<source node>`, `sha256=<hex>`,
//! `created=<unix seconds>` and `canary=<value>` (what the backup job wrote to its cubbyhole just
//! before the snapshot). Restoring dumps both files into a private directory and checks them like a
//! local snapshot ([`snapshot::verify`]) and against the tags.

use crate::ops::snapshot::{self, Sidecar};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tag every vaultnix copy carries (forget and list touch nothing else in a shared repository).
pub const TAG: &str = "vaultnix";

/// `[backup.restic]` as the job sees it: public data, the secrets are paths.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResticConfig {
    pub repository: String,
    /// The repository password file (NixOS: the unit's credential `restic-password`).
    pub password_file: String,
    /// KEY=VALUE lines passed to restic (NixOS: the unit's credential `restic-env`).
    #[serde(default)]
    pub environment_file: Option<String>,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

pub struct Restic {
    pub cfg: ResticConfig,
    pub binary: PathBuf,
    pub timeout: Duration,
}

/// The restic binary: `$VAULTNIX_RESTIC`, else `restic` on PATH (modules/backup.nix puts pkgs.restic there).
pub fn find_restic() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VAULTNIX_RESTIC").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let c = d.join("restic");
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!("no `restic` binary on PATH (set VAULTNIX_RESTIC=/path/to/restic)")
}

/// KEY=VALUE lines (`#` comments, blank lines, optional `export `, optional quotes), as systemd's
/// EnvironmentFile reads them.
pub fn parse_env_file(text: &str, what: &str) -> Result<Vec<(String, String)>> {
    let mut v = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, val) = l.split_once('=').ok_or_else(|| anyhow!("{what}:{}: not KEY=VALUE", i + 1))?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("{what}:{}: {k:?} is not a variable name", i + 1);
        }
        if k.starts_with("RESTIC_PASSWORD") || k == "RESTIC_REPOSITORY" {
            bail!("{what}:{}: {k} is set by vaultnix (password_file, repository); remove it", i + 1);
        }
        let val = val.trim();
        let val = val
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| val.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(val);
        v.push((k.to_string(), val.to_string()));
    }
    Ok(v)
}

/// One copy in the repository (`restic snapshots --json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepoSnapshot {
    pub id: String,
    #[serde(default)]
    pub short_id: String,
    pub time: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl RepoSnapshot {
    pub fn tag(&self, key: &str) -> Option<&str> {
        let p = format!("{key}=");
        self.tags.iter().find_map(|t| t.strip_prefix(&p))
    }
    pub fn created(&self) -> Option<i64> {
        self.tag("created").and_then(|x| x.parse().ok())
    }
    /// The `.snap` path inside the copy.
    pub fn snap_path(&self) -> Option<&str> {
        self.paths.iter().map(String::as_str).find(|p| p.ends_with(&format!(".{}", snapshot::SNAP_EXT)))
    }
}

/// Restic tags may not hold commas; the values we put there never do (hex, names, numbers).
fn tag_value(s: &str) -> String {
    s.chars().map(|c| if c == ',' || c.is_whitespace() { '_' } else { c }).collect()
}

impl Restic {
    pub fn new(cfg: &ResticConfig, timeout: Duration) -> Result<Restic> {
        Ok(Restic { cfg: cfg.clone(), binary: find_restic()?, timeout })
    }

    fn command(&self, args: &[&str]) -> Result<Command> {
        let pw = Path::new(&self.cfg.password_file);
        match fs::metadata(pw) {
            Ok(_) => {}
            Err(e) => bail!("cannot read the restic password file {} ({e})", pw.display()),
        }
        let mut c = Command::new(&self.binary);
        c.env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .env("RESTIC_REPOSITORY", &self.cfg.repository)
            .env("RESTIC_PASSWORD_FILE", pw)
            .arg("--no-cache")
            .args(args)
            .stdin(Stdio::null());
        if let Some(e) = &self.cfg.environment_file {
            let t = fs::read_to_string(e).with_context(|| format!("cannot read the restic environment file {e}"))?;
            for (k, v) in parse_env_file(&t, e)? {
                c.env(k, v);
            }
        }
        Ok(c)
    }

    /// Runs restic with `args`; stdout goes to `stdout` (a file) or is returned. Bounded by the timeout:
    /// a restic still running then is killed (by its pid) and the call fails.
    pub fn run_to(&self, args: &[&str], stdout: Option<fs::File>) -> Result<Vec<u8>> {
        let tmp = PrivateTemp::new("vaultnix-restic-").context("temporary directory for restic's output")?;
        let out_p = tmp.path().join("stdout");
        let err_p = tmp.path().join("stderr");
        let (out, captured) = match stdout {
            Some(f) => (f, false),
            None => (fs::File::create(&out_p)?, true),
        };
        let mut c = self.command(args)?;
        c.stdout(out).stderr(fs::File::create(&err_p)?);
        let mut child = c.spawn().with_context(|| format!("cannot start {}", self.binary.display()))?;
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("restic {} did not finish within {:?}; killed", args.first().unwrap_or(&""), self.timeout);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = fs::read_to_string(&err_p).unwrap_or_default();
        if !status.success() {
            bail!(
                "restic {} failed ({status}): {}",
                args.first().unwrap_or(&""),
                err.trim().lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        Ok(if captured { fs::read(&out_p)? } else { Vec::new() })
    }

    pub fn run(&self, args: &[&str]) -> Result<Vec<u8>> {
        self.run_to(args, None)
    }

    /// `restic init` unless the repository already exists (`restic cat config` answers).
    pub fn ensure_repository(&self) -> Result<bool> {
        if self.run(&["cat", "config"]).is_ok() {
            return Ok(false);
        }
        self.run(&["init"]).context("the repository does not exist and could not be created")?;
        Ok(true)
    }

    /// Copies a verified snapshot and its sidecar, tagged (see the module doc). Returns the copy's id.
    pub fn backup(&self, snap: &Path, meta: &Sidecar, canary: &str) -> Result<String> {
        let side = snapshot::sidecar_path(snap);
        let created = time::OffsetDateTime::parse(&meta.created_at, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc().unix_timestamp());
        let tags = [
            TAG.to_string(),
            format!("cluster={}", tag_value(&meta.cluster)),
            format!("cluster_id={}", tag_value(meta.cluster_id.as_deref().unwrap_or("none"))),
            format!("node={}", tag_value(&meta.source_node)),
            format!("sha256={}", meta.sha256),
            format!("created={created}"),
            format!("canary={}", tag_value(canary)),
        ];
        let mut args: Vec<String> = vec!["backup".into(), "--json".into(), "--host".into(), tag_value(&meta.cluster)];
        for t in &tags {
            args.push("--tag".into());
            args.push(t.clone());
        }
        args.push(snap.to_string_lossy().into_owned());
        args.push(side.to_string_lossy().into_owned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&a)?;
        // The last JSON line is the summary, with the new snapshot's id.
        let text = String::from_utf8_lossy(&out);
        for l in text.lines().rev() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                if v.get("message_type").and_then(|m| m.as_str()) == Some("summary") {
                    if let Some(id) = v.get("snapshot_id").and_then(|x| x.as_str()) {
                        return Ok(id.to_string());
                    }
                }
            }
        }
        bail!("restic backup printed no summary: {}", text.trim())
    }

    /// `restic forget --prune` with the policy, only vaultnix copies of `cluster`, grouped by host (one
    /// group however the file names differ).
    pub fn forget(&self, cluster: &str) -> Result<()> {
        let c = &self.cfg;
        let mut args: Vec<String> = vec![
            "forget".into(),
            "--prune".into(),
            "--tag".into(),
            TAG.into(),
            "--host".into(),
            tag_value(cluster),
            "--group-by".into(),
            "host".into(),
        ];
        for (flag, n) in [
            ("--keep-hourly", c.keep_hourly),
            ("--keep-daily", c.keep_daily),
            ("--keep-weekly", c.keep_weekly),
            ("--keep-monthly", c.keep_monthly),
        ] {
            if n > 0 {
                args.push(flag.into());
                args.push(n.to_string());
            }
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&a).map(|_| ())
    }

    /// The vaultnix copies of `cluster`, oldest first.
    pub fn list(&self, cluster: &str) -> Result<Vec<RepoSnapshot>> {
        let out = self.run(&["snapshots", "--json", "--tag", TAG, "--host", &tag_value(cluster)])?;
        let mut v: Vec<RepoSnapshot> =
            serde_json::from_slice(&out).context("restic snapshots --json printed something else")?;
        v.sort_by(|a, b| (a.created(), &a.time).cmp(&(b.created(), &b.time)));
        Ok(v)
    }

    /// Picks a copy: `id` (full or short), else the newest.
    pub fn pick(&self, cluster: &str, id: Option<&str>) -> Result<RepoSnapshot> {
        let all = self.list(cluster)?;
        match id {
            Some(id) => all
                .into_iter()
                .find(|s| s.id == id || s.short_id == id || (id.len() >= 8 && s.id.starts_with(id)))
                .ok_or_else(|| anyhow!("no vaultnix copy {id} of cluster {cluster} in {}", self.cfg.repository)),
            None => all
                .into_iter()
                .next_back()
                .ok_or_else(|| anyhow!("no vaultnix copy of cluster {cluster} in {}", self.cfg.repository)),
        }
    }

    /// Dumps the copy's `.snap` and sidecar into `dir` (created 0700), then checks them: restic's own
    /// authentication of every blob, our sidecar (size, sha256), and the tags recorded at backup time
    /// (sha256, cluster, cluster id). Returns the local `.snap` path and its sidecar.
    pub fn fetch_verified(&self, s: &RepoSnapshot, dir: &Path) -> Result<(PathBuf, Sidecar)> {
        private_dir(dir)?;
        let src =
            s.snap_path().ok_or_else(|| anyhow!("copy {} holds no .snap file: not a vaultnix copy", s.short_id))?;
        let name = Path::new(src).file_name().ok_or_else(|| anyhow!("copy {}: bad path {src}", s.short_id))?;
        let snap = dir.join(name);
        let side = snapshot::sidecar_path(&snap);
        let src_side = format!("{src}.json");
        for (from, to) in [(src, &snap), (src_side.as_str(), &side)] {
            let f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(to)
                .with_context(|| format!("cannot create {}", to.display()))?;
            self.run_to(&["dump", &s.id, from], Some(f)).with_context(|| {
                format!("copy {} could not be read back from the repository: refusing to restore it", s.short_id)
            })?;
        }
        let meta = snapshot::verify(&snap).with_context(|| format!("copy {} from the repository", s.short_id))?;
        if s.tag("sha256") != Some(meta.sha256.as_str()) {
            bail!(
                "copy {}: sha256 {} is not the {} recorded when it was copied: refusing to restore it",
                s.short_id,
                meta.sha256,
                s.tag("sha256").unwrap_or("(none)")
            );
        }
        if s.tag("cluster") != Some(tag_value(&meta.cluster).as_str())
            || s.tag("cluster_id") != Some(tag_value(meta.cluster_id.as_deref().unwrap_or("none")).as_str())
        {
            bail!(
                "copy {}: the sidecar names cluster {:?} ({:?}) but the copy was tagged {:?} ({:?}): refusing to restore it",
                s.short_id,
                meta.cluster,
                meta.cluster_id,
                s.tag("cluster"),
                s.tag("cluster_id")
            );
        }
        Ok((snap, meta))
    }
}

/// A private (0700) directory with a random name under `base`, removed with everything in it on drop.
pub struct PrivateTemp(PathBuf);

impl PrivateTemp {
    pub fn new_in(base: &Path, prefix: &str) -> Result<PrivateTemp> {
        fs::create_dir_all(base).with_context(|| format!("cannot create {}", base.display()))?;
        let p = base.join(format!("{prefix}{}", hex::encode(crate::secrets::random_bytes::<8>()?)));
        std::fs::DirBuilder::new().mode(0o700).create(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(PrivateTemp(p))
    }
    pub fn new(prefix: &str) -> Result<PrivateTemp> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateTemp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Creates `dir` owner-only (or tightens one we just made).
pub fn private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_is_read_like_systemd_and_cannot_override_the_password() {
        let v = parse_env_file("# s3\nAWS_ACCESS_KEY_ID=AK\nexport AWS_SECRET_ACCESS_KEY=\"s e\"\n\n", "env").unwrap();
        assert_eq!(v, vec![("AWS_ACCESS_KEY_ID".into(), "AK".into()), ("AWS_SECRET_ACCESS_KEY".into(), "s e".into())]);
        let e = parse_env_file("RESTIC_PASSWORD=x\n", "env").unwrap_err().to_string();
        assert!(e.contains("env:1") && e.contains("RESTIC_PASSWORD"), "{e}");
        assert!(parse_env_file("nonsense\n", "env").is_err());
    }

    #[test]
    fn tags_are_read_back() {
        let s = RepoSnapshot {
            id: "abcd".into(),
            short_id: "ab".into(),
            time: "t".into(),
            hostname: "ops".into(),
            paths: vec!["/b/ops-1.snap.json".into(), "/b/ops-1.snap".into()],
            tags: vec!["vaultnix".into(), "sha256=ff".into(), "created=12".into()],
        };
        assert_eq!(s.tag("sha256"), Some("ff"));
        assert_eq!(s.created(), Some(12));
        assert_eq!(s.snap_path(), Some("/b/ops-1.snap"));
        assert_eq!(tag_value("a,b c"), "a_b_c");
    }
}
