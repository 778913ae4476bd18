//! Shared pieces of the live operations: where root material lives, token lookup, health of every node,
//! bounded waits.

use crate::api::{ApiResult, Cluster, Health, InitResponse, NodeClient};
use crate::render::paths;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn init_json_path(out: &Path) -> PathBuf {
    out.join(paths::INIT_JSON)
}
pub fn admin_token_path(out: &Path) -> PathBuf {
    out.join(paths::ADMIN_TOKEN)
}

pub fn admin_cert_path(out: &Path) -> PathBuf {
    out.join(paths::ADMIN_CRT)
}
pub fn admin_key_path(out: &Path) -> PathBuf {
    out.join(paths::ADMIN_KEY)
}

/// The operator's client identity (flake/pki/admin.crt + secrets/admin.key as one PEM) when both exist: the
/// only way into a self-initialized cluster.
pub fn admin_identity(out: &Path) -> Option<Vec<u8>> {
    let mut pem = std::fs::read(admin_cert_path(out)).ok()?;
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend(std::fs::read(admin_key_path(out)).ok()?);
    Some(pem)
}

/// A token from the cert auth method for the operator certificate, if it exists and the node accepts it.
pub async fn cert_login_token(client: &NodeClient, out: &Path) -> Option<crate::api::sys::TokenAuth> {
    let id = admin_identity(out)?;
    let c = client.clone().with_identity(&id).ok()?;
    c.login_cert(crate::pki::ADMIN_CN).await.ok()
}

/// Reads `<out>/secrets/init.json` if it exists.
pub fn read_init(out: &Path) -> Result<Option<InitResponse>> {
    let p = init_json_path(out);
    match std::fs::read_to_string(&p) {
        Ok(t) => {
            Ok(Some(serde_json::from_str(&t).with_context(|| format!("{} is not an init response", p.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
    }
}

/// Writes a secret file (0600, in a 0700 directory) atomically and never over an existing file: the data
/// goes to a temporary sibling, then is hard-linked into place (link(2) fails if the target exists).
pub fn write_secret_new(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| anyhow!("{} has no parent", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if path.exists() {
        bail!("{} already exists; refusing to overwrite root material", path.display());
    }
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    let r = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    r.with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Token candidates in order: secrets/admin-token, the root token in secrets/init.json, $BAO_TOKEN,
/// $VAULT_TOKEN. The first one the cluster accepts (lookup-self) wins, so a revoked root token is
/// skipped. Without any, a cert login with the operator certificate (pki/admin.crt + secrets/admin.key,
/// self-initialized clusters) yields a short-lived token.
pub async fn resolve_token(client: &NodeClient, out: &Path) -> Option<String> {
    let mut candidates = Vec::new();
    if let Ok(t) = std::fs::read_to_string(admin_token_path(out)) {
        candidates.push(t.trim().to_string());
    }
    if let Ok(Some(i)) = read_init(out) {
        candidates.push(i.root_token.clone());
    }
    for v in ["BAO_TOKEN", "VAULT_TOKEN"] {
        if let Ok(t) = std::env::var(v) {
            candidates.push(t.trim().to_string());
        }
    }
    for t in candidates.into_iter().filter(|t| !t.is_empty()) {
        let c = client.clone().with_token(Some(t.clone()));
        if c.lookup_self().await.is_ok() {
            return Some(t);
        }
    }
    cert_login_token(client, out).await.map(|a| a.client_token)
}

/// Health of every node, in plan order, queried in parallel.
pub async fn health_all(c: &Cluster) -> Vec<(NodeClient, ApiResult<Health>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let n = n.clone();
        set.spawn(async move {
            let h = n.health().await;
            (i, n, h)
        });
    }
    let mut out: Vec<(usize, NodeClient, ApiResult<Health>)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(v) = r {
            out.push(v);
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, n, h)| (n, h)).collect()
}

/// The node currently answering 200 on sys/health, if any.
pub async fn find_active(c: &Cluster) -> Option<NodeClient> {
    health_all(c)
        .await
        .into_iter()
        .find(|(_, h)| matches!(h, Ok(h) if h.state == crate::api::NodeState::Active))
        .map(|(n, _)| n)
}

/// Polls `f` every `every` until it returns Some or `limit` passes.
pub async fn poll<T, F, Fut>(limit: Duration, every: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() + every > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Parses a Go duration as OpenBao prints it ("10s", "24h0m0s", "1m30s", "500ms") into milliseconds.
pub fn go_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() || n == '.' {
                break;
            }
            unit.push(n);
            chars.next();
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        total += v * match unit.as_str() {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_ms("10s"), Some(10_000));
        assert_eq!(go_duration_ms("24h0m0s"), Some(86_400_000));
        assert_eq!(go_duration_ms("1m30s"), Some(90_000));
        assert_eq!(go_duration_ms("500ms"), Some(500));
        assert_eq!(go_duration_ms("10"), None);
        assert_eq!(go_duration_ms("x"), None);
    }

    #[test]
    fn secret_files_are_never_overwritten() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("secrets/init.json");
        write_secret_new(&p, b"one").unwrap();
        let e = write_secret_new(&p, b"two").unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(p.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
