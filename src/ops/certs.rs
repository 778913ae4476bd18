//! `certs renew`: reissue node certificates (same keys, same CA) that expire within a window (and the
//! load balancer's, when it terminates TLS), through
//! the generate machinery so the output tree and its manifest stay consistent. The live half (reload,
//! then check what each listener actually serves) is in [`verify_served`].

use crate::generate::{self, GenerateOptions};
use crate::output::Diff;
use crate::pki;
use crate::plan::Plan;
use crate::render::{paths, Layout, RenderOptions};
use crate::secrets::{self, Rotate};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct RenewOptions {
    pub out: PathBuf,
    /// Renew certificates expiring within this many seconds.
    pub within_secs: u64,
    /// Renew every node certificate.
    pub all: bool,
    /// Only report what would be renewed.
    pub dry_run: bool,
    pub layout: Layout,
    pub render: RenderOptions,
    pub now: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertState {
    pub node: String,
    pub not_after: i64,
    pub days_left: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Renewed {
    pub node: String,
    pub old: CertState,
    pub new: CertState,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenewReport {
    pub renewed: Vec<Renewed>,
    pub kept: Vec<CertState>,
    pub ca_not_after: i64,
    pub ca_days_left: i64,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub diff: Diff,
}

fn state(node: &str, pem: &str, now: i64) -> Result<CertState> {
    let i = pki::inspect(pem)?;
    Ok(CertState {
        node: node.into(),
        not_after: i.not_after,
        days_left: i.days_left(now),
        sha256: i.sha256_fingerprint,
    })
}

/// Whether the load balancer has a certificate of its own (TLS terminated at HAProxy).
fn lb_terminates(plan: &Plan) -> bool {
    plan.lb.mode == crate::spec::LbMode::Terminate
}

/// The current leaf certificates under `out` (reads only): every node's, then the load balancer's
/// when it terminates TLS (named by the LB's name).
pub fn current(plan: &Plan, out: &Path, now: i64) -> Result<Vec<CertState>> {
    let mut leaves: Vec<(String, String)> =
        plan.nodes.iter().map(|n| (n.name.clone(), paths::node_crt(&n.name))).collect();
    if lb_terminates(plan) {
        leaves.push((plan.lb.name.clone(), paths::LB_CRT.to_string()));
    }
    leaves
        .into_iter()
        .map(|(name, rel)| {
            let p = out.join(&rel);
            let pem = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}: run `vaultnix generate` first", p.display()))?;
            state(&name, &pem, now).with_context(|| rel.clone())
        })
        .collect()
}

pub fn renew(plan: &Plan, o: &RenewOptions) -> Result<RenewReport> {
    // Renewal never creates a CA or keys: missing material means the tree was never generated (or the
    // CA key is kept offline), and inventing a CA here would silently split trust.
    for f in [paths::CA_KEY.to_string(), paths::CA_CRT.to_string()]
        .into_iter()
        .chain(plan.nodes.iter().map(|n| paths::node_key(&n.name)))
        .chain(lb_terminates(plan).then(|| paths::LB_KEY.to_string()))
    {
        if !o.out.join(&f).exists() {
            bail!("{} is missing: `certs renew` reissues under the existing CA and keys; run `vaultnix generate` first (or restore the file)", o.out.join(f).display());
        }
    }
    let before = current(plan, &o.out, o.now)?;
    let ca_pem = std::fs::read_to_string(o.out.join(paths::CA_CRT))?;
    let ca = pki::inspect(&ca_pem).context(paths::CA_CRT)?;
    let window = o.within_secs as i64;
    let pick: BTreeSet<String> =
        before.iter().filter(|c| o.all || c.not_after - o.now <= window).map(|c| c.node.clone()).collect();
    let mut warnings = Vec::new();
    let new_expiry = o.now + plan.tls.node_validity_days as i64 * 86400;
    if !pick.is_empty() && ca.not_after < new_expiry {
        warnings.push(format!(
            "the CA expires in {} days, before the renewed certificates ({} days): clients will reject them after the CA expires; plan `vaultnix generate --rotate-ca`",
            ca.days_left(o.now),
            plan.tls.node_validity_days
        ));
    }
    let mut report = RenewReport {
        renewed: Vec::new(),
        kept: Vec::new(),
        ca_not_after: ca.not_after,
        ca_days_left: ca.days_left(o.now),
        warnings,
        diff: Diff::default(),
    };
    if o.dry_run || pick.is_empty() {
        report.kept = before.iter().filter(|c| !pick.contains(&c.node)).cloned().collect();
        for c in before.into_iter().filter(|c| pick.contains(&c.node)) {
            report.renewed.push(Renewed { node: c.node.clone(), new: c.clone(), old: c });
        }
        return Ok(report);
    }
    let material = secrets::prepare_renewing(plan, &o.out, &Rotate::default(), true, o.now, &|n| pick.contains(n))?;
    if material.ca_bundle != ca_pem {
        bail!("internal error: renewal would change the CA; nothing written");
    }
    let gopts =
        GenerateOptions { out: o.out.clone(), check: false, rotate: Rotate::default(), render: o.render.clone() };
    let g = generate::generate_with(plan, &o.layout, &gopts, material)?;
    let after = current(plan, &o.out, o.now)?;
    for (old, new) in before.into_iter().zip(after) {
        if old.sha256 != new.sha256 {
            report.renewed.push(Renewed { node: old.node.clone(), old, new });
        } else {
            report.kept.push(new);
        }
    }
    report.diff = g.diff;
    Ok(report)
}

#[derive(Debug, Clone, Serialize)]
pub struct Served {
    pub node: String,
    /// The certificate it must serve (relative to the output tree).
    pub file: String,
    pub address: String,
    pub expected: String,
    pub served: Option<String>,
    pub attempts: usize,
    pub ok: bool,
}

/// Checks, over fresh TLS handshakes, that each node's listener serves the certificate in
/// `<out>/pki/<node>.crt` (and, when HAProxy terminates TLS, that a handshake through the load
/// balancer gets `pki/lb.crt`). Reloads are asynchronous (SIGHUP, or tls_auto_reload_interval), so
/// each is retried up to `tries` times `every` apart.
pub async fn verify_served(plan: &Plan, out: &Path, tries: usize, every: std::time::Duration) -> Result<Vec<Served>> {
    let ca = std::fs::read(out.join(paths::CA_CRT)).context(paths::CA_CRT)?;
    // (name, certificate file, address, through the LB's client: its name and address as clients use them)
    let mut leaves: Vec<(String, String, String, bool)> =
        plan.nodes.iter().map(|n| (n.name.clone(), paths::node_crt(&n.name), plan.api_url(n), false)).collect();
    if lb_terminates(plan) {
        leaves.push((plan.lb.name.clone(), paths::LB_CRT.to_string(), plan.lb_url(), true));
    }
    let mut res = Vec::new();
    for (node, file, address, via_lb) in leaves {
        let pem = std::fs::read_to_string(out.join(&file)).with_context(|| file.clone())?;
        let expected = pki::inspect(&pem)?.sha256_fingerprint;
        let mut s = Served { node, file, address, expected, served: None, attempts: 0, ok: false };
        for _ in 0..tries.max(1) {
            s.attempts += 1;
            let got = if via_lb {
                let lb = crate::api::Cluster::new(plan, &ca)?.lb.with_timeout(std::time::Duration::from_secs(10));
                lb.health().await.ok().and_then(|h| h.peer_cert).map(|der| {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(&der))
                })
            } else {
                crate::ops::live::served_leaf_sha256(&ca, &s.address).await.ok()
            };
            if let Some(fp) = got {
                s.ok = fp == s.expected;
                s.served = Some(fp);
                if s.ok {
                    break;
                }
            }
            tokio::time::sleep(every).await;
        }
        res.push(s);
    }
    Ok(res)
}

/// The lab's processes read the files in place: SIGHUP reloads every node's listener certificate;
/// when HAProxy terminates TLS, a seamless reload (as `systemctl reload haproxy`: the new process
/// takes the listeners over, the old one finishes its sessions) loads its new certificate.
/// Returns what was done.
pub fn reload_lab(lab: &crate::lab::Lab) -> Result<Vec<String>> {
    let mut done = sighup_nodes(lab)?;
    if lb_terminates(&lab.plan) {
        let (old, new) = lab.reload_haproxy()?;
        done.push(format!(
            "reloaded HAProxy for its new certificate: pid {new} took the listeners over from pid {old}"
        ));
    }
    Ok(done)
}

/// SIGHUP to every running node of the lab: each reloads its listener certificate and CA file.
pub fn sighup_nodes(lab: &crate::lab::Lab) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for n in &lab.plan.nodes {
        if let Some(pid) = lab.pid(&n.name) {
            let p = i32::try_from(pid).map_err(|_| anyhow::anyhow!("pid {pid} out of range"))?;
            // SAFETY: kill(2) with a pid this lab started and just checked (process::running).
            unsafe { libc::kill(p, libc::SIGHUP) };
            done.push(format!("sent SIGHUP to {} (pid {pid})", n.name));
        }
    }
    Ok(done)
}

