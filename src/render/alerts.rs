//! Prometheus alert rules. Metric names: OpenBao/Vault telemetry (`vault_*`, from /v1/sys/metrics),
//! node-exporter textfile metrics written by modules/backup.nix and modules/monitoring.nix
//! (`vaultnix_*`).

use crate::plan::Plan;
use std::fmt::Write;

struct Rule<'a> {
    alert: &'a str,
    expr: String,
    for_: &'a str,
    severity: &'a str,
    summary: String,
    description: String,
}

/// How long the slow conditions must hold. The defaults are what `generate` writes; the live tests
/// shorten them (same rules, same file shape).
#[derive(Debug, Clone)]
pub struct AlertTiming {
    /// No active node in the whole cluster.
    pub no_active_for: String,
    /// Certificate expiry and raft database growth.
    pub slow_for: String,
    /// Window the raft database growth is measured over.
    pub growth_window: String,
}

impl Default for AlertTiming {
    fn default() -> Self {
        AlertTiming { no_active_for: "1m".into(), slow_for: "1h".into(), growth_window: "1d".into() }
    }
}

/// The rules `generate` writes (monitoring/alerts.yml).
pub fn render_alerts(plan: &Plan) -> String {
    render_alerts_with(plan, &AlertTiming::default())
}

/// Every server's Prometheus scrapes every server (job `vaultnix`, see render::prometheus), so the
/// cluster-wide rules see the whole cluster from any survivor.
pub fn render_alerts_with(plan: &Plan, t: &AlertTiming) -> String {
    let m = &plan.monitoring;
    let f = m.alert_for.as_str();
    let slow = t.slow_for.as_str();
    let cert_secs = m.cert_expiry_days as u64 * 86400;
    let rehearse_for =
        plan.backup.restic.as_ref().map(|r| format!("{}h", r.rehearse_max_age_hours)).unwrap_or_default();
    let backup_for = format!("{}h", m.backup_max_age_hours);
    let mut rules = vec![
        Rule {
            alert: "VaultnixNodeSealed",
            expr: "vault_core_unsealed{job=\"vaultnix\"} == 0".into(),
            for_: f,
            severity: "critical",
            summary: "{{ $labels.instance }} is sealed".into(),
            description: "A sealed node serves nothing and does not count towards quorum. Unseal it: `vaultnix unseal`.".into(),
        },
        Rule {
            alert: "VaultnixNoActiveNode",
            expr: "(sum(vault_core_active{job=\"vaultnix\"}) < 1) or absent(vault_core_active{job=\"vaultnix\"})"
                .into(),
            for_: &t.no_active_for,
            severity: "critical",
            summary: format!("cluster {} has no active node", plan.name),
            description: "No node reports itself active: clients get errors. Check quorum: `vaultnix status`; after losing a majority see `vaultnix recover lost-quorum`.".into(),
        },
        Rule {
            alert: "VaultnixRaftFailureToleranceLow",
            // Only the active node reports it; a cluster without one is VaultnixNoActiveNode.
            expr: "vault_autopilot_failure_tolerance{job=\"vaultnix\"} < 1".into(),
            for_: f,
            severity: "warning",
            summary: "raft failure tolerance is {{ $value }}".into(),
            description: "One more node failure loses quorum. Bring dead voters back or replace them (`vaultnix node replace`).".into(),
        },
        Rule {
            alert: "VaultnixNodeCertExpiring",
            expr: format!("vaultnix_cert_not_after_timestamp_seconds{{cert=\"node\"}} - time() < {cert_secs}"),
            for_: slow,
            severity: "warning",
            summary: format!("node certificate on {{{{ $labels.instance }}}} expires within {} days", m.cert_expiry_days),
            description: "Renew with `vaultnix certs renew` and redeploy; listeners reload the certificate without a restart.".into(),
        },
        Rule {
            alert: "VaultnixCaCertExpiring",
            expr: format!("vaultnix_cert_not_after_timestamp_seconds{{cert=\"ca\"}} - time() < {}", cert_secs * 4),
            for_: slow,
            severity: "warning",
            summary: format!("the cluster CA expires within {} days", u64::from(m.cert_expiry_days) * 4),
            description: "Plan a CA rotation (`vaultnix generate --rotate-ca`) before node certificates can no longer be issued.".into(),
        },
        Rule {
            alert: "VaultnixBackupStale",
            expr: format!("time() - vaultnix_backup_last_success_timestamp_seconds > {}", m.backup_max_age_hours as u64 * 3600),
            for_: "10m",
            severity: "critical",
            summary: format!("no successful raft snapshot for more than {} hours on {{{{ $labels.instance }}}}", m.backup_max_age_hours),
            description: "Check `systemctl status vaultnix-backup` and the backup token; take one now with `vaultnix snapshot save`.".into(),
        },
        Rule {
            alert: "VaultnixBackupNeverSucceeded",
            expr: "absent(vaultnix_backup_last_success_timestamp_seconds)".into(),
            // As long as a success may take on a healthy cluster (the validator checks the schedule).
            for_: &backup_for,
            severity: "warning",
            summary: "no backup success metric reported".into(),
            description: "The backup timer has never succeeded or the node-exporter textfile collector is not scraped.".into(),
        },
        Rule {
            alert: "VaultnixRaftDbGrowing",
            expr: format!(
                "vaultnix_raft_db_size_bytes > 2 * (vaultnix_raft_db_size_bytes offset {w}) and vaultnix_raft_db_size_bytes > 256 * 1024 * 1024",
                w = t.growth_window
            ),
            for_: slow,
            severity: "warning",
            summary: format!("raft database on {{{{ $labels.instance }}}} more than doubled within {}", t.growth_window),
            description: "Check for runaway writes (leases, tokens, KV churn) with `bao operator usage` and the audit log; snapshots grow with it.".into(),
        },
        Rule {
            alert: "VaultnixSnapshotGrowing",
            expr: format!(
                "vaultnix_backup_last_size_bytes > 2 * (vaultnix_backup_last_size_bytes offset {w}) and vaultnix_backup_last_size_bytes > 64 * 1024 * 1024",
                w = t.growth_window
            ),
            for_: slow,
            severity: "warning",
            summary: format!("raft snapshot of {{{{ $labels.cluster }}}} more than doubled within {}", t.growth_window),
            description: "Backups, off-host copies and restores take longer and cost more; look for the writes behind it (VaultnixRaftDbGrowing, `bao operator usage`, the audit log).".into(),
        },
        Rule {
            alert: "VaultnixNodeDown",
            expr: "up{job=\"vaultnix\"} == 0".into(),
            for_: f,
            severity: "warning",
            summary: "{{ $labels.instance }} is not scraped".into(),
            description: "The node or its metrics listener is unreachable.".into(),
        },
    ];
    restic_rules(plan, &rehearse_for, &mut rules);
    let mut s = String::new();
    let _ =
        writeln!(s, "# Generated by vaultnix {} for cluster {:?}. Do not edit.", env!("CARGO_PKG_VERSION"), plan.name);
    let _ = writeln!(s, "groups:");
    let _ = writeln!(s, "  - name: vaultnix-{}", plan.name);
    let _ = writeln!(s, "    rules:");
    for r in &rules {
        let _ = writeln!(s, "      - alert: {}", r.alert);
        let _ = writeln!(s, "        expr: {}", yaml_str(&r.expr));
        let _ = writeln!(s, "        for: {}", r.for_);
        let _ = writeln!(s, "        labels:");
        let _ = writeln!(s, "          severity: {}", r.severity);
        let _ = writeln!(s, "          cluster: {}", yaml_str(&plan.name));
        let _ = writeln!(s, "        annotations:");
        let _ = writeln!(s, "          summary: {}", yaml_str(&r.summary));
        let _ = writeln!(s, "          description: {}", yaml_str(&r.description));
    }
    s
}

