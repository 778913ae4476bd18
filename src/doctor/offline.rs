//! Offline checks: the plan against the generated tree (certificates, keys, rendered server JSON).

use super::{bao, Finding, OfflineOptions, Report, Severity};
use crate::generate::{generate, GenerateOptions};
use crate::pki::{self, CertInfo, Sans};
use crate::plan::{NodePlan, Plan};
use crate::render::paths;
use crate::secrets::Rotate;
use crate::spec::Engine;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

const REGENERATE: &str =
    "run `vaultnix generate` (it reissues certificates that no longer fit the plan and rewrites hand-edited configs)";

/// Runs every offline check. Never fails: unreadable files are findings too.
pub fn offline(plan: &Plan, o: &OfflineOptions) -> Report {
    let mut r = Report::default();
    check_quorum(plan, &mut r);
    check_raft_timing(plan, &mut r);
    check_autopilot(plan, &mut r);
    let ca = check_ca(plan, o, &mut r);
    let mut certs: BTreeMap<String, CertInfo> = BTreeMap::new();
    for n in &plan.nodes {
        if let Some(info) = check_node_cert(plan, n, o, ca.as_ref(), &mut r) {
            certs.insert(n.name.clone(), info);
        }
    }
    let mut configs: BTreeMap<String, Value> = BTreeMap::new();
    for n in &plan.nodes {
        if let Some(v) = read_config(n, &o.out, &mut r) {
            configs.insert(n.name.clone(), v);
        }
    }
    for n in &plan.nodes {
        if let Some(cfg) = configs.get(&n.name) {
            check_own_addrs(n, cfg, certs.get(&n.name), &mut r);
            check_join(plan, n, cfg, &certs, &mut r);
        }
    }
    check_node_ids(plan, &configs, &mut r);
    check_drift(plan, o, &mut r);
    check_secret_modes(o, &mut r);
    check_validate_config(plan, o, &configs, &mut r);
    r
}

fn check_quorum(plan: &Plan, r: &mut Report) {
    let q = plan.quorum;
    let f = match q.voters {
        0 => Finding::new(
            Severity::Error,
            "quorum",
            None,
            "no voter: the cluster can never elect a leader",
            "mark 3 or 5 nodes voter = true",
        ),
        1 => Finding::new(
            Severity::Warning,
            "quorum",
            None,
            "1 voter: losing that one node stops the cluster (tolerates 0 failures)",
            "use 3 or 5 voters for high availability",
        ),
        v if v % 2 == 0 => Finding::new(
            Severity::Warning,
            "quorum",
            None,
            format!(
                "{v} voters: quorum is {}, so the cluster tolerates {} failure(s) — no more than {} voters would, with one more machine that can fail",
                q.quorum,
                q.tolerates,
                v - 1
            ),
            format!("use an odd voter count ({} or {}); make the extra node a non-voter (voter = false)", v - 1, v + 1),
        ),
        v => Finding::ok("quorum", None, format!("{v} voters: quorum {}, tolerates {} failure(s)", q.quorum, q.tolerates)),
    };
    r.push(f);
}

