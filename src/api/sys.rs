//! `sys/*` endpoints: init, unseal, seal-status, leader, step-down, mounts, audit, policies, tokens.

use super::client::{ApiResult, NodeClient};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// `PUT sys/init` request. With an auto-unseal seal the recovery_* fields apply instead.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InitRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_shares: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_threshold: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pgp_keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_token_pgp_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_shares: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_threshold: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovery_pgp_keys: Vec<String>,
}

/// `PUT sys/init` answer: root material. Never printed; saved 0600.
#[derive(Clone, Default, Deserialize, Serialize)]
pub struct InitResponse {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub keys_base64: Vec<String>,
    #[serde(default)]
    pub recovery_keys: Vec<String>,
    #[serde(default)]
    pub recovery_keys_base64: Vec<String>,
    #[serde(default)]
    pub root_token: String,
}

impl std::fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitResponse")
            .field("keys", &self.keys.len())
            .field("recovery_keys", &self.recovery_keys.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SealStatus {
    #[serde(rename = "type", default)]
    pub seal_type: String,
    #[serde(default)]
    pub initialized: bool,
    #[serde(default)]
    pub sealed: bool,
    #[serde(rename = "t", default)]
    pub threshold: u32,
    #[serde(rename = "n", default)]
    pub shares: u32,
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub recovery_seal: bool,
    #[serde(default)]
    pub cluster_name: Option<String>,
}

/// `GET sys/leader`. OpenBao omits false/empty fields, hence the defaults.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Leader {
    #[serde(default)]
    pub ha_enabled: bool,
    #[serde(default)]
    pub is_self: bool,
    #[serde(default)]
    pub leader_address: String,
    #[serde(default)]
    pub leader_cluster_address: String,
    #[serde(default)]
    pub raft_committed_index: u64,
    #[serde(default)]
    pub raft_applied_index: u64,
    #[serde(default)]
    pub active_time: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Mount {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuditDevice {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Default, Deserialize)]
pub struct TokenAuth {
    pub client_token: String,
    #[serde(default)]
    pub accessor: String,
    #[serde(default)]
    pub policies: Vec<String>,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth").field("policies", &self.policies).finish_non_exhaustive()
    }
}

/// Init can take several seconds at performance_multiplier 5 (measured 6.5–9.3 s).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(60);

impl NodeClient {
    pub async fn init(&self, req: &InitRequest) -> ApiResult<InitResponse> {
        let body = serde_json::to_value(req).unwrap_or(Value::Null);
        let v = self.call_with_timeout(Method::PUT, "sys/init", Some(&body), Some(INIT_TIMEOUT)).await?;
        self.decode("sys/init", v)
    }

    pub async fn seal_status(&self) -> ApiResult<SealStatus> {
        self.get("sys/seal-status").await
    }

    /// Submits one unseal key share; returns the seal status after it.
    pub async fn unseal(&self, key: &str) -> ApiResult<SealStatus> {
        let v = self.call(Method::PUT, "sys/unseal", Some(&json!({ "key": key }))).await?;
        self.decode("sys/unseal", v)
    }

    /// Discards the shares submitted so far.
    pub async fn unseal_reset(&self) -> ApiResult<SealStatus> {
        let v = self.call(Method::PUT, "sys/unseal", Some(&json!({ "reset": true }))).await?;
        self.decode("sys/unseal", v)
    }

    pub async fn seal(&self) -> ApiResult<()> {
        self.call(Method::PUT, "sys/seal", None).await.map(|_| ())
    }

    pub async fn leader(&self) -> ApiResult<Leader> {
        self.get("sys/leader").await
    }

    pub async fn step_down(&self) -> ApiResult<()> {
        self.call_with_timeout(Method::PUT, "sys/step-down", None, Some(Duration::from_secs(30))).await.map(|_| ())
    }

