//! Semantic checks, all at once: every problem in the spec is reported in one run, each at its place.

use super::diag::{Diagnostic, Report};
use super::schema::*;
use super::spans::{Seg, SpanIndex};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

struct Ctx<'a> {
    idx: &'a SpanIndex,
    report: Report,
}

impl Ctx<'_> {
    fn err(&mut self, path: &[Seg<'_>], msg: impl Into<String>, expected: impl Into<String>) {
        let span = self.idx.span(path);
        self.report.push(Diagnostic::error(msg).expected(expected).at(span));
    }
    /// Reports at the first of `paths` the spec spells out (a defaulted key has no place), else at the
    /// last one's nearest enclosing item.
    fn err_first(&mut self, paths: &[&[Seg<'_>]], msg: impl Into<String>, expected: impl Into<String>) {
        let span = paths.iter().find_map(|p| self.idx.exact(p)).or_else(|| paths.last().and_then(|p| self.idx.span(p)));
        self.report.push(Diagnostic::error(msg).expected(expected).at(span));
    }
    fn warn(&mut self, path: &[Seg<'_>], msg: impl Into<String>) {
        let span = self.idx.span(path);
        self.report.push(Diagnostic::warning(msg).at(span));
    }
}

use Seg::{Index as I, Key as K};

/// Every machine peers with every other over WireGuard and the lab gives each node its own loopback
/// address after the base: beyond this many nodes neither stays sane (found by fuzzing: 250 nodes
/// overflowed the lab's address arithmetic).
pub const MAX_NODES: usize = 100;

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Parses a Go-style duration ("10s", "1m30s", "2h") into seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    if s.is_empty() {
        return None;
    }
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: u64 = num.parse().ok()?;
            num.clear();
            total = total.checked_add(match c {
                's' => n,
                'm' => n.checked_mul(60)?,
                'h' => n.checked_mul(3600)?,
                'd' => n.checked_mul(86400)?,
                _ => return None,
            })?;
        }
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

/// A node's effective architecture.
pub fn node_arch(n: &Node) -> Arch {
    n.arch.unwrap_or(match n.provider {
        Provider::Oracle => Arch::Aarch64,
        _ => Arch::X86_64,
    })
}

pub fn validate(spec: &Spec, idx: &SpanIndex, spec_dir: &Path) -> Report {
    let mut c = Ctx { idx, report: Report::default() };
    check_cluster(&mut c, spec);
    check_nodes(&mut c, spec);
    check_lb(&mut c, spec);
    check_overlay(&mut c, spec);
    check_unseal(&mut c, spec, spec_dir);
    check_raft(&mut c, spec);
    check_tls(&mut c, spec);
    check_backup(&mut c, spec);
    check_monitoring(&mut c, spec);
    check_strings(&mut c, spec);
    check_exposure(&mut c, spec);
    let mut dirs = vec![(vec![K("cluster"), K("secrets_dir")], spec.cluster.secrets_dir.as_str(), "secrets_dir")];
    if spec.backup.enabled {
        dirs.push((vec![K("backup"), K("destination")], spec.backup.destination.as_str(), "backup destination"));
    }
    dirs.push((vec![K("unseal"), K("plugin_directory")], spec.unseal.plugin_directory.as_str(), "plugin_directory"));
    check_host_dirs_disjoint(&mut c, &dirs);
    c.report
}

/// Every string of the spec flows into a generated Nix file, JSON config, unit or HAProxy config: a
/// newline or another control character there changes its meaning (a new HAProxy directive, a new
/// Nix attribute). Refused wherever it is, at its place.
fn check_strings(c: &mut Ctx<'_>, spec: &Spec) {
    fn walk(c: &mut Ctx<'_>, v: &toml::Value, path: &mut Vec<String>) {
        match v {
            toml::Value::String(s) => {
                if let Some(ch) = s.chars().find(|ch| ch.is_control()) {
                    // admin_ssh_keys has its own, more specific message.
                    if path.first().map(String::as_str) == Some("cluster")
                        && path.get(1).map(String::as_str) == Some("admin_ssh_keys")
                    {
                        return;
                    }
                    let segs: Vec<Seg<'_>> = path
                        .iter()
                        .map(|p| match p.strip_prefix('#').and_then(|n| n.parse().ok()) {
                            Some(n) => I(n),
                            None => K(p.as_str()),
                        })
                        .collect();
                    let span = c.idx.span(&segs);
                    let mut name = String::new();
                    for p in path.iter() {
                        match p.strip_prefix('#') {
                            Some(n) => name.push_str(&format!("[{n}]")),
                            None if name.is_empty() => name.push_str(p),
                            None => name.push_str(&format!(".{p}")),
                        }
                    }
                    c.report.push(
                        Diagnostic::error(format!("{name} contains the control character U+{:04X}", ch as u32))
                            .expected("one line of printable text (it is written into generated configs)")
                            .at(span),
                    );
                }
            }
            toml::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(format!("#{i}"));
                    walk(c, x, path);
                    path.pop();
                }
            }
            toml::Value::Table(t) => {
                for (k, x) in t {
                    path.push(k.clone());
                    walk(c, x, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    if let Ok(v) = toml::Value::try_from(spec) {
        walk(c, &v, &mut Vec::new());
    }
}

/// Settings that are valid but expose the cluster: warned about, not refused.
fn check_exposure(c: &mut Ctx<'_>, spec: &Spec) {
    for (i, n) in spec.firewall.client_cidrs.iter().enumerate() {
        if n.prefix_len() == 0 {
            c.warn(
                &[K("firewall"), K("client_cidrs"), I(i)],
                format!(
                    "client_cidrs {n} opens the API port of every node to the whole internet, around the load balancer"
                ),
            );
        }
    }
    let cl = &spec.cluster;
    let lb = &spec.load_balancer;
    for (path, port, server) in [
        ([K("cluster"), K("api_port")], cl.api_port, true),
        ([K("cluster"), K("cluster_port")], cl.cluster_port, true),
        ([K("cluster"), K("agent_port")], cl.agent_port, true),
        ([K("load_balancer"), K("port")], lb.port, false),
        ([K("load_balancer"), K("stats_port")], lb.stats_port, false),
    ] {
        let used = match port {
            22 => Some("SSH"),
            53 => Some("DNS (systemd-resolved)"),
            9100 if spec.monitoring.enabled => Some("the node exporter"),
            _ => None,
        };
        if let Some(who) = used {
            c.warn(&path, format!("port {port} is {who}'s on the hosts: the listener would clash with it"));
        } else if server && port != 0 && port < 1024 {
            // The upstream units run the server as a DynamicUser with an empty CapabilityBoundingSet.
            c.warn(
                &path,
                format!("port {port} is privileged (below 1024): the server runs unprivileged and cannot bind it"),
            );
        }
    }
    if !spec.audit.enabled {
        c.warn(&[K("audit"), K("enabled")], "audit is disabled: requests to the cluster leave no trace (no audit log)");
    }
}

/// Key types OpenSSH accepts in authorized_keys (ssh-keygen(1) -t, and FIDO keys).
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Why `line` is not an OpenSSH public key line (`<type> <base64 blob> [comment]`), if it is not. The
/// blob must decode and name the same key type it is declared as (what sshd checks).
pub fn ssh_public_key_problem(line: &str) -> Option<String> {
    use base64::Engine as _;
    if line.contains(['\n', '\r']) || line.chars().any(char::is_control) {
        return Some("a key must be one line without control characters".into());
    }
    let mut it = line.split_ascii_whitespace();
    let (Some(kind), Some(blob)) = (it.next(), it.next()) else {
        return Some("expected `<type> <base64 key> [comment]`".into());
    };
    if kind.contains("PRIVATE") || line.contains("PRIVATE KEY") {
        return Some("this is a private key: give the public key (the .pub file)".into());
    }
    if !SSH_KEY_TYPES.contains(&kind) {
        return Some(format!("unknown key type {kind:?}"));
    }
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return Some("the key is not valid base64".into());
    };
    let named =
        raw.get(..4).map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize).and_then(|n| raw.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Some(format!("the key data is not a {kind} key"));
    }
    None
}

fn check_cluster(c: &mut Ctx<'_>, spec: &Spec) {
    let cl = &spec.cluster;
    for (i, key) in cl.admin_ssh_keys.iter().enumerate() {
        if let Some(why) = ssh_public_key_problem(key) {
            c.err(
                &[K("cluster"), K("admin_ssh_keys"), I(i)],
                format!("admin_ssh_keys[{i}] is not an OpenSSH public key: {why}"),
                "the line of your ~/.ssh/id_ed25519.pub, e.g. \"ssh-ed25519 AAAAC3Nza... you@laptop\"",
            );
        }
    }
    if cl.admin_ssh_keys.is_empty() {
        let blind: Vec<&str> = spec
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.provider))
            .chain(std::iter::once((spec.load_balancer.name.as_str(), spec.load_balancer.provider)))
            .filter(|(_, p)| matches!(p, Provider::Onprem | Provider::Linode))
            .map(|(n, _)| n)
            .collect();
        if !blind.is_empty() {
            c.warn(
                &[K("cluster")],
                format!(
                    "no admin_ssh_keys: nobody can log into {} (SSH is key-only and root has no password; \
                     on-prem and Linode machines get no provider keys)",
                    blind.join(", ")
                ),
            );
        }
    }
    if !is_dns_label(&cl.name) {
        c.err(
            &[K("cluster"), K("name")],
            format!("invalid cluster name {:?}", cl.name),
            "1-63 lowercase letters, digits and '-', not starting or ending with '-'",
        );
    }
    if !is_dns_name(&cl.domain) {
        c.err(
            &[K("cluster"), K("domain")],
            format!("invalid domain {:?}", cl.domain),
            "a DNS name such as \"vault.internal\"",
        );
    }
    let (lo, hi) = supported_versions(cl.engine);
    let engine_name = match cl.engine {
        Engine::Openbao => "OpenBao",
        Engine::Vault => "Vault",
    };
    match parse_version(&cl.version) {
        None => c.err(
            &[K("cluster"), K("version")],
            format!("invalid version {:?}", cl.version),
            format!("a version such as \"{}\"", default_version_of(cl.engine)),
        ),
        Some(v) if v < (2, 4, 0) && cl.engine == Engine::Openbao => c.err(
            &[K("cluster"), K("version")],
            format!("OpenBao {} is not supported", cl.version),
            "OpenBao 2.4 or newer (declarative audit devices and validate-config need 2.4)",
        ),
        Some(v) if v < lo || v >= hi => c.err(
            &[K("cluster"), K("version")],
            format!("{engine_name} {} is not a version vaultnix knows", cl.version),
            format!(
                "{engine_name} {}.{} to {}.{}.x (default {}); configs for unknown versions may name keys the server ignores",
                lo.0,
                lo.1,
                hi.0,
                hi.1 - 1,
                default_version_of(cl.engine)
            ),
        ),
        _ => {}
    }
    if cl.api_port == cl.cluster_port {
        c.err_first(
            &[&[K("cluster"), K("cluster_port")], &[K("cluster"), K("api_port")]],
            "api_port and cluster_port are the same",
            "two different ports (defaults 8200 and 8201)",
        );
    }
    if cl.agent_port == cl.api_port || cl.agent_port == cl.cluster_port {
        c.err(
            &[K("cluster"), K("agent_port")],
            "agent_port is the same as api_port or cluster_port",
            "a port of its own (default 8202)",
        );
    }
    if cl.agent_port == 0 {
        c.err(&[K("cluster"), K("agent_port")], "port 0 is not a port", "1-65535");
    }
    if cl.api_port == 0 {
        c.err(&[K("cluster"), K("api_port")], "port 0 is not a port", "1-65535");
    }
    if cl.cluster_port == 0 {
        c.err(&[K("cluster"), K("cluster_port")], "port 0 is not a port", "1-65535");
    }
    check_host_path(c, &[K("cluster"), K("secrets_dir")], &cl.secrets_dir, "secrets_dir");
    if let Some(b) = &cl.bootstrap_node {
        match spec.nodes.iter().find(|n| &n.name == b) {
            None => c.err(
                &[K("cluster"), K("bootstrap_node")],
                format!("bootstrap_node {b:?} is not a node of this spec"),
                "the name of one of the [[nodes]]",
            ),
            Some(n) if !n.voter => c.err(
                &[K("cluster"), K("bootstrap_node")],
                format!("bootstrap_node {b:?} is not a voter"),
                "a voting node",
            ),
            _ => {}
        }
    }
}

/// The version `generate` targets when the spec names none: the pinned OpenBao, and the Vault that
/// nixpkgs packages (pkgs/by-name/va/vault, 1.20.4). The NixOS module refuses to deploy a package of
/// another version, so OpenBao's default would make every Vault spec fail at deploy time.
pub const OPENBAO_DEFAULT_VERSION: &str = "2.7.2";
pub const VAULT_DEFAULT_VERSION: &str = "1.20.4";

pub fn default_version_of(engine: Engine) -> &'static str {
    match engine {
        Engine::Openbao => OPENBAO_DEFAULT_VERSION,
        Engine::Vault => VAULT_DEFAULT_VERSION,
    }
}

