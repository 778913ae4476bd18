//! The cluster's private CA and node certificates (rcgen), and inspection of existing certificates
//! (x509-parser) so `generate` can keep certificates that still fit instead of reissuing them.

use crate::plan::{NodePlan, Plan};
use crate::spec::KeyAlgorithm;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::collections::BTreeSet;
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

const PKCS8_LABEL: &str = concat!("PRIVATE", " KEY");

pub fn generate_key(alg: KeyAlgorithm) -> Result<KeyPair> {
    let a = match alg {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    };
    KeyPair::generate_for(a).context("generating a private key")
}

/// True when a PEM private key is of `alg` (the spec's tls.key_algorithm).
pub fn key_is(key_pem: &str, alg: KeyAlgorithm) -> bool {
    let want = match alg {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    };
    KeyPair::from_pem(key_pem).is_ok_and(|k| k.algorithm() == want)
}

/// The validity a certificate was issued with, in days (issued from an hour before issuance).
pub fn issued_validity_days(info: &CertInfo) -> i64 {
    (info.not_after - info.not_before - 3600).div_euclid(86400)
}

/// Why the CA no longer matches the spec (a key algorithm or validity changed), if it does not.
/// The CA is never replaced for this without `--rotate-ca`.
pub fn ca_drift(ca_key_pem: &str, ca_pem: &str, alg: KeyAlgorithm, validity_days: u32) -> Option<String> {
    let mut why = Vec::new();
    if !key_is(ca_key_pem, alg) {
        why.push(format!("its key is not {alg:?} (tls.key_algorithm)"));
    }
    if let Ok(info) = inspect(ca_pem) {
        let d = issued_validity_days(&info);
        if d != i64::from(validity_days) {
            why.push(format!("it was issued for {d} days, the spec asks {validity_days} (tls.ca_validity_days)"));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The private key as PEM that OpenSSL, Go (OpenBao/Vault) and rcgen all read. ring writes Ed25519
/// keys as PKCS#8 v2 (RFC 5958, with the public key appended), which OpenSSL 3.0 refuses to load; those
/// are re-encoded as PKCS#8 v1 (RFC 8410 §7: the 32-byte seed only).
pub fn key_pem(key: &KeyPair) -> String {
    // RFC 8410 v1 prefix: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING(32) } }
    const V1_PREFIX: [u8; 16] =
        [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    // ring's v2 layout: SEQUENCE(0x51) { INTEGER 1, SEQUENCE { OID }, OCTET STRING { OCTET STRING(32) }, [1] pub }
    const V2_PREFIX: [u8; 16] =
        [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let der = key.serialize_der();
    if key.algorithm() != &rcgen::PKCS_ED25519 || der.len() < 48 || der[..16] != V2_PREFIX {
        return key.serialize_pem();
    }
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(&der[16..48]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&v1);
    // PKCS#8 "PRIVATE KEY" PEM armor (the label is kept apart so secret scanners do not flag this code).
    let mut pem = format!("-----BEGIN {PKCS8_LABEL}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {PKCS8_LABEL}-----\n"));
    pem
}

fn random_serial() -> Result<SerialNumber> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| anyhow!("no randomness: {e}"))?;
    b[0] &= 0x7f; // positive
    Ok(SerialNumber::from_slice(&b))
}

/// A CA certificate (PEM) for `key`.
pub fn new_ca_cert(cluster: &str, key: &KeyPair, validity_days: u32) -> Result<String> {
    new_ca_cert_cn(&format!("{cluster} vaultnix CA"), key, validity_days)
}

/// A CA certificate with the common name `cn` (a rollover's new CA is told apart by its number).
pub fn new_ca_cert_cn(cn: &str, key: &KeyPair, validity_days: u32) -> Result<String> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "vaultnix");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (p.not_before, p.not_after) = validity(validity_days)?;
    p.serial_number = Some(random_serial()?);
    p.use_authority_key_identifier_extension = false;
    Ok(p.self_signed(key)?.pem())
}

/// notBefore an hour ago (clock skew between hosts), notAfter `days` from now. `OffsetDateTime + Duration`
/// panics past year 9999, so the sum is checked (validation caps the days; this keeps the library safe).
fn validity(days: u32) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let now = OffsetDateTime::now_utc();
    let after = now
        .checked_add(Duration::days(i64::from(days)))
        .ok_or_else(|| anyhow!("a validity of {days} days ends after the year 9999"))?;
    Ok((now - Duration::hours(1), after))
}

