//! HAProxy's runtime API over its admin socket (one command per connection).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one command and returns HAProxy's answer. Bounded by a 3 s timeout.
pub async fn command(socket: &Path, cmd: &str) -> Result<String> {
    let fut = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to the HAProxy admin socket {}", socket.display()))?;
        s.write_all(format!("{cmd}\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, anyhow::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(3), fut).await.context("HAProxy admin socket timed out")??;
    let t = out.trim();
    if t.starts_with("Unknown command") || t.contains("No such") || t.starts_with("Require") {
        bail!("HAProxy refused `{cmd}`: {t}");
    }
    Ok(out)
}

/// The operational state HAProxy reports for `backend/server` ("UP", "DOWN", "DRAIN", "MAINT", ...).
pub async fn server_state(socket: &Path, backend: &str, server: &str) -> Result<String> {
    let csv = command(socket, "show stat").await?;
    let mut header: Vec<&str> = Vec::new();
    for line in csv.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            header = h.split(',').collect();
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        if cols.first() == Some(&backend) && cols.get(1) == Some(&server) {
            let i = header.iter().position(|c| *c == "status").unwrap_or(17);
            return Ok(cols.get(i).map(|s| s.to_string()).unwrap_or_default());
        }
    }
    bail!("HAProxy has no server {backend}/{server}")
}
