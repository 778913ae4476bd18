//! Shared by the CI fuzz test (tests/fuzz_spec.rs) and the soak benchmark (benches/fuzz.rs): input
//! generators for the spec pipeline, the property every input must satisfy, and a watchdog that turns a
//! hang into a loud failure.
//!
//! The property: `spec::load_str` either returns `LoadError::Invalid` whose every diagnostic is located
//! inside the text, or a spec whose plan (and lab plan) render without error or panic through every
//! pure renderer, with the TLS and secret-path invariants holding on the output.
#![allow(dead_code)]

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toml_edit::{DocumentMut, Item, Table, Value};
use vaultnix::plan::Plan;
use vaultnix::render::{self, nix, Layout};
use vaultnix::spec::{self, LoadError};

// ---------------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Invalid,
    Valid,
}

/// Runs one input through parse → validate → plan → render. `Err` is a property violation.
pub fn check_text(text: &str) -> Result<Outcome, String> {
    match spec::load_str("fuzz.toml", text, Path::new("/nonexistent-vaultnix-fuzz")) {
        Err(LoadError::Invalid(report)) => {
            check_located(text, &report)?;
            Ok(Outcome::Invalid)
        }
        Err(e @ LoadError::Io { .. }) => Err(format!("load_str returned an I/O error: {e}")),
        Ok(loaded) => {
            if loaded.warnings.has_errors() {
                return Err("a loaded spec carries errors".into());
            }
            check_located(text, &loaded.warnings)?;
            let plan = Plan::from_loaded(&loaded);
            render_everything(&plan, &Layout::NixOs)?;
            let lab = plan.for_lab(Ipv4Addr::new(127, 91, 7, 10));
            if !lab.nodes.iter().all(|n| n.ip.is_loopback()) {
                return Err("a lab plan has a node off loopback".into());
            }
            render_everything(&lab, &Layout::Lab(PathBuf::from("/tmp/vaultnix-fuzz-lab")))?;
            Ok(Outcome::Valid)
        }
    }
}

/// Every diagnostic has `file:line:col` inside the text; every error points at a span inside the text.
pub fn check_located(text: &str, report: &spec::Report) -> Result<(), String> {
    if report.diagnostics.is_empty() && report.has_errors() {
        return Err("errors without diagnostics".into());
    }
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &report.diagnostics {
        let loc = d.location.as_deref().ok_or_else(|| format!("diagnostic without location: {d}"))?;
        let mut it = loc.rsplitn(3, ':');
        let col: usize = it.next().and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad location {loc:?}"))?;
        let line: usize = it.next().and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad location {loc:?}"))?;
        if line == 0 || line > lines.len() {
            return Err(format!("line {line} outside the text ({} lines): {d}", lines.len()));
        }
        let width = lines[line - 1].chars().count();
        if col == 0 || col > width + 1 {
            return Err(format!("column {col} outside line {line} (width {width}): {d}"));
        }
        if let Some(s) = &d.span {
            if s.start > text.len() || s.end > text.len() || s.start > s.end {
                return Err(format!("span {s:?} outside the text (len {}): {d}", text.len()));
            }
        } else if d.is_error() {
            return Err(format!("error without a place in the text: {d}"));
        }
        if d.message.trim().is_empty() {
            return Err("diagnostic with an empty message".into());
        }
    }
    Ok(())
}

/// All pure renderers, plus invariants on what they produce.
pub fn render_everything(plan: &Plan, layout: &Layout) -> Result<(), String> {
    for n in &plan.nodes {
        let cfg = render::render_server_config(plan, n, layout);
        let text = render::to_json_text(&cfg);
        let back: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("server JSON unparsable: {e}"))?;
        check_listeners(&back)?;
    }
    let hap = render::render_haproxy(plan, layout);
    check_haproxy(&hap)?;
    let _alerts = render::render_alerts(plan);
    if *layout == Layout::NixOs {
        let wg: BTreeMap<String, String> = plan
            .machines()
            .iter()
            .map(|m| (m.name.clone(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string()))
            .collect();
        let files = nix::render_nix(plan, &wg).map_err(|e| format!("render_nix failed on a valid spec: {e:#}"))?;
        for (path, text) in &files {
            check_nix_secret_paths(path, text)?;
        }
        nix::render_flake(plan, "github:vaultnix/vaultnix").map_err(|e| format!("render_flake failed: {e:#}"))?;
        let cj = nix::render_cluster_json(plan);
        serde_json::from_str::<serde_json::Value>(&cj).map_err(|e| format!("cluster.json unparsable: {e}"))?;
    }
    Ok(())
}