/// Versions whose configuration vaultnix knows: `[low, high)`. OpenBao 2.4 to 2.7 (what the renderer's
/// version switches cover); Vault 1.14 (raft autopilot and the config keys rendered) to 1.20.
pub fn supported_versions(engine: Engine) -> ((u32, u32, u32), (u32, u32, u32)) {
    match engine {
        Engine::Openbao => ((2, 4, 0), (2, 8, 0)),
        Engine::Vault => ((1, 14, 0), (1, 21, 0)),
    }
}

pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let mut it = s.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next().map(|x| x.parse().ok()).unwrap_or(Some(0))?;
    let p = it.next().map(|x| x.parse().ok()).unwrap_or(Some(0))?;
    if it.next().is_some() {
        return None;
    }
    Some((a, b, p))
}

/// True when an absolute path lies in the Nix store once "//", "." and ".." are resolved lexically
/// ("/nix//store/x" and "/var/../nix/store/x" are the store too; found by fuzzing).
pub fn is_in_nix_store(p: &str) -> bool {
    normalize_abs(p).starts_with(&["nix", "store"])
}

/// The path's components after "//", "." and ".." are resolved lexically ("/etc/" and "/var/../etc"
/// are "/etc").
pub fn normalize_abs(p: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts
}

/// Directories of the host system itself: a secrets or backup directory there gets chmod 0700 by
/// tmpfiles at boot (or its files pruned), which breaks the machine.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/mnt",
    "/nix",
    "/nix/var",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/cache",
    "/var/empty",
    "/var/lib",
    "/var/log",
    "/var/spool",
    "/var/tmp",
    "/run/wrappers",
    "/etc/nixos",
];

/// The raft data directories (the unit's StateDirectory, for both engines): nothing of ours may live
/// in or over them.
pub const RAFT_DATA_DIRS: &[&str] = &["/var/lib/openbao", "/var/lib/vault"];

/// True when `a` (components) is `b` or lies under it.
fn is_within(a: &[&str], b: &[&str]) -> bool {
    a.starts_with(b)
}

/// True when check_host_path refuses `value` for what it is alone (then an overlap says nothing new).
fn host_path_refused(value: &str) -> bool {
    let parts = normalize_abs(value);
    let norm = format!("/{}", parts.join("/"));
    !value.starts_with('/')
        || is_in_nix_store(value)
        || SYSTEM_DIRS.contains(&norm.as_str())
        || RAFT_DATA_DIRS.iter().any(|d| is_within(&parts, &normalize_abs(d)) || is_within(&normalize_abs(d), &parts))
}

