//! `vaultnix generate`: validate the spec and write (or, with --check, compare) the output tree.

use super::{CliError, CliResult, Shell};
use crate::generate::{generate, GenerateOptions};
use crate::plan::Plan;
use crate::render::{Layout, RenderOptions};
use crate::secrets::Rotate;
use crate::spec::Network;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vaultnix generate                              # built-in example into ./out\n  vaultnix generate --spec cluster.toml --out out\n  vaultnix generate --spec cluster.toml --check  # exit 1 and list files that differ"
)]
pub struct Args {
    /// The cluster spec (default: the built-in example).
    #[arg(short, long, env = "VAULTNIX_SPEC")]
    pub spec: Option<PathBuf>,
    /// Output directory.
    #[arg(short, long, default_value = "out", env = "VAULTNIX_OUT")]
    pub out: PathBuf,
    /// Render in memory and compare with the output directory; exit 1 if anything differs.
    #[arg(long)]
    pub check: bool,
    /// Create a new CA (and reissue every certificate) in one go: clients, nodes and HAProxy that
    /// still trust only the old CA break until they get the new one. For a running cluster use the
    /// staged `vaultnix ca rollover begin|reissue|finish` (refused while one is in progress).
    #[arg(long, conflicts_with = "check")]
    pub rotate_ca: bool,
    /// Create new node TLS and WireGuard keys (and reissue the certificates). The static seal key is
    /// kept: replacing it would make all data unreadable (see --rotate-seal-key).
    #[arg(long, conflicts_with = "check")]
    pub rotate_keys: bool,
    /// Static seal only: create a new seal key (secrets/seal.key) and keep the old one as
    /// secrets/seal.<old id>.key, rendered as the seal's previous_key, so the data stays readable.
    /// Put both keys on every server and restart them (the active node re-wraps the keyring with the
    /// new key when it unseals), then finish with --drop-previous-seal-key. Refused for other seals
    /// and while a rotation is in progress.
    #[arg(long, conflicts_with_all = ["check", "drop_previous_seal_key"])]
    pub rotate_seal_key: bool,
    /// Finish a static seal key rotation: stop rendering previous_key. Only after every server ran
    /// with the rotated configuration and the active node has unsealed with it (a restart or
    /// step-down of the active node does that). The old key is kept as
    /// secrets/seal.<id>.key: snapshots taken before the rotation need it.
    #[arg(long, conflicts_with = "check")]
    pub drop_previous_seal_key: bool,
    /// Flake URL the generated flake.nix takes vaultnix from.
    /// (default: the URL the output tree was generated with, else github:vaultnix/vaultnix)
    #[arg(long)]
    pub vaultnix_url: Option<String>,
    /// Replace an output tree generated for a different cluster (refused by default).
    #[arg(long, conflicts_with = "check")]
    pub replace_cluster: bool,
    /// Print the summary as JSON.
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::OutputFormat,
}

