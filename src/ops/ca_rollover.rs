//! A staged CA rollover that never breaks trust (`vaultnix ca rollover begin|reissue|finish|verify|
//! status`). Each step is rendered by `generate` (secrets::staged_ca holds the state machine), applied
//! (deployed; in a lab: SIGHUP to the nodes, a seamless HAProxy reload) and verified on the wire; the
//! next step is refused until the verification of the current phase matches the tree on disk.
//!
//! 1. begin: a new CA beside the old; flake/pki/ca.crt (every trust file: nodes, HAProxy, clients,
//!    retry_join, vaultnix) becomes the bundle old + new; every certificate unchanged.
//! 2. reissue: every leaf (nodes, the LB's certificate, the operator's client certificate) reissued by
//!    the new CA, which now is secrets/ca.key; the old CA archived (secrets/ca.retired-<n>.*), trusted.
//! 3. finish: the bundle holds the new CA only; the old CA stays archived.

use crate::generate::{self, GenerateOptions};
use crate::output::Diff;
use crate::pki;
use crate::plan::Plan;
use crate::render::{paths, Layout, RenderOptions};
use crate::secrets::{self, CaPhase, CaStep, Rotate};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the live check of one phase saw: the tree it checked (bundle and leaves, by sha256) and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub phase: CaPhase,
    pub tree: TreeFingerprint,
    pub verified_at: i64,
    pub checks: usize,
}

/// sha256 of flake/pki/ca.crt and of every leaf certificate file of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFingerprint {
    pub bundle_sha256: String,
    pub leaves: BTreeMap<String, String>,
}

/// The leaf certificates a rollover reissues (paths relative to the tree).
fn leaf_files(plan: &Plan, out: &Path) -> Vec<String> {
    let mut v: Vec<String> = plan.nodes.iter().map(|n| paths::node_crt(&n.name)).collect();
    for extra in [paths::LB_CRT, paths::ADMIN_CRT] {
        if out.join(extra).is_file() {
            v.push(extra.to_string());
        }
    }
    v
}

pub fn tree_fingerprint(plan: &Plan, out: &Path) -> Result<TreeFingerprint> {
    let read =
        |rel: &str| std::fs::read(out.join(rel)).with_context(|| format!("cannot read {}", out.join(rel).display()));
    let bundle_sha256 = crate::output::sha256_hex(&read(paths::CA_CRT)?);
    let mut leaves = BTreeMap::new();
    for f in leaf_files(plan, out) {
        leaves.insert(f.clone(), crate::output::sha256_hex(&read(&f)?));
    }
    Ok(TreeFingerprint { bundle_sha256, leaves })
}

pub fn read_verified(out: &Path) -> Result<Option<Verified>> {
    let p = out.join(paths::CA_ROLLOVER_VERIFIED);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| format!("{} does not parse", p.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
    }
}

/// The rollover's phase (Finished when none ever started).
pub fn phase(out: &Path) -> Result<CaPhase> {
    Ok(secrets::read_ca_rollover(out)?.map_or(CaPhase::Finished, |r| r.phase))
}

/// Whether the current phase was verified on the wire for exactly the tree on disk.
pub fn verified_now(plan: &Plan, out: &Path) -> Result<bool> {
    let Some(v) = read_verified(out)? else { return Ok(false) };
    Ok(v.phase == phase(out)? && v.tree == tree_fingerprint(plan, out)?)
}

#[derive(Debug, Clone)]
pub struct StepOptions {
    pub out: PathBuf,
    pub layout: Layout,
    pub render: RenderOptions,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: CaStep,
    pub phase: CaPhase,
    pub events: Vec<String>,
    #[serde(skip)]
    pub diff: Diff,
}

/// Renders one step through `generate`. `reissue` and `finish` are refused until the current phase
/// was verified on the wire ([`verify`]) for the very tree on disk; nothing is written then.
pub fn step(plan: &Plan, o: &StepOptions, step: CaStep) -> Result<StepReport> {
    if !o.out.join(paths::CA_KEY).is_file() || !o.out.join(paths::CA_CRT).is_file() {
        bail!(
            "{} has no CA (secrets/ca.key, flake/pki/ca.crt): run `vaultnix generate` first. Nothing was written",
            o.out.display()
        );
    }
    let current = phase(&o.out)?;
    // The order errors come from the state machine itself (secrets::staged_ca); the gate is only
    // about the live check of a phase that does allow this step.
    let allowed =
        matches!((step, current), (CaStep::Reissue, CaPhase::TrustBoth) | (CaStep::Finish, CaPhase::Reissued));
    if allowed && !verified_now(plan, &o.out)? {
        bail!(
            "the {} phase has not been verified on the wire for this tree: deploy it (`nixos-rebuild switch` reloads the \
             servers and HAProxy), then run `vaultnix ca rollover verify --out {}` (on a `vaultnix lab` directory the \
             step applies and verifies itself). Nothing was written",
            current.as_str(),
            o.out.display()
        );
    }
    if step == CaStep::Begin && current == CaPhase::Finished && next_key_is_foreign(&o.out)? {
        bail!(
            "{} holds a key that is not {}: `begin` would replace it with the new CA's key. Move it away (it may be \
             key material of an earlier rollover). Nothing was written",
            o.out.join(paths::CA_NEXT_KEY).display(),
            paths::CA_KEY
        );
    }
    let mut g = generate::generate(
        plan,
        &o.layout,
        &GenerateOptions {
            out: o.out.clone(),
            check: false,
            rotate: Rotate { ca_step: Some(step), ..Rotate::default() },
            render: o.render.clone(),
        },
    )?;
    let phase = phase(&o.out)?;
    if phase != CaPhase::TrustBoth {
        if let Some(e) = tidy_next_key(&o.out)? {
            g.events.push(e);
        }
    }
    Ok(StepReport { step, phase, events: g.events, diff: g.diff })
}