fn check_host_path(c: &mut Ctx<'_>, path: &[Seg<'_>], value: &str, what: &str) {
    if !value.starts_with('/') {
        c.err(
            path,
            format!("{what} {value:?} is not an absolute path"),
            "an absolute path on the hosts, e.g. /var/lib/vaultnix/secrets",
        );
    } else if is_in_nix_store(value) {
        c.err(
            path,
            format!("{what} {value:?} is in the Nix store, which is world-readable"),
            "a path outside /nix/store (agenix/sops-nix paths such as /run/agenix/...)",
        );
    } else {
        let parts = normalize_abs(value);
        let norm = format!("/{}", parts.join("/"));
        if SYSTEM_DIRS.contains(&norm.as_str()) {
            c.err(
                path,
                format!("{what} {value:?} is a system directory: systemd-tmpfiles would make it root-only (0700) at every boot"),
                "a directory of its own, e.g. /var/lib/vaultnix/secrets or /var/backups/vaultnix",
            );
        } else if let Some(d) = RAFT_DATA_DIRS.iter().find(|d| is_within(&parts, &normalize_abs(d))) {
            c.err(
                path,
                format!("{what} {value:?} is inside the raft data directory {d}"),
                "a directory outside /var/lib/openbao and /var/lib/vault (the servers' data)",
            );
        } else if let Some(d) = RAFT_DATA_DIRS.iter().find(|d| is_within(&normalize_abs(d), &parts)) {
            c.err(
                path,
                format!("{what} {value:?} contains the raft data directory {d}"),
                "a directory that does not hold /var/lib/openbao or /var/lib/vault",
            );
        }
    }
}

/// Two host directories of the spec that are the same or nested (the backup pruning the secrets, the
/// secrets mode applied to the backups).
fn check_host_dirs_disjoint(c: &mut Ctx<'_>, dirs: &[(Vec<Seg<'_>>, &str, &str)]) {
    for (j, (path, value, what)) in dirs.iter().enumerate() {
        if host_path_refused(value) {
            continue;
        }
        let a = normalize_abs(value);
        for (other_path, other, other_what) in dirs[..j].iter().filter(|(_, o, _)| !host_path_refused(o)) {
            let b = normalize_abs(other);
            if is_within(&a, &b) || is_within(&b, &a) {
                // At whichever of the two the spec spells out (the other may be a default).
                c.err_first(
                    &[path, other_path],
                    format!("{what} {value:?} overlaps {other_what} {other:?}"),
                    format!("a directory neither inside nor containing {other:?}"),
                );
            }
        }
    }
}