fn check_raft_timing(plan: &Plan, r: &mut Report) {
    let sites: BTreeSet<&str> = plan.voters().map(|n| n.site.as_str()).collect();
    let providers: BTreeSet<&str> = plan.voters().map(|n| n.provider.as_str()).collect();
    let m = plan.raft.performance_multiplier;
    let spread = sites.len() > 1 || providers.len() > 1;
    let f = if spread && m == 1 {
        Finding::new(
            Severity::Warning,
            "raft-timing",
            None,
            format!(
                "voters span {} site(s) / {} provider(s) ({}) with performance_multiplier 1: the ~1 s election timeouts are tuned for a LAN; any WAN stall over ~0.5 s starts an election (measured; docs/failover.md \"The WAN default\")",
                sites.len(),
                providers.len(),
                sites.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            "set [raft] performance_multiplier = 3 (or network = \"wan\"), then `vaultnix generate`",
        )
    } else if !spread && m > 3 {
        Finding::new(
            Severity::Info,
            "raft-timing",
            None,
            format!("all voters on one site with performance_multiplier {m}: failover takes several times longer than needed on a LAN"),
            "performance_multiplier = 1 fails over in ~2–6 s on a LAN",
        )
    } else {
        Finding::ok("raft-timing", None, format!("performance_multiplier {m} for voters on {} site(s)", sites.len()))
    };
    r.push(f);
}

fn check_autopilot(plan: &Plan, r: &mut Report) {
    let a = &plan.raft.autopilot;
    let q = plan.quorum;
    if a.cleanup_dead_servers {
        r.push(Finding::ok(
            "autopilot",
            None,
            format!("dead-server cleanup on after {}", a.dead_server_last_contact_threshold),
        ));
    } else {
        r.push(Finding::new(
            Severity::Warning,
            "autopilot",
            None,
            format!(
                "autopilot cleanup_dead_servers is off: a dead voter stays in the raft configuration and silently lowers failure tolerance ({} voters tolerate {}; with one dead, the next failure stops the cluster)",
                q.voters, q.tolerates
            ),
            "set [raft.autopilot] cleanup_dead_servers = true (with min_quorum at least the quorum), or watch vault_autopilot_failure_tolerance and remove dead peers by hand",
        ));
    }
    let mq = plan.raft.min_quorum as usize;
    if q.voters > 0 && mq < q.quorum {
        r.push(Finding::new(
            Severity::Error,
            "autopilot",
            None,
            format!(
                "autopilot min_quorum {mq} is below the quorum {}: dead-server cleanup may shrink the cluster until one more failure loses data",
                q.quorum
            ),
            format!("set [raft.autopilot] min_quorum to at least {} (default: the voter count)", q.quorum),
        ));
    } else if mq > q.voters {
        r.push(Finding::new(
            Severity::Warning,
            "autopilot",
            None,
            format!("autopilot min_quorum {mq} is above the {} voters: dead servers are never cleaned up", q.voters),
            format!("set [raft.autopilot] min_quorum to at most {}", q.voters),
        ));
    }
}

/// Reads, parses and checks the CA; returns (pem, info) when it parses.
fn check_ca(plan: &Plan, o: &OfflineOptions, r: &mut Report) -> Option<(String, CertInfo)> {
    let ca_pem = match std::fs::read_to_string(o.out.join(paths::CA_CRT)) {
        Ok(s) => s,
        Err(e) => {
            r.push(Finding::new(
                Severity::Error,
                "ca",
                None,
                format!("cannot read {}: {e}", o.out.join(paths::CA_CRT).display()),
                "run `vaultnix generate` (or point --out at the generated tree)",
            ));
            return None;
        }
    };
    let info = match pki::inspect(&ca_pem) {
        Ok(i) => i,
        Err(e) => {
            r.push(Finding::new(
                Severity::Error,
                "ca",
                None,
                format!("flake/pki/ca.crt does not parse: {e}"),
                REGENERATE,
            ));
            return None;
        }
    };
    if !info.is_ca {
        r.push(Finding::new(
            Severity::Error,
            "ca",
            None,
            format!("flake/pki/ca.crt ({}) is not a CA certificate", info.subject),
            "restore the cluster CA certificate from backup",
        ));
    }
    match std::fs::read_to_string(o.out.join(paths::CA_KEY)) {
        Err(e) => r.push(Finding::new(
            Severity::Warning,
            "ca-key",
            None,
            format!("cannot read secrets/ca.key ({e}): node certificates cannot be renewed"),
            "restore secrets/ca.key from backup (kept offline is fine, but bring it back before renewals)",
        )),
        Ok(k) => match rcgen::KeyPair::from_pem(&k) {
            Err(_) => r.push(Finding::new(
                Severity::Error,
                "ca-key",
                None,
                "secrets/ca.key is not a PEM private key",
                "restore secrets/ca.key from backup",
            )),
            Ok(kp) if kp.public_key_raw() != info.public_key.as_slice() => r.push(Finding::new(
                Severity::Error,
                "ca-key",
                None,
                format!("secrets/ca.key does not match flake/pki/ca.crt ({}): one of them was replaced", info.subject),
                "restore the matching pair from backup; to replace the CA on purpose run `vaultnix generate --rotate-ca` (every node certificate is reissued and clients must trust the new CA)",
            )),
            Ok(_) => r.push(Finding::ok("ca-key", None, "secrets/ca.key matches flake/pki/ca.crt")),
        },
    }
    r.push(expiry_finding("ca-expiry", None, "the CA certificate", &info, plan.monitoring.cert_expiry_days, o.now, "rotate the CA before it expires: `vaultnix ca rollover begin` (staged, verified; or `vaultnix generate --rotate-ca` in one go), then deploy the new CA to every client and node"));
    match crate::secrets::read_ca_rollover(&o.out) {
        Ok(Some(ro)) if ro.phase != crate::secrets::CaPhase::Finished => {
            let next = if ro.phase == crate::secrets::CaPhase::TrustBoth { "reissue" } else { "finish" };
            r.push(Finding::new(
                Severity::Info,
                "ca-rollover",
                None,
                format!(
                    "a CA rollover is in its {} phase: flake/pki/ca.crt trusts {} CAs, the first one issues",
                    ro.phase.as_str(),
                    crate::pki::split_bundle(&ca_pem).len()
                ),
                format!("deploy the tree, run `vaultnix ca rollover verify`, then `vaultnix ca rollover {next}`"),
            ));
        }
        Ok(_) => {}
        Err(e) => r.push(Finding::new(
            Severity::Error,
            "ca-rollover",
            None,
            format!("{e:#}"),
            "restore secrets/ca-rollover.json from a backup of the output tree",
        )),
    }
    Some((ca_pem, info))
}

fn expiry_finding(
    check: &'static str,
    node: Option<&str>,
    what: &str,
    info: &CertInfo,
    warn_days: u32,
    now: i64,
    fix: &str,
) -> Finding {
    let days = info.days_left(now);
    if info.not_before > now {
        Finding::new(
            Severity::Error,
            check,
            node,
            format!("{what} is not valid yet (valid from unix time {}; clock skew?)", info.not_before),
            "fix the clock (NTP) on this machine and the nodes, or reissue with `vaultnix generate`",
        )
    } else if info.not_after <= now {
        Finding::new(Severity::Error, check, node, format!("{what} has expired ({} day(s) ago)", -days), fix)
    } else if days < warn_days as i64 {
        Finding::new(
            Severity::Warning,
            check,
            node,
            format!("{what} expires in {days} day(s) (warning threshold: {warn_days})"),
            fix,
        )
    } else {
        Finding::ok(check, node, format!("{what} valid for {days} more day(s)"))
    }
}

fn check_node_cert(
    plan: &Plan,
    n: &NodePlan,
    o: &OfflineOptions,
    ca: Option<&(String, CertInfo)>,
    r: &mut Report,
) -> Option<CertInfo> {
    let node = Some(n.name.as_str());
    let rel = paths::node_crt(&n.name);
    let pem = match std::fs::read_to_string(o.out.join(&rel)) {
        Ok(s) => s,
        Err(e) => {
            r.push(Finding::new(Severity::Error, "cert", node, format!("cannot read {rel}: {e}"), REGENERATE));
            return None;
        }
    };
    let info = match pki::inspect(&pem) {
        Ok(i) => i,
        Err(e) => {
            r.push(Finding::new(Severity::Error, "cert", node, format!("{rel} does not parse: {e}"), REGENERATE));
            return None;
        }
    };
    if let Some((ca_pem, ca_info)) = ca {
        if info.issuer == ca_info.subject && pki::verify_signed_by(&pem, ca_pem) {
            r.push(Finding::ok("cert-chain", node, format!("{rel} verifies against flake/pki/ca.crt")));
        } else {
            r.push(Finding::new(
                Severity::Error,
                "cert-chain",
                node,
                format!(
                    "{rel} (issuer {:?}) does not verify against flake/pki/ca.crt ({:?}): peers, HAProxy and clients trusting flake/pki/ca.crt reject this node",
                    info.issuer, ca_info.subject
                ),
                "if flake/pki/ca.crt was replaced, restore the CA that signed the node certificates; otherwise run `vaultnix generate` to reissue the node certificates under the current CA",
            ));
        }
    }
    if info.server_auth && info.client_auth {
        r.push(Finding::ok("cert-eku", node, format!("{rel} allows serverAuth and clientAuth")));
    } else {
        let missing: Vec<&str> = [("serverAuth", info.server_auth), ("clientAuth", info.client_auth)]
            .iter()
            .filter(|(_, has)| !has)
            .map(|(n, _)| *n)
            .collect();
        r.push(Finding::new(
            Severity::Error,
            "cert-eku",
            node,
            format!("{rel} lacks extended key usage {}: raft's mutual TLS needs both", missing.join(" and ")),
            REGENERATE,
        ));
    }
    match std::fs::read_to_string(o.out.join(paths::node_key(&n.name))) {
        Ok(k) => match rcgen::KeyPair::from_pem(&k) {
            Ok(kp) if kp.public_key_raw() == info.public_key.as_slice() => {
                r.push(Finding::ok("cert-key", node, format!("{rel} matches secrets/{}.key", n.name)))
            }
            _ => r.push(Finding::new(
                Severity::Error,
                "cert-key",
                node,
                format!("{rel} does not match secrets/{}.key: the listener cannot start", n.name),
                REGENERATE,
            )),
        },
        Err(e) => r.push(Finding::new(
            Severity::Error,
            "cert-key",
            node,
            format!("cannot read secrets/{}.key: {e}", n.name),
            REGENERATE,
        )),
    }
    r.push(expiry_finding(
        "cert-expiry",
        node,
        &format!("the certificate of {}", n.name),
        &info,
        plan.monitoring.cert_expiry_days,
        o.now,
        "renew: `vaultnix generate` reissues certificates within [tls] renew_within_days of expiry (or `vaultnix certs renew`), then deploy",
    ));
    if san_covers(&info.sans, &plan.lb.hostname) {
        r.push(Finding::ok("lb-san", node, format!("{rel} covers the LB hostname {}", plan.lb.hostname)));
    } else {
        r.push(Finding::new(
            Severity::Error,
            "lb-san",
            node,
            format!(
                "{rel} does not cover the load balancer hostname {}: HAProxy passes TLS through, so clients of {} reject this node",
                plan.lb.hostname, plan.lb.hostname
            ),
            REGENERATE,
        ));
    }
    Some(info)
}

/// True when the certificate's SANs cover `host` (an IP or a DNS name; `*.` wildcards match one label).
pub fn san_covers(s: &Sans, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return s.ips.contains(&ip);
    }
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    s.dns.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        match d.strip_prefix("*.") {
            Some(suffix) => h.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => d == h,
        }
    })
}

