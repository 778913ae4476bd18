//! `vaultnix bootstrap`: initialize, unseal and configure the cluster (idempotent, resumable).

use super::{CliResult, Shell};
use crate::ops::bootstrap::{bootstrap, BootstrapOptions, BootstrapReport};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vaultnix bootstrap --spec cluster.toml --out out\n  vaultnix bootstrap --spec cluster.toml --kv --admin-token --revoke-root"
)]
pub struct Args {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// The generated output directory (CA in pki/, root material written to secrets/).
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Mount a kv-v2 secrets engine at secret/.
    #[arg(long)]
    pub kv: bool,
    /// Create an `admin` policy and a periodic token for it in secrets/admin-token (0600).
    #[arg(long)]
    pub admin_token: bool,
    /// Create a `vaultnix-backup` policy (read sys/storage/raft/snapshot) and a periodic token for it in
    /// secrets/backup-token (0600): the token the backup timer (`vaultnix backup run`) uses.
    #[arg(long)]
    pub backup_token: bool,
    /// Create a `vaultnix-drain` policy (sys/step-down only) and a periodic token for it in
    /// secrets/drain-token (0600): the server unit's ExecStop (`vaultnix node drain`) uses it.
    #[arg(long)]
    pub drain_token: bool,
    /// Revoke the root token afterwards (requires a working admin token).
    #[arg(long)]
    pub revoke_root: bool,
    /// Upper bound in seconds for each wait (nodes reachable, unsealed, active).
    #[arg(long, default_value_t = 90)]
    pub wait: u64,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let plan = super::status::live_plan(shell, a.spec.as_deref(), &a.out)?;
    let mut o = BootstrapOptions::new(&a.out);
    o.kv = a.kv;
    o.admin_token = a.admin_token;
    o.backup_token = a.backup_token;
    o.drain_token = a.drain_token;
    o.revoke_root = a.revoke_root;
    o.progress = !shell.quiet;
    o.wait = std::time::Duration::from_secs(a.wait);
    let rep = super::status::runtime()?.block_on(bootstrap(&plan, &o))?;
    print_report(shell, &rep);
    Ok(())
}

pub fn print_report(shell: &Shell, rep: &BootstrapReport) {
    for c in &rep.changes {
        shell.status(format!("  {c}"));
    }
    for n in &rep.notes {
        shell.detail(format!("  {n}"));
    }
    if rep.nothing_to_do() {
        shell.status("already bootstrapped: nothing to do");
    } else {
        shell.status(format!("bootstrapped ({} change(s))", rep.changes.len()));
    }
    if rep.self_initialized {
        shell.warn(crate::ops::bootstrap::SELF_INIT_NOTE);
    }
    if let Some(p) = &rep.init_saved {
        shell.warn(format!("{} is ROOT MATERIAL (unseal/recovery keys and the root token)", p.display()));
    }
}