/// Whether secrets/ca.next.key exists and differs from secrets/ca.key.
fn next_key_is_foreign(out: &Path) -> Result<bool> {
    let next = out.join(paths::CA_NEXT_KEY);
    match std::fs::read(&next) {
        Ok(k) => Ok(std::fs::read(out.join(paths::CA_KEY)).ok().as_deref() != Some(k.as_slice())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(anyhow!("cannot read {}: {e}", next.display())),
    }
}

/// After `reissue` the new CA's key is secrets/ca.key and secrets/ca.next.key is left as a copy of it:
/// removed, but only when byte-identical to secrets/ca.key (a key that differs is never deleted; it is
/// kept and reported). Returns what was done.
pub fn tidy_next_key(out: &Path) -> Result<Option<String>> {
    let next = out.join(paths::CA_NEXT_KEY);
    if !next.exists() {
        return Ok(None);
    }
    if next_key_is_foreign(out)? {
        return Ok(Some(format!(
            "kept {}: it differs from {} (not a copy; move it away if it is no longer needed)",
            paths::CA_NEXT_KEY,
            paths::CA_KEY
        )));
    }
    std::fs::remove_file(&next).with_context(|| format!("cannot remove {}", next.display()))?;
    Ok(Some(format!("removed {}: a byte-identical copy of {}", paths::CA_NEXT_KEY, paths::CA_KEY)))
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub phase: CaPhase,
    pub checks: Vec<Check>,
    pub ok: bool,
}

/// "CN=… (sha256 0123456789abcdef…)": two CAs of a bundle may share a subject.
fn subject_of(pem: &str) -> String {
    pki::inspect(pem)
        .map(|i| format!("{} (sha256 {}…)", i.subject, short(&i.sha256_fingerprint)))
        .unwrap_or_else(|_| "?".into())
}

fn short(fp: &str) -> &str {
    &fp[..fp.len().min(16)]
}

/// HAProxy's serial numbers print without leading zeros, upper case.
fn serial_norm(s: &str) -> String {
    let t = s.trim().trim_start_matches('0').to_ascii_uppercase();
    if t.is_empty() {
        "0".into()
    } else {
        t
    }
}

fn serial_of(pem: &str) -> Result<String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| anyhow!("not PEM: {e}"))?;
    let c = p.parse_x509().map_err(|e| anyhow!("not X.509: {e}"))?;
    Ok(serial_norm(&hex::encode(c.raw_serial())))
}

/// The CA certificates HAProxy holds in memory for `ca_file` (runtime API `show ssl ca-file`), as
/// serial numbers in file order.
pub async fn haproxy_ca_serials(socket: &Path, ca_file: &str) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for i in 1..=16 {
        let out = crate::ops::lb::command(socket, &format!("show ssl ca-file {ca_file}:{i}")).await?;
        match out.lines().find_map(|l| l.strip_prefix("Serial: ")) {
            Some(s) => v.push(serial_norm(s)),
            None => break,
        }
    }
    Ok(v)
}

/// Where the live check reaches HAProxy's runtime API (the lab; on NixOS the LB's socket is on the LB).
#[derive(Debug, Clone)]
pub struct HaproxyAccess {
    pub socket: PathBuf,
    /// The `ca-file` path as HAProxy's configuration names it.
    pub ca_file: String,
    /// The process that must answer (after a reload: the new one).
    pub pid: Option<u32>,
}

