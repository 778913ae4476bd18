//! The restore rehearsal (issue 17): `vaultnix backup rehearse --config rehearsal.json`, the command
//! modules/rehearsal.nix's timer runs (on the load balancer by default). It proves that the newest
//! copy in the restic repository restores:
//!
//! 1. the newest vaultnix copy is dumped into a private directory and checked (restic's own
//!    authentication, the sidecar's size and sha256, the tags' sha256 / cluster / cluster id);
//! 2. a throwaway single-node server (the same `bao` binary, loopback, a free port, a temp dir) is
//!    initialised, the snapshot restored with snapshot-force, and the node unsealed with the
//!    original cluster's seal (static key, or a threshold of the original Shamir keys);
//! 3. the canary the backup job wrote just before the snapshot is read back with the backup token
//!    and compared with the value recorded in the copy's tags;
//! 4. `vaultnix_restore_rehearsal_*` metrics are written for the node exporter, the server is stopped
//!    (by its pid) and its directory wiped, also when a step failed.

use crate::ops::live::{health, Http};
use crate::ops::restic::{Restic, ResticConfig};
use crate::output;
use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `nodes/<host>.rehearsal.json`: public data; the secrets are the unit's credentials.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalConfig {
    pub format: u32,
    pub cluster: String,
    /// The host this config is for.
    pub host: String,
    pub restic: ResticConfig,
    pub ca_file: String,
    /// The backup token (it wrote the canary into its own cubbyhole; valid inside the restored data).
    pub token_file: String,
    pub seal_kind: String,
    /// Static seal: the key id and the key file (the original cluster's key).
    pub static_key_id: Option<String>,
    pub static_key_file: Option<String>,
    /// Shamir: a file with the original cluster's unseal keys (init.json, or one key a line).
    pub unseal_keys_file: Option<String>,
    /// Scratch directory (created 0700, wiped after each run).
    pub work_dir: String,
    pub textfile_dir: Option<String>,
    pub timeout_seconds: u64,
}

pub fn load_config(path: &Path) -> Result<RehearsalConfig> {
    let t = fs::read_to_string(path).with_context(|| format!("cannot read the rehearsal config {}", path.display()))?;
    let c: RehearsalConfig = serde_json::from_str(&t).with_context(|| {
        format!("{} is not a vaultnix rehearsal config (rendered by `vaultnix generate`)", path.display())
    })?;
    if c.format != 1 {
        bail!("{}: rehearsal config format {} is not supported by this vaultnix (1)", path.display(), c.format);
    }
    Ok(c)
}

#[derive(Debug, Clone, Serialize)]
pub struct RehearsalReport {
    pub copy_id: String,
    pub created_at: String,
    /// Age of the copy when the rehearsal started (the recovery point).
    pub copy_age_seconds: i64,
    pub snapshot_bytes: u64,
    pub cluster_id: String,
    pub canary: String,
    /// Repository -> throwaway server serving the canary (the recovery time of one node).
    pub seconds: f64,
}

/// Unseal keys from a file: init.json (`keys_base64` / `keys`) or one key a line.
pub fn read_unseal_keys(path: &Path) -> Result<Vec<String>> {
    let t = fs::read_to_string(path).with_context(|| format!("cannot read the unseal keys {}", path.display()))?;
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
        for k in ["keys_base64", "keys", "unseal_keys_b64"] {
            if let Some(a) = v.get(k).and_then(|x| x.as_array()) {
                let keys: Vec<String> = a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect();
                if !keys.is_empty() {
                    return Ok(keys);
                }
            }
        }
        bail!("{}: JSON without keys_base64 / keys", path.display());
    }
    let keys: Vec<String> = t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if keys.is_empty() {
        bail!("{}: no unseal keys", path.display());
    }
    Ok(keys)
}

/// The throwaway server: killed by its pid and its directory removed when dropped.
struct Throwaway {
    child: Option<Child>,
    dir: PathBuf,
    bao: PathBuf,
    cfg_path: PathBuf,
    data: PathBuf,
    cluster_addr: String,
}

