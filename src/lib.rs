//! vaultnix: one TOML spec → a highly-available OpenBao/Vault Raft cluster on NixOS.
//!
//! Data flows one way: [`spec`] (parse + validate) → [`plan`] (derived model) → [`render`] (pure
//! functions) → [`output`] (atomic writes). The live side ([`api`], [`lab`], [`drill`]) reads the plan.

// No panics on user input: unwrap/expect only in tests (see docs/security.md, "No panic on any CLI path").
#![warn(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod cli;
pub mod doctor;
pub mod drill;
pub mod generate;
pub mod lab;
pub mod ops;
pub mod output;
pub mod pki;
pub mod plan;
pub mod recover;
pub mod render;
pub mod secrets;
pub mod shell;
pub mod spec;