fn sans_text(s: &Sans) -> String {
    let mut v: Vec<String> = s.dns.iter().cloned().collect();
    v.extend(s.ips.iter().map(|i| i.to_string()));
    v.join(", ")
}

fn read_config(n: &NodePlan, out: &Path, r: &mut Report) -> Option<Value> {
    let rel = paths::server_json(&n.name);
    let text = match std::fs::read_to_string(out.join(&rel)) {
        Ok(t) => t,
        Err(e) => {
            r.push(Finding::new(
                Severity::Error,
                "config",
                Some(&n.name),
                format!("cannot read {rel}: {e}"),
                REGENERATE,
            ));
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            r.push(Finding::new(
                Severity::Error,
                "config",
                Some(&n.name),
                format!("{rel} is not valid JSON: {e}"),
                REGENERATE,
            ));
            None
        }
    }
}

/// Host part of an `https://host:port` URL (IPv6 without brackets) and the port.
fn url_host_port(s: &str) -> Option<(String, String, u16)> {
    let u = reqwest::Url::parse(s).ok()?;
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
    Some((u.scheme().to_string(), host, u.port_or_known_default()?))
}

/// A node's own api_addr / cluster_addr must be in its certificate: standbys redirect clients to the
/// active node's api_addr, and peers dial cluster_addr.
fn check_own_addrs(n: &NodePlan, cfg: &Value, cert: Option<&CertInfo>, r: &mut Report) {
    let Some(cert) = cert else { return };
    let node = Some(n.name.as_str());
    for key in ["api_addr", "cluster_addr"] {
        let Some(addr) = cfg.get(key).and_then(|v| v.as_str()) else {
            r.push(Finding::new(
                Severity::Error,
                "addr-san",
                node,
                format!("flake/nodes/{}.server.json has no {key}: raft HA needs it", n.name),
                REGENERATE,
            ));
            continue;
        };
        match url_host_port(addr) {
            Some((_, host, _)) if san_covers(&cert.sans, &host) => {}
            Some((_, host, _)) => r.push(Finding::new(
                Severity::Error,
                "addr-san",
                node,
                format!(
                    "{key} {addr}: {host} is not in flake/pki/{}.crt (SANs: {}); clients redirected there fail TLS",
                    n.name,
                    sans_text(&cert.sans)
                ),
                REGENERATE,
            )),
            None => r.push(Finding::new(
                Severity::Error,
                "addr-san",
                node,
                format!("{key} {addr:?} is not a URL"),
                REGENERATE,
            )),
        }
    }
}