/// `[backup.restic]` (issue 17): the off-host copy and the restore rehearsal. The newest copy of the
/// cluster counts (every server's job copies the active node's snapshot). `rehearse_for`: the
/// rehearsal's age limit as a `for:` duration ("50h").
fn restic_rules<'a>(plan: &Plan, rehearse_for: &'a str, rules: &mut Vec<Rule<'a>>) {
    let Some(r) = &plan.backup.restic else { return };
    let m = &plan.monitoring;
    rules.push(Rule {
        alert: "VaultnixOffsiteCopyStale",
        expr: format!(
            "time() - max by (cluster) (vaultnix_backup_offsite_last_success_timestamp_seconds) > {}",
            m.backup_max_age_hours as u64 * 3600
        ),
        for_: "10m",
        severity: "critical",
        summary: format!("no snapshot copied to the restic repository for more than {} hours", m.backup_max_age_hours),
        description: "Check `systemctl status vaultnix-backup` (restic errors are in its log) and the repository; `vaultnix snapshot list --from-repo` shows the copies.".into(),
    });
    if crate::render::backup::rehearsal_host(plan).is_some() {
        rules.push(Rule {
            alert: "VaultnixRestoreRehearsalStale",
            expr: format!(
                "time() - max by (cluster) (vaultnix_restore_rehearsal_last_success_timestamp_seconds) > {}",
                r.rehearse_max_age_hours as u64 * 3600
            ),
            for_: "10m",
            severity: "critical",
            summary: format!("no successful restore rehearsal for more than {} hours", r.rehearse_max_age_hours),
            description: "The newest off-host copy has not been proven to restore: `systemctl status vaultnix-rehearse`, or run `vaultnix backup rehearse --config /etc/vaultnix/rehearsal.json`.".into(),
        });
        rules.push(Rule {
            alert: "VaultnixRestoreRehearsalFailed",
            expr: "vaultnix_restore_rehearsal_success == 0".into(),
            for_: "0m",
            severity: "warning",
            summary: "the last restore rehearsal on {{ $labels.host }} failed".into(),
            description: "The newest copy in the restic repository did not restore or did not hold the canary: see `journalctl -u vaultnix-rehearse`.".into(),
        });
    }
    // The rehearsal host's series missing altogether (the timer never ran, the textfile or the
    // exporter is gone): Stale cannot see that. Only for the load balancer, the one rehearsal host
    // every server's Prometheus scrapes (job `lb`, render::prometheus); a server's node exporter is
    // scraped by its own Prometheus only, so an absent() there would fire on every other server.
    if let Some(host) = crate::render::backup::rehearsal_host(plan).filter(|h| *h == plan.lb.name) {
        rules.push(Rule {
            alert: "VaultnixRestoreRehearsalMissing",
            expr: format!(
                "absent(vaultnix_restore_rehearsal_last_success_timestamp_seconds{{cluster={},host={}}})",
                yaml_str(&plan.name),
                yaml_str(&host)
            ),
            for_: rehearse_for,
            severity: "critical",
            summary: format!("no restore rehearsal metrics from {host} for more than {}", rehearse_for),
            description: format!("The load balancer's node exporter (job `lb`) carries no vaultnix_restore_rehearsal_* series: check `systemctl status prometheus-node-exporter vaultnix-rehearse.timer` on {host} and that the servers reach its port 9100 over the overlay."),
        });
    }
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}