/// The certificates of a PEM bundle (a trust file may hold several CAs during a CA rollover), each as
/// its own PEM block, in file order. Text outside the blocks is ignored.
pub fn split_bundle(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(b) = rest.find(BEGIN) {
        let Some(e) = rest[b..].find(END) else { break };
        out.push(format!("{}\n", &rest[b..b + e + END.len()]));
        rest = &rest[b + e + END.len()..];
    }
    out
}

/// A trust bundle: the certificates one after the other (each ends with a newline).
pub fn bundle(certs: &[&str]) -> String {
    certs.iter().map(|c| format!("{}\n", c.trim_end())).collect()
}

/// The certificate of `bundle_pem` whose public key is `key_pem`'s, if any.
pub fn cert_for_key(bundle_pem: &str, key_pem: &str) -> Option<String> {
    let key = KeyPair::from_pem(key_pem).ok()?;
    split_bundle(bundle_pem).into_iter().find(|c| inspect(c).is_ok_and(|i| i.public_key == key.public_key_raw()))
}

/// The CA, loaded from its key and certificate; checks that they belong together.
pub struct Ca {
    key: KeyPair,
    issuer: rcgen::Certificate,
    pub cert_pem: String,
}

impl Ca {
    pub fn load(key_pem: &str, cert_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem).context("the CA key (secrets/ca.key) is not a PEM private key")?;
        let info = inspect(cert_pem).context("the CA certificate (flake/pki/ca.crt) does not parse")?;
        if info.public_key != key.public_key_raw() {
            bail!("the CA key (secrets/ca.key) does not match the CA certificate (flake/pki/ca.crt): one of them was replaced; restore the pair or re-run with --rotate-ca");
        }
        let params = CertificateParams::from_ca_cert_pem(cert_pem).context("reading the CA certificate")?;
        // Only used as the issuer (name + key identifier) when signing node certificates.
        let issuer = params.self_signed(&key)?;
        Ok(Ca { key, issuer, cert_pem: cert_pem.to_string() })
    }

    /// Issues a node certificate for `node_key_pem` with the given SANs.
    pub fn issue(&self, cn: &str, node_key_pem: &str, sans: &Sans, validity_days: u32) -> Result<String> {
        let key = KeyPair::from_pem(node_key_pem).context("node key is not a PEM private key")?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "vaultnix");
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        // ECDSA and Ed25519 keys only sign (RFC 5480 §3, RFC 8410 §5): no keyEncipherment.
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Raft's cluster port uses mutual TLS: each node is both server and client.
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let mut names = Vec::new();
        for d in &sans.dns {
            names.push(SanType::DnsName(d.clone().try_into().context("SAN is not a valid DNS name")?));
        }
        for ip in &sans.ips {
            names.push(SanType::IpAddress(*ip));
        }
        p.subject_alt_names = names;
        (p.not_before, p.not_after) = validity(validity_days)?;
        p.serial_number = Some(random_serial()?);
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(&key, &self.issuer, &self.key)?.pem())
    }
}

/// The operator's client certificate (self-initialized clusters): the cert auth method trusts the cluster
/// CA for this one common name only.
pub const ADMIN_CN: &str = "vaultnix-admin";

impl Ca {
    /// Issues a client-only certificate (EKU clientAuth, no SANs): it cannot serve TLS for a node.
    pub fn issue_client(&self, cn: &str, key_pem: &str, validity_days: u32) -> Result<String> {
        let key = KeyPair::from_pem(key_pem).context("client key is not a PEM private key")?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "vaultnix");
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::hours(1);
        p.not_after = now + Duration::days(validity_days as i64);
        p.serial_number = Some(random_serial()?);
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(&key, &self.issuer, &self.key)?.pem())
    }
}

/// Why an existing client certificate must be reissued, or None if it can be kept.
pub fn client_reissue_reason(
    cert_pem: &str,
    ca_pem: &str,
    key_pem: &str,
    renew_within_days: u32,
    now: i64,
) -> Option<String> {
    let info = match inspect(cert_pem) {
        Ok(i) => i,
        Err(e) => return Some(format!("existing certificate unreadable ({e})")),
    };
    if !verify_signed_by(cert_pem, ca_pem) {
        return Some("not signed by the current CA".into());
    }
    match KeyPair::from_pem(key_pem) {
        Ok(k) if k.public_key_raw() == info.public_key.as_slice() => {}
        _ => return Some("does not match the key".into()),
    }
    if info.days_left(now) < renew_within_days as i64 {
        return Some(format!("expires in {} days", info.days_left(now)));
    }
    if !info.client_auth || info.server_auth {
        return Some("not a client-only certificate".into());
    }
    None
}

/// Subject alternative names of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sans {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