    pub async fn mounts(&self) -> ApiResult<BTreeMap<String, Mount>> {
        let v = self.call(Method::GET, "sys/mounts", None).await?;
        // Answers carry the mounts both at top level and under `data`; `data` is the documented one.
        let d = v.get("data").cloned().unwrap_or(v);
        let mut out = BTreeMap::new();
        if let Some(o) = d.as_object() {
            for (k, m) in o {
                if let Ok(m) = serde_json::from_value::<Mount>(m.clone()) {
                    if m.kind.is_empty() {
                        continue;
                    }
                    out.insert(k.clone(), m);
                }
            }
        }
        Ok(out)
    }

    pub async fn enable_mount(&self, path: &str, kind: &str, options: Value) -> ApiResult<()> {
        let p = format!("sys/mounts/{}", path.trim_matches('/'));
        self.call(Method::POST, &p, Some(&json!({ "type": kind, "options": options }))).await.map(|_| ())
    }

    /// `PUT sys/audit/<path>`: enables an audit device (Vault; OpenBao declares them in its config).
    pub async fn enable_audit(&self, path: &str, body: &Value) -> ApiResult<()> {
        let p = format!("sys/audit/{}", path.trim_matches('/'));
        self.call(Method::PUT, &p, Some(body)).await.map(|_| ())
    }

    /// `GET sys/audit`: enabled audit devices by path.
    pub async fn audit_devices(&self) -> ApiResult<BTreeMap<String, AuditDevice>> {
        let v = self.call(Method::GET, "sys/audit", None).await?;
        let d = v.get("data").cloned().unwrap_or(v);
        let mut out = BTreeMap::new();
        if let Some(o) = d.as_object() {
            for (k, a) in o {
                if let Ok(a) = serde_json::from_value::<AuditDevice>(a.clone()) {
                    if !a.kind.is_empty() {
                        out.insert(k.clone(), a);
                    }
                }
            }
        }
        Ok(out)
    }

    pub async fn put_policy(&self, name: &str, hcl: &str) -> ApiResult<()> {
        let p = format!("sys/policies/acl/{name}");
        self.call(Method::PUT, &p, Some(&json!({ "policy": hcl }))).await.map(|_| ())
    }

    pub async fn get_policy(&self, name: &str) -> ApiResult<Option<String>> {
        let p = format!("sys/policies/acl/{name}");
        let r = self.send(Method::GET, &p, None, None).await?;
        match r.status.as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => {
                Ok(r.body.pointer("/data/policy").and_then(|v| v.as_str()).map(|s| s.to_string()))
            }
            s => {
                Err(self
                    .err(&p, super::client::ErrorKind::Http { status: s, errors: super::client::errors_of(&r.body) }))
            }
        }
    }

    /// `POST auth/token/create` (or create-orphan) with a free-form body; returns the new token.
    pub async fn create_token(&self, body: &Value, orphan: bool) -> ApiResult<TokenAuth> {
        let path = if orphan { "auth/token/create-orphan" } else { "auth/token/create" };
        let v = self.call(Method::POST, path, Some(body)).await?;
        self.decode(path, v.get("auth").cloned().unwrap_or(Value::Null))
    }

    /// `GET auth/token/lookup-self`: the token's data, or an error (403 for a bad token).
    pub async fn lookup_self(&self) -> ApiResult<Value> {
        let v = self.call(Method::GET, "auth/token/lookup-self", None).await?;
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// `auth/token/renew-self`: the token's new TTL in seconds (a periodic token gets its period).
    pub async fn renew_self(&self) -> ApiResult<u64> {
        let v = self.call(Method::POST, "auth/token/renew-self", None).await?;
        Ok(v.pointer("/auth/lease_duration").and_then(Value::as_u64).unwrap_or(0))
    }

    pub async fn revoke_self(&self) -> ApiResult<()> {
        self.call(Method::POST, "auth/token/revoke-self", None).await.map(|_| ())
    }
}
