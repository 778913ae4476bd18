//! The OpenBao/Vault server configuration, rendered once as JSON (both engines read JSON natively).
//! The NixOS module deploys this JSON unchanged and `vaultnix lab` runs it: one source of truth.

use super::layout::Layout;
use crate::plan::{sock, NodePlan, Plan};
use crate::spec::{Engine, SealKind};
use serde_json::{json, Map, Value};

/// OpenBao versions that introduced what the server config uses (validate-config of 2.6.2 rejects
/// `tls_auto_reload_interval` as unknown; 2.7.2 accepts it).
pub const DECLARED_AUDIT: (u32, u32, u32) = (2, 4, 0);
pub const METRICS_ONLY_LISTENER: (u32, u32, u32) = (2, 5, 0);
pub const TLS_AUTO_RELOAD: (u32, u32, u32) = (2, 7, 0);
pub const SELF_INIT: (u32, u32, u32) = (2, 4, 0);

/// The policy the operator certificate logs in with on a self-initialized cluster: everything, including
/// the sudo paths (sys/*, raft snapshots, step-down, audit, policies), because no root token exists.
pub const SELF_INIT_ADMIN_POLICY: &str = r#"# vaultnix-admin: full control of a self-initialized cluster (there is no root token).
path "*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo"]
}
"#;
pub const SELF_INIT_POLICY: &str = "vaultnix-admin";
/// Tokens from the certificate login are short-lived: the certificate is the long-lived credential.
pub const SELF_INIT_TOKEN_TTL: &str = "1h";

/// What the rendering left out or chose because of the engine and its version, for the summary.
pub fn version_notes(plan: &Plan) -> Vec<String> {
    let v = &plan.version_string;
    let mut notes = Vec::new();
    if plan.engine == Engine::Vault {
        notes
            .push(format!("Vault {v}: audit devices are not declared in the server config (enable them over the API)"));
        return notes;
    }
    let kind = plan.seal.kind;
    match &plan.seal.plugin {
        Some(p) => notes.push(format!("{} seal: rendered as an external KMS plugin ({})", kind.as_str(), p.command)),
        None if kind.is_cloud_kms() => notes.push(format!(
            "{} seal: rendered as OpenBao {v}'s built-in seal; OpenBao 2.7 removed it (set unseal.plugin_command and plugin_sha256 before upgrading)",
            kind.as_str()
        )),
        None => {}
    }
    if !plan.openbao_at_least(METRICS_ONLY_LISTENER) {
        notes.push(format!(
            "OpenBao {v}: no metrics_only listener (2.5+); Prometheus needs a token for /v1/sys/metrics"
        ));
    }
    if plan.seal.self_init {
        notes.push(format!(
            "self_init: {} initializes itself on first start (initialize stanza); no root token, no recovery keys: the operator certificate flake/pki/admin.crt + secrets/admin.key is the way in",
            plan.bootstrap_node
        ));
    }
    if !plan.openbao_at_least(TLS_AUTO_RELOAD) {
        notes.push(format!("OpenBao {v}: no tls_auto_reload_interval (2.7+); send SIGHUP after renewing certificates"));
    }
    notes
}

/// What a server configuration depends on beyond the plan: state recorded in the output directory
/// (key ids of the static seal). `Default` is a fresh tree.
#[derive(Debug, Clone, Default)]
pub struct ServerState {
    /// The static seal's key ids; None: the initial `<cluster>-1`, no previous key.
    pub seal_ids: Option<crate::secrets::SealKeyIds>,
    /// The tree records the cluster as initialized (manifest.json `initialized`): no `initialize`
    /// stanza any more, so a bootstrap node that comes back with empty storage joins the cluster
    /// (retry_join) instead of initializing a second one.
    pub initialized: bool,
}

impl ServerState {
    pub fn from_material(m: &crate::secrets::Material) -> ServerState {
        ServerState { seal_ids: m.seal_ids.clone(), initialized: false }
    }
}

