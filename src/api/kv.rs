//! kv-v2: enough to prove the cluster serves reads and writes.

use super::client::{ApiResult, NodeClient};
use reqwest::Method;
use serde_json::{json, Value};

impl NodeClient {
    /// Writes `data` at `<mount>/data/<path>`; returns the new version.
    pub async fn kv_put(&self, mount: &str, path: &str, data: &Value) -> ApiResult<u64> {
        let p = format!("{}/data/{}", mount.trim_matches('/'), path.trim_matches('/'));
        let v = self.call(Method::POST, &p, Some(&json!({ "data": data }))).await?;
        Ok(v.pointer("/data/version").and_then(|v| v.as_u64()).unwrap_or(0))
    }

    /// Reads the latest version's data, or None when the secret does not exist.
    pub async fn kv_get(&self, mount: &str, path: &str) -> ApiResult<Option<Value>> {
        let p = format!("{}/data/{}", mount.trim_matches('/'), path.trim_matches('/'));
        let r = self.send(Method::GET, &p, None, None).await?;
        match r.status.as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => Ok(r.body.pointer("/data/data").cloned()),
            s => {
                Err(self
                    .err(&p, super::client::ErrorKind::Http { status: s, errors: super::client::errors_of(&r.body) }))
            }
        }
    }
}