fn check_nodes(c: &mut Ctx<'_>, spec: &Spec) {
    if spec.nodes.is_empty() {
        c.err(&[K("cluster")], "the spec has no [[nodes]]", "at least one [[nodes]] table (3 or 5 voters for HA)");
        return;
    }
    if spec.nodes.len() > MAX_NODES {
        c.err(
            &[K("nodes"), I(MAX_NODES)],
            format!("{} nodes: vaultnix supports at most {MAX_NODES}", spec.nodes.len()),
            format!("at most {MAX_NODES} [[nodes]] (3 or 5 voters, plus non-voters for reads)"),
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addrs: HashMap<IpAddr, String> = HashMap::new();
    if let Some(a) = spec.load_balancer.address {
        addrs.insert(a, format!("load balancer {:?}", spec.load_balancer.name));
    }
    if let Some(a) = spec.load_balancer.overlay_address {
        addrs.insert(a, format!("load balancer {:?}", spec.load_balancer.name));
    }
    for (i, n) in spec.nodes.iter().enumerate() {
        if !is_dns_label(&n.name) {
            c.err(
                &[K("nodes"), I(i), K("name")],
                format!("invalid node name {:?}", n.name),
                "1-63 lowercase letters, digits and '-' (it becomes a DNS label and the raft node_id)",
            );
        }
        if n.name == spec.load_balancer.name {
            c.err(
                &[K("nodes"), I(i), K("name")],
                format!("node name {:?} is also the load balancer's name", n.name),
                "a name different from [load_balancer].name",
            );
        }
        let dns = format!("{}.{}", n.name, spec.cluster.domain);
        if n.name == spec.load_balancer.hostname || dns == spec.load_balancer.hostname {
            c.err(
                &[K("nodes"), I(i), K("name")],
                format!("node {:?} has the load balancer's hostname {:?}: clients would reach it directly, bypassing the active-node routing", n.name, spec.load_balancer.hostname),
                "a node name different from [load_balancer].hostname",
            );
        }
        if let Some(first) = names.insert(&n.name, i) {
            c.err(
                &[K("nodes"), I(i), K("name")],
                format!("duplicate node name {:?} (first used by node #{})", n.name, first + 1),
                "unique node names",
            );
        }
        for (key, addr) in [("address", n.address), ("overlay_address", n.overlay_address)] {
            if let Some(a) = addr {
                if let Some(other) = addrs.insert(a, format!("node {:?}", n.name)) {
                    c.err(
                        &[K("nodes"), I(i), K(key)],
                        format!("address {a} is used twice (also by {other})"),
                        "a unique address per node",
                    );
                }
                if a.is_unspecified() || a.is_multicast() {
                    c.err(
                        &[K("nodes"), I(i), K(key)],
                        format!("{a} is not a host address"),
                        "a unicast address the other nodes can dial",
                    );
                }
            }
        }
        let arch = node_arch(n);
        match (n.provider, arch) {
            (Provider::Linode | Provider::Digitalocean, Arch::Aarch64) => c.err(
                &[K("nodes"), I(i), K("arch")],
                format!("{} images are x86_64 only (no ARM instances, legacy BIOS boot)", n.provider.as_str()),
                "arch = \"x86_64\"",
            ),
            (Provider::Oracle, Arch::X86_64) => c.warn(
                &[K("nodes"), I(i), K("arch")],
                format!("node {:?}: Oracle's free tier is Ampere A1 (aarch64); x86_64 shapes are billed", n.name),
            ),
            _ => {}
        }
        if spec.overlay.kind == OverlayKind::None && n.address.is_none() {
            c.err(
                &[K("nodes"), I(i)],
                format!("node {:?} has no address and there is no overlay", n.name),
                "address = \"<IP the other nodes and the LB dial>\"",
            );
        }
        if spec.overlay.kind != OverlayKind::None && n.overlay_address.is_none() {
            c.err(
                &[K("nodes"), I(i)],
                format!("node {:?} has no overlay_address (the overlay is {})", n.name, spec.overlay.kind.as_str()),
                "overlay_address = \"<address inside the overlay subnet>\"",
            );
        }
        if spec.overlay.kind == OverlayKind::Wireguard && n.address.is_none() && n.provider != Provider::Onprem {
            c.warn(
                &[K("nodes"), I(i)],
                format!(
                    "node {:?} has no public address: WireGuard peers cannot dial it (it can still dial out)",
                    n.name
                ),
            );
        }
        if let Some(site) = &n.site {
            if site.is_empty() {
                c.err(&[K("nodes"), I(i), K("site")], "empty site label", "a short label such as \"home\" or \"fra1\"");
            }
        }
        if n.tailnet_name.is_some() && spec.overlay.kind != OverlayKind::Tailscale {
            c.err(
                &[K("nodes"), I(i), K("tailnet_name")],
                "tailnet_name is only used with the tailscale overlay",
                "remove it, or set [overlay] kind = \"tailscale\"",
            );
        }
    }

    let voters = spec.nodes.iter().filter(|n| n.voter).count();
    let q = Quorum::of(voters);
    if voters == 0 {
        c.err_first(
            &[&[K("nodes"), I(0), K("voter")], &[K("nodes")]],
            "no voting node: a raft cluster needs voters (every node has voter = false)",
            "at least 3 nodes with voter = true (the default)",
        );
    } else if voters == 1 && !spec.cluster.allow_single_node {
        let i = spec.nodes.iter().position(|n| n.voter).unwrap_or(0);
        c.err(
            &[K("nodes"), I(i), K("name")],
            format!("{:?} is the only voter: a 1-voter cluster tolerates no failure", spec.nodes[i].name),
            "3 or 5 voters, or [cluster] allow_single_node = true for a test cluster",
        );
    } else if voters % 2 == 0 {
        let fewer = Quorum::of(voters - 1);
        c.warn(
            &[K("nodes")],
            format!(
                "{voters} voters need {} for quorum and tolerate {} failure(s), as {} voters would: use an odd count",
                q.quorum, q.tolerates, fewer.voters
            ),
        );
    }
    if spec.cluster.engine == Engine::Vault {
        for (i, n) in spec.nodes.iter().enumerate().filter(|(_, n)| !n.voter) {
            c.err(
                &[K("nodes"), I(i), K("voter")],
                format!("node {:?}: non-voting raft nodes are a Vault Enterprise feature", n.name),
                "voter = true with engine = \"vault\" (or engine = \"openbao\")",
            );
        }
    }
    if voters > 7 {
        c.warn(&[K("nodes")], format!("{voters} voters: raft latency grows with voters; 5 is the usual maximum (add non-voters for read scaling)"));
    }
}

/// Raft quorum arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Quorum {
    pub voters: usize,
    pub quorum: usize,
    pub tolerates: usize,
}

impl Quorum {
    pub fn of(voters: usize) -> Quorum {
        let quorum = voters / 2 + 1;
        Quorum { voters, quorum, tolerates: voters.saturating_sub(quorum) }
    }
}

fn check_lb(c: &mut Ctx<'_>, spec: &Spec) {
    let lb = &spec.load_balancer;
    if !is_dns_label(&lb.name) {
        c.err(
            &[K("load_balancer"), K("name")],
            format!("invalid load balancer name {:?}", lb.name),
            "a DNS label such as \"vault-lb\"",
        );
    }
    if !is_dns_name(&lb.hostname) {
        c.err(
            &[K("load_balancer"), K("hostname")],
            format!("invalid hostname {:?}", lb.hostname),
            "a DNS name such as \"vault.example.com\"",
        );
    }
    if spec.overlay.kind != OverlayKind::None && lb.overlay_address.is_none() {
        c.err(
            &[K("load_balancer")],
            "the load balancer has no overlay_address, so it cannot reach the nodes over the overlay",
            "overlay_address = \"<address inside the overlay subnet>\"",
        );
    }
    if spec.overlay.kind == OverlayKind::None && lb.address.is_none() {
        c.err(&[K("load_balancer")], "the load balancer has no address", "address = \"<IP clients connect to>\"");
    }
    if let (Provider::Linode | Provider::Digitalocean, Some(Arch::Aarch64)) = (lb.provider, lb.arch) {
        c.err(
            &[K("load_balancer"), K("arch")],
            format!("{} images are x86_64 only", lb.provider.as_str()),
            "arch = \"x86_64\"",
        );
    }
    if lb.port == 0 || lb.stats_port == 0 || lb.port == lb.stats_port {
        let port_first = lb.port == 0;
        let (a, b) = if port_first { ("port", "stats_port") } else { ("stats_port", "port") };
        c.err_first(
            &[&[K("load_balancer"), K(a)], &[K("load_balancer"), K(b)], &[K("load_balancer")]],
            "load balancer ports must be non-zero and different",
            "port = 8200, stats_port = 8404",
        );
    }
    if lb.stats == crate::spec::StatsAccess::Overlay && spec.overlay.kind == OverlayKind::None {
        c.err(
            &[K("load_balancer"), K("stats")],
            "the stats page on the overlay needs an overlay (overlay.kind is \"none\")",
            "stats = \"loopback\"",
        );
    }
}

fn check_overlay(c: &mut Ctx<'_>, spec: &Spec) {
    let o = &spec.overlay;
    match o.kind {
        OverlayKind::Wireguard => {
            let Some(subnet) = o.subnet else {
                c.err(&[K("overlay")], "the wireguard overlay needs a subnet", "subnet = \"10.88.0.0/24\"");
                return;
            };
            if o.listen_port == 0 {
                c.err(&[K("overlay"), K("listen_port")], "listen_port 0", "a UDP port, e.g. 51820");
            }
            let lb = &spec.load_balancer;
            let members = spec
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (vec![K("nodes"), I(i), K("overlay_address")], n.name.clone(), n.overlay_address))
                .chain(std::iter::once((
                    vec![K("load_balancer"), K("overlay_address")],
                    lb.name.clone(),
                    lb.overlay_address,
                )));
            for (path, name, addr) in members {
                if let Some(a) = addr {
                    if !subnet.contains(&a) {
                        c.err(
                            &path,
                            format!("{name}: overlay address {a} is outside the overlay subnet {subnet}"),
                            format!("an address inside {subnet}"),
                        );
                    } else if let Some(which) = reserved_address(subnet, a) {
                        c.err(
                            &path,
                            format!("{name}: overlay address {a} is the {which} address of {subnet}"),
                            format!("a host address inside {subnet}"),
                        );
                    }
                }
            }
            // A public address inside the overlay subnet: the tunnel's endpoint would route into the
            // tunnel itself (the overlay subnet equal to the public network is this case too).
            let publics = spec
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (vec![K("nodes"), I(i), K("address")], n.name.clone(), n.address))
                .chain(std::iter::once((vec![K("load_balancer"), K("address")], lb.name.clone(), lb.address)));
            let mut unreachable: Vec<(Vec<Seg<'_>>, String)> = Vec::new();
            for (path, name, addr) in publics {
                match addr {
                    Some(a) if subnet.contains(&a) => c.err(
                        &path,
                        format!("{name}: public address {a} is inside the overlay subnet {subnet}"),
                        format!("an overlay subnet that does not overlap the public network (e.g. 10.88.0.0/24), or an address outside {subnet}"),
                    ),
                    Some(_) => {}
                    None => unreachable.push((path[..path.len() - 1].to_vec(), name)),
                }
            }
            // WireGuard needs one side of every pair to have an endpoint: two machines without a public
            // address can never exchange a handshake.
            if let [(_, first), rest @ ..] = unreachable.as_slice() {
                for (path, name) in rest {
                    c.err(
                        path,
                        format!("{name} and {first} both have no public address: WireGuard has no path between them"),
                        "address = \"<IP the other machines dial>\" on all but at most one machine",
                    );
                }
            }
            if o.auth_key_file.is_some() || o.tailnet.is_some() {
                c.err_first(
                    &[&[K("overlay"), K("auth_key_file")], &[K("overlay"), K("tailnet")]],
                    "auth_key_file/tailnet are tailscale settings",
                    "remove them, or set kind = \"tailscale\"",
                );
            }
        }
        OverlayKind::Tailscale => {
            match &o.auth_key_file {
                None => c.err(
                    &[K("overlay")],
                    "the tailscale overlay needs auth_key_file",
                    "auth_key_file = \"/run/secrets/tailscale-authkey\" (a path on the hosts, never in the store)",
                ),
                Some(p) => check_host_path(c, &[K("overlay"), K("auth_key_file")], p, "auth_key_file"),
            }
            if let Some(t) = &o.tailnet {
                if !is_dns_name(t) {
                    c.err(
                        &[K("overlay"), K("tailnet")],
                        format!("invalid tailnet {t:?}"),
                        "the tailnet DNS suffix, e.g. \"tail1234.ts.net\"",
                    );
                }
            }
            if let Some(subnet) = o.subnet {
                for (i, n) in spec.nodes.iter().enumerate() {
                    if let Some(a) = n.overlay_address {
                        if !subnet.contains(&a) {
                            c.err(
                                &[K("nodes"), I(i), K("overlay_address")],
                                format!("{}: overlay address {a} is outside {subnet}", n.name),
                                format!("an address inside {subnet} (tailscale uses 100.64.0.0/10)"),
                            );
                        }
                    }
                }
            }
        }
        OverlayKind::None => {
            if o.subnet.is_some() || o.auth_key_file.is_some() {
                c.err_first(
                    &[&[K("overlay"), K("subnet")], &[K("overlay"), K("auth_key_file")], &[K("overlay"), K("kind")]],
                    "overlay settings given but kind = \"none\"",
                    "kind = \"wireguard\" or \"tailscale\", or remove the settings",
                );
            }
        }
    }
    if let Some(i) = &o.interface {
        if i.is_empty() || i.len() > 15 || !i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            c.err(
                &[K("overlay"), K("interface")],
                format!("invalid interface name {i:?}"),
                "at most 15 letters, digits, '-' or '_', e.g. \"wg0\"",
            );
        }
    }
}

