//! Key material: the CA, node TLS keys and certificates, WireGuard keys and the static seal key.
//! Existing material is always reused: re-running `generate` never rotates the CA or a key (only the
//! explicit rotation flags do). Node certificates are kept while they still fit the plan.

use crate::pki;
use crate::plan::{Plan, Role};
use crate::render::paths;
use crate::spec::{OverlayKind, SealKind};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Rotate {
    /// Replace the CA in one go (`generate --rotate-ca`): clients trusting only the old CA break.
    pub ca: bool,
    /// One step of a staged CA rollover (`vaultnix ca rollover`), which never breaks trust.
    pub ca_step: Option<CaStep>,
    pub keys: bool,
    /// Reissue every node certificate (same keys, same CA).
    pub certs: bool,
    /// Rotate the static seal key: the current key becomes `previous_key`, a new one `current_key`.
    pub seal: bool,
    /// Finish a static seal key rotation: stop rendering `previous_key` (the key is kept, retired).
    pub drop_previous_seal: bool,
}

/// The steps of a staged CA rollover. Each is applied (deployed) and verified on the wire before the
/// next one is allowed (see `ops::ca_rollover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaStep {
    /// A new CA beside the old one; every trust file becomes the bundle old + new; leaves unchanged.
    Begin,
    /// Every leaf (nodes, LB, operator client) reissued by the new CA; the bundle still holds both.
    Reissue,
    /// The bundle holds the new CA only; the old CA stays archived (secrets/ca.retired-<n>.*).
    Finish,
}

impl CaStep {
    pub fn as_str(self) -> &'static str {
        match self {
            CaStep::Begin => "begin",
            CaStep::Reissue => "reissue",
            CaStep::Finish => "finish",
        }
    }
}

/// Where a CA rollover stands (secrets/ca-rollover.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaPhase {
    /// After `begin`: trust = old + new, leaves signed by the old CA (secrets/ca.key), the new CA's key
    /// in secrets/ca.next.key.
    TrustBoth,
    /// After `reissue`: trust = new + old, leaves signed by the new CA (now secrets/ca.key); the old CA
    /// already archived as the last of `retired`.
    Reissued,
    /// After `finish` (or no rollover yet): trust = the one CA.
    Finished,
}