pub fn render_server_config(plan: &Plan, node: &NodePlan, layout: &Layout) -> Value {
    render_server_config_with(plan, node, layout, &ServerState::default())
}

pub fn render_server_config_with(plan: &Plan, node: &NodePlan, layout: &Layout, state: &ServerState) -> Value {
    let mut root = Map::new();
    root.insert("cluster_name".into(), json!(plan.name));
    root.insert("api_addr".into(), json!(plan.api_url(node)));
    root.insert("cluster_addr".into(), json!(plan.cluster_url(node)));
    root.insert("ui".into(), json!(plan.ui));
    root.insert("log_level".into(), json!("info"));
    if plan.engine == Engine::Vault {
        // Vault still mlocks by default; with integrated storage HashiCorp recommends disabling it (the
        // NixOS module keeps swap off for the unit instead). OpenBao removed mlock entirely.
        root.insert("disable_mlock".into(), json!(true));
    }

    let retry_join: Vec<Value> = plan
        .nodes
        .iter()
        .filter(|n| n.name != node.name)
        .map(|peer| {
            json!({
                "leader_api_addr": plan.api_url(peer),
                "leader_ca_cert_file": layout.ca_file(plan),
                // Peers are dialled by IP; the name checked is the peer's DNS name, which is in its SANs.
                "leader_tls_servername": peer.fqdn,
            })
        })
        .collect();
    let mut raft = json!({
        "path": layout.data_dir(plan, node),
        "node_id": node.node_id,
        "performance_multiplier": plan.raft.performance_multiplier,
        // Autopilot promotes stabilized servers on its reconcile tick (default 10 s), which made a fresh
        // cluster wait up to 10 s beyond server_stabilization_time. 2 s costs a few cheap in-memory checks
        // on the leader.
        "autopilot_reconcile_interval": "2s",
    });
    if !retry_join.is_empty() {
        // An empty list makes OpenBao 2.7 exit with "invalid retry_join config" (a one-node cluster has
        // no peer to join; found by tests/tls_policy.rs starting a real server).
        raft["retry_join"] = Value::Array(retry_join);
    }
    if !node.voter {
        // Without it a node the spec calls a non-voter would join as a voter and change the quorum math.
        raft["retry_join_as_non_voter"] = json!(true);
    }
    root.insert("storage".into(), json!({ "raft": raft }));

    // No client-certificate settings: the tcp listener already *requests* a client certificate without
    // requiring or verifying it, which is what the cert auth method of a self-initialized cluster needs
    // (it verifies the certificate itself against the cluster CA); tests/selfinit.rs logs in that way,
    // directly and through HAProxy's TLS passthrough. Requiring one would lock out health checks.
    let mut api = json!({
        "type": "tcp",
        "address": sock(node.ip, plan.api_port),
        "cluster_address": sock(node.ip, plan.cluster_port),
        "tls_cert_file": layout.cert_file(plan, node),
        "tls_key_file": layout.key_file(plan, node),
        "tls_min_version": plan.tls.min_version,
    });
    if plan.openbao_at_least(TLS_AUTO_RELOAD) {
        // Renewed certificates are picked up without a restart (a restart would seal a Shamir node).
        api["tls_auto_reload_interval"] = json!("1m");
    }
    let mut listeners = Map::new();
    // With an overlay the API listener binds the overlay address, which the spec's client_cidrs
    // cannot reach: they get the same API (same TLS, no cluster port) on the node's host address;
    // the firewall admits client_cidrs to the API port (vaultnix.firewall.apiAllowedCIDRs).
    let clients = client_listener_address(plan, node).map(|public| {
        let mut clients = api.clone();
        clients["address"] = json!(sock(public, plan.api_port));
        if let Some(o) = clients.as_object_mut() {
            o.remove("cluster_address");
        }
        clients
    });
    listeners.insert("api".into(), api);
    if let Some(clients) = clients {
        listeners.insert("clients".into(), clients);
    }
    if let Some(metrics) = render_metrics_listener(plan, node, layout) {
        listeners.insert("metrics".into(), metrics);
    }
    root.insert("listener".into(), Value::Object(listeners));
    root.insert("telemetry".into(), json!({ "prometheus_retention_time": "30s", "disable_hostname": true }));

    if plan.audit && plan.openbao_at_least(DECLARED_AUDIT) {
        // Since 2.3.2 audit devices cannot be created over the API by default; since 2.4 they are
        // declared here and applied by the active node on start and SIGHUP.
        root.insert(
            "audit".into(),
            json!([{ "file": { "file": {
                "description": "vaultnix: every request and response, HMAC'd",
                "options": { "file_path": layout.audit_file(plan, node), "mode": "0600" }
            }}}]),
        );
    }

    if plan.seal.self_init && !state.initialized && node.name == plan.bootstrap_node && plan.openbao_at_least(SELF_INIT)
    {
        // On the bootstrap node ONLY: every node carrying this stanza would initialize its own empty
        // storage on first start, and several such nodes can each form a separate cluster (a split the
        // retry_join of the others then never heals). Followers join the bootstrap node instead. And
        // only until bootstrap recorded the cluster as initialized: left in place, a bootstrap node
        // whose storage is lost would initialize a second cluster (openbao#2274, #3652).
        root.insert("initialize".into(), render_initialize(plan, layout));
    }

    if let Some(seal) = render_seal(plan, layout, state) {
        root.insert("seal".into(), seal);
    }
    if let Some(p) = &plan.seal.plugin {
        root.insert("plugin_directory".into(), json!(p.directory));
        root.insert(
            "plugin".into(),
            json!([{ "kms": { plan.seal.kind.as_str(): { "command": p.command, "sha256sum": p.sha256 } } }]),
        );
    }
    Value::Object(root)
}