/// "network" or "broadcast" when `a` is one of the two addresses of `subnet` no host may use (/31 and
/// /32 have none).
fn reserved_address(subnet: ipnet::IpNet, a: IpAddr) -> Option<&'static str> {
    if subnet.prefix_len() + 1 >= subnet.max_prefix_len() {
        None
    } else if a == subnet.network() {
        Some("network")
    } else if a == subnet.broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

fn check_unseal(c: &mut Ctx<'_>, spec: &Spec, spec_dir: &Path) {
    let u = &spec.unseal;
    if u.shares == 0 || u.threshold == 0 {
        c.err(
            &[K("unseal"), K(if u.shares == 0 { "shares" } else { "threshold" })],
            "shares and threshold must be at least 1",
            "e.g. shares = 5, threshold = 3",
        );
    } else if u.threshold > u.shares {
        c.err(
            &[K("unseal"), K("threshold")],
            format!("threshold {} is larger than shares {}", u.threshold, u.shares),
            format!("a threshold of at most {}", u.shares),
        );
    } else if u.threshold == 1 && u.shares > 1 {
        c.warn(&[K("unseal"), K("threshold")], "threshold 1: any single key holder can unseal alone");
    }
    if !u.pgp_keys.is_empty() && u.pgp_keys.len() != u.shares as usize {
        c.err(
            &[K("unseal"), K("pgp_keys")],
            format!("{} PGP keys for {} shares", u.pgp_keys.len(), u.shares),
            format!("exactly {} PGP public key files, one per share", u.shares),
        );
    }
    let mut seen: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, k) in u.pgp_keys.iter().enumerate() {
        check_key_file(c, &[K("unseal"), K("pgp_keys"), I(i)], spec_dir, k);
        // The same key for two shares: its holder holds both (and could reach the threshold alone).
        let key = super::read_regular_bounded(&spec_dir.join(k), 1 << 20)
            .ok()
            .and_then(|b| crate::spec::pgp::pgp_key_base64(&b).ok())
            .map(String::into_bytes);
        if let Some(key) = key {
            if let Some((j, _)) = seen.iter().find(|(_, b)| *b == key) {
                c.err(
                    &[K("unseal"), K("pgp_keys"), I(i)],
                    format!("pgp_keys[{i}] is the same key as pgp_keys[{j}]: one holder would get two shares"),
                    "one key per share holder, each a different person",
                );
            } else {
                seen.push((i, key));
            }
        }
    }
    if let Some(k) = &u.root_token_pgp_key {
        check_key_file(c, &[K("unseal"), K("root_token_pgp_key")], spec_dir, k);
    }
    let required: &[&str] = match u.kind {
        SealKind::Shamir | SealKind::Static => &[],
        SealKind::Awskms => &["kms_key_id"],
        SealKind::Gcpckms => &["project", "region", "key_ring", "crypto_key"],
        SealKind::Azurekeyvault => &["tenant_id", "vault_name", "key_name"],
        SealKind::Ocikms => &["key_id", "crypto_endpoint", "management_endpoint"],
        SealKind::Transit => &["address", "key_name", "mount_path"],
    };
    if matches!(u.kind, SealKind::Shamir | SealKind::Static) && !u.params.is_empty() {
        c.err(
            &[K("unseal"), K("params")],
            format!("the {} seal takes no params", u.kind.as_str()),
            "remove [unseal.params]",
        );
    }
    for r in required {
        if !u.params.contains_key(*r) {
            c.err(
                &[K("unseal"), K("params")],
                format!("the {} seal needs params.{r}", u.kind.as_str()),
                format!("[unseal.params] with {}", required.join(", ")),
            );
        }
    }
    if let Some(f) = &u.environment_file {
        check_host_path(c, &[K("unseal"), K("environment_file")], f, "environment_file");
    }
    for (k, v) in &u.params {
        if is_credential_param(k) {
            c.err(&[K("unseal"), K("params"), K(k)], format!("params.{k} would put a credential into the generated server config (and the Nix store); give it to the server through unseal.environment_file"), "unseal.environment_file = \"/run/secrets/seal.env\": a root-only file on the hosts with the credentials as environment variables (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, VAULT_TOKEN, …), passed to the server as systemd EnvironmentFile, never read by generate, never in the store; or an instance role");
        }
        if v.is_table() || v.is_array() {
            c.err(
                &[K("unseal"), K("params"), K(k)],
                format!("params.{k} is not a string, number or boolean"),
                "a scalar value",
            );
        }
    }
    if u.kind == SealKind::Static && spec.cluster.engine == Engine::Vault {
        c.err(
            &[K("unseal"), K("kind")],
            "the static seal is OpenBao-only",
            "engine = \"openbao\", or another seal kind",
        );
    }
    if u.kind.is_cloud_kms() && spec.cluster.engine == Engine::Openbao {
        if let Some(v) = parse_version(&spec.cluster.version) {
            if v >= (2, 7, 0) && (u.plugin_command.is_none() || u.plugin_sha256.is_none()) {
                c.err(&[K("unseal"), K("kind")], format!("OpenBao {} no longer has a built-in {} seal: it is a KMS plugin since 2.7", spec.cluster.version, u.kind.as_str()),
                    "plugin_command = \"openbao-plugin-kms-…\" and plugin_sha256 = \"<sha256 of the plugin binary>\" (or version = \"2.6.2\")");
            }
        }
    }
    // A plugin directory may be in the store (plugins are public binaries); elsewhere it is a host
    // directory like the others.
    if !is_in_nix_store(&u.plugin_directory) {
        check_host_path(c, &[K("unseal"), K("plugin_directory")], &u.plugin_directory, "plugin_directory");
    }
    if u.self_init {
        check_self_init(c, spec);
    }
    if let Some(cmd) = &u.plugin_command {
        if cmd.is_empty() || cmd.contains('/') || cmd == "." || cmd == ".." || cmd.contains(char::is_whitespace) {
            c.err(
                &[K("unseal"), K("plugin_command")],
                format!("plugin_command {cmd:?} is not a file name: the plugin is looked up inside plugin_directory"),
                "the plugin binary's file name, e.g. \"openbao-plugin-kms-aws\" (no '/', no '..', no arguments)",
            );
        }
    }
    if let Some(s) = &u.plugin_sha256 {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            c.err(
                &[K("unseal"), K("plugin_sha256")],
                "plugin_sha256 is not a sha256 hex digest",
                "64 hexadecimal characters",
            );
        }
    }
}