impl CaPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CaPhase::TrustBoth => "trust-both",
            CaPhase::Reissued => "reissued",
            CaPhase::Finished => "finished",
        }
    }
    /// The step that led here (None: no rollover happened).
    pub fn step(self) -> CaStep {
        match self {
            CaPhase::TrustBoth => CaStep::Begin,
            CaPhase::Reissued => CaStep::Reissue,
            CaPhase::Finished => CaStep::Finish,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaRollover {
    pub phase: CaPhase,
    /// sha256 of the CA certificate being replaced and of its replacement (the last rollover's).
    pub old_ca_sha256: String,
    pub new_ca_sha256: String,
    /// CAs replaced by rollovers, kept as secrets/ca.retired-<n>.key and .crt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<u32>,
}

/// Reads secrets/ca-rollover.json under `out` (None: no rollover ever started).
pub fn read_ca_rollover(out: &Path) -> Result<Option<CaRollover>> {
    let p = out.join(paths::CA_ROLLOVER);
    match read_opt(&p)? {
        Some(t) => Ok(Some(
            serde_json::from_str(&t).with_context(|| format!("{} is not a CA rollover state file", p.display()))?,
        )),
        None => Ok(None),
    }
}

/// The static seal's key ids, as the seal stanza names them. Not secret, but kept next to the keys
/// (`secrets/seal.json`) because an id must always name the same key: OpenBao records the id with
/// the wrapped keyring and picks the key by it. Absent before the first rotation: the one key is
/// `<cluster>-1`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealKeyIds {
    pub current_key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_id: Option<String>,
    /// Keys no longer rendered, kept as `secrets/seal.<id>.key` (older snapshots need them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
}

impl SealKeyIds {
    pub fn initial(plan: &Plan) -> SealKeyIds {
        SealKeyIds { current_key_id: format!("{}-1", plan.name), previous_key_id: None, retired: Vec::new() }
    }

    /// The id for the next key: `<cluster>-<n+1>`, never one used before.
    fn next(&self, plan: &Plan) -> String {
        let used: Vec<&str> = std::iter::once(self.current_key_id.as_str())
            .chain(self.previous_key_id.as_deref())
            .chain(self.retired.iter().map(String::as_str))
            .collect();
        let prefix = format!("{}-", plan.name);
        let max = used.iter().filter_map(|id| id.strip_prefix(&prefix)?.parse::<u64>().ok()).max().unwrap_or(0);
        format!("{prefix}{}", max + 1)
    }
}

/// Key material for one output directory. Private parts go to secrets/, public parts to pki/.
#[derive(Clone, Default)]
pub struct Material {
    /// The issuing CA: its key and its certificate (one certificate).
    pub ca_key: String,
    pub ca_cert: String,
    /// What every node, HAProxy, client and vaultnix trusts (flake/pki/ca.crt): the issuing CA, and
    /// during a rollover the other CA too (issuing first).
    pub ca_bundle: String,
    /// During a rollover's trust-both phase: the new CA (key, certificate), not issuing yet.
    pub ca_next: Option<(String, String)>,
    /// CAs replaced by rollovers (key, certificate), by number: never deleted.
    pub ca_retired: BTreeMap<u32, (String, String)>,
    pub ca_rollover: Option<CaRollover>,
    pub node_keys: BTreeMap<String, String>,
    pub node_certs: BTreeMap<String, String>,
    /// WireGuard private keys (base64) per machine.
    pub wg_private: BTreeMap<String, String>,
    pub seal_key: Option<Vec<u8>>,
    /// Static seal only: the key ids, the previous key (during a rotation) and the retired keys.
    pub seal_ids: Option<SealKeyIds>,
    pub previous_seal_key: Option<Vec<u8>>,
    pub retired_seal_keys: BTreeMap<String, Vec<u8>>,
    /// The operator's client key and certificate (CN vaultnix-admin), only with self-initialization:
    /// the cert auth login is then the only way in.
    pub admin_key: Option<String>,
    pub admin_cert: Option<String>,
    /// The load balancer's TLS key and certificate (`load_balancer.mode = "terminate"` only).
    pub lb_key: Option<String>,
    pub lb_cert: Option<String>,
    /// What was created or reissued, for the summary.
    pub events: Vec<String>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Material")
            .field("nodes", &self.node_keys.keys().collect::<Vec<_>>())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Material {
    pub fn wg_public(&self) -> Result<BTreeMap<String, String>> {
        self.wg_private.iter().map(|(k, v)| Ok((k.clone(), wg_public_key(v)?))).collect()
    }
}

fn read_opt(p: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
    }
}

fn read_opt_bytes(p: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
    }
}

/// Loads the material under `out`, creating what is missing unless `create` is false (then missing
/// material is an error: `generate --check` must not invent keys).
pub fn prepare(plan: &Plan, out: &Path, rotate: &Rotate, create: bool, now: i64) -> Result<Material> {
    prepare_renewing(plan, out, rotate, create, now, &|_| rotate.certs)
}

