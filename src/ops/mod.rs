//! Day-2 operations: snapshots and restore, certificate renewal, membership, rolling upgrades.
//! Each takes plain option structs so tests call them without the CLI.

pub mod certs;
pub mod live;
pub mod membership;
pub mod snapshot;
pub mod upgrade;
