//! Live and day-2 operations: bootstrap, status, unseal, step-down; snapshots and restore, certificate
//! renewal, membership, rolling upgrades. Each takes the plan and a plain options struct, so tests call
//! them without the CLI.

pub mod agent;
pub mod backup;
pub mod bootstrap;
pub mod ca_rollover;
pub mod certs;
pub mod common;
pub mod drain;
pub mod lb;
pub mod live;
pub mod membership;
pub mod metrics;
pub mod rehearse;
pub mod restic;
pub mod restore_drill;
pub mod root_token;
pub mod snapshot;
pub mod status;
pub mod step_down;
pub mod unseal;
pub mod upgrade;