/// `prepare`, reissuing the certificate of each node for which `renew(node)` is true (same key, same
/// CA): `vaultnix certs renew` renews only the certificates close to expiry.
pub fn prepare_renewing(
    plan: &Plan,
    out: &Path,
    rotate: &Rotate,
    create: bool,
    now: i64,
    renew: &dyn Fn(&str) -> bool,
) -> Result<Material> {
    let sec = out.join(paths::SECRETS);
    // A public file of the flake tree; in a tree written before `flake/` existed it sits at the top
    // (`generate` then moves it: see output::write_tree).
    let public = |rel: &str| -> Result<Option<String>> {
        match read_opt(&out.join(rel))? {
            Some(t) => Ok(Some(t)),
            None => match paths::legacy(rel) {
                Some(old) => read_opt(&out.join(old)),
                None => Ok(None),
            },
        }
    };
    let mut m = Material::default();
    let alg = plan.tls.key_algorithm;

    let missing = |what: &str| -> anyhow::Error {
        anyhow!("{what} is missing under {}: run `vaultnix generate` first", out.display())
    };

    // CA
    let ca_key = if rotate.ca { None } else { read_opt(&sec.join("ca.key"))? };
    let ca_cert = if rotate.ca { None } else { public(paths::CA_CRT)? };
    match (ca_key, ca_cert) {
        (Some(k), Some(c)) => {
            pki::Ca::load(&k, &c)?; // checks the pair
            m.ca_key = k;
            m.ca_cert = c;
        }
        (Some(k), None) => {
            if !create {
                return Err(missing(paths::CA_CRT));
            }
            let kp = rcgen::KeyPair::from_pem(&k).context("secrets/ca.key is not a PEM private key")?;
            m.ca_cert = pki::new_ca_cert(&plan.name, &kp, plan.tls.ca_validity_days)?;
            m.ca_key = k;
            m.events.push("re-created the CA certificate from the existing CA key".into());
        }
        (None, Some(_)) => {
            bail!("flake/pki/ca.crt exists but secrets/ca.key is missing under {}: restore the CA key (node certificates cannot be issued without it), or rotate the CA with --rotate-ca", out.display());
        }
        (None, None) => {
            if !create {
                return Err(missing("the CA (secrets/ca.key)"));
            }
            let kp = pki::generate_key(alg)?;
            m.ca_cert = pki::new_ca_cert(&plan.name, &kp, plan.tls.ca_validity_days)?;
            m.ca_key = pki::key_pem(&kp);
            m.events.push(if rotate.ca { "rotated the CA".into() } else { "created the CA".into() });
        }
    }
    staged_ca(plan, out, rotate, create, &mut m)?;
    let ca = pki::Ca::load(&m.ca_key, &m.ca_cert)?;
    // A CA that no longer matches the spec is kept (replacing it makes every client re-trust, and
    // is only done when asked): say exactly why and how.
    if let Some(why) = pki::ca_drift(&m.ca_key, &m.ca_cert, alg, plan.tls.ca_validity_days) {
        let msg = format!("kept the CA although the spec changed ({why}): the CA is replaced only with `vaultnix generate --rotate-ca` (every client must then trust the new flake/pki/ca.crt)");
        if !create {
            bail!("the CA differs from the spec: {msg}");
        }
        m.events.push(msg);
    }

    for n in &plan.nodes {
        let key = if rotate.keys { None } else { read_opt(&sec.join(format!("{}.key", n.name)))? };
        let key = match key {
            Some(k) => {
                rcgen::KeyPair::from_pem(&k)
                    .with_context(|| format!("secrets/{}.key is not a PEM private key", n.name))?;
                if pki::key_is(&k, alg) {
                    k
                } else {
                    // tls.key_algorithm changed: the node gets a key of the new kind (and so a new
                    // certificate); the CA stays.
                    if !create {
                        bail!("secrets/{}.key is not {alg:?} (tls.key_algorithm): run `vaultnix generate`", n.name);
                    }
                    m.events.push(format!("created a new {alg:?} TLS key for {} (tls.key_algorithm changed)", n.name));
                    pki::key_pem(&pki::generate_key(alg)?)
                }
            }
            None => {
                if !create {
                    return Err(missing(&format!("secrets/{}.key", n.name)));
                }
                m.events.push(format!("created TLS key for {}", n.name));
                pki::key_pem(&pki::generate_key(alg)?)
            }
        };
        let sans = pki::node_sans(plan, n);
        let existing = public(&paths::node_crt(&n.name))?;
        // Keep the existing certificate only when nothing asks for a new one.
        let keep_or_reason = match existing {
            _ if renew(&n.name) => Err("renewal requested".to_string()),
            None => Err("new".to_string()),
            Some(c) => match pki::reissue_reason(&c, &m.ca_cert, &key, &sans, plan.tls.renew_within_days, now) {
                None => match pki::inspect(&c).map(|i| pki::issued_validity_days(&i)) {
                    Ok(d) if d != i64::from(plan.tls.node_validity_days) => Err(format!(
                        "issued for {d} days, the spec asks {} (tls.node_validity_days)",
                        plan.tls.node_validity_days
                    )),
                    _ => Ok(c),
                },
                Some(why) => Err(why),
            },
        };
        let cert = match keep_or_reason {
            Ok(c) => c,
            Err(why) => {
                if !create {
                    bail!("flake/pki/{}.crt must be reissued ({why}): run `vaultnix generate`", n.name);
                }
                m.events.push(format!("issued certificate for {} ({why})", n.name));
                ca.issue(&n.fqdn, &key, &sans, plan.tls.node_validity_days)?
            }
        };
        m.node_keys.insert(n.name.clone(), key);
        m.node_certs.insert(n.name.clone(), cert);
    }

    if plan.overlay.kind == OverlayKind::Wireguard {
        for machine in plan.machines() {
            let path = sec.join(format!("{}.wg.key", machine.name));
            let k = if rotate.keys { None } else { read_opt(&path)? };
            let k = match k {
                Some(k) => {
                    let k = k.trim().to_string();
                    wg_public_key(&k).with_context(|| format!("{} is not a WireGuard private key", path.display()))?;
                    k
                }
                None => {
                    if !create {
                        return Err(missing(&format!("secrets/{}.wg.key", machine.name)));
                    }
                    m.events.push(format!(
                        "created WireGuard key for {}{}",
                        machine.name,
                        if machine.role == Role::Lb { " (load balancer)" } else { "" }
                    ));
                    new_wg_private_key()?
                }
            };
            m.wg_private.insert(machine.name.clone(), k);
        }
    }

    if (rotate.seal || rotate.drop_previous_seal) && plan.seal.kind != SealKind::Static {
        bail!(
            "cannot rotate the seal key: this cluster's seal is {:?}, not \"static\", so vaultnix holds no seal key \
             (Shamir: new unseal keys with `bao operator rekey`; a KMS key is rotated in the KMS, the server follows \
             its key versions). Nothing was written",
            plan.seal.kind.as_str()
        );
    }
    if plan.seal.kind == SealKind::Static {
        static_seal(plan, &sec, rotate, create, &mut m)?;
    }
    if plan.seal.self_init {
        let key = if rotate.keys { None } else { read_opt(&sec.join("admin.key"))? };
        let key = match key {
            Some(k) => {
                rcgen::KeyPair::from_pem(&k).context("secrets/admin.key is not a PEM private key")?;
                k
            }
            None => {
                if !create {
                    return Err(missing("secrets/admin.key"));
                }
                m.events.push("created the operator client key (secrets/admin.key)".into());
                pki::key_pem(&pki::generate_key(alg)?)
            }
        };
        let existing = public(paths::ADMIN_CRT)?;
        let reason = match (&existing, rotate.certs) {
            (_, true) => Some("renewal requested".to_string()),
            (None, _) => Some("new".to_string()),
            (Some(c), _) => pki::client_reissue_reason(c, &m.ca_cert, &key, plan.tls.renew_within_days, now),
        };
        let cert = match (reason, existing) {
            (None, Some(c)) => c,
            (Some(why), _) => {
                if !create {
                    bail!("flake/pki/admin.crt must be reissued ({why}): run `vaultnix generate`");
                }
                m.events.push(format!("issued the operator client certificate flake/pki/admin.crt ({why})"));
                ca.issue_client(pki::ADMIN_CN, &key, plan.tls.node_validity_days)?
            }
            (None, None) => unreachable!("no reason to reissue implies an existing certificate"),
        };
        m.admin_key = Some(key);
        m.admin_cert = Some(cert);
    }
    if plan.lb.mode == crate::spec::LbMode::Terminate {
        let key = if rotate.keys { None } else { read_opt(&out.join(paths::LB_KEY))? };
        let key = match key {
            Some(k) => {
                rcgen::KeyPair::from_pem(&k).context("secrets/lb.key is not a PEM private key")?;
                k
            }
            None => {
                if !create {
                    return Err(missing(paths::LB_KEY));
                }
                m.events.push("created the load balancer's TLS key (secrets/lb.key)".into());
                pki::key_pem(&pki::generate_key(alg)?)
            }
        };
        let sans = pki::lb_sans(plan);
        let reason = match public(paths::LB_CRT)? {
            _ if rotate.certs || renew(&plan.lb.name) => Err("renewal requested".to_string()),
            None => Err("new".to_string()),
            Some(c) => match pki::reissue_reason(&c, &m.ca_cert, &key, &sans, plan.tls.renew_within_days, now) {
                None => Ok(c),
                Some(why) => Err(why),
            },
        };
        let cert = match reason {
            Ok(c) => c,
            Err(why) => {
                if !create {
                    bail!("{} must be reissued ({why}): run `vaultnix generate`", paths::LB_CRT);
                }
                m.events.push(format!("issued the load balancer's certificate {} ({why})", paths::LB_CRT));
                ca.issue(&plan.lb.hostname, &key, &sans, plan.tls.node_validity_days)?
            }
        };
        m.lb_key = Some(key);
        m.lb_cert = Some(cert);
    }
    Ok(m)
}

