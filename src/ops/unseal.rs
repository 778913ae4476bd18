//! Unsealing: one node with a set of key shares (retrying while a follower's raft join is still under
//! way), and every sealed node of a cluster in parallel.

use crate::api::{ApiError, Cluster, NodeClient, NodeState};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Unseal key shares. Never printed.
#[derive(Clone, Default)]
pub struct Keys(pub Vec<String>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} shares)", self.0.len())
    }
}

impl Keys {
    /// Reads keys from an init.json (its `keys_base64`) or a text file with one key per line.
    pub fn from_file(path: &Path) -> Result<Keys> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Keys::parse(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Keys> {
        if text.trim_start().starts_with('{') {
            let v: crate::api::InitResponse =
                serde_json::from_str(text).map_err(|e| anyhow!("not an init response: {e}"))?;
            let keys = if !v.keys_base64.is_empty() { v.keys_base64 } else { v.keys };
            if keys.is_empty() {
                bail!("no unseal keys in it (an auto-unseal cluster has recovery keys, which do not unseal)");
            }
            return Ok(Keys(keys));
        }
        let keys: Vec<String> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
        if keys.is_empty() {
            bail!("no keys in it (expected one key per line)");
        }
        Ok(Keys(keys))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsealOutcome {
    AlreadyUnsealed,
    Unsealed,
}

/// Unseals one node. Retries the 400 "not initialized" answer (a follower whose retry_join has not
/// completed yet) and unreachable answers until `limit`. A rejected key resets the node's unseal progress
/// so a failed attempt leaves nothing behind.
pub async fn unseal_node(n: &NodeClient, keys: &Keys, limit: Duration) -> Result<UnsealOutcome> {
    let deadline = Instant::now() + limit;
    let mut last_err: Option<ApiError> = None;
    let mut submitted_any = false;
    loop {
        if Instant::now() >= deadline {
            let why = last_err.map(|e| e.to_string()).unwrap_or_else(|| "still sealed".into());
            bail!("{} ({}): not unsealed within {:?}: {why}", n.name, n.addr(), limit);
        }
        let ss = match n.seal_status().await {
            Ok(s) => s,
            Err(e) if e.is_unreachable() => {
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if ss.initialized && !ss.sealed {
            return Ok(if submitted_any { UnsealOutcome::Unsealed } else { UnsealOutcome::AlreadyUnsealed });
        }
        if ss.progress > 0 {
            // Shares left over from an interrupted run: start clean so none is counted twice.
            n.unseal_reset().await?;
        }
        if ss.initialized && ss.threshold > 0 && keys.0.len() < ss.threshold as usize {
            bail!(
                "{} ({}): {} key(s) given, the threshold is {}; nothing submitted",
                n.name,
                n.addr(),
                keys.0.len(),
                ss.threshold
            );
        }
        let mut retry = false;
        let mut threshold_reached = false;
        for k in &keys.0 {
            submitted_any = true;
            match n.unseal(k).await {
                Ok(s) if !s.sealed => return Ok(UnsealOutcome::Unsealed),
                // Progress back at 0 while still sealed: the threshold was reached and the node is
                // finishing (a joining follower unseals in the background). More keys would start a
                // new round, so stop and watch.
                Ok(s) if s.progress == 0 => {
                    threshold_reached = true;
                    break;
                }
                Ok(_) => continue,
                Err(e) if not_initialized(&e) || e.is_unreachable() => {
                    last_err = Some(e);
                    retry = true;
                    break;
                }
                Err(e) => {
                    let _ = n.unseal_reset().await;
                    return Err(anyhow!("{e}").context(format!(
                        "unseal key rejected by {}; its unseal progress was reset, nothing changed",
                        n.name
                    )));
                }
            }
        }
        if threshold_reached {
            let watch = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(15));
            let done = super::common::poll(watch, Duration::from_millis(100), || async {
                n.seal_status().await.ok().filter(|s| s.initialized && !s.sealed)
            })
            .await;
            if done.is_some() {
                return Ok(UnsealOutcome::Unsealed);
            }
            continue;
        }
        if !retry {
            // Every key accepted and still collecting: fewer keys than the threshold.
            let s = n.seal_status().await?;
            if !s.sealed {
                return Ok(UnsealOutcome::Unsealed);
            }
            if s.progress > 0 {
                let _ = n.unseal_reset().await;
                bail!(
                    "{} ({}): {} key(s) given, the threshold is {}; unseal progress was reset, nothing changed",
                    n.name,
                    n.addr(),
                    keys.0.len(),
                    s.threshold
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn not_initialized(e: &ApiError) -> bool {
    matches!(&e.kind, crate::api::ErrorKind::Http { status: 400, errors } if errors.contains("not initialized"))
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnsealReport {
    pub unsealed: Vec<String>,
    pub already: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Unseals every sealed (or joining) node in parallel. Unreachable nodes are reported, not waited for.
pub async fn unseal_all(c: &Cluster, keys: &Keys, limit: Duration) -> UnsealReport {
    let mut rep = UnsealReport::default();
    let mut set = tokio::task::JoinSet::new();
    for (n, h) in super::common::health_all(c).await {
        match h {
            Ok(h) if h.state.is_up() => rep.already.push(n.name.clone()),
            Ok(h) if h.state == NodeState::Sealed || h.state == NodeState::Uninitialized => {
                let keys = keys.clone();
                set.spawn(async move {
                    let r = unseal_node(&n, &keys, limit).await;
                    (n.name.clone(), r)
                });
            }
            Ok(_) => {}
            Err(e) => rep.failed.push((n.name.clone(), e.to_string())),
        }
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok((name, Ok(UnsealOutcome::Unsealed))) => rep.unsealed.push(name),
            Ok((name, Ok(UnsealOutcome::AlreadyUnsealed))) => rep.already.push(name),
            Ok((name, Err(e))) => rep.failed.push((name, format!("{e:#}"))),
            Err(e) => rep.failed.push(("?".into(), e.to_string())),
        }
    }
    rep.unsealed.sort();
    rep.already.sort();
    rep.failed.sort();
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_init_json_or_lines() {
        let k = Keys::parse(r#"{"keys":["aa"],"keys_base64":["qg=="],"root_token":"s.x"}"#).unwrap();
        assert_eq!(k.0, vec!["qg=="]);
        let k = Keys::parse("# mine\nkey1\n\n key2 \n").unwrap();
        assert_eq!(k.0, vec!["key1", "key2"]);
        assert!(Keys::parse("\n").is_err());
        assert!(Keys::parse(r#"{"recovery_keys_base64":["x"],"root_token":"t"}"#).is_err());
        assert_eq!(format!("{k:?}"), "Keys(2 shares)");
    }
}