/// Every listener speaks TLS 1.2+; only a loopback metrics-only listener may disable TLS.
pub fn check_listeners(cfg: &serde_json::Value) -> Result<(), String> {
    let listeners = cfg.get("listener").and_then(|l| l.as_object()).ok_or("server config without listener")?;
    for (name, l) in listeners {
        let addr = l.get("address").and_then(|a| a.as_str()).unwrap_or("");
        if l.get("tls_disable").and_then(|v| v.as_bool()) == Some(true) {
            let host = addr.rsplit_once(':').map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']')).unwrap_or("");
            let ip: std::net::IpAddr = host.parse().map_err(|_| format!("listener {name}: bad address {addr}"))?;
            let metrics_only = l.pointer("/telemetry/metrics_only").and_then(|v| v.as_bool()) == Some(true);
            if !ip.is_loopback() || !metrics_only {
                return Err(format!("listener {name} disables TLS on {addr} (metrics_only={metrics_only})"));
            }
        } else {
            match l.get("tls_min_version").and_then(|v| v.as_str()) {
                Some("tls12") | Some("tls13") => {}
                other => return Err(format!("listener {name} has tls_min_version {other:?}")),
            }
        }
    }
    Ok(())
}

/// HAProxy passes client TLS through and verifies the nodes.
pub fn check_haproxy(cfg: &str) -> Result<(), String> {
    // `load_balancer.mode = "terminate"`: HAProxy terminates TLS with the LB's key, installed into its
    // RuntimeDirectory from the host's secrets (or the lab's secrets/), re-encrypts verified, and
    // resends only what was not applied.
    let terminate = cfg.contains(" ssl crt ");
    for line in cfg.lines().map(str::trim) {
        if line.starts_with("bind ") && (line.contains(" ssl") || line.contains("crt ")) {
            let pem = line.split_whitespace().skip_while(|w| *w != "crt").nth(1).unwrap_or("");
            let secret = pem == "/run/haproxy/vaultnix-lb.pem" || pem.ends_with("/secrets/lb.pem");
            if !terminate || !secret {
                return Err(format!("haproxy terminates TLS: {line}"));
            }
        }
        if line.starts_with("server ") {
            // The second hold: a backup server that is HAProxy's own frontend on a local Unix socket
            // (bound in this very file), never a node.
            let addr = line.split_whitespace().nth(2).unwrap_or("");
            let own = addr.starts_with('/') && cfg.lines().any(|l| l.trim().starts_with(&format!("bind {addr} ")));
            if own && terminate && line.ends_with(" backup no-check") {
                continue;
            }
            let verified = if terminate {
                line.contains(" ssl verify required ca-file ") && line.contains(" verifyhost ")
            } else {
                line.contains("check-ssl verify required ca-file ")
            };
            if !verified {
                return Err(format!("haproxy does not verify the node: {line}"));
            }
        }
        if line.starts_with("retry-on") && line.split_whitespace().skip(1).any(|w| w != "conn-failure" && w != "503") {
            return Err(format!("haproxy may resend a request that was applied: {line}"));
        }
    }
    if !cfg.contains("\n    mode tcp\n") {
        return Err("haproxy defaults are not mode tcp".into());
    }
    Ok(())
}

/// Lexically normalises an absolute path ("/a//b/./c/../d" → "/a/b/d").
pub fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Nix options that name a file with secret contents (or the directory of them), by path string.
pub const NIX_SECRET_OPTIONS: &[&str] =
    &["secretsDir", "keyFile", "sealKeyFile", "privateKeyFile", "tokenFile", "authKeyFile", "tlsPemFile"];