/// The trust bundle and a staged CA rollover's step (`vaultnix ca rollover`). On entry `m.ca_key` is
/// secrets/ca.key and `m.ca_cert` the text of flake/pki/ca.crt (a bundle during a rollover, the
/// issuing CA first); on exit `m.ca_cert` is the issuing CA alone, `m.ca_bundle` what is trusted.
fn staged_ca(plan: &Plan, out: &Path, rotate: &Rotate, create: bool, m: &mut Material) -> Result<()> {
    let sec = out.join(paths::SECRETS);
    let mut rollover = read_ca_rollover(out)?;
    let phase = rollover.as_ref().map_or(CaPhase::Finished, |r| r.phase);
    if rotate.ca && phase != CaPhase::Finished {
        bail!(
            "a staged CA rollover is in progress ({} phase, {}): --rotate-ca would replace the CA under it; \
             continue with `vaultnix ca rollover {}`. Nothing was written",
            phase.as_str(),
            paths::CA_ROLLOVER,
            if phase == CaPhase::TrustBoth { "reissue" } else { "finish" }
        );
    }
    if let Some(r) = &rollover {
        for n in &r.retired {
            let (kp, cp) = (out.join(paths::ca_retired_key(*n)), out.join(paths::ca_retired_crt(*n)));
            let (Some(k), Some(c)) = (read_opt(&kp)?, read_opt(&cp)?) else {
                bail!(
                    "{} lists the retired CA {n}, but {} or {} is missing: restore it (it is never deleted)",
                    paths::CA_ROLLOVER,
                    kp.display(),
                    cp.display()
                );
            };
            pki::Ca::load(&k, &c).with_context(|| format!("the retired CA {n} ({})", kp.display()))?;
            m.ca_retired.insert(*n, (k, c));
        }
    }
    let text = std::mem::take(&mut m.ca_cert);
    let certs = pki::split_bundle(&text);
    let want = if phase == CaPhase::Finished { 1 } else { 2 };
    if certs.len() != want {
        bail!(
            "{} holds {} certificate(s), but {}: restore the file from the output tree's history (or secrets/ca-rollover.json)",
            paths::CA_CRT,
            certs.len(),
            match phase {
                CaPhase::Finished => "no CA rollover is in progress, so it must hold exactly the one CA".to_string(),
                p => format!("the CA rollover is in its {} phase, so it must hold the old and the new CA", p.as_str()),
            }
        );
    }
    // An existing single-CA file is kept byte for byte.
    m.ca_cert = if want == 1 { text.clone() } else { certs[0].clone() };
    let sha = |c: &str| pki::inspect(c).map(|i| i.sha256_fingerprint);
    match (phase, &rollover) {
        (CaPhase::TrustBoth, _) => {
            let p = sec.join("ca.next.key");
            let k = read_opt(&p)?.ok_or_else(|| {
                anyhow!("the CA rollover trusts a new CA, but its key {} is missing: restore it", p.display())
            })?;
            pki::Ca::load(&k, &certs[1])
                .with_context(|| format!("{} and the second certificate of {}", p.display(), paths::CA_CRT))?;
            m.ca_next = Some((k, certs[1].clone()));
        }
        (CaPhase::Reissued, Some(r)) => {
            let old = r.retired.last().and_then(|n| m.ca_retired.get(n)).map(|(_, c)| c.clone());
            if old.as_deref().map(sha).transpose()? != Some(sha(&certs[1])?) {
                bail!(
                    "the second certificate of {} is not the CA this rollover replaces (the last retired CA in {})",
                    paths::CA_CRT,
                    paths::CA_ROLLOVER
                );
            }
        }
        _ => {}
    }
    if rotate.ca {
        // The one-shot rotation replaces the CA, but never loses its key: archived like a rollover's.
        let old_key = read_opt(&sec.join("ca.key"))?;
        let old_cert = read_opt(&out.join(paths::CA_CRT))?.and_then(|t| pki::split_bundle(&t).into_iter().next());
        if let (Some(k), Some(c)) = (old_key, old_cert) {
            if pki::Ca::load(&k, &c).is_ok() && k != m.ca_key {
                let mut r = rollover.take().unwrap_or(CaRollover {
                    phase: CaPhase::Finished,
                    old_ca_sha256: String::new(),
                    new_ca_sha256: String::new(),
                    retired: Vec::new(),
                });
                let n = r.retired.iter().max().copied().unwrap_or(0) + 1;
                r.old_ca_sha256 = sha(&c)?;
                r.new_ca_sha256 = sha(&m.ca_cert)?;
                r.retired.push(n);
                m.events.push(format!(
                    "archived the replaced CA as {} and {} (never deleted)",
                    paths::ca_retired_key(n),
                    paths::ca_retired_crt(n)
                ));
                m.ca_retired.insert(n, (k, c));
                rollover = Some(r);
            } else if k != m.ca_key {
                m.events.push(
                    "the replaced secrets/ca.key did not match flake/pki/ca.crt: not archived (restore it from a backup if it is needed)"
                        .into(),
                );
            }
        }
    }
    let Some(step) = rotate.ca_step else {
        m.ca_bundle = text;
        m.ca_rollover = rollover;
        return Ok(());
    };
    if !create {
        bail!("internal error: a CA rollover step without writing");
    }
    let next = || match phase {
        CaPhase::TrustBoth => "`vaultnix ca rollover reissue`",
        CaPhase::Reissued => "`vaultnix ca rollover finish`",
        CaPhase::Finished => "`vaultnix ca rollover begin`",
    };
    match (step, phase) {
        (CaStep::Begin, CaPhase::Finished) => {
            let kp = pki::generate_key(plan.tls.key_algorithm)?;
            // Numbered (the first CA is 1) so that both CAs of the bundle are told apart by name.
            let generation = rollover.as_ref().map_or(0, |r| r.retired.len()) + 2;
            let cn = format!("{} vaultnix CA {generation}", plan.name);
            let cert = pki::new_ca_cert_cn(&cn, &kp, plan.tls.ca_validity_days)?;
            rollover = Some(CaRollover {
                phase: CaPhase::TrustBoth,
                old_ca_sha256: sha(&m.ca_cert)?,
                new_ca_sha256: sha(&cert)?,
                retired: rollover.map(|r| r.retired).unwrap_or_default(),
            });
            m.events.push(format!(
                "CA rollover begun: created a new CA (secrets/ca.next.key); {} now trusts the old and the new CA; \
                 every certificate is unchanged (still signed by the old CA, secrets/ca.key)",
                paths::CA_CRT
            ));
            m.ca_next = Some((pki::key_pem(&kp), cert));
        }
        (CaStep::Reissue, CaPhase::TrustBoth) => {
            let (Some((k, c)), Some(r)) = (m.ca_next.take(), rollover.as_mut()) else {
                bail!("internal error: trust-both phase without a new CA");
            };
            let n = r.retired.iter().max().copied().unwrap_or(0) + 1;
            let old = (std::mem::replace(&mut m.ca_key, k), std::mem::replace(&mut m.ca_cert, c));
            m.ca_retired.insert(n, old);
            r.retired.push(n);
            r.phase = CaPhase::Reissued;
            m.events.push(format!(
                "CA rollover: the new CA issues now (secrets/ca.key); \
                 the old CA is archived as {} and {} and still trusted; every certificate is reissued below",
                paths::ca_retired_key(n),
                paths::ca_retired_crt(n)
            ));
        }
        (CaStep::Finish, CaPhase::Reissued) => {
            if let Some(r) = rollover.as_mut() {
                r.phase = CaPhase::Finished;
                m.events.push(format!(
                    "CA rollover finished: {} trusts the new CA only; the old CA stays archived ({})",
                    paths::CA_CRT,
                    r.retired.last().map(|n| paths::ca_retired_key(*n)).unwrap_or_default()
                ));
            }
        }
        (CaStep::Begin, _) => bail!(
            "a CA rollover is already in progress ({} phase): the next step is {}. Nothing was written",
            phase.as_str(),
            next()
        ),
        (CaStep::Reissue, CaPhase::Finished) | (CaStep::Finish, CaPhase::Finished) => {
            bail!("no CA rollover is in progress: start one with `vaultnix ca rollover begin`. Nothing was written")
        }
        (CaStep::Reissue, _) => bail!(
            "the certificates are already reissued by the new CA ({} phase): the next step is {}. Nothing was written",
            phase.as_str(),
            next()
        ),
        (CaStep::Finish, _) => bail!(
            "cannot finish the CA rollover in its {} phase: every certificate is still signed by the old CA, and \
             removing it from the trust bundle now would make every node untrusted; run {} first. Nothing was written",
            phase.as_str(),
            next()
        ),
    }
    let after = rollover.as_ref().map_or(CaPhase::Finished, |r| r.phase);
    m.ca_bundle = match after {
        CaPhase::TrustBoth => pki::bundle(&[&m.ca_cert, &m.ca_next.as_ref().map(|x| x.1.clone()).unwrap_or_default()]),
        CaPhase::Reissued => {
            let old = rollover.as_ref().and_then(|r| r.retired.last()).and_then(|n| m.ca_retired.get(n));
            pki::bundle(&[&m.ca_cert, &old.map(|x| x.1.clone()).unwrap_or_default()])
        }
        CaPhase::Finished => pki::bundle(&[&m.ca_cert]),
    };
    m.ca_rollover = rollover;
    Ok(())
}