/// Self-initialization revokes its root token and returns no recovery keys: it is only safe where the
/// seal unseals by itself, the engine knows the `initialize` stanza, and exactly one node runs it.
fn check_self_init(c: &mut Ctx<'_>, spec: &Spec) {
    let u = &spec.unseal;
    if u.kind == SealKind::Shamir {
        c.err_first(
            &[&[K("unseal"), K("kind")], &[K("unseal"), K("self_init")]],
            "self_init needs an auto-unseal seal: a self-initialized Shamir cluster would have no unseal keys",
            "kind = \"static\", a cloud KMS kind or \"transit\" (or remove self_init)",
        );
    }
    if spec.cluster.engine != Engine::Openbao {
        c.err(
            &[K("unseal"), K("self_init")],
            format!("self_init is OpenBao-only (the engine is {})", spec.cluster.engine.as_str()),
            "engine = \"openbao\", or remove self_init",
        );
    } else if parse_version(&spec.cluster.version).is_some_and(|v| v < (2, 4, 0)) {
        c.err(
            &[K("unseal"), K("self_init")],
            format!("OpenBao {} has no self-initialization (the initialize stanza came in 2.4)", spec.cluster.version),
            "version = \"2.4.0\" or newer",
        );
    }
    let has_boot = match &spec.cluster.bootstrap_node {
        Some(b) => spec.nodes.iter().any(|n| &n.name == b && n.voter),
        None => spec.nodes.iter().any(|n| n.voter),
    };
    if !has_boot {
        c.err(
            &[K("unseal"), K("self_init")],
            "self_init needs a bootstrap node (the one voter that initializes itself), and there is none",
            "a voting node, named by [cluster] bootstrap_node or the first voter",
        );
    }
}

fn check_key_file(c: &mut Ctx<'_>, path: &[Seg<'_>], spec_dir: &Path, file: &str) {
    let p = spec_dir.join(file);
    // Binary keys (`gpg --export`) are not UTF-8: read bytes.
    // A key is a few KiB; 1 MiB bounds a wrong file (`/dev/zero` is refused as a device).
    const MAX_KEY_BYTES: u64 = 1 << 20;
    match super::read_regular_bounded(&p, MAX_KEY_BYTES) {
        Ok(b) if b.len() as u64 > MAX_KEY_BYTES => {
            c.err(path, format!("PGP key {} is larger than 1 MiB", p.display()), "a PGP public key file (a few KiB)")
        }
        Err(e) => c.err(
            path,
            format!("cannot read PGP key {}: {e}", p.display()),
            "a readable PGP public key file (armored or binary, base64)",
        ),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            // Armored private key, or a binary secret-key packet (tag 5, old or new format).
            if text.contains("PRIVATE KEY BLOCK") || matches!(bytes.first(), Some(0x94..=0x97) | Some(0xc5)) {
                c.err(
                    path,
                    format!("{} is a PGP *private* key", p.display()),
                    "the public key only (gpg --export --armor)",
                );
            } else if let Some(why) = pgp_public_key_problem(&bytes) {
                c.err(path, format!("PGP key {}: {why}", p.display()), "a PGP public key with an encryption subkey (gpg --export KEYID, armored or binary, or base64 of the binary)");
            }
        }
    }
}

/// The OpenPGP packets of a binary key (RFC 9580 §4.2): `(tag, body)`.
fn pgp_packets(mut b: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while let Some(&h) = b.first() {
        if h & 0x80 == 0 {
            return None;
        }
        let (tag, len, hl): (u8, usize, usize) = if h & 0x40 != 0 {
            let o1 = *b.get(1)? as usize;
            match o1 {
                0..=191 => (h & 0x3f, o1, 2),
                192..=223 => (h & 0x3f, ((o1 - 192) << 8) + *b.get(2)? as usize + 192, 3),
                255 => (h & 0x3f, u32::from_be_bytes(b.get(2..6)?.try_into().ok()?) as usize, 6),
                _ => return None, // partial lengths: not used in keys
            }
        } else {
            let tag = (h >> 2) & 0x0f;
            match h & 3 {
                0 => (tag, *b.get(1)? as usize, 2),
                1 => (tag, u16::from_be_bytes(b.get(1..3)?.try_into().ok()?) as usize, 3),
                2 => (tag, u32::from_be_bytes(b.get(1..5)?.try_into().ok()?) as usize, 5),
                _ => return None,
            }
        };
        let body = b.get(hl..hl.checked_add(len)?)?;
        out.push((tag, body));
        b = &b[hl + len..];
    }
    Some(out)
}

/// Why a key file is not a PGP public key bao can encrypt a share to, if it is not. Read like bao
/// reads it (crate::spec::pgp::pgp_key_base64: armored, binary, or base64 of the binary).
pub fn pgp_public_key_problem(raw: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let b64 = match crate::spec::pgp::pgp_key_base64(raw) {
        Ok(b) => b,
        Err(e) => return Some(format!("{e:#}")),
    };
    let Ok(bin) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return Some("not a PGP key (neither armored, binary nor base64)".into());
    };
    let Some(packets) = pgp_packets(&bin).filter(|p| !p.is_empty()) else {
        return Some("not a PGP key (no OpenPGP packets: a wrong file?)".into());
    };
    if packets.iter().any(|(t, _)| *t == 5 || *t == 7) {
        return Some("this is a PGP *private* key".into());
    }
    if packets[0].0 != 6 {
        return Some("not a PGP public key (it does not start with a public-key packet)".into());
    }
    // Public-key algorithm: after version and creation time (v4/v6), or also a validity (v3).
    let algo = |body: &[u8]| match body.first() {
        Some(3) => body.get(7).copied(),
        Some(_) => body.get(5).copied(),
        None => None,
    };
    // RSA, RSA encrypt-only, Elgamal, ECDH, X25519, X448 can encrypt.
    let encrypts = packets
        .iter()
        .filter(|(t, _)| *t == 6 || *t == 14)
        .any(|(_, b)| matches!(algo(b), Some(1 | 2 | 16 | 18 | 25 | 26)));
    if !encrypts {
        return Some("the key can only sign (no encryption subkey): a share cannot be encrypted to it".into());
    }
    None
}

fn check_raft(c: &mut Ctx<'_>, spec: &Spec) {
    let r = &spec.raft;
    if let Some(m) = r.performance_multiplier {
        if !(1..=10).contains(&m) {
            c.err(
                &[K("raft"), K("performance_multiplier")],
                format!("performance_multiplier {m} is out of range"),
                "1 (fastest failover, LAN) to 10",
            );
        }
        if m == 1 && effective_network(spec) == Network::Wan {
            c.warn(&[K("raft"), K("performance_multiplier")], "multiplier 1 with voters on several sites: any stall of the WAN link longer than ~0.5 s starts an election (measured on the hosts lab; latency, jitter and 1 % loss alone do not); 3 rides out 1.5 s (see docs/failover.md, \"The WAN default\")");
        }
    }
    let a = &r.autopilot;
    for (key, v, min) in [
        ("dead_server_last_contact_threshold", &a.dead_server_last_contact_threshold, 60u64),
        ("last_contact_threshold", &a.last_contact_threshold, 1),
        ("server_stabilization_time", &a.server_stabilization_time, 1),
    ] {
        match parse_duration(v) {
            None => c.err(
                &[K("raft"), K("autopilot"), K(key)],
                format!("invalid duration {v:?}"),
                "a duration such as \"10s\", \"5m\" or \"1h\"",
            ),
            Some(s) if s < min => c.err(
                &[K("raft"), K("autopilot"), K(key)],
                format!("{key} {v:?} is below the minimum"),
                format!("at least {min}s"),
            ),
            _ => {}
        }
    }
    let voters = spec.nodes.iter().filter(|n| n.voter).count();
    if let Some(mq) = a.min_quorum {
        if (mq as usize) > voters {
            c.err(
                &[K("raft"), K("autopilot"), K("min_quorum")],
                format!("min_quorum {mq} is larger than the {voters} voters"),
                format!("at most {voters}"),
            );
        }
        if (mq as usize) < Quorum::of(voters).quorum {
            c.err(
                &[K("raft"), K("autopilot"), K("min_quorum")],
                format!("min_quorum {mq} would let dead-server cleanup shrink the cluster below quorum"),
                format!("at least {}", Quorum::of(voters).quorum),
            );
        }
    }
}