/// Checks on the wire that the tree's current phase is in force, and records it
/// (secrets/ca-rollover.verified.json) when every check passed:
/// - every node's API listener serves its flake/pki/<node>.crt, and that chain verifies against the
///   issuing CA alone (a fresh handshake trusting nothing else) and not against the other CA alone;
/// - through the load balancer, a handshake trusting the issuing CA alone reaches the active node
///   (HAProxy's health checks accept the served chains with HAProxy's trust file; in terminate mode
///   HAProxy serves flake/pki/lb.crt), and so does one trusting the whole bundle (what clients use);
/// - with `haproxy`: the CA certificates HAProxy holds in memory are exactly the bundle's.
///
/// Reloads are asynchronous: each listener is retried up to `tries` times, `every` apart.
pub async fn verify(
    plan: &Plan,
    out: &Path,
    haproxy: Option<&HaproxyAccess>,
    tries: usize,
    every: Duration,
    now: i64,
) -> Result<Verification> {
    let phase = phase(out)?;
    let tree = tree_fingerprint(plan, out)?;
    let bundle_text = std::fs::read_to_string(out.join(paths::CA_CRT))?;
    let bundle = pki::split_bundle(&bundle_text);
    let issuing = bundle.first().cloned().ok_or_else(|| anyhow!("{} holds no certificate", paths::CA_CRT))?;
    // The CA that must NOT verify the served chains: the second of the bundle, or after a finished
    // rollover the CA it retired.
    let other = match bundle.get(1) {
        Some(c) => Some(c.clone()),
        None => secrets::read_ca_rollover(out)?
            .and_then(|r| r.retired.last().copied())
            .and_then(|n| std::fs::read_to_string(out.join(paths::ca_retired_crt(n))).ok()),
    };
    let issuing_name = subject_of(&issuing);
    let mut checks = Vec::new();
    for n in &plan.nodes {
        let pem = std::fs::read_to_string(out.join(paths::node_crt(&n.name)))?;
        let expected = pki::inspect(&pem)?.sha256_fingerprint;
        let address = plan.api_url(n);
        let mut served = None;
        let mut attempts = 0;
        for _ in 0..tries.max(1) {
            attempts += 1;
            match crate::ops::live::served_leaf_sha256(issuing.as_bytes(), &address).await {
                Ok(fp) if fp == expected => {
                    served = Some(fp);
                    break;
                }
                Ok(fp) => served = Some(fp),
                Err(e) => served = Some(format!("no verified handshake ({e:#})")),
            }
            tokio::time::sleep(every).await;
        }
        let ok = served.as_deref() == Some(expected.as_str());
        checks.push(Check {
            what: format!("{}: serves {} chained to {issuing_name}", n.name, paths::node_crt(&n.name)),
            ok,
            detail: if ok {
                format!("sha256 {}…, {attempts} handshake(s) trusting the issuing CA alone", short(&expected))
            } else {
                format!("served {} after {attempts} handshake(s)", served.unwrap_or_default())
            },
        });
        if let Some(o) = &other {
            let r = crate::ops::live::served_leaf_sha256(o.as_bytes(), &address).await;
            checks.push(Check {
                what: format!("{}: its chain does not verify against {} alone", n.name, subject_of(o)),
                ok: r.is_err(),
                detail: match r {
                    Ok(fp) => format!("it does (sha256 {}…)", short(&fp)),
                    Err(_) => "handshake refused, as it must be".into(),
                },
            });
        }
    }
    for (label, trust) in [("the issuing CA alone", issuing.as_str()), ("the whole bundle", bundle_text.as_str())] {
        let lb = crate::api::Cluster::new(plan, trust.as_bytes())?.lb.with_timeout(Duration::from_secs(10));
        let mut last = String::new();
        let mut ok = false;
        let mut attempts = 0;
        for _ in 0..tries.max(1) {
            attempts += 1;
            match lb.health().await {
                Ok(h) if h.state == crate::api::health::NodeState::Active => {
                    ok = match (plan.lb.mode, std::fs::read_to_string(out.join(paths::LB_CRT))) {
                        (crate::spec::LbMode::Terminate, Ok(lb_pem)) => {
                            let want = pki::inspect(&lb_pem)?.sha256_fingerprint;
                            let got = h.peer_cert.as_deref().map(|d| {
                                use sha2::Digest;
                                hex::encode(sha2::Sha256::digest(d))
                            });
                            last = format!(
                                "served sha256 {} (flake/pki/lb.crt {}…)",
                                got.clone().unwrap_or_default(),
                                short(&want)
                            );
                            got.as_deref() == Some(want.as_str())
                        }
                        _ => true,
                    };
                    if ok {
                        break;
                    }
                }
                Ok(h) => last = format!("answered by a {:?} node", h.state),
                Err(e) => last = format!("{e}"),
            }
            tokio::time::sleep(every).await;
        }
        checks.push(Check {
            what: format!("load balancer: a handshake trusting {label} reaches the active node"),
            ok,
            detail: if ok { format!("{attempts} attempt(s)") } else { last },
        });
    }
    if let Some(h) = haproxy {
        let want: Vec<String> = bundle.iter().map(|c| serial_of(c)).collect::<Result<_>>()?;
        let mut last = String::new();
        let mut ok = false;
        for _ in 0..tries.max(1) {
            let pid_ok = match h.pid {
                Some(p) => crate::ops::lb::command(&h.socket, "show info")
                    .await
                    .map(|i| i.lines().any(|l| l.trim() == format!("Pid: {p}")))
                    .unwrap_or(false),
                None => true,
            };
            match haproxy_ca_serials(&h.socket, &h.ca_file).await {
                Ok(got) if pid_ok && got == want => {
                    ok = true;
                    break;
                }
                Ok(got) => {
                    last =
                        format!("HAProxy holds {got:?}, the bundle is {want:?} (reloaded process answering: {pid_ok})")
                }
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(every).await;
        }
        checks.push(Check {
            what: format!("HAProxy trusts exactly the bundle's {} CA(s) (runtime API: show ssl ca-file)", want.len()),
            ok,
            detail: if ok { format!("serials {}", want.join(", ")) } else { last },
        });
    }
    if plan.seal.self_init {
        checks.push(admin_role_check(plan, out, &bundle_text).await);
    }
    let ok = checks.iter().all(|c| c.ok);
    if ok {
        let v = Verified { phase, tree, verified_at: now, checks: checks.len() };
        let mut t = serde_json::to_string_pretty(&v)?;
        t.push('\n');
        crate::output::write_file_atomic(&out.join(paths::CA_ROLLOVER_VERIFIED), t.as_bytes(), true)?;
    }
    Ok(Verification { phase, checks, ok })
}

/// The same certificates, in any order (the role's copy need not follow the bundle's order).
fn same_cas(a: &str, b: &str) -> bool {
    let norm = |t: &str| {
        let mut v: Vec<String> = pki::split_bundle(t).into_iter().map(|c| c.trim().to_string()).collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

/// Self-initialized clusters: the cert auth role `vaultnix-admin` holds the CA text it was initialized
/// with (read from the CA file once). Rewrites it with the tree's bundle, logged in with the operator
/// certificate the role accepts now: after `begin` it trusts old + new (so the certificate `reissue`
/// issues logs in), after `finish` the new CA only. Returns what it did (None: not self-initialized,
/// or the role already holds the bundle).
pub async fn sync_admin_role(plan: &Plan, out: &Path) -> Result<Option<String>> {
    if !plan.seal.self_init {
        return Ok(None);
    }
    let bundle = std::fs::read_to_string(out.join(paths::CA_CRT))?;
    let id = crate::ops::common::admin_identity(out).ok_or_else(|| {
        anyhow!("{} or {} is missing: the operator certificate logs in", paths::ADMIN_CRT, paths::ADMIN_KEY)
    })?;
    // The active node directly: a terminating LB does not pass client certificates through.
    let c = crate::api::Cluster::from_out(plan, out)?;
    let active = crate::ops::common::find_active(&c).await.ok_or_else(|| anyhow!("no active node"))?;
    let lb = active.with_identity(&id)?;
    let auth = lb
        .login_cert(pki::ADMIN_CN)
        .await
        .map_err(|e| anyhow!("the operator certificate does not log in ({e}): the role must trust its CA"))?;
    let lb = lb.with_token(Some(auth.client_token));
    let path = format!("auth/cert/certs/{}", pki::ADMIN_CN);
    let cur = lb.call(reqwest::Method::GET, &path, None).await.map_err(|e| anyhow!("reading {path}: {e}"))?;
    let held = cur.pointer("/data/certificate").and_then(|v| v.as_str()).unwrap_or_default();
    if same_cas(held, &bundle) {
        return Ok(None);
    }
    // Every field as the initialize stanza wrote it (render::server), the certificate from the bundle.
    let body = serde_json::json!({
        "display_name": pki::ADMIN_CN,
        "certificate": bundle,
        "allowed_common_names": [pki::ADMIN_CN],
        "token_policies": [crate::render::server::SELF_INIT_POLICY],
        "token_ttl": crate::render::server::SELF_INIT_TOKEN_TTL,
        "token_max_ttl": crate::render::server::SELF_INIT_TOKEN_TTL,
    });
    lb.call(reqwest::Method::POST, &path, Some(&body)).await.map_err(|e| anyhow!("writing {path}: {e}"))?;
    Ok(Some(format!(
        "the cert auth role {} now trusts the {} CA(s) of {}",
        pki::ADMIN_CN,
        pki::split_bundle(&bundle).len(),
        paths::CA_CRT
    )))
}

/// Self-initialized clusters: whether the cert auth role trusts exactly the bundle, and the operator
/// certificate of the tree logs in.
async fn admin_role_check(plan: &Plan, out: &Path, bundle: &str) -> Check {
    let what = format!("cert auth role {} trusts exactly the bundle; the operator certificate logs in", pki::ADMIN_CN);
    let r = async {
        let id = crate::ops::common::admin_identity(out).ok_or_else(|| anyhow!("no operator certificate"))?;
        let c = crate::api::Cluster::from_out(plan, out)?;
        let active = crate::ops::common::find_active(&c).await.ok_or_else(|| anyhow!("no active node"))?;
        let lb = active.with_identity(&id)?;
        let auth = lb.login_cert(pki::ADMIN_CN).await.map_err(|e| anyhow!("login refused: {e}"))?;
        let lb = lb.with_token(Some(auth.client_token));
        let cur = lb.call(reqwest::Method::GET, &format!("auth/cert/certs/{}", pki::ADMIN_CN), None).await?;
        let held = cur.pointer("/data/certificate").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        Ok::<_, anyhow::Error>(same_cas(&held, bundle))
    }
    .await;
    match r {
        Ok(true) => Check { what, ok: true, detail: "logged in; role certificate = flake/pki/ca.crt".into() },
        Ok(false) => Check {
            what,
            ok: false,
            detail: "the role holds other CAs: run `vaultnix ca rollover verify` (it rewrites the role)".into(),
        },
        Err(e) => Check { what, ok: false, detail: format!("{e:#}") },
    }
}

/// One CA of the bundle or the archive, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct CaSummary {
    pub subject: String,
    pub sha256: String,
    pub not_after: i64,
    pub role: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub phase: CaPhase,
    pub rollover_started: bool,
    /// The current phase was verified on the wire for the tree on disk.
    pub verified: bool,
    /// The next step, if a rollover is in progress.
    pub next: Option<CaStep>,
    pub trusted: Vec<CaSummary>,
    pub retired: Vec<CaSummary>,
}

pub fn status(plan: &Plan, out: &Path) -> Result<Status> {
    let r = secrets::read_ca_rollover(out)?;
    let phase = r.as_ref().map_or(CaPhase::Finished, |r| r.phase);
    let text = std::fs::read_to_string(out.join(paths::CA_CRT))
        .with_context(|| format!("cannot read {}: run `vaultnix generate` first", out.join(paths::CA_CRT).display()))?;
    let sum = |pem: &str, role: &str| -> Result<CaSummary> {
        let i = pki::inspect(pem)?;
        Ok(CaSummary { subject: i.subject, sha256: i.sha256_fingerprint, not_after: i.not_after, role: role.into() })
    };
    let mut trusted = Vec::new();
    for (i, c) in pki::split_bundle(&text).iter().enumerate() {
        let role = match (i, phase) {
            (0, _) => "issuing",
            (_, CaPhase::TrustBoth) => "new (trusted, not issuing yet)",
            _ => "old (trusted until finish)",
        };
        trusted.push(sum(c, role)?);
    }
    let mut retired = Vec::new();
    for n in r.as_ref().map(|r| r.retired.clone()).unwrap_or_default() {
        let c = std::fs::read_to_string(out.join(paths::ca_retired_crt(n)))?;
        retired.push(sum(&c, &paths::ca_retired_key(n))?);
    }
    let next = match phase {
        CaPhase::TrustBoth => Some(CaStep::Reissue),
        CaPhase::Reissued => Some(CaStep::Finish),
        CaPhase::Finished => None,
    };
    Ok(Status { phase, rollover_started: r.is_some(), verified: verified_now(plan, out)?, next, trusted, retired })
}

/// Applies the tree to a running `vaultnix lab`: SIGHUP reloads every node's listener certificate
/// (and its CA file), a seamless HAProxy reload (the new process takes the listeners over the admin
/// socket, the old one finishes its sessions) loads HAProxy's trust file and certificate. Returns
/// what was done and HAProxy's access for [`verify`].
pub fn apply_lab(lab: &crate::lab::Lab) -> Result<(Vec<String>, HaproxyAccess)> {
    let mut done = crate::ops::certs::sighup_nodes(lab)?;
    let (old, new) = lab.reload_haproxy()?;
    done.push(format!(
        "reloaded HAProxy: pid {new} took the listeners over from pid {old}, which finishes its sessions"
    ));
    let layout = Layout::Lab(lab.dir.clone());
    let access = HaproxyAccess {
        socket: PathBuf::from(layout.haproxy_admin_socket()),
        ca_file: layout.haproxy_ca_file(&lab.plan),
        pid: Some(new),
    };
    Ok((done, access))
}

/// One rollover step on a running `vaultnix lab` (what `vaultnix ca rollover <step> --out <lab>` and
/// `vaultnix drill ca-rollover` run): rendered ([`step`]), applied ([`apply_lab`]), the cert auth role
/// synced ([`sync_admin_role`]), and verified on the wire ([`verify`], `tries` tries 2 s apart; the
/// next step stays refused unless `verification.ok`).
#[derive(Debug, Clone)]
pub struct LabStep {
    pub report: StepReport,
    /// What was applied (signals, the HAProxy reload, the role rewrite).
    pub done: Vec<String>,
    pub verification: Verification,
}

pub async fn step_lab(lab: &crate::lab::Lab, s: CaStep, vaultnix_url: Option<&str>, tries: usize) -> Result<LabStep> {
    let out = lab.dir.clone();
    let o = StepOptions {
        out: out.clone(),
        layout: Layout::Lab(crate::output::absolute(&out)?),
        render: RenderOptions {
            vaultnix_url: crate::output::remembered_vaultnix_url(&out, vaultnix_url),
            nix: false,
            initialized: None,
        },
    };
    let report = step(&lab.plan, &o, s)?;
    let (mut done, access) = apply_lab(lab)?;
    if let Some(d) = sync_admin_role(&lab.plan, &out).await? {
        done.push(d);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verification = verify(&lab.plan, &out, Some(&access), tries, Duration::from_secs(2), now).await?;
    Ok(LabStep { report, done, verification })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn opts(out: &Path) -> StepOptions {
        StepOptions {
            out: out.to_path_buf(),
            layout: Layout::NixOs,
            render: RenderOptions { nix: false, ..Default::default() },
        }
    }

    fn gen(plan: &Plan, out: &Path) {
        let o = GenerateOptions {
            out: out.to_path_buf(),
            check: false,
            rotate: Rotate::default(),
            render: RenderOptions { nix: false, ..Default::default() },
        };
        generate::generate(plan, &Layout::NixOs, &o).unwrap();
    }

    fn read(out: &Path, rel: &str) -> String {
        std::fs::read_to_string(out.join(rel)).unwrap()
    }

    /// Marks the current phase verified without a cluster (what a successful `verify` records).
    fn mark_verified(plan: &Plan, out: &Path) {
        let v = Verified {
            phase: phase(out).unwrap(),
            tree: tree_fingerprint(plan, out).unwrap(),
            verified_at: 0,
            checks: 0,
        };
        std::fs::write(out.join(paths::CA_ROLLOVER_VERIFIED), serde_json::to_string(&v).unwrap()).unwrap();
    }

    fn check_clean(plan: &Plan, out: &Path) {
        let o = GenerateOptions {
            out: out.to_path_buf(),
            check: true,
            rotate: Rotate::default(),
            render: RenderOptions { nix: false, ..Default::default() },
        };
        let g = generate::generate(plan, &Layout::NixOs, &o).unwrap();
        assert!(!g.drift, "{:?}", g.diff);
    }

    #[test]
    fn next_key_removed_only_when_identical_and_a_foreign_one_blocks_begin() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let plan = Plan::from_loaded(&spec::example());
        gen(&plan, &out);
        assert_eq!(tidy_next_key(&out).unwrap(), None, "nothing to tidy");
        // A byte-identical copy of ca.key goes.
        std::fs::copy(out.join(paths::CA_KEY), out.join(paths::CA_NEXT_KEY)).unwrap();
        let e = tidy_next_key(&out).unwrap().unwrap();
        assert!(e.starts_with("removed"), "{e}");
        assert!(!out.join(paths::CA_NEXT_KEY).exists());
        // A different key is never deleted, and `begin` refuses to overwrite it.
        let mut other = read(&out, paths::CA_KEY);
        other.push('\n');
        std::fs::write(out.join(paths::CA_NEXT_KEY), &other).unwrap();
        let e = tidy_next_key(&out).unwrap().unwrap();
        assert!(e.starts_with("kept"), "{e}");
        assert_eq!(read(&out, paths::CA_NEXT_KEY), other);
        let ca_before = read(&out, paths::CA_CRT);
        let e = step(&plan, &opts(&out), CaStep::Begin).unwrap_err().to_string();
        assert!(e.contains("holds a key that is not") && e.contains("Nothing was written"), "{e}");
        assert_eq!(read(&out, paths::CA_NEXT_KEY), other);
        assert_eq!(read(&out, paths::CA_CRT), ca_before);
        assert_eq!(phase(&out).unwrap(), CaPhase::Finished);
    }

    #[test]
    fn three_steps_bundle_reissue_and_archive_the_old_ca() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let plan = Plan::from_loaded(&spec::example());
        gen(&plan, &out);
        let old_ca = read(&out, paths::CA_CRT);
        let old_key = read(&out, paths::CA_KEY);
        let leaf1 = read(&out, &paths::node_crt("vault-1"));
        assert_eq!(pki::split_bundle(&old_ca).len(), 1);

        // begin: bundle old + new, leaves and the issuing key unchanged.
        let r = step(&plan, &opts(&out), CaStep::Begin).unwrap();
        assert_eq!(r.phase, CaPhase::TrustBoth);
        let b = pki::split_bundle(&read(&out, paths::CA_CRT));
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].trim(), old_ca.trim(), "the old CA stays first (it still issues)");
        let new_key = read(&out, paths::CA_NEXT_KEY);
        pki::Ca::load(&new_key, &b[1]).unwrap();
        assert_eq!(read(&out, paths::CA_KEY), old_key);
        assert_eq!(read(&out, &paths::node_crt("vault-1")), leaf1, "begin reissues nothing");
        use std::os::unix::fs::PermissionsExt;
        for s in [paths::CA_NEXT_KEY, paths::CA_ROLLOVER] {
            let mode = std::fs::metadata(out.join(s)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{s}");
        }
        assert!(!out.join("flake").join("pki/ca.next.key").exists());
        check_clean(&plan, &out);

        // reissue: refused until verified; then every leaf is signed by the new CA.
        let e = step(&plan, &opts(&out), CaStep::Reissue).unwrap_err().to_string();
        assert!(e.contains("not been verified on the wire") && e.contains("Nothing was written"), "{e}");
        mark_verified(&plan, &out);
        let r = step(&plan, &opts(&out), CaStep::Reissue).unwrap();
        assert_eq!(r.phase, CaPhase::Reissued);
        let b2 = pki::split_bundle(&read(&out, paths::CA_CRT));
        assert_eq!(b2.len(), 2);
        assert_eq!(b2[0], b[1], "the new CA issues now and comes first");
        assert_eq!(b2[1], b[0], "the old CA is still trusted");
        assert_eq!(read(&out, paths::CA_KEY), new_key);
        assert_eq!(read(&out, &paths::ca_retired_key(1)), old_key, "the old CA key is archived");
        assert!(!out.join(paths::CA_NEXT_KEY).exists(), "the copy of the new key is removed after reissue");
        assert!(r.events.iter().any(|e| e.contains("removed secrets/ca.next.key")), "{:?}", r.events);
        for n in &plan.nodes {
            let leaf = read(&out, &paths::node_crt(&n.name));
            assert!(pki::verify_signed_by(&leaf, &b[1]), "{} reissued by the new CA", n.name);
            assert!(!pki::verify_signed_by(&leaf, &b[0]));
        }
        check_clean(&plan, &out);

        // finish: refused until verified; then the new CA alone, the old one archived.
        let e = step(&plan, &opts(&out), CaStep::Finish).unwrap_err().to_string();
        assert!(e.contains("reissued phase has not been verified"), "{e}");
        mark_verified(&plan, &out);
        let r = step(&plan, &opts(&out), CaStep::Finish).unwrap();
        assert_eq!(r.phase, CaPhase::Finished);
        let b3 = pki::split_bundle(&read(&out, paths::CA_CRT));
        assert_eq!(b3, vec![b[1].clone()]);
        assert_eq!(read(&out, &paths::ca_retired_key(1)), old_key, "still archived after finish");
        assert_eq!(read(&out, &paths::ca_retired_crt(1)).trim(), old_ca.trim());
        check_clean(&plan, &out);
        let s = status(&plan, &out).unwrap();
        assert_eq!(s.trusted.len(), 1);
        assert_eq!(s.retired.len(), 1);
        assert!(s.next.is_none());

        // A second rollover numbers its archive 2 and keeps 1.
        step(&plan, &opts(&out), CaStep::Begin).unwrap();
        mark_verified(&plan, &out);
        step(&plan, &opts(&out), CaStep::Reissue).unwrap();
        assert_eq!(read(&out, &paths::ca_retired_key(2)), new_key);
        assert_eq!(read(&out, &paths::ca_retired_key(1)), old_key);
    }

    #[test]
    fn steps_out_of_order_are_clear_errors_and_write_nothing() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let plan = Plan::from_loaded(&spec::example());
        gen(&plan, &out);
        let snapshot = || {
            let mut v = BTreeMap::new();
            for e in walkdir(&out) {
                v.insert(e.clone(), std::fs::read(out.join(&e)).unwrap());
            }
            v
        };
        let before = snapshot();
        for s in [CaStep::Reissue, CaStep::Finish] {
            let e = step(&plan, &opts(&out), s).unwrap_err().to_string();
            assert!(e.contains("no CA rollover is in progress") && e.contains("begin"), "{s:?}: {e}");
        }
        assert_eq!(snapshot(), before, "nothing written");
        step(&plan, &opts(&out), CaStep::Begin).unwrap();
        mark_verified(&plan, &out);
        let before = snapshot();
        let e = step(&plan, &opts(&out), CaStep::Finish).unwrap_err().to_string();
        assert!(e.contains("still signed by the old CA") && e.contains("reissue"), "{e}");
        let e = step(&plan, &opts(&out), CaStep::Begin).unwrap_err().to_string();
        assert!(e.contains("already in progress") && e.contains("reissue"), "{e}");
        assert_eq!(snapshot(), before, "nothing written");
        // The one-shot rotation refuses to run under a staged rollover.
        let o = GenerateOptions {
            out: out.clone(),
            check: false,
            rotate: Rotate { ca: true, certs: true, ..Rotate::default() },
            render: RenderOptions { nix: false, ..Default::default() },
        };
        let e = generate::generate(&plan, &Layout::NixOs, &o).unwrap_err().to_string();
        assert!(e.contains("rollover is in progress") && e.contains("ca rollover reissue"), "{e}");
        assert_eq!(snapshot(), before, "nothing written");
        // A verification of another tree does not count: a regenerated leaf invalidates it.
        let mut v = read_verified(&out).unwrap().unwrap();
        v.tree.bundle_sha256 = "0".repeat(64);
        std::fs::write(out.join(paths::CA_ROLLOVER_VERIFIED), serde_json::to_string(&v).unwrap()).unwrap();
        let e = step(&plan, &opts(&out), CaStep::Reissue).unwrap_err().to_string();
        assert!(e.contains("not been verified"), "{e}");
    }

    #[test]
    fn rotate_ca_in_one_go_archives_the_old_ca_key() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let plan = Plan::from_loaded(&spec::example());
        gen(&plan, &out);
        let old_key = read(&out, paths::CA_KEY);
        let old_ca = read(&out, paths::CA_CRT);
        let o = GenerateOptions {
            out: out.clone(),
            check: false,
            rotate: Rotate { ca: true, certs: true, ..Rotate::default() },
            render: RenderOptions { nix: false, ..Default::default() },
        };
        let g = generate::generate(&plan, &Layout::NixOs, &o).unwrap();
        assert!(g.events.iter().any(|e| e.contains("archived the replaced CA")), "{:?}", g.events);
        assert_ne!(read(&out, paths::CA_KEY), old_key);
        assert_eq!(read(&out, &paths::ca_retired_key(1)), old_key);
        assert_eq!(read(&out, &paths::ca_retired_crt(1)).trim(), old_ca.trim());
        assert_eq!(pki::split_bundle(&read(&out, paths::CA_CRT)).len(), 1, "one CA trusted");
        check_clean(&plan, &out);
        // A staged rollover afterwards numbers its archive 2.
        step(&plan, &opts(&out), CaStep::Begin).unwrap();
        mark_verified(&plan, &out);
        step(&plan, &opts(&out), CaStep::Reissue).unwrap();
        assert!(out.join(paths::ca_retired_key(2)).is_file());
        assert_eq!(read(&out, &paths::ca_retired_key(1)), old_key);
    }

    #[test]
    fn a_bundle_without_rollover_state_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let plan = Plan::from_loaded(&spec::example());
        gen(&plan, &out);
        let ca = read(&out, paths::CA_CRT);
        let k = pki::generate_key(crate::spec::KeyAlgorithm::EcdsaP256).unwrap();
        let other = pki::new_ca_cert("x", &k, 10).unwrap();
        std::fs::write(out.join(paths::CA_CRT), pki::bundle(&[&ca, &other])).unwrap();
        let e = generate::generate(
            &plan,
            &Layout::NixOs,
            &GenerateOptions {
                out: out.clone(),
                check: false,
                rotate: Rotate::default(),
                render: RenderOptions { nix: false, ..Default::default() },
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds 2 certificate(s)") && e.contains("no CA rollover is in progress"), "{e}");
    }

    #[test]
    fn bundles_split_and_join() {
        let k1 = pki::generate_key(crate::spec::KeyAlgorithm::EcdsaP256).unwrap();
        let k2 = pki::generate_key(crate::spec::KeyAlgorithm::EcdsaP256).unwrap();
        let (c1, c2) = (pki::new_ca_cert("a", &k1, 10).unwrap(), pki::new_ca_cert("b", &k2, 10).unwrap());
        let b = pki::bundle(&[&c1, &c2]);
        let parts = pki::split_bundle(&b);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].trim(), c1.trim());
        assert_eq!(parts[1].trim(), c2.trim());
        assert_eq!(pki::cert_for_key(&b, &k2.serialize_pem()).unwrap().trim(), c2.trim());
        // vaultnix's own client trusts every certificate of the bundle, not only the first.
        assert_eq!(crate::api::client::root_certificates(b.as_bytes()).unwrap().len(), 2);
        assert!(crate::api::client::root_certificates(b"no pem here").is_err());
        assert_eq!(serial_norm("00ab01"), "AB01");
    }

    fn walkdir(root: &Path) -> Vec<String> {
        fn go(root: &Path, d: &Path, acc: &mut Vec<String>) {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    go(root, &p, acc);
                } else {
                    acc.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut v = Vec::new();
        go(root, root, &mut v);
        v.sort();
        v
    }
}