fn seal_key_bytes(p: &Path, k: Vec<u8>) -> Result<Vec<u8>> {
    if k.len() != 32 {
        bail!("{} has {} bytes; the static seal needs exactly 32 (AES-256)", p.display(), k.len());
    }
    Ok(k)
}

/// The static seal's keys. Never replaced in place (a new key would make every byte of data
/// unreadable): `rotate.seal` keeps the old key as `previous_key` (OpenBao decrypts the keyring with
/// it and the active node re-wraps it with the new key at unseal), `rotate.drop_previous_seal` ends
/// the rotation and keeps the old key as a retired file.
fn static_seal(plan: &Plan, sec: &Path, rotate: &Rotate, create: bool, m: &mut Material) -> Result<()> {
    let ids_path = sec.join("seal.json");
    let recorded: Option<SealKeyIds> = match read_opt(&ids_path)? {
        Some(t) => {
            let ids: SealKeyIds = serde_json::from_str(&t)
                .with_context(|| format!("{} is not a seal key id file", ids_path.display()))?;
            let all = std::iter::once(&ids.current_key_id).chain(&ids.previous_key_id).chain(&ids.retired);
            for id in all {
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    bail!("{}: seal key id {id:?} must be letters, digits, '-' and '_' only", ids_path.display());
                }
            }
            Some(ids)
        }
        None => None,
    };
    let mut ids = recorded.clone().unwrap_or_else(|| SealKeyIds::initial(plan));
    let cur_path = sec.join("seal.key");
    let current = read_opt_bytes(&cur_path)?.map(|k| seal_key_bytes(&cur_path, k)).transpose()?;
    let mut previous = match &ids.previous_key_id {
        Some(id) => {
            let p = sec.join(format!("seal.{id}.key"));
            let k = read_opt_bytes(&p)?.ok_or_else(|| {
                anyhow!(
                    "{} names the previous seal key {id:?}, but {} is missing: restore it (data may still be wrapped with it)",
                    ids_path.display(),
                    p.display()
                )
            })?;
            Some(seal_key_bytes(&p, k)?)
        }
        None => None,
    };
    for id in &ids.retired {
        let p = sec.join(format!("seal.{id}.key"));
        let k = read_opt_bytes(&p)?.ok_or_else(|| {
            anyhow!("{} is missing (a retired seal key listed in {})", p.display(), ids_path.display())
        })?;
        m.retired_seal_keys.insert(id.clone(), seal_key_bytes(&p, k)?);
    }
    let existed = current.is_some();
    let mut current = match current {
        Some(k) => k,
        None if recorded.is_some() => bail!(
            "{} is missing but {} records key {:?}: restore the seal key (without it the data cannot be unsealed)",
            cur_path.display(),
            ids_path.display(),
            ids.current_key_id
        ),
        None if rotate.seal || rotate.drop_previous_seal => {
            bail!(
                "there is no static seal key yet under {}: nothing to rotate (run `vaultnix generate` first)",
                sec.display()
            )
        }
        None => {
            if !create {
                bail!("secrets/seal.key is missing under {}: run `vaultnix generate` first", sec.display());
            }
            m.events.push("created the static seal key".into());
            random_bytes::<32>()?.to_vec()
        }
    };
    if rotate.keys && !rotate.seal && existed {
        m.events.push(
            "kept the static seal key (secrets/seal.key): --rotate-keys never replaces it; rotate it with --rotate-seal-key"
                .into(),
        );
    }
    if rotate.seal {
        if let Some(p) = &ids.previous_key_id {
            bail!(
                "a seal key rotation is still in progress (previous key {p:?} is rendered): restart every node with the \
                 current configuration, then finish it with `vaultnix generate --drop-previous-seal-key` before rotating again"
            );
        }
        let new_id = ids.next(plan);
        m.events.push(format!(
            "rotated the static seal key: new key {new_id:?} (secrets/seal.key), previous key {old:?} kept as \
             secrets/seal.{old}.key and rendered as previous_key; put both on every server ({dir}/seal.key, \
             {dir}/seal.{old}.key), restart them, the active one last, then run --drop-previous-seal-key",
            old = ids.current_key_id,
            dir = plan.secrets_dir,
        ));
        ids.previous_key_id = Some(std::mem::replace(&mut ids.current_key_id, new_id));
        previous = Some(std::mem::replace(&mut current, random_bytes::<32>()?.to_vec()));
    }
    if rotate.drop_previous_seal {
        let (Some(id), Some(k)) = (ids.previous_key_id.take(), previous.take()) else {
            bail!("there is no previous static seal key to drop: no rotation is in progress (see --rotate-seal-key)");
        };
        m.events.push(format!(
            "retired the previous static seal key {id:?}: no longer rendered, kept as secrets/seal.{id}.key \
             (snapshots taken before the rotation need it); it can be removed from the servers"
        ));
        m.retired_seal_keys.insert(id.clone(), k);
        ids.retired.push(id);
    }
    m.seal_key = Some(current);
    m.previous_seal_key = previous;
    m.seal_ids = Some(ids);
    Ok(())
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| anyhow!("no randomness from the OS: {e}"))?;
    Ok(b)
}