/// Nix files reference secrets only by absolute path strings outside the store, and have no path literal
/// (which Nix would copy into the world-readable store) pointing at secrets.
pub fn check_nix_secret_paths(path: &str, text: &str) -> Result<(), String> {
    for line in text.lines().map(str::trim) {
        let Some((name, rest)) = line.split_once(" = ") else { continue };
        if !NIX_SECRET_OPTIONS.contains(&name) {
            continue;
        }
        if rest == "null;" {
            continue;
        }
        let value = rest
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix("\";"))
            .ok_or_else(|| format!("{path}: {name} is not a string: {line}"))?;
        if !value.starts_with('/') {
            return Err(format!("{path}: {name} = {value:?} is not an absolute path"));
        }
        let n = normalize(value);
        if n == "/nix/store" || n.starts_with("/nix/store/") {
            return Err(format!("{path}: {name} = {value:?} points into the world-readable /nix/store"));
        }
    }
    for p in &nix_lex(text).paths {
        if p.contains("secrets") || p.contains(".key") || p.starts_with("/nix/store") {
            return Err(format!("{path}: path literal {p} would put a secret into the Nix store"));
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
pub struct NixLex {
    /// Contents of double-quoted strings (escapes kept raw).
    pub strings: Vec<String>,
    /// Bare path literals such as ./x or ../pki/ca.crt or /etc/x.
    pub paths: Vec<String>,
}

/// Just enough of a Nix lexer to tell strings, comments and path literals apart.
pub fn nix_lex(text: &str) -> NixLex {
    let mut lex = NixLex::default();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    s.push(chars[i]);
                    i += 1;
                }
                s.push(chars[i]);
                i += 1;
            }
            lex.strings.push(s);
            i += 1;
        } else if c == '/' || (c == '.' && chars.get(i + 1).is_some_and(|&n| n == '/' || n == '.')) || c == '~' {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !";)]}".contains(chars[i]) {
                i += 1;
            }
            let tok: String = chars[start..i].iter().collect();
            if tok.contains('/') {
                lex.paths.push(tok);
            }
        } else {
            i += 1;
        }
    }
    lex
}

// ---------------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------------

/// Valid specs the mutator starts from: the built-in example, tests/fuzz_support/seeds and tests/specs.
pub fn seeds() -> Vec<String> {
    let mut v = vec![spec::EXAMPLE.to_string()];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [root.join("tests/fuzz_support/seeds"), root.join("tests/specs")] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|e| e == "toml") {
                if let Ok(t) = std::fs::read_to_string(&f) {
                    v.push(t);
                }
            }
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------------

/// (a) arbitrary bytes (made text the way a reader would: lossily) and arbitrary strings.
pub fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        any::<String>(),
        "[\\[\\]{}=\"',.a-z0-9 \n#_-]{0,300}",
    ]
}

const SECTIONS: &[&str] =
    &["cluster", "load_balancer", "overlay", "unseal", "raft", "tls", "backup", "monitoring", "firewall", "audit"];

/// Keys the schema knows, so random documents get past `deny_unknown_fields` often enough.
const KEYS: &[&str] = &[
    "name",
    "engine",
    "version",
    "domain",
    "bootstrap_node",
    "allow_single_node",
    "api_port",
    "cluster_port",
    "secrets_dir",
    "ui",
    "hostname",
    "address",
    "overlay_address",
    "provider",
    "arch",
    "port",
    "stats_port",
    "kind",
    "subnet",
    "listen_port",
    "interface",
    "persistent_keepalive",
    "auth_key_file",
    "tailnet",
    "shares",
    "threshold",
    "pgp_keys",
    "root_token_pgp_key",
    "params",
    "plugin_command",
    "plugin_sha256",
    "plugin_directory",
    "performance_multiplier",
    "network",
    "autopilot",
    "cleanup_dead_servers",
    "min_quorum",
    "key_algorithm",
    "ca_validity_days",
    "node_validity_days",
    "renew_within_days",
    "min_version",
    "enabled",
    "schedule",
    "retention_days",
    "destination",
    "cert_expiry_days",
    "backup_max_age_hours",
    "alert_for",
    "client_cidrs",
    "ssh_cidrs",
    "voter",
    "site",
    "tailnet_name",
];