/// LAN or WAN between voters: the spec's word, else WAN when voters sit on more than one site.
pub fn effective_network(spec: &Spec) -> Network {
    if let Some(n) = spec.raft.network {
        return n;
    }
    let mut sites: Vec<String> = spec
        .nodes
        .iter()
        .filter(|n| n.voter)
        .map(|n| n.site.clone().unwrap_or_else(|| n.provider.as_str().to_string()))
        .collect();
    sites.sort();
    sites.dedup();
    if sites.len() > 1 {
        Network::Wan
    } else {
        Network::Lan
    }
}

/// Certificates cannot end after 9999-12-31 (X.509 GeneralizedTime); a century is plenty.
pub const MAX_VALIDITY_DAYS: u32 = 36_500;

fn check_tls(c: &mut Ctx<'_>, spec: &Spec) {
    let t = &spec.tls;
    for (key, days) in [("ca_validity_days", t.ca_validity_days), ("node_validity_days", t.node_validity_days)] {
        if days == 0 {
            c.err(
                &[K("tls"), K(key)],
                format!("{key} is 0: the certificate would already be expired"),
                "a positive number of days",
            );
        }
    }
    if t.ca_validity_days > MAX_VALIDITY_DAYS {
        c.err(
            &[K("tls"), K("ca_validity_days")],
            format!("ca_validity_days {} is more than {MAX_VALIDITY_DAYS} days (100 years)", t.ca_validity_days),
            "a CA lifetime such as 3650 days; rotate the CA rather than make it eternal",
        );
    }
    if t.node_validity_days > t.ca_validity_days {
        c.err(
            &[K("tls"), K("node_validity_days")],
            format!(
                "node certificates ({} days) would outlive the CA ({} days)",
                t.node_validity_days, t.ca_validity_days
            ),
            format!("at most {} days", t.ca_validity_days),
        );
    }
    if t.renew_within_days >= t.node_validity_days {
        c.err(
            &[K("tls"), K("renew_within_days")],
            "renew_within_days is not shorter than the node certificate validity: every run would reissue",
            format!("fewer than {} days", t.node_validity_days),
        );
    }
    if t.min_version != "tls12" && t.min_version != "tls13" {
        c.err(
            &[K("tls"), K("min_version")],
            format!("unsupported min_version {:?}", t.min_version),
            "\"tls12\" or \"tls13\"",
        );
    }
}

fn check_backup(c: &mut Ctx<'_>, spec: &Spec) {
    let b = &spec.backup;
    if !b.enabled {
        return;
    }
    if b.retention_days == 0 {
        c.err(&[K("backup"), K("retention_days")], "retention_days 0 would delete every snapshot", "at least 1");
    }
    if let Some(why) = super::calendar::problem(&b.schedule) {
        let message = match super::calendar::suggestion(&b.schedule) {
            Some(k) => format!("schedule {:?} is not a systemd calendar event (did you mean {k:?}?)", b.schedule),
            None => format!("schedule {:?} is not a systemd calendar event: {why}", b.schedule),
        };
        c.err(
            &[K("backup"), K("schedule")],
            message,
            "a systemd OnCalendar expression: daily, hourly, weekly, ... or \"[Mon..Fri] *-*-* 03:00:00\"",
        );
    }
    check_host_path(c, &[K("backup"), K("destination")], &b.destination, "destination");
    if let Some(r) = &b.restic {
        check_restic(c, spec, r);
    }
}

/// Repository locations restic understands (besides an absolute path).
const RESTIC_SCHEMES: &[&str] = &["rest:", "sftp:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:"];

fn check_restic(c: &mut Ctx<'_>, spec: &Spec, r: &Restic) {
    let at = |k: &'static str| [K("backup"), K("restic"), K(k)];
    let repo = r.repository.trim();
    if repo != r.repository || repo.is_empty() {
        c.err(
            &at("repository"),
            format!("repository {:?} is empty or has surrounding spaces", r.repository),
            "a restic repository such as \"rest:https://backup.example:8000/vault\"",
        );
    } else if repo.starts_with('/') {
        if is_in_nix_store(repo) {
            c.err(
                &at("repository"),
                format!("repository {repo:?} is in the Nix store"),
                "a path outside /nix/store (another disk or a mount)",
            );
        }
    } else if let Some(scheme) = RESTIC_SCHEMES.iter().find(|s| repo.starts_with(**s)) {
        let rest = &repo[scheme.len()..];
        if rest.is_empty() {
            c.err(
                &at("repository"),
                format!("repository {repo:?} names no location after {scheme:?}"),
                "e.g. \"rest:https://backup.example:8000/vault\"",
            );
        }
        // A password inside the URL would reach the world-readable store with backup.json.
        if let Some(auth) = rest.split_once("://").map(|(_, r)| r.split('/').next().unwrap_or_default()) {
            if auth.split_once('@').is_some_and(|(u, _)| u.contains(':')) {
                c.err(&at("repository"), format!("repository {repo:?} carries a password in its URL: it would be in the Nix store"), "a URL without user:password@ (restic reads RESTIC_REST_PASSWORD and the like from environment_file)");
            }
        }
    } else {
        c.err(
            &at("repository"),
            format!("repository {repo:?} is neither an absolute path nor a restic location"),
            "an absolute path or one of rest:, sftp:, s3:, b2:, azure:, gs:, swift:, rclone:",
        );
    }
    check_host_path(c, &at("password_file"), &r.password_file, "password_file");
    if let Some(e) = &r.environment_file {
        check_host_path(c, &at("environment_file"), e, "environment_file");
    }
    if r.keep_hourly == 0 && r.keep_daily == 0 && r.keep_weekly == 0 && r.keep_monthly == 0 {
        c.err_first(
            &[
                &at("keep_daily"),
                &at("keep_hourly"),
                &at("keep_weekly"),
                &at("keep_monthly"),
                &[K("backup"), K("restic")],
            ],
            "keep_hourly, keep_daily, keep_weekly and keep_monthly are all 0: `restic forget` would remove every copy",
            "at least one above 0 (keep_daily = 30 keeps 30 days, like retention_days)",
        );
    }
    if let Some(h) = &r.rehearse_on {
        if h != &spec.load_balancer.name && !spec.nodes.iter().any(|n| &n.name == h) {
            c.err(
                &at("rehearse_on"),
                format!("rehearse_on {h:?} is neither the load balancer nor a node"),
                format!("{:?} or a node name", spec.load_balancer.name),
            );
        }
    }
    if r.rehearse_max_age_hours == 0 {
        c.err(&at("rehearse_max_age_hours"), "rehearse_max_age_hours 0", "hours, e.g. 50 for a daily rehearsal");
    }
    let rehearsal = !r.rehearse_schedule.trim().is_empty();
    if rehearsal {
        if let Some(why) = super::calendar::problem(&r.rehearse_schedule) {
            let message = match super::calendar::suggestion(&r.rehearse_schedule) {
                Some(k) => format!(
                    "rehearse_schedule {:?} is not a systemd calendar event (did you mean {k:?}?)",
                    r.rehearse_schedule
                ),
                None => format!("rehearse_schedule {:?} is not a systemd calendar event: {why}", r.rehearse_schedule),
            };
            c.err(&at("rehearse_schedule"), message, "a systemd OnCalendar expression, or \"\" (no rehearsal)");
        }
    }
    if rehearsal && !matches!(spec.unseal.kind, SealKind::Shamir | SealKind::Static) {
        c.err_first(
            &[&at("rehearse_schedule"), &[K("backup"), K("restic")]],
            format!("the restore rehearsal cannot unseal a throwaway server with a {} seal", spec.unseal.kind.as_str()),
            "a shamir or static seal, or rehearse_schedule = \"\" (no rehearsal)",
        );
    }
}