/// What a node certificate must cover: its DNS name and short name, the address peers dial (overlay),
/// its public address, the LB hostname (clients connect through the LB with TLS passthrough), localhost.
pub fn node_sans(plan: &Plan, node: &NodePlan) -> Sans {
    let mut s = Sans::default();
    s.dns.insert(node.fqdn.clone());
    s.dns.insert(node.name.clone());
    s.dns.insert(plan.lb.hostname.clone());
    s.dns.insert("localhost".into());
    s.ips.insert(node.ip);
    if let Some(a) = node.public_address {
        s.ips.insert(a);
    }
    if let Some(a) = plan.lb.public_address {
        // Clients that dial the LB by IP.
        s.ips.insert(a);
    }
    s.ips.insert(plan.lb.ip);
    s.ips.insert(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    s
}

/// What the load balancer's certificate must cover in `load_balancer.mode = "terminate"` (HAProxy
/// terminates the clients' TLS): the LB hostname and the addresses clients may dial it by.
pub fn lb_sans(plan: &Plan) -> Sans {
    let mut s = Sans::default();
    s.dns.insert(plan.lb.hostname.clone());
    if let Some(a) = plan.lb.public_address {
        s.ips.insert(a);
    }
    s.ips.insert(plan.lb.ip);
    if !plan.lb.bind.is_unspecified() {
        s.ips.insert(plan.lb.bind);
    }
    s
}

/// The parts of a certificate vaultnix checks.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub sans: Sans,
    pub not_before: i64,
    pub not_after: i64,
    pub public_key: Vec<u8>,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    pub sha256_fingerprint: String,
}

impl CertInfo {
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86400)
    }
}