/// Strings that mean something somewhere in the schema, or break something downstream.
pub const WEIRD: &[&str] = &[
    "",
    " ",
    "a",
    "vault-1",
    "openbao",
    "vault",
    "onprem",
    "oracle",
    "linode",
    "digitalocean",
    "x86_64",
    "aarch64",
    "wireguard",
    "tailscale",
    "none",
    "shamir",
    "static",
    "awskms",
    "transit",
    "lan",
    "wan",
    "tls12",
    "tls13",
    "tls11",
    "ecdsa-p384",
    "ed25519",
    "10.88.0.0/24", // spec values only: the fuzzer never opens a connection
    "10.88.0.99",   // spec value only
    "0.0.0.0",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1%eth0",
    "127.0.0.1",
    "224.0.0.1",
    "2.7.2",
    "2.4.0",
    "v2.6",
    "2.3.9",
    "1.2.3.4.5",
    "4294967296.0.0",
    "10s",
    "0s",
    "1m30s",
    "99999999999999999999h",
    "/var/lib/x",
    "/nix/store/abc-secrets",
    "/nix//store/abc",
    "/nix/./store/x",
    "/./nix/store",
    "/var/../nix/store/k",
    "/nix/store",
    "relative/path",
    "../../etc/shadow",
    "${builtins.readFile /etc/shadow}",
    "\"; rm -rf / #",
    "'' + builtins.abort \"x\" + ''",
    "line1\nline2",
    "tab\there",
    "nul\u{0}byte",
    "\u{7f}\u{1b}[31m",
    "é",
    "Ünïcödé-ñame",
    "名前",
    "🦀🦀🦀",
    "\u{202e}evil",
    "\u{feff}bom",
    "a.b..c",
    "-leading",
    "trailing-",
    "UPPER",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "{{ secrets }}",
    "{% raw %}",
    "%{x}",
    "\\",
    "PRIVATE KEY",
];

pub const EXTREME_INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    5,
    7,
    8,
    10,
    11,
    100,
    127,
    128,
    255,
    256,
    65535,
    65536,
    4294967295,
    4294967296,
    i64::MAX,
    i64::MIN,
];

pub fn arb_weird_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WEIRD).prop_map(str::to_string),
        1 => any::<String>(),
        1 => (proptest::sample::select(WEIRD), 1usize..400).prop_map(|(s, n)| s.repeat(n)),
    ]
}

pub fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_weird_string().prop_map(Value::from),
        proptest::sample::select(EXTREME_INTS).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(1e308), any::<f64>()].prop_map(Value::from),
        Just("1979-05-27T07:32:00Z".parse::<Value>().unwrap_or_else(|_| Value::from("x"))),
    ]
}

/// Scalars without the long repeated strings: elements of huge arrays stay small.
pub fn arb_small_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(WEIRD).prop_map(Value::from),
        proptest::sample::select(EXTREME_INTS).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ]
}

pub fn arb_value() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|v| {
                let mut a = toml_edit::Array::new();
                for x in v {
                    a.push(x);
                }
                Value::Array(a)
            }),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                let mut t = toml_edit::InlineTable::new();
                for (k, v) in kv {
                    t.insert(k, v);
                }
                Value::InlineTable(t)
            }),
        ]
    })
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
        1 => any::<String>().prop_filter("toml keys must be non-empty", |s| !s.is_empty()),
    ]
}

fn arb_table() -> impl Strategy<Value = Table> {
    proptest::collection::vec((arb_key(), arb_value()), 0..10).prop_map(|kv| {
        let mut t = Table::new();
        for (k, v) in kv {
            t.insert(&k, Item::Value(v));
        }
        t
    })
}

/// (b) structurally valid TOML: schema sections with schema-ish keys and random values, random node tables.
pub fn arb_toml_doc() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec((proptest::sample::select(SECTIONS), arb_table()), 0..8),
        proptest::collection::vec(arb_table(), 0..6),
        proptest::collection::vec((arb_key(), arb_value()), 0..3),
    )
        .prop_map(|(sections, nodes, top)| {
            let mut doc = DocumentMut::new();
            for (k, v) in top {
                doc.insert(&k, Item::Value(v));
            }
            for (name, t) in sections {
                doc.insert(name, Item::Table(t));
            }
            if !nodes.is_empty() {
                let mut a = toml_edit::ArrayOfTables::new();
                for t in nodes {
                    a.push(t);
                }
                doc.insert("nodes", Item::ArrayOfTables(a));
            }
            doc.to_string()
        })
}