pub fn exec(shell: &Shell, a: Args) -> CliResult {
    let loaded = match super::load_spec(shell, a.spec.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            if a.output == super::OutputFormat::Json {
                // The same diagnostics as a document on stdout (the text stays on stderr).
                let spec = a.spec.as_ref().map(|p| p.display().to_string());
                println!("{}", invalid_spec_json(spec.as_deref(), &e));
            }
            return Err(e);
        }
    };
    let plan = Plan::from_loaded(&loaded);
    let q = plan.quorum;
    if !a.check && !a.replace_cluster {
        crate::output::check_cluster(&a.out, &plan.name).map_err(|e| CliError::failure(format!("{e:#}")))?;
    }
    let opts = GenerateOptions {
        out: a.out.clone(),
        check: a.check,
        rotate: Rotate {
            ca: a.rotate_ca,
            ca_step: None,
            keys: a.rotate_keys,
            certs: a.rotate_ca || a.rotate_keys,
            seal: a.rotate_seal_key,
            drop_previous_seal: a.drop_previous_seal_key,
        },
        render: RenderOptions {
            vaultnix_url: crate::output::remembered_vaultnix_url(&a.out, a.vaultnix_url.as_deref()),
            nix: true,
            initialized: None,
        },
    };
    let g = generate(&plan, &Layout::NixOs, &opts)?;
    let notes = crate::render::version_notes(&plan);
    if a.output == super::OutputFormat::Json {
        let v = serde_json::json!({
            "cluster": plan.name,
            "engine": plan.engine.as_str(),
            "version": plan.version_string,
            "out": a.out,
            "quorum": q,
            "raft_performance_multiplier": plan.raft.performance_multiplier,
            "network": plan.raft.network,
            "check": a.check,
            "drift": g.drift,
            "added": g.diff.added,
            "changed": g.diff.changed,
            "removed": g.diff.removed,
            "unchanged": g.diff.unchanged,
            "loose_modes": g.diff.loose_modes,
            "orphaned_secrets": g.diff.orphaned_secrets,
            "events": g.events,
            "notes": notes,
            "warnings": loaded.warnings.warnings().map(|d| d.to_string()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let non_voters = plan.nodes.len() - q.voters;
        shell.status(format!(
            "cluster {:?}: {} {} on Raft, {} voter(s) — quorum {}, tolerates {} failure(s){}; performance_multiplier {} ({})",
            plan.name,
            plan.engine.as_str(),
            plan.version_string,
            q.voters,
            q.quorum,
            q.tolerates,
            if non_voters > 0 { format!(", plus {non_voters} non-voter(s)") } else { String::new() },
            plan.raft.performance_multiplier,
            match plan.raft.network {
                Network::Lan => "LAN",
                Network::Wan => "WAN between voters",
            }
        ));
        for n in &notes {
            shell.note(n);
        }
        for e in &g.events {
            shell.status(format!("  {e}"));
        }
        if a.check {
            if g.drift {
                for p in &g.diff.changed {
                    shell.status(format!("  differs: {p}"));
                }
                for p in &g.diff.added {
                    shell.status(format!("  missing: {p}"));
                }
                for p in &g.diff.removed {
                    shell.status(format!("  stale:   {p}"));
                }
                for p in &g.diff.loose_modes {
                    shell.status(format!("  loose mode: {p}; group/other may read it"));
                }
            } else {
                shell.status(format!("{}: up to date ({} files)", a.out.display(), g.diff.unchanged));
            }
        } else if g.diff.is_empty() {
            shell.status(format!(
                "{}: already up to date ({} files); nothing written",
                a.out.display(),
                g.diff.unchanged
            ));
        } else {
            shell.status(format!(
                "{}: {} added, {} changed, {} removed, {} unchanged",
                a.out.display(),
                g.diff.added.len(),
                g.diff.changed.len(),
                g.diff.removed.len(),
                g.diff.unchanged
            ));
            for p in g.diff.added.iter().chain(&g.diff.changed) {
                shell.detail(format!("  wrote {p}"));
            }
            for p in &g.diff.loose_modes {
                shell.status(format!("  tightened {p} to owner-only"));
            }
            shell.status(format!(
                "secrets are in {}/secrets (0600); keep them out of git and the Nix store",
                a.out.display()
            ));
        }
    }
    if !g.diff.orphaned_secrets.is_empty() && a.output != super::OutputFormat::Json {
        shell.warn(format!(
            "kept {} secret(s) of nodes no longer in the spec (never deleted by generate; remove them by hand once \
             those nodes are gone): {}",
            g.diff.orphaned_secrets.len(),
            g.diff.orphaned_secrets.join(", ")
        ));
    }
    if a.check && g.drift {
        return Err(CliError {
            code: super::EXIT_FAILURE,
            message: format!(
                "{} differs from what the spec generates; run `vaultnix generate` (or restore the files)",
                a.out.display()
            ),
            report: None,
        });
    }
    Ok(())
}

/// `--output json` for a spec that cannot be used: `{"ok": false, "spec": ..., "errors": [...],
/// "warnings": [...]}`, each diagnostic with severity, message, expected, location and snippet.
fn invalid_spec_json(spec: Option<&str>, e: &CliError) -> String {
    let (errors, warnings) = match &e.report {
        Some(r) => (r.errors().cloned().collect::<Vec<_>>(), r.warnings().cloned().collect::<Vec<_>>()),
        None => (vec![crate::spec::Diagnostic::error(e.message.clone())], vec![]),
    };
    let v = serde_json::json!({ "ok": false, "spec": spec, "errors": errors, "warnings": warnings });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}