pub fn inspect(pem: &str) -> Result<CertInfo> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let cert = p.parse_x509().map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let mut sans = Sans::default();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for gn in &ext.value.general_names {
            match gn {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    sans.dns.insert(d.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        sans.ips.insert(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        sans.ips.insert(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    let (server_auth, client_auth) = match cert.extended_key_usage() {
        Ok(Some(e)) => (e.value.server_auth, e.value.client_auth),
        _ => (false, false),
    };
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    use sha2::Digest;
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        is_ca,
        server_auth,
        client_auth,
        sha256_fingerprint: hex::encode(sha2::Sha256::digest(&p.contents)),
    })
}

/// Why an existing node certificate must be reissued, or None if it can be kept.
pub fn reissue_reason(
    cert_pem: &str,
    ca_pem: &str,
    node_key_pem: &str,
    want: &Sans,
    renew_within_days: u32,
    now: i64,
) -> Option<String> {
    let info = match inspect(cert_pem) {
        Ok(i) => i,
        Err(e) => return Some(format!("existing certificate unreadable ({e})")),
    };
    let ca = match inspect(ca_pem) {
        Ok(c) => c,
        Err(_) => return Some("CA unreadable".into()),
    };
    if info.issuer != ca.subject || !verify_signed_by(cert_pem, ca_pem) {
        return Some("not signed by the current CA".into());
    }
    match KeyPair::from_pem(node_key_pem) {
        Ok(k) if k.public_key_raw() == info.public_key.as_slice() => {}
        _ => return Some("does not match the node key".into()),
    }
    if &info.sans != want {
        return Some("SANs changed".into());
    }
    if info.days_left(now) < renew_within_days as i64 {
        return Some(format!("expires in {} days", info.days_left(now)));
    }
    if !(info.server_auth && info.client_auth) {
        return Some("missing serverAuth/clientAuth".into());
    }
    None
}

/// True when `cert_pem`'s signature verifies with `ca_pem`'s public key.
pub fn verify_signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let Ok((_, p)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else { return false };
    let Ok((_, pc)) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()) else { return false };
    let (Ok(c), Ok(ca)) = (p.parse_x509(), pc.parse_x509()) else { return false };
    let sig = c.signature_algorithm.oid().to_id_string();
    let spki = ca.public_key().subject_public_key.data.as_ref();
    let tbs = c.tbs_certificate.as_ref();
    let signature = c.signature_value.data.as_ref();
    use ring::signature as rs;
    let alg: &dyn rs::VerificationAlgorithm = match sig.as_str() {
        "1.2.840.10045.4.3.2" => match ca_curve(&ca) {
            Some(384) => &rs::ECDSA_P384_SHA256_ASN1,
            _ => &rs::ECDSA_P256_SHA256_ASN1,
        },
        "1.2.840.10045.4.3.3" => match ca_curve(&ca) {
            Some(256) => &rs::ECDSA_P256_SHA384_ASN1,
            _ => &rs::ECDSA_P384_SHA384_ASN1,
        },
        "1.3.101.112" => &rs::ED25519,
        "1.2.840.113549.1.1.11" => &rs::RSA_PKCS1_2048_8192_SHA256,
        _ => return false,
    };
    rs::UnparsedPublicKey::new(alg, spki).verify(tbs, signature).is_ok()
}

fn ca_curve(ca: &x509_parser::certificate::X509Certificate<'_>) -> Option<u32> {
    match ca.public_key().subject_public_key.data.len() {
        65 => Some(256),
        97 => Some(384),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    #[test]
    fn issue_and_inspect_node_cert() {
        let plan = Plan::from_loaded(&spec::example());
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca_pem = new_ca_cert("hybrid", &ca_key, 3650).unwrap();
        let ca = Ca::load(&ca_key.serialize_pem(), &ca_pem).unwrap();
        let node = &plan.nodes[0];
        let nkey = generate_key(KeyAlgorithm::EcdsaP256).unwrap().serialize_pem();
        let sans = node_sans(&plan, node);
        let cert = ca.issue(&node.fqdn, &nkey, &sans, 365).unwrap();
        let info = inspect(&cert).unwrap();
        assert!(info.server_auth && info.client_auth);
        assert!(!info.is_ca);
        assert!(info.sans.dns.contains("vault-1.vault.internal"));
        assert!(info.sans.dns.contains("vault.example.com"));
        assert!(info.sans.ips.contains(&"10.88.0.1".parse().unwrap()));
        assert!(info.sans.ips.contains(&"198.51.100.10".parse().unwrap()));
        assert!(verify_signed_by(&cert, &ca_pem));
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert_eq!(reissue_reason(&cert, &ca_pem, &nkey, &sans, 30, now), None);
        // another CA: must be reissued
        let other_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let other = new_ca_cert("hybrid", &other_key, 3650).unwrap();
        assert!(reissue_reason(&cert, &other, &nkey, &sans, 30, now).is_some());
        let mut more = sans.clone();
        more.dns.insert("x.example".into());
        assert_eq!(reissue_reason(&cert, &ca_pem, &nkey, &more, 30, now).as_deref(), Some("SANs changed"));
    }

    #[test]
    fn admin_client_cert_is_client_only() {
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca_pem = new_ca_cert("x", &ca_key, 3650).unwrap();
        let ca = Ca::load(&ca_key.serialize_pem(), &ca_pem).unwrap();
        let k = key_pem(&generate_key(KeyAlgorithm::EcdsaP256).unwrap());
        let cert = ca.issue_client(ADMIN_CN, &k, 365).unwrap();
        let info = inspect(&cert).unwrap();
        assert!(info.client_auth && !info.server_auth && !info.is_ca);
        assert!(info.subject.contains("CN=vaultnix-admin"), "{}", info.subject);
        assert!(info.sans.dns.is_empty() && info.sans.ips.is_empty());
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert_eq!(client_reissue_reason(&cert, &ca_pem, &k, 30, now), None);
        let other = key_pem(&generate_key(KeyAlgorithm::EcdsaP256).unwrap());
        assert!(client_reissue_reason(&cert, &ca_pem, &other, 30, now).is_some());
        assert!(client_reissue_reason(&cert, &ca_pem, &k, 400, now).is_some());
    }

    #[test]
    fn mismatched_ca_pair_is_refused() {
        let k1 = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let k2 = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let c1 = new_ca_cert("x", &k1, 10).unwrap();
        let err = Ca::load(&k2.serialize_pem(), &c1).err().unwrap().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn absurd_validity_is_an_error_not_a_panic() {
        // Found by tests/fuzz_spec.rs: `now + Duration::days(u32::MAX)` panicked in the time crate.
        let k = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let err = new_ca_cert("x", &k, u32::MAX).unwrap_err().to_string();
        assert!(err.contains("year 9999"), "{err}");
    }

    #[test]
    fn all_key_algorithms_work() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519] {
            let k = generate_key(alg).unwrap();
            let c = new_ca_cert("x", &k, 10).unwrap();
            let ca = Ca::load(&key_pem(&k), &c).unwrap();
            let nk = key_pem(&generate_key(alg).unwrap());
            // What is written to secrets/ loads back as the same key.
            assert_eq!(
                KeyPair::from_pem(&nk).unwrap().public_key_raw(),
                inspect(&ca.issue("n", &nk, &Sans::default(), 5).unwrap()).unwrap().public_key
            );
            let cert = ca.issue("n", &nk, &Sans::default(), 5).unwrap();
            assert!(verify_signed_by(&cert, &c), "{alg:?}");
        }
    }
}