/// OpenBao's declarative self-initialization: the root token it runs these requests with is revoked
/// afterwards and no recovery keys exist, so the requests must leave a way in. That way is the `cert`
/// auth method trusting the cluster CA for the common name `vaultnix-admin` only (pki/admin.crt +
/// secrets/admin.key, issued by `generate`). The CA is read from the node's CA file at start (the
/// profile `file` source) rather than inlined, so the config carries no copy that could go stale.
fn render_initialize(plan: &Plan, layout: &Layout) -> Value {
    json!([{ "vaultnix": { "request": [
        { "enable-cert-auth": {
            "operation": "update",
            "path": "sys/auth/cert",
            "data": { "type": "cert", "description": "vaultnix: operator client certificates" },
        }},
        { "admin-policy": {
            "operation": "update",
            "path": format!("sys/policies/acl/{SELF_INIT_POLICY}"),
            "data": { "policy": SELF_INIT_ADMIN_POLICY },
        }},
        { "admin-cert": {
            "operation": "update",
            "path": format!("auth/cert/certs/{}", crate::pki::ADMIN_CN),
            "data": {
                "display_name": crate::pki::ADMIN_CN,
                "certificate": {
                    "eval_source": "file",
                    "eval_type": "string",
                    "path": layout.ca_file(plan),
                },
                "allowed_common_names": [crate::pki::ADMIN_CN],
                "token_policies": [SELF_INIT_POLICY],
                "token_ttl": SELF_INIT_TOKEN_TTL,
                "token_max_ttl": SELF_INIT_TOKEN_TTL,
            },
        }},
        { "enable-kv": {
            "operation": "update",
            "path": "sys/mounts/secret",
            "data": { "type": "kv", "options": { "version": "2" }, "description": "vaultnix: key/value v2" },
        }},
    ]}}])
}

/// The host address a second API listener binds for the spec's client_cidrs: only with an overlay
/// (without one the API listener is on the host address already), client CIDRs and a host address.
fn client_listener_address(plan: &Plan, node: &crate::plan::NodePlan) -> Option<std::net::IpAddr> {
    if plan.overlay.kind == crate::spec::OverlayKind::None || plan.firewall.client_cidrs.is_empty() {
        return None;
    }
    node.public_address.filter(|a| *a != node.ip)
}