/// One edit of a valid spec. Indices are reduced modulo what exists when the edit is applied.
#[derive(Debug, Clone)]
pub enum Mutation {
    Delete(usize),
    Retype(usize, Value),
    Swap(usize, usize),
    Extreme(usize, i64),
    Weird(usize, String),
    HugeArray(usize, usize, Value),
    DeepNest(usize, usize, bool),
    CloneNodes(usize),
    DuplicateLine(usize),
    DeleteText(usize, usize),
    InsertText(usize, String),
    Truncate(usize),
}

pub fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let sel = any::<usize>();
    prop_oneof![
        3 => sel.prop_map(Mutation::Delete),
        3 => (sel, arb_value()).prop_map(|(s, v)| Mutation::Retype(s, v)),
        2 => (sel, any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        3 => (sel, proptest::sample::select(EXTREME_INTS)).prop_map(|(s, n)| Mutation::Extreme(s, n)),
        3 => (sel, arb_weird_string()).prop_map(|(s, w)| Mutation::Weird(s, w)),
        1 => (sel, prop_oneof![0usize..20, 1000usize..5000], arb_small_scalar()).prop_map(|(s, n, v)| Mutation::HugeArray(s, n, v)),
        1 => (sel, prop_oneof![1usize..30, 100usize..3000], any::<bool>()).prop_map(|(s, d, b)| Mutation::DeepNest(s, d, b)),
        1 => prop_oneof![0usize..8, 90usize..130, 240usize..300].prop_map(Mutation::CloneNodes),
        2 => sel.prop_map(Mutation::DuplicateLine),
        1 => (sel, 0usize..64).prop_map(|(p, n)| Mutation::DeleteText(p, n)),
        1 => (sel, prop_oneof![arb_weird_string(), "[\\[\\]{}=\"',.\n]{1,8}"]).prop_map(|(p, s)| Mutation::InsertText(p, s)),
        1 => sel.prop_map(Mutation::Truncate),
    ]
}

/// (c) a seed spec and 1-6 mutations of it.
pub fn arb_mutated_spec(seeds: Arc<Vec<String>>) -> impl Strategy<Value = String> {
    let n = seeds.len();
    (0..n, proptest::collection::vec(arb_mutation(), 1..6)).prop_map(move |(i, muts)| apply(&seeds[i], &muts))
}

/// A table reached through keys and array-of-tables indices.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Idx(usize),
}

fn table_at<'a>(root: &'a mut Table, addr: &[Step]) -> Option<&'a mut Table> {
    let mut cur: &mut Table = root;
    let mut i = 0;
    while i < addr.len() {
        let Step::Key(k) = &addr[i] else { return None };
        match cur.get_mut(k)? {
            Item::Table(t) => {
                cur = t;
                i += 1;
            }
            Item::ArrayOfTables(a) => {
                let Some(Step::Idx(j)) = addr.get(i + 1) else { return None };
                cur = a.get_mut(*j)?;
                i += 2;
            }
            _ => return None,
        }
    }
    Some(cur)
}