fn check_monitoring(c: &mut Ctx<'_>, spec: &Spec) {
    let m = &spec.monitoring;
    if m.backup_max_age_hours == 0 {
        c.err(
            &[K("monitoring"), K("backup_max_age_hours")],
            "backup_max_age_hours 0",
            "hours, e.g. 26 for a daily backup",
        );
    }
    if parse_duration(&m.alert_for).is_none() {
        c.err(
            &[K("monitoring"), K("alert_for")],
            format!("invalid duration {:?}", m.alert_for),
            "a Prometheus duration such as \"2m\"",
        );
    }
    if !m.enabled || !spec.backup.enabled {
        return;
    }
    let b = &spec.backup;
    check_staleness(
        c,
        Staleness {
            what: "backup",
            alert: "VaultnixBackupStale",
            max_age: (&[K("monitoring"), K("backup_max_age_hours")], m.backup_max_age_hours),
            schedule: (&[K("backup"), K("schedule")], &b.schedule),
            delay: u64::from(b.randomized_delay_seconds),
            run: BACKUP_TIMEOUT_SECONDS,
        },
    );
    if let Some(r) = b.restic.as_ref().filter(|r| !r.rehearse_schedule.trim().is_empty()) {
        check_staleness(
            c,
            Staleness {
                what: "restore rehearsal",
                alert: "VaultnixRestoreRehearsalStale",
                max_age: (&[K("backup"), K("restic"), K("rehearse_max_age_hours")], r.rehearse_max_age_hours),
                schedule: (&[K("backup"), K("restic"), K("rehearse_schedule")], &r.rehearse_schedule),
                delay: REHEARSAL_RANDOMIZED_DELAY_SECONDS,
                run: REHEARSAL_TIMEOUT_SECONDS,
            },
        );
    }
}

/// A staleness alert and the timer whose successes reset it.
struct Staleness<'a> {
    what: &'static str,
    alert: &'static str,
    max_age: (&'a [Seg<'a>], u32),
    schedule: (&'a [Seg<'a>], &'a str),
    /// The timer's RandomizedDelaySec, seconds.
    delay: u64,
    /// How long one run may take, seconds.
    run: u64,
}

/// A healthy cluster never fires the alert: on a schedule's longest gap between two elapses (a
/// weekday list's weekend, a month's end), plus the timer's random delay and one run, the last success
/// is still younger than the alert's threshold. A schedule that names years stops, and then the alert
/// would fire for good.
fn check_staleness(c: &mut Ctx<'_>, s: Staleness<'_>) {
    let (age_at, hours) = s.max_age;
    let (schedule_at, schedule) = s.schedule;
    if hours == 0 {
        return; // reported on its own
    }
    let Ok(event) = super::calendar::parse(schedule) else { return }; // reported on its own
    let Some(gap) = event.longest_gap() else {
        // 2000-01-01: an event that elapses on no day of a whole 400-year cycle never elapses.
        let (why, then) = match event.next_after(946_684_800) {
            None => ("never elapses", "never run"),
            Some(_) => ("stops (it names years)", "stop"),
        };
        c.err(
            schedule_at,
            format!("schedule {schedule:?} {why}: the {} would {then} and {} fire for good", s.what, s.alert),
            "a repeating calendar event without a year, e.g. \"daily\" or \"*-*-* 03:00:00\"",
        );
        return;
    };
    let need = gap + s.delay + s.run;
    if u64::from(hours) * 3600 < need {
        let h = |secs: u64| {
            if secs % 3600 == 0 {
                format!("{} h", secs / 3600)
            } else if secs % 60 == 0 {
                format!("{} min", secs / 60)
            } else {
                format!("{secs} s")
            }
        };
        c.err_first(
            &[age_at, schedule_at],
            format!(
                "{hours} hours is less than the longest wait for the next successful {what} on schedule {schedule:?}: \
                 {gap} between two elapses + {delay} random delay + {run} for the run; {alert} would fire on a healthy cluster",
                what = s.what,
                gap = h(gap),
                delay = h(s.delay),
                run = h(s.run),
                alert = s.alert,
            ),
            format!("at least {} (hours), or a more frequent schedule", need.div_ceil(3600)),
        );
    }
}

/// Seal parameters that carry a credential (the server JSON reaches the world-readable store): the
/// known names of every seal kind (AWS access_key/secret_key/session_token, Azure client_secret, GCP
/// credentials, transit token, PKCS#11 pin, …) and anything named like a secret. Paths to files
/// (`*_file`, `*_path`, e.g. transit's tls_client_key is a path too) are not credentials.
fn is_credential_param(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    const EXACT: &[&str] =
        &["access_key", "credentials", "token", "pin", "client_secret", "secret_key", "session_token"];
    if EXACT.contains(&k.as_str()) {
        return true;
    }
    if k.ends_with("_file") || k.ends_with("_path") || k == "tls_client_key" {
        return false;
    }
    ["secret", "token", "password", "passphrase", "credential"].iter().any(|w| k.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_math() {
        assert_eq!(Quorum::of(3), Quorum { voters: 3, quorum: 2, tolerates: 1 });
        assert_eq!(Quorum::of(5), Quorum { voters: 5, quorum: 3, tolerates: 2 });
        assert_eq!(Quorum::of(4), Quorum { voters: 4, quorum: 3, tolerates: 1 });
        assert_eq!(Quorum::of(1), Quorum { voters: 1, quorum: 1, tolerates: 0 });
        assert_eq!(Quorum::of(7).tolerates, 3);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(10));
        assert_eq!(parse_duration("1m30s"), Some(90));
        assert_eq!(parse_duration("2h"), Some(7200));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn store_paths_are_recognised_however_spelled() {
        for p in ["/nix/store", "/nix/store/x", "/nix//store/x", "/./nix/./store", "/var/../nix/store/k", "//nix/store"]
        {
            assert!(is_in_nix_store(p), "{p}");
        }
        for p in ["/nix", "/nix/var/store", "/nix/storex", "/var/lib/vaultnix/secrets", "/run/agenix/x"] {
            assert!(!is_in_nix_store(p), "{p}");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("vault-1"));
        assert!(!is_dns_label("Vault"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(""));
        assert!(is_dns_name("vault.example.com"));
        assert!(!is_dns_name("vault..com"));
    }
}

#[cfg(test)]
mod ssh_key_tests {
    use super::ssh_public_key_problem as p;

    #[test]
    fn openssh_public_keys_are_checked_like_sshd_does() {
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGsJKmNrHyFKVs1u0G3VX9fx+p8iK9jYHs7a7JYF2Qdu admin@example";
        assert_eq!(p(good), None);
        assert_eq!(p(good.trim_end_matches(" admin@example")), None, "the comment is optional");
        assert!(p("ssh-ed25519").unwrap().contains("expected"));
        assert!(p("ssh-dss AAAAB3NzaC1kc3M= x").unwrap().contains("unknown key type"));
        assert!(p("ssh-ed25519 not*base64 x").unwrap().contains("base64"));
        // An RSA blob declared as ed25519.
        assert!(p("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB x").unwrap().contains("not a ssh-ed25519 key"));
        // The header is spelled in two pieces so the repository holds no private-key header.
        let private = concat!("-----BEGIN OPENSSH PRIVATE", " KEY----- b3BlbnNzaC1rZXktdjE=");
        assert!(p(private).unwrap().contains("private key"));
        assert!(p(&format!("{good}\nssh-rsa AAAA")).unwrap().contains("one line"));
    }
}

#[cfg(test)]
mod host_path_tests {
    use super::*;

    #[test]
    fn system_and_raft_directories_are_refused_however_spelled() {
        for p in [
            "/",
            "/etc",
            "/etc/",
            "//tmp",
            "/var/lib",
            "/var/lib/openbao",
            "/var/lib/vault/x",
            "/var/lib/../tmp",
            "/var",
        ] {
            assert!(host_path_refused(p), "{p}");
        }
        for p in ["/var/lib/vaultnix/secrets", "/var/backups/vaultnix", "/run/agenix", "/var/lib/openbao-plugins"] {
            assert!(!host_path_refused(p), "{p}");
        }
    }
}
