//! `GET /v1/sys/health`: the one unauthenticated call every decision starts from.
//! 200 active, 429 unsealed standby, 501 not initialized, 503 sealed (OpenBao has no 472/473).

use super::client::{ApiResult, ErrorKind, NodeClient};
use reqwest::Method;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Active,
    Standby,
    Uninitialized,
    Sealed,
}

impl NodeState {
    pub fn from_status(code: u16) -> Option<NodeState> {
        match code {
            200 => Some(NodeState::Active),
            429 => Some(NodeState::Standby),
            501 => Some(NodeState::Uninitialized),
            503 => Some(NodeState::Sealed),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Standby => "standby",
            NodeState::Uninitialized => "uninitialized",
            NodeState::Sealed => "sealed",
        }
    }
    /// Unsealed and serving (active or standby).
    pub fn is_up(self) -> bool {
        matches!(self, NodeState::Active | NodeState::Standby)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HealthBody {
    #[serde(default)]
    pub initialized: bool,
    #[serde(default)]
    pub sealed: bool,
    #[serde(default)]
    pub standby: bool,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub server_time_utc: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub state: NodeState,
    pub body: HealthBody,
    /// The certificate the node served on this connection (DER).
    #[serde(skip)]
    pub peer_cert: Option<Vec<u8>>,
}

impl NodeClient {
    pub async fn health(&self) -> ApiResult<Health> {
        let path = "sys/health";
        let r = self.send(Method::GET, path, None, None).await?;
        let code = r.status.as_u16();
        let state = NodeState::from_status(code).ok_or_else(|| {
            self.err(path, ErrorKind::Http { status: code, errors: super::client::errors_of(&r.body) })
        })?;
        let body: HealthBody = serde_json::from_value(r.body).unwrap_or_default();
        Ok(Health { state, body, peer_cert: r.peer_cert })
    }
}