impl Throwaway {
    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log"))?;
        let child = Command::new(&self.bao)
            .arg("server")
            .arg(format!("-config={}", self.cfg_path.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bao.display()))?;
        self.child = Some(child);
        Ok(())
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// The restored raft configuration names the original cluster's servers: the single throwaway
    /// node is made the only voter with raft's recovery file, then started again.
    fn restart_as_only_voter(&mut self) -> Result<()> {
        self.stop();
        let peers =
            serde_json::json!([{ "id": "vaultnix-rehearsal", "address": self.cluster_addr, "non_voter": false }]);
        let raft = self.data.join("raft");
        fs::create_dir_all(&raft)?;
        output::write_file_atomic(&raft.join("peers.json"), peers.to_string().as_bytes(), true)?;
        self.spawn()
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?.port())
}

fn start_server(c: &RehearsalConfig, dir: &Path) -> Result<(Throwaway, String)> {
    let bao = crate::lab::find_bao()?;
    let data = dir.join("data");
    crate::ops::restic::private_dir(&data)?;
    let port = free_port()?;
    let cport = free_port()?;
    let addr = format!("http://127.0.0.1:{port}");
    let mut cfg = serde_json::json!({
        "storage": { "raft": { "path": data.to_string_lossy(), "node_id": "vaultnix-rehearsal" } },
        // Loopback only, a throwaway server that lives for one rehearsal: no TLS.
        "listener": [ { "tcp": {
            "address": format!("127.0.0.1:{port}"),
            "cluster_address": format!("127.0.0.1:{cport}"),
            "tls_disable": true,
        } } ],
        "api_addr": addr,
        "cluster_addr": format!("https://127.0.0.1:{cport}"),
        "ui": false,
        "log_level": "warn",
    });
    if c.seal_kind == "static" {
        let id = c.static_key_id.clone().ok_or_else(|| anyhow!("static seal without static_key_id"))?;
        let f = c.static_key_file.clone().ok_or_else(|| anyhow!("static seal without static_key_file"))?;
        cfg["seal"] = serde_json::json!({ "static": { "current_key_id": id, "current_key": format!("file://{f}") } });
    }
    let cfg_path = dir.join("server.json");
    output::write_file_atomic(&cfg_path, serde_json::to_string_pretty(&cfg)?.as_bytes(), true)?;
    let mut t = Throwaway {
        child: None,
        dir: dir.to_path_buf(),
        bao,
        cfg_path,
        data,
        cluster_addr: format!("127.0.0.1:{cport}"),
    };
    t.spawn()?;
    Ok((t, addr))
}

