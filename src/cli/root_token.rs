//! `vaultnix root-token generate`: a new root token from a threshold of key shares (operator
//! generate-root), written to a 0600 file — never printed.

use super::{CliError, CliResult, Shell};
use crate::ops::root_token::{generate_root, GenerateRootOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Run generate-root with key shares and write the new root token to a 0600 file.
    #[command(
        long_about = "Runs OpenBao's generate-root with a threshold of unseal (or recovery) key shares: starts an \
attempt (cancelling one in progress), submits the shares, decodes the token with the one-time password and \
writes it to --token-file (created 0600; an existing file is not overwritten). Revoke the token when done \
(`bao token revoke -self`). With shares held by several people, use the manual flow in docs/operations.md.",
        after_help = "Example:\n  vaultnix root-token generate --out out --keys shares.txt   # one share per line, or an init.json"
    )]
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The output directory (CA), or a `vaultnix lab` directory.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Key shares: a file with one share per line, or an init.json.
    #[arg(long)]
    pub keys: PathBuf,
    /// Where the new token is written (0600, must not exist). Default: <out>/secrets/root-token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let Cmd::Generate(g) = a.command;
    let plan = super::status::live_plan(shell, g.spec.as_deref(), &g.out)?;
    let keys = crate::ops::unseal::Keys::from_file(&g.keys).map_err(|e| CliError::invalid(format!("{e:#}")))?;
    let token_file = g.token_file.clone().unwrap_or_else(|| g.out.join("secrets/root-token"));
    if token_file.exists() {
        return Err(CliError::invalid(format!(
            "{} exists: remove it or pass another --token-file",
            token_file.display()
        )));
    }
    let ca_pem = std::fs::read(g.out.join(crate::render::paths::CA_CRT)).map_err(|e| {
        CliError::invalid(format!("cannot read {}: {e}", g.out.join(crate::render::paths::CA_CRT).display()))
    })?;
    let rt = super::status::runtime()?;
    let cluster = crate::api::Cluster::new(&plan, &ca_pem)?;
    let active = rt
        .block_on(crate::ops::common::find_active(&cluster))
        .ok_or_else(|| CliError::failure("no active node: generate-root needs an unsealed cluster"))?;
    let node = plan.node(&active.name).ok_or_else(|| CliError::failure("active node not in the plan"))?;
    // OpenBao 2.7 serves generate-root to a token only (see ops::root_token): the admin token, else $BAO_TOKEN.
    let token = rt.block_on(crate::ops::common::resolve_token(&active, &g.out));
    let o = GenerateRootOptions { address: plan.api_url(node), ca_pem, token, timeout: Duration::from_secs(30) };
    let token = rt.block_on(generate_root(&o, &keys.0))?;
    // create_new + 0600 from the first byte; the directory is left as it is (it may be shared).
    crate::output::write_file(&token_file, format!("{token}\n").as_bytes(), true)?;
    shell.status(format!(
        "new root token written to {} (0600); revoke it when done: `bao token revoke -self`",
        token_file.display()
    ));
    Ok(())
}
