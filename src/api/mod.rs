//! The OpenBao/Vault HTTP API client: reqwest + rustls on tokio, trusting only the cluster CA.
//!
//! [`Cluster`] is built from a [`crate::plan::Plan`] (nodes, load balancer, CA), so every live command
//! reads the plan. Errors ([`ApiError`]) name the node and the address dialled. Raft snapshots
//! (`sys/storage/raft/snapshot*`) belong in a `snapshot` module next to these.

pub mod client;
pub mod health;
pub mod kv;
pub mod raft;
pub mod sys;

pub use client::{block_on, ApiError, ApiResult, Cluster, ErrorKind, NodeClient, Reply};
pub use health::{Health, NodeState};
pub use raft::{AutopilotConfig, AutopilotState, RaftConfiguration, RaftServer};
pub use sys::{InitRequest, InitResponse, Leader, SealStatus};