async fn wait_for<F, Fut, T>(what: &str, limit: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("{what} within {limit:?} failed ({last})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One rehearsal. Metrics are written whatever the outcome (the caller does that: [`record`]).
pub async fn rehearse(c: &RehearsalConfig) -> Result<RehearsalReport> {
    let t0 = Instant::now();
    let limit = Duration::from_secs(c.timeout_seconds.max(60));
    let token = crate::ops::backup::read_token(Path::new(&c.token_file))?;
    let ca = fs::read(&c.ca_file).with_context(|| format!("cannot read the CA certificate {}", c.ca_file))?;
    let http = Http::new(&ca, Duration::from_secs(120))?;
    let r = Restic::new(&c.restic, limit)?;
    let copy = r.pick(&c.cluster, None)?;
    let work = PathBuf::from(&c.work_dir);
    crate::ops::restic::private_dir(&work)?;
    let run_dir = crate::ops::restic::PrivateTemp::new_in(&work, "run-")?;
    let fetched = run_dir.path().join("copy");
    let (snap, meta) = r.fetch_verified(&copy, &fetched)?;
    if meta.cluster != c.cluster {
        bail!("copy {} is of cluster {:?}, not {:?}", copy.short_id, meta.cluster, c.cluster);
    }
    if meta.seal.kind != c.seal_kind {
        bail!("copy {} was taken with a {} seal, this cluster uses {}", copy.short_id, meta.seal.kind, c.seal_kind);
    }
    let cluster_id = meta.cluster_id.clone().ok_or_else(|| anyhow!("copy {} records no cluster id", copy.short_id))?;
    let want_canary = copy.tag("canary").unwrap_or_default().to_string();
    if want_canary.is_empty() {
        bail!("copy {} records no canary", copy.short_id);
    }
    let bytes = fs::read(&snap)?;
    if output::sha256_hex(&bytes) != meta.sha256 {
        bail!("{} changed after it was verified", snap.display());
    }
    let original_keys = match c.seal_kind.as_str() {
        "static" => Vec::new(),
        _ => read_unseal_keys(Path::new(c.unseal_keys_file.as_deref().unwrap_or_default()))?,
    };

    let (mut server, addr) = start_server(c, &run_dir.path().join("server"))?;
    let fresh = wait_for("the throwaway server answering", Duration::from_secs(60), || async {
        Ok(health(&http, &addr).await.ok())
    })
    .await?;
    if fresh.initialized {
        bail!("the throwaway server at {addr} is already initialised: refusing to touch it");
    }
    let init = if c.seal_kind == "static" {
        serde_json::json!({ "recovery_shares": 1, "recovery_threshold": 1 })
    } else {
        serde_json::json!({ "secret_shares": 1, "secret_threshold": 1 })
    };
    let (s, v) = http.json(Method::PUT, &addr, "/v1/sys/init", None, Some(init)).await?;
    if !s.is_success() {
        bail!("sys/init of the throwaway server: {s} {v}");
    }
    let root = v.get("root_token").and_then(|x| x.as_str()).unwrap_or_default().to_string();
    if c.seal_kind != "static" {
        let k = v.pointer("/keys_base64/0").and_then(|x| x.as_str()).unwrap_or_default().to_string();
        http.json(Method::PUT, &addr, "/v1/sys/unseal", None, Some(serde_json::json!({ "key": k }))).await?;
    }
    wait_for("the throwaway server becoming active", Duration::from_secs(60), || async {
        let h = health(&http, &addr).await?;
        Ok((h.initialized && !h.sealed && !h.standby).then_some(()))
    })
    .await?;
    let (resp, _) =
        http.send(Method::POST, &addr, "/v1/sys/storage/raft/snapshot-force", Some(&root), Some(&bytes)).await?;
    if !resp.status().is_success() {
        let s = resp.status();
        bail!(
            "restoring copy {} into the throwaway server: {s} {}",
            copy.short_id,
            resp.text().await.unwrap_or_default()
        );
    }
    // The restore is applied asynchronously: the node seals itself (or reports the original cluster id)
    // once it runs on the snapshot's data. Only then is it restarted as the only voter.
    wait_for("the throwaway server applying the snapshot", Duration::from_secs(120), || async {
        let h = health(&http, &addr).await?;
        Ok((h.sealed || h.cluster_id.as_deref() == Some(cluster_id.as_str())).then_some(()))
    })
    .await?;
    server.restart_as_only_voter()?;
    // On the snapshot's keyring now: unseal with the original keys (static: automatic) until it reports
    // the original cluster id and is active.
    wait_for("the restored server unsealing as the original cluster", limit, || async {
        let h = health(&http, &addr).await?;
        if h.sealed {
            for k in &original_keys {
                let (s, v) = http
                    .json(Method::PUT, &addr, "/v1/sys/unseal", None, Some(serde_json::json!({ "key": k })))
                    .await?;
                if !s.is_success() || v.get("sealed").and_then(|x| x.as_bool()) == Some(false) {
                    break;
                }
            }
            return Ok(None);
        }
        Ok((!h.standby && h.cluster_id.as_deref() == Some(cluster_id.as_str())).then_some(()))
    })
    .await?;
    let got = wait_for("reading the canary back", Duration::from_secs(60), || async {
        let (s, v) = http.json(Method::GET, &addr, crate::ops::backup::CANARY_PATH, Some(&token), None).await?;
        if s.as_u16() == 404 {
            bail!("the canary is not in the restored data (404)");
        }
        if !s.is_success() {
            return Err(anyhow!("{s} {v}"));
        }
        Ok(v.pointer("/data/value").and_then(|x| x.as_str()).map(str::to_string))
    })
    .await?;
    drop(server);
    if got != want_canary {
        bail!("the restored canary is {got:?}, the copy recorded {want_canary:?}");
    }
    let age = copy.created().map(|t| time::OffsetDateTime::now_utc().unix_timestamp() - t).unwrap_or(-1);
    Ok(RehearsalReport {
        copy_id: copy.short_id.clone(),
        created_at: meta.created_at.clone(),
        copy_age_seconds: age,
        snapshot_bytes: meta.size,
        cluster_id,
        canary: got,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

const LAST_SUCCESS: &str = "vaultnix_restore_rehearsal_last_success_timestamp_seconds";

/// Writes `vaultnix_restore_rehearsal.prom`: the last success (kept from the previous file after a
/// failure), the last run's outcome and time, and the last successful run's duration.
pub fn record(dir: &Path, c: &RehearsalConfig, r: &Result<RehearsalReport>) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let p = dir.join("vaultnix_restore_rehearsal.prom");
    let labels = format!("cluster=\"{}\",host=\"{}\"", c.cluster, c.host);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let previous = fs::read_to_string(&p).unwrap_or_default();
    let prev = |name: &str| {
        previous
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    let (ok, last_success, duration) = match r {
        Ok(rep) => (1, Some(now.to_string()), Some(format!("{:.3}", rep.seconds))),
        Err(_) => (0, prev(LAST_SUCCESS), prev("vaultnix_restore_rehearsal_duration_seconds")),
    };
    let mut text = format!(
        "# HELP vaultnix_restore_rehearsal_success Whether the last restore rehearsal succeeded (1) or failed (0).\n\
         # TYPE vaultnix_restore_rehearsal_success gauge\n\
         vaultnix_restore_rehearsal_success{{{labels}}} {ok}\n\
         # HELP vaultnix_restore_rehearsal_last_run_timestamp_seconds Time of the last restore rehearsal.\n\
         # TYPE vaultnix_restore_rehearsal_last_run_timestamp_seconds gauge\n\
         vaultnix_restore_rehearsal_last_run_timestamp_seconds{{{labels}}} {now}\n"
    );
    if let Some(t) = last_success {
        text.push_str(&format!(
            "# HELP {LAST_SUCCESS} Time of the last restore rehearsal that read the canary back.\n\
             # TYPE {LAST_SUCCESS} gauge\n\
             {LAST_SUCCESS}{{{labels}}} {t}\n"
        ));
    }
    if let Some(d) = duration {
        text.push_str(&format!(
            "# HELP vaultnix_restore_rehearsal_duration_seconds Repository to restored server serving, last success.\n\
             # TYPE vaultnix_restore_rehearsal_duration_seconds gauge\n\
             vaultnix_restore_rehearsal_duration_seconds{{{labels}}} {d}\n"
        ));
    }
    output::write_file_atomic(&p, text.as_bytes(), false)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RehearsalConfig {
        RehearsalConfig {
            format: 1,
            cluster: "ops".into(),
            host: "lb".into(),
            restic: ResticConfig {
                repository: "/r".into(),
                password_file: "/p".into(),
                environment_file: None,
                keep_hourly: 0,
                keep_daily: 30,
                keep_weekly: 0,
                keep_monthly: 0,
            },
            ca_file: "/ca".into(),
            token_file: "/t".into(),
            seal_kind: "shamir".into(),
            static_key_id: None,
            static_key_file: None,
            unseal_keys_file: Some("/k".into()),
            work_dir: "/w".into(),
            textfile_dir: None,
            timeout_seconds: 60,
        }
    }

    #[test]
    fn a_failure_keeps_the_last_success_and_says_0() {
        let t = tempfile::tempdir().unwrap();
        let ok = Ok(RehearsalReport {
            copy_id: "a".into(),
            created_at: String::new(),
            copy_age_seconds: 1,
            snapshot_bytes: 1,
            cluster_id: "c".into(),
            canary: "x".into(),
            seconds: 2.5,
        });
        let p = record(t.path(), &cfg(), &ok).unwrap();
        let first = fs::read_to_string(&p).unwrap();
        assert!(first.contains("vaultnix_restore_rehearsal_success{cluster=\"ops\",host=\"lb\"} 1"), "{first}");
        let stamp = first.lines().find(|l| l.starts_with(LAST_SUCCESS)).unwrap().to_string();
        record(t.path(), &cfg(), &Err(anyhow!("boom"))).unwrap();
        let second = fs::read_to_string(&p).unwrap();
        assert!(second.contains("vaultnix_restore_rehearsal_success{cluster=\"ops\",host=\"lb\"} 0"), "{second}");
        assert!(second.contains(&stamp), "the last success survives a failure: {second}");
        assert!(second.contains("vaultnix_restore_rehearsal_duration_seconds{cluster=\"ops\",host=\"lb\"} 2.500"));
    }

    #[test]
    fn unseal_keys_from_init_json_or_lines() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("k");
        fs::write(&p, r#"{"keys_base64":["a","b"],"root_token":"r"}"#).unwrap();
        assert_eq!(read_unseal_keys(&p).unwrap(), vec!["a", "b"]);
        fs::write(&p, "a\n\nb\n").unwrap();
        assert_eq!(read_unseal_keys(&p).unwrap(), vec!["a", "b"]);
        fs::write(&p, "{}").unwrap();
        assert!(read_unseal_keys(&p).is_err());
    }
}