fn check_join(plan: &Plan, n: &NodePlan, cfg: &Value, certs: &BTreeMap<String, CertInfo>, r: &mut Report) {
    let node = Some(n.name.as_str());
    let entries: Vec<&Value> = cfg
        .pointer("/storage/raft/retry_join")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if entries.is_empty() {
        if plan.nodes.len() > 1 {
            r.push(Finding::new(
                Severity::Error,
                "join",
                node,
                format!(
                    "flake/nodes/{}.server.json has no storage.raft.retry_join: this node never joins the cluster",
                    n.name
                ),
                REGENERATE,
            ));
        }
        return;
    }
    let mut dialled: BTreeSet<String> = BTreeSet::new();
    let mut all_ok = true;
    for e in entries {
        let addr = e.get("leader_api_addr").and_then(|v| v.as_str()).unwrap_or("");
        let servername = e.get("leader_tls_servername").and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        let Some((scheme, host, port)) = url_host_port(addr) else {
            all_ok = false;
            r.push(Finding::new(
                Severity::Error,
                "join",
                node,
                format!("retry_join leader_api_addr {addr:?} is not a URL"),
                REGENERATE,
            ));
            continue;
        };
        if scheme != "https" {
            all_ok = false;
            r.push(Finding::new(
                Severity::Error,
                "join",
                node,
                format!("retry_join dials {addr} without TLS, but the listeners serve TLS only"),
                REGENERATE,
            ));
        }
        // The target: the node whose address or name is dialled, else the one named for TLS.
        let target = plan
            .nodes
            .iter()
            .find(|p| p.ip.to_string() == host || p.fqdn == host || p.name == host)
            .or_else(|| servername.and_then(|s| plan.nodes.iter().find(|p| p.fqdn == s || p.name == s)));
        let Some(t) = target else {
            all_ok = false;
            r.push(Finding::new(
                Severity::Error,
                "join",
                node,
                format!("retry_join dials {addr}, which is no node of the plan"),
                REGENERATE,
            ));
            continue;
        };
        dialled.insert(t.name.clone());
        if port != plan.api_port {
            all_ok = false;
            r.push(Finding::new(
                Severity::Error,
                "join",
                node,
                format!("retry_join dials {} on port {port}, but the API listens on {}", t.name, plan.api_port),
                REGENERATE,
            ));
        }
        let Some(tc) = certs.get(&t.name) else { continue };
        if !san_covers(&tc.sans, &host) {
            all_ok = false;
            r.push(Finding::new(
                Severity::Error,
                "join-san",
                node,
                format!(
                    "retry_join dials {host} for {}, but {host} is not in flake/pki/{}.crt (SANs: {}): whatever verifies the dialled address fails TLS (the join itself without leader_tls_servername, clients and tools using that address)",
                    t.name,
                    t.name,
                    sans_text(&tc.sans)
                ),
                format!("dial an address in the certificate ({}), or {REGENERATE}", t.ip),
            ));
        }
        match servername {
            Some(s) if !san_covers(&tc.sans, s) => {
                all_ok = false;
                r.push(Finding::new(
                    Severity::Error,
                    "join-servername",
                    node,
                    format!(
                        "retry_join to {} checks leader_tls_servername {s:?}, which is not in flake/pki/{}.crt (SANs: {})",
                        t.name,
                        t.name,
                        sans_text(&tc.sans)
                    ),
                    format!("leader_tls_servername must be {} — {REGENERATE}", t.fqdn),
                ));
            }
            Some(s) if s != t.fqdn => {
                all_ok = false;
                r.push(Finding::new(
                    Severity::Warning,
                    "join-servername",
                    node,
                    format!("retry_join to {} uses leader_tls_servername {s:?} instead of {}", t.name, t.fqdn),
                    REGENERATE,
                ));
            }
            Some(_) => {}
            None => {
                r.push(Finding::new(
                    Severity::Info,
                    "join-servername",
                    node,
                    format!(
                        "retry_join to {} sets no leader_tls_servername: the dialled address alone is verified",
                        t.name
                    ),
                    REGENERATE,
                ));
            }
        }
    }
    let missing: Vec<&str> =
        plan.nodes.iter().filter(|p| p.name != n.name && !dialled.contains(&p.name)).map(|p| p.name.as_str()).collect();
    if !missing.is_empty() {
        all_ok = false;
        r.push(Finding::new(
            Severity::Warning,
            "join",
            node,
            format!(
                "retry_join does not list {}: if the listed peers are down this node cannot join",
                missing.join(", ")
            ),
            REGENERATE,
        ));
    }
    if all_ok {
        r.push(Finding::ok(
            "join-san",
            node,
            format!("every retry_join target ({}) is dialled by an address and name in its certificate", dialled.len()),
        ));
    }
}