/// The listener every Prometheus of the cluster scrapes: the node's own cluster address (the overlay
/// address with an overlay, its loopback address in the lab), the metrics port, TLS with the node's
/// certificate, metrics without a token. An API-listener scrape needs a token (403 without one, seen on
/// OpenBao 2.7.2), so without this listener every node looks down. OpenBao 2.5+ serves metrics only on
/// it (`metrics_only`); Vault has no such flag, so there it is a second API listener that also
/// answers `/v1/sys/metrics` unauthenticated. modules/firewall.nix admits only the cluster's servers.
/// None for OpenBao before 2.5 (a full unauthenticated-metrics API listener there would be a second API
/// surface; the summary says Prometheus needs a token instead).
pub fn render_metrics_listener(plan: &Plan, node: &NodePlan, layout: &Layout) -> Option<Value> {
    let mut telemetry = json!({ "unauthenticated_metrics_access": true });
    match plan.engine {
        Engine::Openbao if plan.openbao_at_least(METRICS_ONLY_LISTENER) => {
            telemetry["metrics_only"] = json!(true);
        }
        Engine::Openbao => return None,
        Engine::Vault => {}
    }
    let mut l = json!({
        "type": "tcp",
        "address": sock(node.ip, layout.metrics_port()),
        "tls_cert_file": layout.cert_file(plan, node),
        "tls_key_file": layout.key_file(plan, node),
        "tls_min_version": plan.tls.min_version,
        "telemetry": telemetry,
    });
    if plan.openbao_at_least(TLS_AUTO_RELOAD) {
        l["tls_auto_reload_interval"] = json!("1m");
    }
    Some(l)
}

fn render_seal(plan: &Plan, layout: &Layout, state: &ServerState) -> Option<Value> {
    let kind = plan.seal.kind;
    match kind {
        SealKind::Shamir => None,
        SealKind::Static => {
            let ids = state.seal_ids.clone().unwrap_or_else(|| crate::secrets::SealKeyIds::initial(plan));
            let mut s = json!({
                "current_key_id": ids.current_key_id,
                "current_key": format!("file://{}", layout.seal_key_file(plan)),
            });
            // During a rotation (`generate --rotate-seal-key`): OpenBao picks the key by the id the
            // keyring was wrapped with, so data wrapped with the old key stays readable; the active
            // node re-wraps the keyring with current_key when it unseals.
            if let Some(p) = ids.previous_key_id {
                s["previous_key"] = json!(format!("file://{}", layout.previous_seal_key_file(plan, &p)));
                s["previous_key_id"] = json!(p);
            }
            Some(json!({ "static": s }))
        }
        _ => {
            let params: Map<String, Value> = plan.seal.params.clone().into_iter().collect();
            Some(json!({ kind.as_str(): Value::Object(params) }))
        }
    }
}

/// Vault has no declarative audit stanza: the file audit device OpenBao declares in its config is
/// enabled over the API by `bootstrap` instead (`PUT sys/audit/<path>` with this body). The same file
/// path on every node (the audit table is replicated), in the unit's LogsDirectory. None for OpenBao
/// (declared in the config) and with audit off.
pub fn vault_audit_device(plan: &Plan, layout: &Layout) -> Option<(String, Value)> {
    let node = plan.nodes.first()?;
    (plan.audit && plan.engine == Engine::Vault).then(|| {
        (
            "file".to_string(),
            json!({
                "type": "file",
                "description": "vaultnix: every request and response, HMAC'd",
                "options": { "file_path": layout.audit_file(plan, node), "mode": "0600" },
            }),
        )
    })
}

