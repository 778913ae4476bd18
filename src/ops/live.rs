//! The few HTTP calls the day-2 operations need, with redirects handled by hand: a standby answers
//! 307 to the active node, and the token must be re-sent there (reqwest drops auth headers when a
//! redirect changes host). Every call has a timeout; every loop here is bounded.

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::time::Duration;

pub const TOKEN_HEADER: &str = "X-Vault-Token";
const MAX_REDIRECTS: usize = 3;

#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http")
    }
}

impl Http {
    /// A client that trusts only `ca_pem` (the cluster's CA) and never follows redirects itself.
    pub fn new(ca_pem: &[u8], timeout: Duration) -> Result<Http> {
        let mut b = reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false);
        for ca in crate::api::client::root_certificates(ca_pem)? {
            b = b.add_root_certificate(ca);
        }
        let client = b
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Http { client })
    }

    /// Sends a request, following up to 3 redirects manually and re-sending the token and body.
    /// Returns the final response and the base URL (scheme://host:port) that answered it.
    pub async fn send(
        &self,
        method: Method,
        base: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(reqwest::Response, String)> {
        let mut url = format!("{}{}", base.trim_end_matches('/'), path);
        for _ in 0..=MAX_REDIRECTS {
            let mut rb = self.client.request(method.clone(), &url);
            if let Some(t) = token {
                rb = rb.header(TOKEN_HEADER, t);
            }
            if let Some(b) = body {
                rb = rb.body(b.to_vec());
            }
            let resp = rb.send().await.with_context(|| format!("{method} {url}"))?;
            let s = resp.status();
            if s == StatusCode::TEMPORARY_REDIRECT || s == StatusCode::PERMANENT_REDIRECT {
                let loc = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| anyhow!("{url} answered {s} without a Location"))?;
                url = resp.url().join(loc).map_err(|e| anyhow!("bad redirect {loc:?}: {e}"))?.to_string();
                continue;
            }
            let final_base = origin(resp.url());
            return Ok((resp, final_base));
        }
        bail!("more than {MAX_REDIRECTS} redirects from {base}{path}")
    }

    pub async fn json(
        &self,
        method: Method,
        base: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, serde_json::Value)> {
        let b = body.map(|v| serde_json::to_vec(&v).unwrap_or_default());
        let (resp, _) = self.send(method, base, path, token, b.as_deref()).await?;
        let s = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text)? };
        Ok((s, v))
    }
}

pub fn origin(u: &reqwest::Url) -> String {
    match u.port() {
        Some(p) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or_default(), p),
        None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()),
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    #[serde(default)]
    pub initialized: bool,
    #[serde(default)]
    pub sealed: bool,
    #[serde(default)]
    pub standby: bool,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// `sys/health` with every state answering 200 so the body is always there.
pub async fn health(http: &Http, base: &str) -> Result<Health> {
    let (s, v) = http
        .json(
            Method::GET,
            base,
            "/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200&perfstandbyok=true",
            None,
            None,
        )
        .await?;
    if !s.is_success() {
        bail!("{base}/v1/sys/health answered {s}");
    }
    serde_json::from_value(v).context("sys/health")
}

/// Polls until `f` is satisfied, at most `tries` times `every` apart.
pub async fn wait_for<T, F, Fut>(tries: usize, every: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let mut last = String::from("no answer yet");
    for _ in 0..tries {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(every).await;
    }
    bail!("timed out waiting for {what} ({tries} tries, {:?} apart; last error: {last})", every)
}

/// sha256 (hex) of the leaf certificate `base` serves, over a fresh connection (a pooled one would
/// show the certificate of an earlier handshake).
pub async fn served_leaf_sha256(ca_pem: &[u8], base: &str) -> Result<String> {
    use sha2::Digest;
    let mut b = reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false);
    for ca in crate::api::client::root_certificates(ca_pem)? {
        b = b.add_root_certificate(ca);
    }
    let client = b
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = client.get(format!("{}/v1/sys/health?standbyok=true", base.trim_end_matches('/'))).send().await?;
    let der = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(|c| c.to_vec())
        .ok_or_else(|| anyhow!("{base}: no peer certificate in the TLS session"))?;
    Ok(hex::encode(sha2::Sha256::digest(&der)))
}
