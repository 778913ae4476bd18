//! The restore drill: disaster recovery rehearsed end to end on two real lab clusters.
//!
//! 1. Lab A: write N secrets. 2. Save a snapshot from a STANDBY (the 307 to the active node is followed).
//! 3. Stop A (keep its init.json: the original unseal keys and root token). 4. Lab B: a fresh cluster with
//!    its own barrier keys. 5. Restore with snapshot-force (a plain restore is refused across clusters).
//!    B then runs on A's keyring and seals itself. 6. Unseal B with A's ORIGINAL keys. 7. Read every
//!    secret back with A's root token.
//!
//! With `from_repo` the snapshot goes the off-host way in between (`[backup.restic]`, issue 17): it is
//! copied into a restic repository (a path repository in the work directory, its own random password),
//! a small change is written and a second snapshot copied (the second run's deduplication), and B is
//! restored from the newest copy in the repository, fetched and verified exactly as `snapshot restore
//! --from-repo` does. The report then carries the recovery point (age of that copy when the restore
//! starts) and the recovery time (repository → a cluster serving the first verified read).

use crate::lab::LabHandle;
use crate::ops::live::{health, Http};
use crate::ops::restic::{Restic, ResticConfig};
use crate::ops::snapshot::{self, RestoreOptions, SaveOptions};
use crate::plan::Plan;
use crate::render::paths;
use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RestoreDrillOptions {
    /// The spec the two labs run (None: the built-in example).
    pub spec: Option<PathBuf>,
    /// Work directory: lab-a/, lab-b/ and snapshots/ are created inside.
    pub workdir: PathBuf,
    pub secrets: usize,
    /// Concurrent writers/readers.
    pub concurrency: usize,
    /// Leave both labs' files (not processes) behind for inspection.
    pub keep_files: bool,
    /// Copy through a restic repository and restore from it (RPO/RTO).
    pub from_repo: bool,
}

/// The off-host leg of a `from_repo` drill.
#[derive(Debug, Clone, Serialize)]
pub struct RepoFigures {
    pub repository: PathBuf,
    /// `restic backup` of the first snapshot (a fresh repository), and of the second.
    pub first_copy_seconds: f64,
    pub second_copy_seconds: f64,
    /// The repository's size on disk after each copy.
    pub repo_bytes_after_first: u64,
    pub repo_bytes_after_second: u64,
    /// Size of the second snapshot, and what the repository grew by for it: the deduplication ratio is
    /// snapshot / growth.
    pub second_snapshot_bytes: u64,
    pub dedup_ratio: f64,
    /// Secrets written between the two snapshots.
    pub changed_secrets: usize,
    /// Recovery point: the restored copy's age when the restore started (its snapshot's `created_at`).
    pub rpo_seconds: f64,
    /// Fetch + verify from the repository.
    pub fetch_seconds: f64,
    /// Recovery time: from the start of the fetch until the restored cluster answered the first verified
    /// read (fetch, snapshot-force, unseal with the original keys, first read).
    pub rto_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub secrets: usize,
    pub snapshot: PathBuf,
    pub snapshot_bytes: u64,
    /// The node the save was sent to (a standby when there is one).
    pub saved_from: String,
    /// The save was answered by way of a redirect (OpenBao 2.7 standbys answer it themselves).
    pub saved_via_redirect: bool,
    pub write_seconds: f64,
    pub save_seconds: f64,
    /// The snapshot-force call.
    pub restore_seconds: f64,
    /// From the restore's answer until the restored cluster has an active node again (unsealed with
    /// the original keys).
    pub unseal_seconds: f64,
    pub verify_seconds: f64,
    /// save + restore (the two API operations; the ≤ 10 s goal).
    pub save_restore_seconds: f64,
    /// save + restore + unseal until every node runs the original cluster again.
    pub recovered_seconds: f64,
    /// A plain (non-forced) restore onto the fresh cluster was refused before anything was sent.
    pub plain_restore_refused: bool,
    pub read_back: usize,
    pub missing: usize,
    pub wrong: usize,
    /// What each node reported after the restore, with times (seal, unseal, election).
    pub unseal_timeline: Vec<String>,
    pub original_cluster_id: String,
    pub restored_cluster_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoFigures>,
}