/// Pretty JSON with a trailing newline: the bytes written to `<node>.server.json`.
pub fn to_json_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_gets_a_file_audit_device_through_the_api_openbao_in_its_config() {
        let text = include_str!("../spec/example.toml");
        let vault = text.replacen("engine = \"openbao\"", "engine = \"vault\"", 1).replacen(
            "version = \"2.7.2\"",
            "version = \"1.18.0\"",
            1,
        );
        let loaded = crate::spec::load_str("vault.toml", &vault, std::path::Path::new(".")).unwrap();
        let plan = Plan::from_loaded(&loaded);
        assert_eq!(plan.engine, Engine::Vault);
        let (path, body) = vault_audit_device(&plan, &Layout::NixOs).expect("vault: audit device to enable");
        assert_eq!(path, "file");
        assert_eq!(body["type"], json!("file"));
        assert_eq!(body["options"]["file_path"], json!("/var/log/vault/audit.log"));
        // No audit stanza in Vault's config (it has none); the module's LogsDirectory holds the file.
        assert!(render_server_config(&plan, &plan.nodes[0], &Layout::NixOs).get("audit").is_none());

        let loaded = crate::spec::load_str("ob.toml", text, std::path::Path::new(".")).unwrap();
        let ob = Plan::from_loaded(&loaded);
        assert!(vault_audit_device(&ob, &Layout::NixOs).is_none(), "OpenBao declares it in the config");
        assert!(render_server_config(&ob, &ob.nodes[0], &Layout::NixOs).get("audit").is_some());
    }

    #[test]
    fn initialize_stanza_only_on_the_bootstrap_node() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/specs/selfinit.toml")).unwrap();
        let loaded = crate::spec::load_str("selfinit.toml", &text, std::path::Path::new(".")).unwrap();
        let plan = Plan::from_loaded(&loaded);
        assert!(plan.seal.self_init);
        let layout = Layout::NixOs;
        for n in &plan.nodes {
            let cfg = render_server_config(&plan, n, &layout);
            let init = cfg.get("initialize");
            assert_eq!(init.is_some(), n.name == plan.bootstrap_node, "{}", n.name);
            if let Some(init) = init {
                let reqs = init[0]["vaultnix"]["request"].as_array().unwrap();
                let paths: Vec<&str> = reqs
                    .iter()
                    .map(|r| r.as_object().unwrap().values().next().unwrap()["path"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    paths,
                    [
                        "sys/auth/cert",
                        "sys/policies/acl/vaultnix-admin",
                        "auth/cert/certs/vaultnix-admin",
                        "sys/mounts/secret"
                    ]
                );
                let cert = &reqs[2]["admin-cert"]["data"];
                assert_eq!(cert["certificate"]["eval_source"], "file");
                assert_eq!(cert["certificate"]["path"], json!(layout.ca_file(&plan)));
                assert_eq!(cert["allowed_common_names"], json!(["vaultnix-admin"]));
            }
        }
    }
    #[test]
    fn client_cidrs_get_a_listener_on_the_host_address_with_an_overlay() {
        // The example: WireGuard overlay, client_cidrs = ["192.0.2.0/24"], public node addresses.
        let plan = Plan::from_loaded(&crate::spec::example());
        assert!(!plan.firewall.client_cidrs.is_empty());
        for n in &plan.nodes {
            let cfg = render_server_config(&plan, n, &Layout::NixOs);
            let api = &cfg["listener"]["api"];
            let clients = &cfg["listener"]["clients"];
            assert_eq!(api["address"], json!(crate::plan::sock(n.ip, plan.api_port)));
            assert_eq!(clients["address"], json!(crate::plan::sock(n.public_address.unwrap(), plan.api_port)), "{cfg}");
            assert!(clients.get("cluster_address").is_none(), "raft stays on the overlay: {clients}");
            assert_eq!(clients["tls_key_file"], api["tls_key_file"]);
            assert_eq!(clients["tls_cert_file"], api["tls_cert_file"]);
        }
        // Without an overlay (the lab) the API listener already is on the host address.
        let lab = plan.for_lab(std::net::Ipv4Addr::new(127, 0, 0, 10));
        for n in &lab.nodes {
            let cfg = render_server_config(&lab, n, &Layout::Lab("/tmp/x".into()));
            assert!(cfg["listener"].get("clients").is_none(), "{cfg}");
        }
    }
}
