//! Raft and autopilot endpoints (all need a token).

use super::client::{ApiResult, NodeClient};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RaftServer {
    pub node_id: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub leader: bool,
    #[serde(default)]
    pub voter: bool,
    #[serde(default)]
    pub protocol_version: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RaftConfiguration {
    #[serde(default)]
    pub servers: Vec<RaftServer>,
    #[serde(default)]
    pub index: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AutopilotServer {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub node_status: String,
    #[serde(default)]
    pub last_contact: String,
    #[serde(default)]
    pub last_index: u64,
    #[serde(default)]
    pub healthy: bool,
    #[serde(default)]
    pub stable_since: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub version: String,
}

/// `GET sys/storage/raft/autopilot/state`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AutopilotState {
    #[serde(default)]
    pub healthy: bool,
    #[serde(default)]
    pub failure_tolerance: i64,
    #[serde(default)]
    pub leader: String,
    #[serde(default)]
    pub voters: Vec<String>,
    #[serde(default)]
    pub non_voters: Vec<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, AutopilotServer>,
    #[serde(default)]
    pub optimistic_failure_tolerance: i64,
}

impl AutopilotState {
    /// Voters that autopilot reports healthy.
    pub fn healthy_voters(&self) -> usize {
        self.servers.values().filter(|s| s.healthy && (s.status == "voter" || s.status == "leader")).count()
    }
}

/// `sys/storage/raft/autopilot/configuration`. Durations as the server prints them ("10s", "24h0m0s").
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct AutopilotConfig {
    #[serde(default)]
    pub cleanup_dead_servers: bool,
    #[serde(default)]
    pub dead_server_last_contact_threshold: String,
    #[serde(default)]
    pub last_contact_threshold: String,
    #[serde(default)]
    pub max_trailing_logs: u64,
    #[serde(default)]
    pub min_quorum: u64,
    #[serde(default)]
    pub server_stabilization_time: String,
}

impl NodeClient {
    pub async fn raft_configuration(&self) -> ApiResult<RaftConfiguration> {
        let v = self.call(Method::GET, "sys/storage/raft/configuration", None).await?;
        let c = v.pointer("/data/config").cloned().unwrap_or(Value::Null);
        self.decode("sys/storage/raft/configuration", c)
    }

    pub async fn autopilot_state(&self) -> ApiResult<AutopilotState> {
        self.get_data("sys/storage/raft/autopilot/state").await
    }

    pub async fn autopilot_config(&self) -> ApiResult<AutopilotConfig> {
        self.get_data("sys/storage/raft/autopilot/configuration").await
    }

    pub async fn set_autopilot_config(&self, c: &AutopilotConfig) -> ApiResult<()> {
        let body = serde_json::to_value(c).unwrap_or(Value::Null);
        self.call(Method::POST, "sys/storage/raft/autopilot/configuration", Some(&body)).await.map(|_| ())
    }
}