fn check_node_ids(plan: &Plan, configs: &BTreeMap<String, Value>, r: &mut Report) {
    let mut ok = true;
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for n in &plan.nodes {
        if let Some(other) = seen.insert(n.node_id.as_str(), n.name.as_str()) {
            ok = false;
            r.push(Finding::new(
                Severity::Error,
                "node-id",
                Some(&n.name),
                format!("node_id {:?} is used by {other} and {}", n.node_id, n.name),
                "give every node a unique name (the node_id is the name)",
            ));
        }
    }
    let mut rendered: BTreeMap<String, String> = BTreeMap::new();
    for n in &plan.nodes {
        let Some(cfg) = configs.get(&n.name) else { continue };
        let id = cfg.pointer("/storage/raft/node_id").and_then(|v| v.as_str()).unwrap_or("");
        if id != n.node_id {
            ok = false;
            r.push(Finding::new(
                Severity::Error,
                "node-id",
                Some(&n.name),
                format!(
                    "flake/nodes/{}.server.json has node_id {id:?}, the plan {:?}: raft would see a new, unknown server and the old one as dead",
                    n.name, n.node_id
                ),
                REGENERATE,
            ));
        }
        if let Some(other) = rendered.insert(id.to_string(), n.name.clone()) {
            ok = false;
            r.push(Finding::new(
                Severity::Error,
                "node-id",
                Some(&n.name),
                format!("rendered node_id {id:?} appears for both {other} and {}", n.name),
                REGENERATE,
            ));
        }
    }
    if ok {
        r.push(Finding::ok("node-id", None, format!("{} unique, stable node IDs (= node names)", plan.nodes.len())));
    }
}

