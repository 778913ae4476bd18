//! Live operations on a running cluster (library side of bootstrap, status, unseal, step-down). Each
//! takes the plan and a plain options struct, so tests call them without the CLI.

pub mod bootstrap;
pub mod common;
pub mod lb;
pub mod status;
pub mod step_down;
pub mod unseal;
