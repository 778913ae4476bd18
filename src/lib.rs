//! vaultnix: one TOML spec → a highly-available OpenBao/Vault Raft cluster on NixOS.
//!
//! Data flows one way: [`spec`] (parse + validate) → [`plan`] (derived model) → [`render`] (pure
//! functions) → [`output`] (atomic writes). The live side ([`api`], [`lab`], [`drill`]) reads the plan.

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
pub mod spec;