/// `certs renew --all` on a running `vaultnix lab`: every node certificate (and the load balancer's
/// when it terminates TLS) reissued (same CA, same keys), SIGHUP to the nodes and a seamless HAProxy
/// reload, then verified over fresh handshakes ([`verify_served`], `tries` tries 2 s apart) that every
/// listener serves its new certificate. Fails unless every one does.
pub async fn renew_lab(lab: &crate::lab::Lab, tries: usize) -> Result<(RenewReport, Vec<Served>)> {
    let out = lab.dir.clone();
    let o = RenewOptions {
        out: out.clone(),
        within_secs: 0,
        all: true,
        dry_run: false,
        layout: Layout::Lab(crate::output::absolute(&out)?),
        render: RenderOptions {
            vaultnix_url: crate::output::remembered_vaultnix_url(&out, None),
            nix: false,
            initialized: None,
        },
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let r = renew(&lab.plan, &o)?;
    let leaves = lab.plan.nodes.len() + usize::from(lb_terminates(&lab.plan));
    if r.renewed.len() != leaves {
        bail!("renewed {} of {leaves} certificates (nodes and the load balancer's)", r.renewed.len());
    }
    reload_lab(lab)?;
    let served = verify_served(&lab.plan, &out, tries, std::time::Duration::from_secs(2)).await?;
    let bad: Vec<&str> = served.iter().filter(|s| !s.ok).map(|s| s.node.as_str()).collect();
    if !bad.is_empty() {
        bail!("after renewal, {} still serve(s) another certificate", bad.join(", "));
    }
    Ok((r, served))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn gen(plan: &Plan, out: &Path) {
        let o = GenerateOptions {
            out: out.to_path_buf(),
            check: false,
            rotate: Rotate::default(),
            render: RenderOptions { nix: false, ..Default::default() },
        };
        generate::generate(plan, &Layout::NixOs, &o).unwrap();
    }

    fn opts(out: &Path, within_days: u64, all: bool, now: i64) -> RenewOptions {
        RenewOptions {
            out: out.to_path_buf(),
            within_secs: within_days * 86400,
            all,
            dry_run: false,
            layout: Layout::NixOs,
            render: RenderOptions { nix: false, ..Default::default() },
            now,
        }
    }

    #[test]
    fn renews_only_certs_inside_the_window_and_keeps_the_manifest_right() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let plan = Plan::from_loaded(&spec::example());
        gen(&plan, &out);
        let ca_before = std::fs::read(out.join(paths::CA_CRT)).unwrap();
        let key_before = std::fs::read(out.join(paths::node_key("vault-2"))).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();

        // Nothing expires within 30 days of a fresh tree.
        let r = renew(&plan, &opts(&out, 30, false, now)).unwrap();
        assert!(r.renewed.is_empty());
        assert_eq!(r.kept.len(), 3);

        let r = renew(&plan, &opts(&out, 30, true, now)).unwrap();
        assert_eq!(r.renewed.len(), 3, "--all renews every certificate");
        for x in &r.renewed {
            assert_ne!(x.old.sha256, x.new.sha256);
        }
        assert_eq!(std::fs::read(out.join(paths::CA_CRT)).unwrap(), ca_before, "same CA");
        assert_eq!(std::fs::read(out.join(paths::node_key("vault-2"))).unwrap(), key_before, "same key");

        // A renewed tree is what generate produces: --check reports no drift.
        let chk = GenerateOptions {
            out: out.clone(),
            check: true,
            rotate: Rotate::default(),
            render: RenderOptions { nix: false, ..Default::default() },
        };
        let g = generate::generate(&plan, &Layout::NixOs, &chk).unwrap();
        assert!(!g.drift, "{:?}", g.diff);
    }

    #[test]
    fn a_terminating_load_balancer_is_renewed_with_the_nodes_same_key() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let mut sp = spec::example();
        sp.spec.load_balancer.mode = crate::spec::LbMode::Terminate;
        let plan = Plan::from_loaded(&sp);
        gen(&plan, &out);
        let lb_key = std::fs::read(out.join(paths::LB_KEY)).unwrap();
        let lb_crt = std::fs::read_to_string(out.join(paths::LB_CRT)).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let r = renew(&plan, &opts(&out, 30, false, now)).unwrap();
        assert!(r.renewed.is_empty());
        assert_eq!(
            r.kept.iter().map(|k| k.node.as_str()).collect::<Vec<_>>(),
            ["vault-1", "vault-2", "vault-3", "vault-lb"]
        );
        let r = renew(&plan, &opts(&out, 30, true, now)).unwrap();
        assert_eq!(r.renewed.len(), 4, "--all renews the nodes and the LB: {:?}", r.renewed);
        let new_crt = std::fs::read_to_string(out.join(paths::LB_CRT)).unwrap();
        assert_ne!(new_crt, lb_crt, "the LB certificate was reissued");
        assert_eq!(std::fs::read(out.join(paths::LB_KEY)).unwrap(), lb_key, "same LB key");
        // secrets/lb.pem (what HAProxy loads) holds the new certificate.
        let pem = std::fs::read_to_string(out.join(paths::LB_PEM)).unwrap();
        assert!(pem.contains(new_crt.trim()), "lb.pem carries the renewed certificate");
        // Renewal never creates keys: without secrets/lb.key it refuses and writes nothing.
        std::fs::remove_file(out.join(paths::LB_KEY)).unwrap();
        let e = renew(&plan, &opts(&out, 30, true, now)).unwrap_err();
        assert!(format!("{e:#}").contains("lb.key is missing"), "{e:#}");
        assert_eq!(std::fs::read_to_string(out.join(paths::LB_CRT)).unwrap(), new_crt);
    }

    #[test]
    fn selects_by_expiry_window() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let plan = Plan::from_loaded(&spec::example());
        gen(&plan, &out);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // Make vault-3's certificate short-lived (10 days) by issuing it directly under the same CA.
        let ca = pki::Ca::load(
            &std::fs::read_to_string(out.join(paths::CA_KEY)).unwrap(),
            &std::fs::read_to_string(out.join(paths::CA_CRT)).unwrap(),
        )
        .unwrap();
        let n3 = plan.node("vault-3").unwrap();
        let short = ca
            .issue(
                &n3.fqdn,
                &std::fs::read_to_string(out.join(paths::node_key("vault-3"))).unwrap(),
                &pki::node_sans(&plan, n3),
                10,
            )
            .unwrap();
        // Hand-placing it through generate keeps the manifest right: write then regenerate.
        std::fs::write(out.join(paths::node_crt("vault-3")), &short).unwrap();

        let mut o = opts(&out, 30, false, now);
        o.dry_run = true;
        let r = renew(&plan, &o).unwrap();
        assert_eq!(r.renewed.iter().map(|x| x.node.as_str()).collect::<Vec<_>>(), ["vault-3"]);
        assert_eq!(
            std::fs::read_to_string(out.join(paths::node_crt("vault-3"))).unwrap(),
            short,
            "dry run writes nothing"
        );

        let r = renew(&plan, &opts(&out, 30, false, now)).unwrap();
        assert_eq!(r.renewed.len(), 1);
        assert_eq!(r.renewed[0].node, "vault-3");
        assert!(r.renewed[0].new.days_left > 300);
        assert_eq!(r.kept.len(), 2);
        assert!(r.ca_days_left > 3000);
    }

    #[test]
    fn refuses_without_a_generated_tree() {
        let t = tempfile::tempdir().unwrap();
        let plan = Plan::from_loaded(&spec::example());
        let e = renew(&plan, &opts(t.path(), 30, false, 0)).unwrap_err().to_string();
        assert!(e.contains("generate"), "{e}");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0, "nothing created");
    }
}