pub fn new_wg_private_key() -> Result<String> {
    let mut b = random_bytes::<32>()?;
    // X25519 clamping, as `wg genkey` does.
    b[0] &= 248;
    b[31] &= 127;
    b[31] |= 64;
    Ok(base64::engine::general_purpose::STANDARD.encode(b))
}

pub fn wg_public_key(private_b64: &str) -> Result<String> {
    let raw =
        base64::engine::general_purpose::STANDARD.decode(private_b64.trim()).map_err(|e| anyhow!("not base64: {e}"))?;
    let arr: [u8; 32] = raw.try_into().map_err(|_| anyhow!("not 32 bytes"))?;
    let secret = x25519_dalek::StaticSecret::from(arr);
    let public = x25519_dalek::PublicKey::from(&secret);
    Ok(base64::engine::general_purpose::STANDARD.encode(public.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireguard_public_key_matches_known_vector() {
        // RFC 7748 section 6.1 test vector (Alice), as `wg pubkey` would compute it.
        let private = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
        let private_b64 = base64::engine::general_purpose::STANDARD.encode(private);
        let public = wg_public_key(&private_b64).unwrap();
        let expected = hex::decode("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a").unwrap();
        assert_eq!(public, base64::engine::general_purpose::STANDARD.encode(expected));
    }

    #[test]
    fn new_keys_are_clamped_and_distinct() {
        let a = new_wg_private_key().unwrap();
        let b = new_wg_private_key().unwrap();
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::STANDARD.decode(&a).unwrap();
        assert_eq!(raw[0] & 7, 0);
        assert_eq!(raw[31] & 0xc0, 0x40);
    }
}