impl RestoreReport {
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.wrong == 0 && self.read_back == self.secrets && self.plain_restore_refused
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("tokio runtime")
}

fn urls_len(plan: &Plan) -> usize {
    plan.nodes.len()
}

fn node_urls(plan: &Plan) -> Vec<String> {
    plan.nodes.iter().map(|n| plan.api_url(n)).collect()
}

/// (active, standbys) of a cluster, by sys/health.
async fn roles(http: &Http, plan: &Plan) -> Result<(String, Vec<String>)> {
    let mut active = None;
    let mut standbys = Vec::new();
    for u in node_urls(plan) {
        if let Ok(h) = health(http, &u).await {
            if h.initialized && !h.sealed {
                if h.standby {
                    standbys.push(u);
                } else {
                    active = Some(u);
                }
            }
        }
    }
    Ok((active.ok_or_else(|| anyhow!("no active node"))?, standbys))
}

fn value_for(i: usize, nonce: &str) -> String {
    format!("drill-{nonce}-{i}")
}

/// Writes or reads secret/drill/<i> for i in 0..n with `conc` concurrent workers. For reads returns
/// (found, missing, wrong).
#[allow(clippy::too_many_arguments)]
async fn kv_many(
    http: &Http,
    base: &str,
    token: &str,
    from: usize,
    n: usize,
    conc: usize,
    nonce: &str,
    write: bool,
) -> Result<(usize, usize, usize)> {
    let mut set = tokio::task::JoinSet::new();
    let conc = conc.max(1);
    for w in 0..conc {
        let (http, base, token, nonce) = (http.clone(), base.to_string(), token.to_string(), nonce.to_string());
        set.spawn(async move {
            let (mut found, mut missing, mut wrong) = (0usize, 0usize, 0usize);
            let mut i = from + w;
            while i < n {
                let path = format!("/v1/secret/data/drill/{i}");
                let want = value_for(i, &nonce);
                if write {
                    let body = serde_json::json!({ "data": { "v": want } });
                    // Bounded retries: a write is only counted when acknowledged.
                    let mut done = false;
                    for _ in 0..5 {
                        if let Ok((s, _)) = http.json(Method::PUT, &base, &path, Some(&token), Some(body.clone())).await
                        {
                            if s.is_success() {
                                done = true;
                                break;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    if !done {
                        return Err(anyhow!("write of secret/drill/{i} failed 5 times"));
                    }
                    found += 1;
                } else {
                    let (s, v) = http.json(Method::GET, &base, &path, Some(&token), None).await?;
                    if s.as_u16() == 404 {
                        missing += 1;
                    } else if !s.is_success() {
                        return Err(anyhow!("read of secret/drill/{i}: {s}"));
                    } else if v.pointer("/data/data/v").and_then(|x| x.as_str()) == Some(want.as_str()) {
                        found += 1;
                    } else {
                        wrong += 1;
                    }
                }
                i += conc;
            }
            Ok::<_, anyhow::Error>((found, missing, wrong))
        });
    }
    let mut tot = (0, 0, 0);
    while let Some(r) = set.join_next().await {
        let (a, b, c) = r.map_err(|e| anyhow!("worker: {e}"))??;
        tot.0 += a;
        tot.1 += b;
        tot.2 += c;
    }
    Ok(tot)
}

fn init_json(dir: &Path) -> Result<serde_json::Value> {
    let p = dir.join(paths::INIT_JSON);
    serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?)
        .with_context(|| format!("{}", p.display()))
}

fn unseal_keys(init: &serde_json::Value) -> Vec<String> {
    let pick = |k: &str| -> Vec<String> {
        init.get(k)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let b64 = pick("keys_base64");
    if b64.is_empty() {
        pick("keys")
    } else {
        b64
    }
}

/// After a forced restore: wait for the nodes to seal, unseal each with `keys` (the original
/// cluster's), until an active node reports `want_cluster_id`. Bounded by `limit`.
pub async fn unseal_after_restore(
    http: &Http,
    plan: &Plan,
    keys: &[String],
    want_cluster_id: &str,
    limit: Duration,
    timeline: &mut Vec<String>,
    restart: &dyn Fn(&str) -> Result<()>,
) -> Result<String> {
    let t0 = Instant::now();
    // A standby does not always notice the restore: it stays unsealed on the old keyring and keeps
    // reporting the fresh cluster's id. Once an active node runs the original cluster, such a node is
    // restarted (it comes back sealed) and unsealed with the original keys.
    let mut stale_since: Vec<Option<Instant>> = vec![None; urls_len(plan)];
    let mut restarted: Vec<bool> = vec![false; urls_len(plan)];
    let deadline = t0 + limit;
    let urls = node_urls(plan);
    let mut last: Vec<String> = vec![String::new(); urls.len()];
    let mut active_seen = false;
    loop {
        let mut states = Vec::new();
        let mut active_ok = None;
        let mut all_unsealed = true;
        for (i, u) in urls.iter().enumerate() {
            let st = match health(http, u).await {
                Ok(h) => {
                    if h.sealed {
                        all_unsealed = false;
                        // A threshold of the ORIGINAL cluster's keys; a node still re-joining answers 400:
                        // it is tried again next round.
                        for k in keys {
                            let r = http
                                .json(Method::PUT, u, "/v1/sys/unseal", None, Some(serde_json::json!({ "key": k })))
                                .await;
                            match r {
                                Ok((s, v)) if s.is_success() => {
                                    if v.get("sealed").and_then(|x| x.as_bool()) == Some(false) {
                                        break;
                                    }
                                }
                                _ => break,
                            }
                        }
                        "sealed".to_string()
                    } else if h.cluster_id.as_deref() != Some(want_cluster_id) {
                        all_unsealed = false;
                        let since = *stale_since[i].get_or_insert_with(Instant::now);
                        if active_seen && !restarted[i] && since.elapsed() > Duration::from_secs(3) {
                            restart(&plan.nodes[i].name)?;
                            restarted[i] = true;
                            timeline.push(format!(
                                "{:>6.2} s  {}: restarted (still on the fresh cluster's keyring)",
                                t0.elapsed().as_secs_f64(),
                                plan.nodes[i].name
                            ));
                        }
                        format!("unsealed, cluster id {:?} (not yet the original)", h.cluster_id)
                    } else if h.standby {
                        "standby".to_string()
                    } else {
                        active_ok = Some(u.clone());
                        active_seen = true;
                        "active".to_string()
                    }
                }
                Err(e) => {
                    all_unsealed = false;
                    format!("unreachable: {e:#}")
                }
            };
            if st != last[i] {
                timeline.push(format!("{:>6.2} s  {}: {st}", t0.elapsed().as_secs_f64(), plan.nodes[i].name));
                last[i] = st.clone();
            }
            states.push(format!("{u}: {st}"));
        }
        if let (Some(a), true) = (&active_ok, all_unsealed) {
            return Ok(a.clone());
        }
        if Instant::now() > deadline {
            bail!(
                "the restored cluster did not come back with cluster id {want_cluster_id} within {limit:?} ({}); see the nodes' logs",
                states.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn run_restore_drill(o: &RestoreDrillOptions) -> Result<RestoreReport> {
    if o.secrets == 0 {
        bail!("--secrets must be at least 1");
    }
    std::fs::create_dir_all(&o.workdir)?;
    // B is rebuilt in A's directory, as a cluster is rebuilt in place: the config-declared audit device's
    // file_path is stored in the audit table inside the snapshot, and OpenBao refuses to finish unsealing
    // when the config declares another path ("modifications to audit devices are not allowed").
    let dir_a = o.workdir.join("lab");
    let dir_b = o.workdir.join("lab");
    let dir_orig = o.workdir.join("lab-original");
    for d in [&dir_a, &dir_orig] {
        if d.exists() {
            bail!("{} exists: remove it or pick another --workdir", d.display());
        }
    }
    let snaps = o.workdir.join("snapshots");
    let nonce = hex::encode(crate::secrets::random_bytes::<6>()?);
    let rt = runtime()?;

    // --- A: the original cluster.
    let lab_a = LabHandle::up(o.spec.as_deref(), &dir_a).context("bringing up lab A")?;
    let plan_a = lab_a.plan().clone();
    let ca_a = std::fs::read(dir_a.join(paths::CA_CRT))?;
    let http_a = Http::new(&ca_a, Duration::from_secs(120))?;
    let init_a = init_json(&dir_a)?;
    let root_a = init_a.get("root_token").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let keys_a = unseal_keys(&init_a);
    if keys_a.is_empty() {
        bail!("lab A's init.json has no unseal keys (the drill needs a Shamir seal)");
    }
    let t = Instant::now();
    let (active_a, standbys_a) = rt.block_on(roles(&http_a, &plan_a))?;
    rt.block_on(kv_many(&http_a, &active_a, &root_a, 0, o.secrets, o.concurrency, &nonce, true))?;
    let write_seconds = t.elapsed().as_secs_f64();
    let from = standbys_a.first().cloned().unwrap_or(active_a.clone());
    let saved_from = plan_a
        .nodes
        .iter()
        .find(|n| plan_a.api_url(n) == from)
        .map(|n| format!("{} ({})", n.name, if from == active_a { "active" } else { "standby" }))
        .unwrap_or(from.clone());
    // One description of a save from lab A; the drill saves from a standby, the from-repo leg's second
    // snapshot from the active node.
    let save_opts = |address: String, dir: PathBuf| -> Result<SaveOptions> {
        Ok(SaveOptions {
            address,
            token: root_a.clone(),
            ca_pem: ca_a.clone(),
            dir,
            cluster: plan_a.name.clone(),
            seal: snapshot::seal_info(&plan_a, &dir_a)?,
            engine: plan_a.engine.as_str().into(),
            node_names: plan_a.nodes.iter().map(|n| (plan_a.api_url(n), n.name.clone())).collect(),
            timeout: Duration::from_secs(300),
        })
    };
    let save = rt.block_on(snapshot::save(&save_opts(from, snaps.clone())?))?;
    let original_cluster_id = save.meta.cluster_id.clone().unwrap_or_default();
    // The off-host leg: two copies into a fresh repository, a small change in between.
    let changed = if o.from_repo { (o.secrets / 100).max(1) } else { 0 };
    let total = o.secrets + changed;
    let mut repo_leg = None;
    if o.from_repo {
        let repo_dir = o.workdir.join("restic-repo");
        let pw = o.workdir.join("restic-password");
        crate::output::write_file_atomic(&pw, hex::encode(crate::secrets::random_bytes::<24>()?).as_bytes(), true)?;
        let restic = Restic::new(
            &ResticConfig {
                repository: repo_dir.to_string_lossy().into_owned(),
                password_file: pw.to_string_lossy().into_owned(),
                environment_file: None,
                keep_hourly: 0,
                keep_daily: 30,
                keep_weekly: 0,
                keep_monthly: 0,
            },
            Duration::from_secs(600),
        )?;
        restic.ensure_repository()?;
        let t = Instant::now();
        restic.backup(&save.path, &save.meta, "drill")?;
        let first_copy_seconds = t.elapsed().as_secs_f64();
        let repo_bytes_after_first = dir_size(&repo_dir);
        rt.block_on(kv_many(&http_a, &active_a, &root_a, o.secrets, total, o.concurrency, &nonce, true))?;
        let save2 = rt.block_on(snapshot::save(&save_opts(active_a.clone(), o.workdir.join("snapshots-2"))?))?;
        let t = Instant::now();
        restic.backup(&save2.path, &save2.meta, "drill")?;
        let second_copy_seconds = t.elapsed().as_secs_f64();
        let repo_bytes_after_second = dir_size(&repo_dir);
        let grew = repo_bytes_after_second.saturating_sub(repo_bytes_after_first).max(1);
        repo_leg = Some((
            restic,
            RepoFigures {
                repository: repo_dir,
                first_copy_seconds,
                second_copy_seconds,
                repo_bytes_after_first,
                repo_bytes_after_second,
                second_snapshot_bytes: save2.meta.size,
                dedup_ratio: (save2.meta.size as f64 / grew as f64 * 100.0).round() / 100.0,
                changed_secrets: changed,
                rpo_seconds: 0.0,
                fetch_seconds: 0.0,
                rto_seconds: 0.0,
            },
        ));
    }
    // Two labs at once would compete for the 2 cores and skew the figures.
    lab_a.down()?;
    std::fs::rename(&dir_a, &dir_orig)?;

    // --- B: a fresh cluster with its own barrier keys.
    let lab_b = LabHandle::up(o.spec.as_deref(), &dir_b).context("bringing up lab B")?;
    let plan_b = lab_b.plan().clone();
    let ca_b = std::fs::read(dir_b.join(paths::CA_CRT))?;
    let http_b = Http::new(&ca_b, Duration::from_secs(300))?;
    let root_b = lab_b.root_token()?;
    let (active_b, _) = rt.block_on(roles(&http_b, &plan_b))?;
    // From the repository: the newest copy, fetched and verified as `snapshot restore --from-repo` does.
    let recovery_start = Instant::now();
    let mut restore_file = save.path.clone();
    if let Some((restic, fig)) = repo_leg.as_mut() {
        let newest = restic.pick(&plan_a.name, None)?;
        let now = time::OffsetDateTime::now_utc();
        let fetched = o.workdir.join("fetched");
        let (snap, meta) = restic.fetch_verified(&newest, &fetched)?;
        fig.fetch_seconds = recovery_start.elapsed().as_secs_f64();
        let created = time::OffsetDateTime::parse(&meta.created_at, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("the copy's created_at {:?}", meta.created_at))?;
        fig.rpo_seconds = ((now - created).as_seconds_f64() * 100.0).round() / 100.0;
        restore_file = snap;
    }
    let mut ro = RestoreOptions {
        address: active_b.clone(),
        token: root_b,
        ca_pem: ca_b.clone(),
        file: restore_file,
        force: false,
        target_seal: snapshot::seal_info(&plan_b, &dir_b)?,
        target_cluster: plan_b.name.clone(),
        timeout: Duration::from_secs(300),
    };
    let plain_restore_refused = match rt.block_on(snapshot::restore(&ro)) {
        Err(e) => format!("{e:#}").contains("--force"),
        Ok(_) => false,
    };
    ro.force = true;
    let t = Instant::now();
    let rest = rt.block_on(snapshot::restore(&ro))?;
    let restore_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut timeline = Vec::new();
    let active = rt.block_on(unseal_after_restore(
        &http_b,
        &plan_b,
        &keys_a,
        &original_cluster_id,
        Duration::from_secs(120),
        &mut timeline,
        &|n| {
            lab_b.stop(n)?;
            lab_b.start(n)?;
            Ok(())
        },
    ))?;
    let unseal_seconds = t.elapsed().as_secs_f64();
    if let Some((_, fig)) = repo_leg.as_mut() {
        // Serving: the first secret reads back with its value.
        rt.block_on(kv_many(&http_b, &active, &root_a, 0, 1, 1, &nonce, false))?;
        fig.rto_seconds = (recovery_start.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    }
    let t = Instant::now();
    let (found, missing, wrong) =
        rt.block_on(kv_many(&http_b, &active, &root_a, 0, total, o.concurrency, &nonce, false))?;
    let verify_seconds = t.elapsed().as_secs_f64();
    let restored_cluster_id = rt.block_on(health(&http_b, &active))?.cluster_id.unwrap_or_default();
    lab_b.down()?;
    if !o.keep_files {
        let _ = std::fs::remove_dir_all(&dir_orig);
        let _ = std::fs::remove_dir_all(&dir_b);
        if o.from_repo {
            for d in ["restic-repo", "fetched", "snapshots-2"] {
                let _ = std::fs::remove_dir_all(o.workdir.join(d));
            }
            let _ = std::fs::remove_file(o.workdir.join("restic-password"));
        }
    }
    let _ = rest;
    Ok(RestoreReport {
        secrets: total,
        snapshot: save.path.clone(),
        snapshot_bytes: save.meta.size,
        saved_from,
        saved_via_redirect: save.redirected,
        write_seconds,
        save_seconds: save.seconds,
        restore_seconds,
        unseal_seconds,
        verify_seconds,
        save_restore_seconds: save.seconds + restore_seconds,
        recovered_seconds: save.seconds + restore_seconds + unseal_seconds,
        plain_restore_refused,
        read_back: found,
        missing,
        wrong,
        unseal_timeline: timeline,
        original_cluster_id,
        restored_cluster_id,
        repo: repo_leg.map(|(_, f)| f),
    })
}

/// Bytes of the regular files under `dir` (the repository's size on disk).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}