/// Every (table, key) in the document, tables before their contents.
fn slots(root: &Table) -> Vec<(Vec<Step>, String)> {
    fn walk(t: &Table, addr: &mut Vec<Step>, out: &mut Vec<(Vec<Step>, String)>) {
        for (k, item) in t.iter() {
            out.push((addr.clone(), k.to_string()));
            match item {
                Item::Table(sub) => {
                    addr.push(Step::Key(k.to_string()));
                    walk(sub, addr, out);
                    addr.pop();
                }
                Item::ArrayOfTables(a) => {
                    for (j, sub) in a.iter().enumerate() {
                        addr.push(Step::Key(k.to_string()));
                        addr.push(Step::Idx(j));
                        walk(sub, addr, out);
                        addr.pop();
                        addr.pop();
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut Vec::new(), &mut out);
    out
}

fn set_slot(doc: &mut DocumentMut, slot: &(Vec<Step>, String), item: Item) {
    if let Some(t) = table_at(doc.as_table_mut(), &slot.0) {
        t.insert(&slot.1, item);
    }
}

fn get_slot(doc: &mut DocumentMut, slot: &(Vec<Step>, String)) -> Option<Item> {
    table_at(doc.as_table_mut(), &slot.0).and_then(|t| t.get(&slot.1).cloned())
}

const DEEP_MARK: &str = "__vaultnix_fuzz_deep__";

pub fn apply(seed: &str, muts: &[Mutation]) -> String {
    let mut text = seed.to_string();
    for m in muts {
        text = apply_one(&text, m);
    }
    text
}

fn char_pos(text: &str, sel: usize) -> usize {
    if text.is_empty() {
        return 0;
    }
    let mut p = sel % (text.len() + 1);
    while !text.is_char_boundary(p) {
        p -= 1;
    }
    p
}

fn apply_one(text: &str, m: &Mutation) -> String {
    match m {
        Mutation::DuplicateLine(sel) => {
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return text.to_string();
            }
            let i = sel % lines.len();
            let mut out: Vec<&str> = lines[..=i].to_vec();
            out.extend_from_slice(&lines[i..]);
            out.join("\n")
        }
        Mutation::DeleteText(sel, n) => {
            let a = char_pos(text, *sel);
            let b = char_pos(text, a + n);
            let b = b.max(a);
            format!("{}{}", &text[..a], &text[b..])
        }
        Mutation::InsertText(sel, s) => {
            let a = char_pos(text, *sel);
            format!("{}{}{}", &text[..a], s, &text[a..])
        }
        Mutation::Truncate(sel) => text[..char_pos(text, *sel)].to_string(),
        _ => {
            // Structural edits need a document; if earlier textual edits broke it, the text stays as is.
            let Ok(mut doc) = text.parse::<DocumentMut>() else { return text.to_string() };
            let all = slots(doc.as_table());
            let pick = |sel: usize| all.get(sel % all.len().max(1)).cloned();
            match m {
                Mutation::Delete(sel) => {
                    if let Some((addr, k)) = pick(*sel) {
                        if let Some(t) = table_at(doc.as_table_mut(), &addr) {
                            t.remove(&k);
                        }
                    }
                }
                Mutation::Retype(sel, v) => {
                    if let Some(s) = pick(*sel) {
                        set_slot(&mut doc, &s, Item::Value(v.clone()));
                    }
                }
                Mutation::Swap(a, b) => {
                    if let (Some(sa), Some(sb)) = (pick(*a), pick(*b)) {
                        let (va, vb) = (get_slot(&mut doc, &sa), get_slot(&mut doc, &sb));
                        if let (Some(va), Some(vb)) = (va, vb) {
                            if va.is_value() && vb.is_value() {
                                set_slot(&mut doc, &sa, vb);
                                set_slot(&mut doc, &sb, va);
                            }
                        }
                    }
                }
                Mutation::Extreme(sel, n) => {
                    if let Some(s) = pick(*sel) {
                        set_slot(&mut doc, &s, Item::Value(Value::from(*n)));
                    }
                }
                Mutation::Weird(sel, w) => {
                    if let Some(s) = pick(*sel) {
                        set_slot(&mut doc, &s, Item::Value(Value::from(w.as_str())));
                    }
                }
                Mutation::HugeArray(sel, n, v) => {
                    if let Some(s) = pick(*sel) {
                        let mut a = toml_edit::Array::new();
                        for _ in 0..*n {
                            a.push(v.clone());
                        }
                        set_slot(&mut doc, &s, Item::Value(Value::Array(a)));
                    }
                }
                Mutation::DeepNest(sel, depth, arrays) => {
                    if let Some(s) = pick(*sel) {
                        set_slot(&mut doc, &s, Item::Value(Value::from(DEEP_MARK)));
                        let nested = if *arrays {
                            format!("{}1{}", "[".repeat(*depth), "]".repeat(*depth))
                        } else {
                            format!("{}1{}", "{a=".repeat(*depth), "}".repeat(*depth))
                        };
                        return doc.to_string().replace(&format!("\"{DEEP_MARK}\""), &nested);
                    }
                }
                Mutation::CloneNodes(n) => clone_nodes(&mut doc, *n),
                _ => {}
            }
            doc.to_string()
        }
    }
}

/// Appends `n` nodes modelled on the first one, with fresh names and addresses (valid ones while they
/// last), so large but otherwise valid clusters are exercised.
fn clone_nodes(doc: &mut DocumentMut, n: usize) {
    let Some(Item::ArrayOfTables(a)) = doc.get_mut("nodes") else { return };
    let Some(first) = a.get(0).cloned() else { return };
    for i in 0..n {
        let mut t = first.clone();
        t.insert("name", toml_edit::value(format!("x{i}")));
        let last = 20 + i;
        if t.contains_key("overlay_address") {
            let ov = if t.get("overlay_address").and_then(|v| v.as_str()).is_some_and(|s| s.starts_with("100.")) {
                format!("100.64.{}.{}", last / 250, 1 + last % 250)
            } else {
                format!("10.88.0.{}", last.min(300))
            };
            t.insert("overlay_address", toml_edit::value(ov));
        }
        if t.contains_key("address") {
            t.insert("address", toml_edit::value(format!("198.51.{}.{}", 100 + last / 250, 1 + last % 250)));
        }
        a.push(t);
    }
}

/// All three families, weighted towards the ones that reach deep into validation and rendering.
pub fn arb_any_input(seeds: Arc<Vec<String>>) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => arb_text(),
        2 => arb_toml_doc(),
        6 => arb_mutated_spec(seeds),
    ]
}

// ---------------------------------------------------------------------------------------------------
// Time bound and crash capture
// ---------------------------------------------------------------------------------------------------

/// Aborts the process (after saving the input) if one case runs longer than `limit`.
pub struct Watchdog {
    state: Arc<WatchState>,
}

struct WatchState {
    input: Mutex<String>,
    started_ms: AtomicU64,
    busy: AtomicBool,
    done: AtomicBool,
    epoch: Instant,
    max_case_us: AtomicU64,
}

impl Watchdog {
    pub fn start(limit: Duration) -> Watchdog {
        let state = Arc::new(WatchState {
            input: Mutex::new(String::new()),
            started_ms: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            done: AtomicBool::new(false),
            epoch: Instant::now(),
            max_case_us: AtomicU64::new(0),
        });
        let s = state.clone();
        std::thread::spawn(move || {
            while !s.done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if s.busy.load(Ordering::Relaxed) {
                    let now = s.epoch.elapsed().as_millis() as u64;
                    let started = s.started_ms.load(Ordering::Relaxed);
                    if now.saturating_sub(started) > limit.as_millis() as u64 && s.busy.load(Ordering::Relaxed) {
                        let input = s.input.lock().map(|g| g.clone()).unwrap_or_default();
                        let saved = save_regression("hang", &input);
                        eprintln!(
                            "FUZZ HANG: one input ran longer than {limit:?}; saved as {}",
                            saved.map(|p| p.display().to_string()).unwrap_or_else(|e| e)
                        );
                        std::process::abort();
                    }
                }
            }
        });
        Watchdog { state }
    }

    /// Runs one case under the watchdog and returns how long it took.
    pub fn run<T>(&self, input: &str, f: impl FnOnce() -> T) -> (T, Duration) {
        if let Ok(mut g) = self.state.input.lock() {
            g.clear();
            g.push_str(input);
        }
        self.state.started_ms.store(self.state.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.state.busy.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let r = f();
        let d = t.elapsed();
        self.state.busy.store(false, Ordering::Relaxed);
        self.state.max_case_us.fetch_max(d.as_micros() as u64, Ordering::Relaxed);
        (r, d)
    }

    pub fn max_case(&self) -> Duration {
        Duration::from_micros(self.state.max_case_us.load(Ordering::Relaxed))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.state.done.store(true, Ordering::Relaxed);
    }
}

/// Writes a failing input into tests/fuzz-regressions/ (named by its hash, so re-finding it is a no-op).
pub fn save_regression(kind: &str, input: &str) -> Result<PathBuf, String> {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(input.as_bytes()));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let p = dir.join(format!("{kind}-{}.toml", &h[..16]));
    std::fs::write(&p, input).map_err(|e| e.to_string())?;
    Ok(p)
}

/// One case with panics caught: Err(description) on a panic or a property violation.
pub fn run_case(input: &str) -> Result<Outcome, String> {
    match std::panic::catch_unwind(|| check_text(input)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(format!("PANIC: {msg}"))
        }
    }
}