fn check_drift(plan: &Plan, o: &OfflineOptions, r: &mut Report) {
    let gopts =
        GenerateOptions { out: o.out.clone(), check: true, rotate: Rotate::default(), render: o.render.clone() };
    match generate(plan, &o.layout, &gopts) {
        Ok(g) if !g.drift => r.push(Finding::ok(
            "drift",
            None,
            format!("{} matches the plan ({} files)", o.out.display(), g.diff.unchanged),
        )),
        Ok(g) => {
            let mut parts = Vec::new();
            for (label, list) in [
                ("differ", &g.diff.changed),
                ("missing", &g.diff.added),
                ("stale", &g.diff.removed),
                ("loose mode", &g.diff.loose_modes),
            ] {
                if !list.is_empty() {
                    parts.push(format!("{label}: {}", list.join(", ")));
                }
            }
            r.push(Finding::new(
                Severity::Error,
                "drift",
                None,
                format!("{} differs from what the spec generates — {}", o.out.display(), parts.join("; ")),
                "what would be deployed is not the plan: run `vaultnix generate` (review hand edits first; `generate --check` lists them)",
            ));
        }
        Err(e) => r.push(Finding::new(
            Severity::Error,
            "drift",
            None,
            format!("the tree cannot be re-rendered for comparison: {e:#}"),
            REGENERATE,
        )),
    }
}

/// Secrets group or others can read (someone ran `chmod 0644 secrets/*`): an error, fixed by `generate`.
fn check_secret_modes(o: &OfflineOptions, r: &mut Report) {
    let loose = crate::output::loose_secret_modes(&o.out);
    if loose.is_empty() {
        r.push(Finding::ok("secret-modes", None, format!("{}/secrets is owner-only", o.out.display())));
    } else {
        let list: Vec<String> = loose.iter().map(|(p, m)| format!("{p} ({m:04o})")).collect();
        r.push(Finding::new(
            Severity::Error,
            "secret-modes",
            None,
            format!("secrets group or others can access: {}", list.join(", ")),
            "run `vaultnix generate` (it tightens them to owner-only), and ask who could have read them",
        ));
    }
}

fn check_validate_config(plan: &Plan, o: &OfflineOptions, configs: &BTreeMap<String, Value>, r: &mut Report) {
    if plan.engine == Engine::Vault {
        r.push(Finding::new(
            Severity::Info,
            "validate-config",
            None,
            "`operator validate-config` is OpenBao-only (>= 2.4); not run for Vault",
            "",
        ));
        return;
    }
    if o.skip_validate_config {
        r.push(Finding::new(Severity::Info, "validate-config", None, "bao operator validate-config skipped", ""));
        return;
    }
    let Some(bin) = o.bao.clone().or_else(bao::find_bao) else {
        r.push(Finding::new(
            Severity::Info,
            "validate-config",
            None,
            "bao not found ($VAULTNIX_BAO unset and no bao on PATH): rendered configs not checked by the server's own validator",
            "set VAULTNIX_BAO=/path/to/bao (OpenBao >= 2.4) to add this check",
        ));
        return;
    };
    for n in &plan.nodes {
        if configs.contains_key(&n.name) {
            r.push(bao::validate_config(&bin, &n.name, &o.out.join(paths::server_json(&n.name))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_matching() {
        let mut s = Sans::default();
        s.dns.insert("vault-1.vault.internal".into());
        s.dns.insert("*.example.com".into());
        s.ips.insert("10.0.0.1".parse().unwrap());
        s.ips.insert("::1".parse().unwrap());
        assert!(san_covers(&s, "vault-1.vault.internal"));
        assert!(san_covers(&s, "VAULT-1.vault.internal."));
        assert!(san_covers(&s, "vault.example.com"));
        assert!(!san_covers(&s, "a.b.example.com"), "a wildcard matches one label only");
        assert!(!san_covers(&s, "example.com"));
        assert!(san_covers(&s, "10.0.0.1"));
        assert!(san_covers(&s, "[::1]"));
        assert!(!san_covers(&s, "10.0.0.2"));
        assert_eq!(url_host_port("https://[::1]:8200").map(|x| x.1), Some("::1".to_string()));
        assert_eq!(url_host_port("https://10.0.0.1:8201").map(|x| x.2), Some(8201));
    }
}
