//! `vaultnix bootstrap`: initialize, unseal and configure a cluster described by the plan.
//!
//! Idempotent and resumable: every step starts from what the nodes report on /v1/sys/health, so a run
//! killed at any point finishes the job when re-run, and a run on a healthy cluster changes nothing.

use super::common::{self, health_all, poll, read_init, resolve_token, write_secret_new};
use super::unseal::{unseal_node, Keys};
use crate::api::{AutopilotConfig, Cluster, Health, InitRequest, NodeClient, NodeState};
use crate::plan::Plan;
use crate::spec::SealKind;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    /// The generated output directory (pki/ca.crt in, secrets/init.json out).
    pub out: PathBuf,
    /// Mount kv-v2 at secret/.
    pub kv: bool,
    /// Create the admin policy and a token for it (secrets/admin-token).
    pub admin_token: bool,
    /// Create the vaultnix-backup policy and a token for it (secrets/backup-token, 0600).
    pub backup_token: bool,
    /// Create the vaultnix-drain policy (sys/step-down only) and a token for it (secrets/drain-token,
    /// 0600): the server unit's ExecStop (`vaultnix node drain`) steps the active node down with it.
    pub drain_token: bool,
    /// Revoke the root token at the end (needs an admin token).
    pub revoke_root: bool,
    /// Show the progress display (it is hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Upper bound for each wait (nodes reachable, unsealed, active).
    pub wait: Duration,
}

impl BootstrapOptions {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        BootstrapOptions {
            out: out.into(),
            kv: false,
            admin_token: false,
            backup_token: false,
            drain_token: false,
            revoke_root: false,
            progress: false,
            wait: Duration::from_secs(90),
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BootstrapReport {
    /// What this run changed, in order. Empty: the cluster was already bootstrapped.
    pub changes: Vec<String>,
    pub notes: Vec<String>,
    /// Set when this run initialized the cluster and saved the root material.
    pub init_saved: Option<PathBuf>,
    /// The cluster initialized itself (no root token, no recovery keys): see [`SELF_INIT_NOTE`].
    pub self_initialized: bool,
}

impl BootstrapReport {
    pub fn nothing_to_do(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The policy `--admin-token` creates: everything except the root-only sudo paths it does not need.
pub const ADMIN_POLICY: &str = r#"# vaultnix admin: full control for day-2 operations (created by `vaultnix bootstrap --admin-token`).
path "*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo"]
}
"#;

pub const ROOT_WARNING: &str = "secrets/init.json holds the unseal/recovery keys and the root token: ROOT MATERIAL. \
Copy the shares to their holders offline, then remove it from this machine; anyone with it controls the cluster.";

struct Progress(ProgressBar);

impl Progress {
    fn new(show: bool, steps: u64) -> Progress {
        let pb = if show {
            ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(s) = ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg} ({elapsed})") {
            pb.set_style(s);
        }
        pb.enable_steady_tick(Duration::from_millis(120));
        Progress(pb)
    }
    fn step(&self, msg: impl Into<String>) {
        self.0.inc(1);
        self.0.set_message(msg.into());
    }
    fn msg(&self, msg: impl Into<String>) {
        self.0.set_message(msg.into());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

pub async fn bootstrap(plan: &Plan, opts: &BootstrapOptions) -> Result<BootstrapReport> {
    let mut rep = BootstrapReport::default();
    let cluster = Cluster::from_out(plan, &opts.out)?;
    let pb = Progress::new(opts.progress, 7);
    let auto = plan.seal.kind != SealKind::Shamir;

    // 1. Every node reachable (just-started processes take a moment to listen).
    pb.step("waiting for every node to answer /v1/sys/health");
    let mut health = wait_reachable(&cluster, opts.wait).await?;

    // 2. Initialize the bootstrap node unless some node already is.
    pb.step(format!("initializing {}", plan.bootstrap_node));
    let boot = cluster
        .node(&plan.bootstrap_node)
        .ok_or_else(|| anyhow!("bootstrap node {:?} is not in the plan", plan.bootstrap_node))?
        .clone();
    let any_initialized = health.iter().any(|(_, h)| h.state != NodeState::Uninitialized);
    let init_path = common::init_json_path(&opts.out);
    let self_init = plan.seal.self_init;
    if self_init {
        // The bootstrap node initializes itself from its `initialize` stanza on first start; calling
        // sys/init here would race it. Followers join it via retry_join and auto-unseal by themselves.
        let forming = health.iter().any(|(_, h)| h.state != NodeState::Active && h.state != NodeState::Standby);
        pb.msg(format!("waiting for {} to initialize itself", boot.name));
        poll(opts.wait, Duration::from_millis(250), || async {
            matches!(boot.health().await, Ok(h) if h.body.initialized).then_some(())
        })
        .await
        .ok_or_else(|| {
            anyhow!(
                "{} ({}) did not initialize itself within {:?}: self-initialization errors are in its log \
                 (a failed request stops it; with no root token the only fix is wiping its data and starting again)",
                boot.name,
                boot.addr(),
                opts.wait
            )
        })?;
        if forming {
            rep.changes.push(format!("{} self-initialized; followers joined via retry_join", boot.name));
        }
        health = wait_reachable(&cluster, opts.wait).await?;
    } else if !any_initialized {
        if init_path.exists() {
            bail!(
                "no node is initialized, but {} exists from an earlier initialization: it belongs to a cluster \
                 whose data is gone. Move it somewhere safe and re-run (it is never overwritten)",
                init_path.display()
            );
        }
        let req = init_request(plan)?;
        let resp = boot.init(&req).await.context("initializing the cluster")?;
        let mut text = serde_json::to_string_pretty(&resp)?;
        text.push('\n');
        write_secret_new(&init_path, text.as_bytes()).with_context(|| {
            format!("the cluster IS initialized but its root material could not be saved to {}", init_path.display())
        })?;
        pb.0.suspend(|| {
            eprintln!("\n!!! WARNING: {ROOT_WARNING}\n!!! saved to {} (0600)\n", init_path.display());
        });
        rep.init_saved = Some(init_path.clone());
        rep.changes.push(format!(
            "initialized {} ({} {} shares, threshold {})",
            boot.name,
            if auto { "recovery" } else { "unseal" },
            req.secret_shares.or(req.recovery_shares).unwrap_or(0),
            req.secret_threshold.or(req.recovery_threshold).unwrap_or(0)
        ));
        health = wait_reachable(&cluster, opts.wait).await?;
    }

    // 3./4. Unseal: the bootstrap node first (followers join it), then everyone else in parallel.
    pb.step("unsealing");
    if !auto {
        let sealed: Vec<&NodeClient> = health
            .iter()
            .filter(|(_, h)| matches!(h.state, NodeState::Sealed | NodeState::Uninitialized))
            .map(|(n, _)| n)
            .collect();
        if !sealed.is_empty() {
            let keys = unseal_keys(plan, &opts.out)?;
            let nobody_up = !health.iter().any(|(_, h)| h.state.is_up());
            let boot_sealed = sealed.iter().any(|n| n.name == boot.name);
            // Fresh cluster: only the bootstrap node holds data; the others join it once it is active.
            let leader_first =
                nobody_up && boot_sealed && health.iter().filter(|(_, h)| h.body.initialized).count() == 1;
            if leader_first {
                pb.msg(format!("unsealing the leader {}", boot.name));
                unseal_node(&boot, &keys, opts.wait).await?;
                rep.changes.push(format!("unsealed {}", boot.name));
                wait_active(&boot, opts.wait).await?;
            }
            let mut rest: Vec<NodeClient> = sealed.into_iter().cloned().collect();
            if leader_first {
                rest.retain(|n| n.name != boot.name);
            }
            pb.msg(format!("unsealing {}", rest.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")));
            let mut set = tokio::task::JoinSet::new();
            for n in rest {
                let keys = keys.clone();
                let limit = opts.wait;
                set.spawn(async move {
                    let r = unseal_node(&n, &keys, limit).await;
                    (n.name.clone(), r)
                });
            }
            let mut failed = Vec::new();
            let mut done = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok((name, Ok(_))) => done.push(name),
                    Ok((name, Err(e))) => failed.push(format!("{name}: {e:#}")),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            done.sort();
            for d in done {
                rep.changes.push(format!("unsealed {d}"));
            }
            if !failed.is_empty() {
                bail!("could not unseal every node:\n  {}", failed.join("\n  "));
            }
        }
    }

    // 5. Everyone up, one active.
    pb.step("waiting for one active node and unsealed standbys");
    let active = wait_all_up(&cluster, opts.wait).await?;

    // 6. Checks and configuration that need a token.
    pb.step("checking audit devices");
    let token = resolve_token(&active, &opts.out).await;
    if self_init {
        verify_self_init(plan, &active, &opts.out, opts.wait, &mut rep).await?;
    }
    record_initialized(plan, &active, &opts.out, &mut rep).await?;
    let Some(token) = token else {
        rep.notes.push(format!(
            "no usable token (secrets/admin-token, the root token in {}, $BAO_TOKEN or $VAULT_TOKEN): audit and \
             autopilot checks skipped",
            init_path.display()
        ));
        return Ok(rep);
    };
    let active = active.with_token(Some(token.clone()));
    let layout = if crate::lab::read_state(&opts.out).ok().flatten().is_some() {
        crate::render::Layout::Lab(opts.out.clone())
    } else {
        crate::render::Layout::NixOs
    };
    if let Some((path, body)) = crate::render::server::vault_audit_device(plan, &layout) {
        // Vault: no declarative audit; enable the file device once (idempotent on re-runs).
        let have = active.audit_devices().await?;
        if have.is_empty() {
            active.enable_audit(&path, &body).await?;
            rep.changes
                .push(format!("audit: enabled the file audit device {path}/ ({})", body["options"]["file_path"]));
        }
        let d = active.audit_devices().await?;
        if d.is_empty() {
            bail!(
                "no audit device is active on {} after enabling one: check that its audit file path is writable",
                active.name
            );
        }
        rep.notes.push(format!("audit: {} active ({})", d.len(), d.keys().cloned().collect::<Vec<_>>().join(", ")));
    }
    if plan.audit && plan.openbao_at_least((2, 4, 0)) {
        // The active node applies config-declared audit devices as it takes over; give it a moment.
        let found = poll(Duration::from_secs(15), Duration::from_millis(250), || async {
            active.audit_devices().await.ok().filter(|d| !d.is_empty())
        })
        .await;
        match found {
            Some(d) => rep.notes.push(format!(
                "audit: {} active ({})",
                d.len(),
                d.iter().map(|(p, a)| format!("{p} {}", a.kind)).collect::<Vec<_>>().join(", ")
            )),
            None => bail!(
                "no audit device is active on {} although the rendered config declares one: check the node's log \
                 and that its audit file path is writable",
                active.name
            ),
        }
    }

    pb.step("applying the autopilot configuration");
    let want = autopilot_config(plan);
    let have = active.autopilot_config().await?;
    if !autopilot_matches(&have, &want) {
        active.set_autopilot_config(&want).await?;
        rep.changes.push(format!(
            "autopilot: cleanup_dead_servers={} dead_server_last_contact_threshold={} server_stabilization_time={} min_quorum={}",
            want.cleanup_dead_servers, want.dead_server_last_contact_threshold, want.server_stabilization_time, want.min_quorum
        ));
    }

    pb.step("optional: kv, admin token, root revocation");
    if opts.kv {
        let mounts = active.mounts().await?;
        if !mounts.contains_key("secret/") {
            active.enable_mount("secret", "kv", json!({ "version": "2" })).await?;
            rep.changes.push("mounted kv-v2 at secret/".into());
        }
    }
    let admin_path = common::admin_token_path(&opts.out);
    if opts.admin_token && !admin_path.exists() {
        if active.get_policy("admin").await?.as_deref() != Some(ADMIN_POLICY) {
            active.put_policy("admin", ADMIN_POLICY).await?;
            rep.changes.push("wrote policy admin".into());
        }
        let t = active
            .create_token(
                &json!({
                    "policies": ["admin"],
                    "display_name": "vaultnix-admin",
                    // Periodic: renewable forever while used, expires 32 days after the last renewal.
                    "period": "768h",
                    "no_default_policy": false,
                }),
                true,
            )
            .await?;
        write_secret_new(&admin_path, format!("{}\n", t.client_token).as_bytes())?;
        rep.changes.push(format!("created an admin token ({}, 0600)", admin_path.display()));
    }
    let backup_path = crate::ops::backup::backup_token_path(&opts.out);
    if opts.backup_token && !backup_path.exists() {
        use crate::ops::backup::{BACKUP_POLICY, BACKUP_POLICY_NAME};
        if active.get_policy(BACKUP_POLICY_NAME).await?.as_deref() != Some(BACKUP_POLICY) {
            active.put_policy(BACKUP_POLICY_NAME, BACKUP_POLICY).await?;
            rep.changes.push(format!("wrote policy {BACKUP_POLICY_NAME}"));
        }
        let t = active
            .create_token(
                &json!({
                    "policies": [BACKUP_POLICY_NAME],
                    "display_name": "vaultnix-backup",
                    // Periodic: the backup job's daily use keeps it alive; unused for 32 days it expires.
                    "period": "768h",
                    "no_default_policy": false,
                }),
                true,
            )
            .await?;
        write_secret_new(&backup_path, format!("{}\n", t.client_token).as_bytes())?;
        rep.changes.push(format!(
            "created a backup token ({}, 0600): install it on every server as <secretsDir>/backup-token",
            backup_path.display()
        ));
    }
    let drain_path = crate::ops::drain::drain_token_path(&opts.out);
    if opts.drain_token && !drain_path.exists() {
        use crate::ops::drain::{DRAIN_POLICY, DRAIN_POLICY_NAME};
        if active.get_policy(DRAIN_POLICY_NAME).await?.as_deref() != Some(DRAIN_POLICY) {
            active.put_policy(DRAIN_POLICY_NAME, DRAIN_POLICY).await?;
            rep.changes.push(format!("wrote policy {DRAIN_POLICY_NAME}"));
        }
        let t = active
            .create_token(
                &json!({
                    "policies": [DRAIN_POLICY_NAME],
                    "display_name": "vaultnix-drain",
                    // Periodic like the backup token: 32 days without a renewal and it expires
                    // (docs/operations.md: renew it from the admin side, or re-create it).
                    "period": "768h",
                    "no_default_policy": false,
                }),
                true,
            )
            .await?;
        write_secret_new(&drain_path, format!("{}\n", t.client_token).as_bytes())?;
        rep.changes.push(format!(
            "created a drain token ({}, 0600): install it on every server as <secretsDir>/drain-token",
            drain_path.display()
        ));
    }
    if opts.revoke_root {
        if let Some(init) = read_init(&opts.out)? {
            let root = active.clone().with_token(Some(init.root_token.clone()));
            if root.lookup_self().await.is_ok() {
                let admin_ok = match std::fs::read_to_string(&admin_path) {
                    Ok(t) => active.clone().with_token(Some(t.trim().to_string())).lookup_self().await.is_ok(),
                    Err(_) => false,
                };
                if !admin_ok {
                    bail!(
                        "refusing to revoke the root token without a working admin token: add --admin-token \
                         (a new root token needs a quorum of unseal key holders)"
                    );
                }
                root.revoke_self().await?;
                rep.changes.push("revoked the root token".into());
            }
        }
    }
    Ok(rep)
}

pub const SELF_INIT_NOTE: &str = "self-initialized cluster: there are NO recovery keys and NO root token. \
Access is the operator certificate flake/pki/admin.crt + secrets/admin.key (cert login, policy vaultnix-admin): keep \
secrets/admin.key safe and backed up, together with secrets/ca.key (it can issue a new operator certificate) \
and the seal key (secrets/seal.key for the static seal; without it the data cannot be unsealed).";

/// Records in the output tree's manifest that the cluster is initialized (its cluster id), once every
/// node is up (and, with self-init, the self-initialization was verified). `generate` then stops
/// rendering the `initialize` stanza.
async fn record_initialized(
    plan: &Plan,
    active: &NodeClient,
    out: &std::path::Path,
    rep: &mut BootstrapReport,
) -> Result<()> {
    let h = active.health().await.with_context(|| format!("reading the cluster id from {}", active.name))?;
    let Some(id) = h.body.cluster_id.filter(|id| !id.is_empty()) else {
        rep.notes.push(format!("{} reports no cluster id: initialization not recorded in the manifest", active.name));
        return Ok(());
    };
    if crate::output::record_initialized(out, &id)? {
        rep.changes
            .push(format!("recorded the cluster as initialized in {} (cluster id {id})", crate::output::MANIFEST));
        if plan.seal.self_init {
            rep.notes.push(format!(
                "self_init: run `vaultnix generate` and deploy the result: {} no longer carries the initialize stanza \
                 (a node with empty storage then joins instead of initializing a second cluster)",
                plan.bootstrap_node
            ));
        }
    }
    Ok(())
}

/// Checks what the `initialize` stanza promised: the operator certificate logs in and gets the
/// vaultnix-admin policy, kv-v2 is mounted at secret/, and every planned voter is a raft voter.
async fn verify_self_init(
    plan: &Plan,
    active: &NodeClient,
    out: &std::path::Path,
    limit: Duration,
    rep: &mut BootstrapReport,
) -> Result<()> {
    use crate::render::server::SELF_INIT_POLICY;
    if common::admin_identity(out).is_none() {
        bail!(
            "self-initialization needs the operator certificate, but {} or {} is missing: restore them (run \
             `vaultnix generate` to issue a new one from the cluster CA)",
            common::admin_cert_path(out).display(),
            common::admin_key_path(out).display()
        );
    }
    // The login goes through the load balancer too when there is one up: HAProxy passes TLS through, so
    // the client certificate reaches the node.
    let auth = match common::cert_login_token(active, out).await {
        Some(a) => a,
        None => {
            let id = common::admin_identity(out).unwrap_or_default();
            let c = active.clone().with_identity(&id)?;
            let e = c.login_cert(crate::pki::ADMIN_CN).await.err().map(|e| e.to_string()).unwrap_or_default();
            bail!(
                "the operator certificate cannot log in to {} (the self-initialization did not finish?): {e}",
                active.name
            )
        }
    };
    if !auth.policies.iter().any(|p| p == SELF_INIT_POLICY) {
        bail!("the operator certificate logs in, but without the {SELF_INIT_POLICY} policy (got {:?})", auth.policies);
    }
    let admin = active.clone().with_token(Some(auth.client_token.clone()));
    let mounts = admin.mounts().await?;
    match mounts.get("secret/") {
        Some(m) if m.kind == "kv" => {}
        _ => bail!("self-initialization did not mount kv-v2 at secret/ on {}", active.name),
    }
    let want = plan.nodes.iter().filter(|n| n.voter).count();
    let voters = poll(limit, Duration::from_millis(500), || async {
        let cfg = admin.raft_configuration().await.ok()?;
        let v = cfg.servers.iter().filter(|s| s.voter).count();
        (v >= want).then_some(v)
    })
    .await;
    match voters {
        Some(v) => rep.notes.push(format!("raft: {v} voters")),
        None => bail!("the raft configuration did not reach {want} voters within {limit:?}"),
    }
    rep.notes.push(format!("cert login works (policy {SELF_INIT_POLICY}); kv-v2 at secret/"));
    rep.notes.push(SELF_INIT_NOTE.to_string());
    rep.self_initialized = true;
    Ok(())
}

/// The init request from the plan: shares/threshold, PGP keys (base64 of each key file), recovery
/// shares instead with an auto-unseal seal.
pub fn init_request(plan: &Plan) -> Result<InitRequest> {
    let b64 = |p: &PathBuf| -> Result<String> {
        let raw = std::fs::read(p).with_context(|| format!("cannot read PGP key {}", p.display()))?;
        crate::spec::pgp::pgp_key_base64(&raw).with_context(|| format!("PGP key {}", p.display()))
    };
    let pgp: Vec<String> = plan.seal.pgp_keys.iter().map(b64).collect::<Result<_>>()?;
    let root_pgp = plan.seal.root_token_pgp_key.as_ref().map(b64).transpose()?;
    let mut r = InitRequest { root_token_pgp_key: root_pgp, ..Default::default() };
    if plan.seal.kind == SealKind::Shamir {
        r.secret_shares = Some(plan.seal.shares);
        r.secret_threshold = Some(plan.seal.threshold);
        r.pgp_keys = pgp;
    } else {
        r.recovery_shares = Some(plan.seal.shares);
        r.recovery_threshold = Some(plan.seal.threshold);
        r.recovery_pgp_keys = pgp;
    }
    Ok(r)
}

fn unseal_keys(plan: &Plan, out: &std::path::Path) -> Result<Keys> {
    let Some(init) = read_init(out)? else {
        bail!(
            "nodes are sealed and {} is missing: unseal them with `vaultnix unseal` (keys from their holders)",
            common::init_json_path(out).display()
        );
    };
    if !plan.seal.pgp_keys.is_empty() {
        bail!(
            "the unseal shares are PGP-encrypted: their holders decrypt them, then run `vaultnix unseal` \
             (bootstrap resumes afterwards)"
        );
    }
    let keys = if !init.keys_base64.is_empty() { init.keys_base64 } else { init.keys };
    if keys.is_empty() {
        bail!("{} has no unseal keys", common::init_json_path(out).display());
    }
    Ok(Keys(keys))
}

/// The autopilot configuration the plan asks for.
pub fn autopilot_config(plan: &Plan) -> AutopilotConfig {
    let a = &plan.raft.autopilot;
    AutopilotConfig {
        cleanup_dead_servers: a.cleanup_dead_servers,
        dead_server_last_contact_threshold: a.dead_server_last_contact_threshold.clone(),
        last_contact_threshold: a.last_contact_threshold.clone(),
        max_trailing_logs: a.max_trailing_logs,
        min_quorum: plan.raft.min_quorum as u64,
        server_stabilization_time: a.server_stabilization_time.clone(),
    }
}

/// Compares durations by value: the server prints "10m0s" for "10m".
pub fn autopilot_matches(have: &AutopilotConfig, want: &AutopilotConfig) -> bool {
    let d = |a: &str, b: &str| {
        common::go_duration_ms(a).is_some() && common::go_duration_ms(a) == common::go_duration_ms(b)
    };
    have.cleanup_dead_servers == want.cleanup_dead_servers
        && d(&have.dead_server_last_contact_threshold, &want.dead_server_last_contact_threshold)
        && d(&have.last_contact_threshold, &want.last_contact_threshold)
        && d(&have.server_stabilization_time, &want.server_stabilization_time)
        && have.max_trailing_logs == want.max_trailing_logs
        && have.min_quorum == want.min_quorum
}

/// Waits until every node answers sys/health; fails naming the ones that never did.
async fn wait_reachable(c: &Cluster, limit: Duration) -> Result<Vec<(NodeClient, Health)>> {
    let deadline = Instant::now() + limit;
    loop {
        let all = health_all(c).await;
        let errs: Vec<String> = all.iter().filter_map(|(_, h)| h.as_ref().err().map(|e| e.to_string())).collect();
        if errs.is_empty() {
            return Ok(all.into_iter().filter_map(|(n, h)| h.ok().map(|h| (n, h))).collect());
        }
        if Instant::now() >= deadline {
            bail!("not every node answered within {limit:?}:\n  {}", errs.join("\n  "));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_active(n: &NodeClient, limit: Duration) -> Result<()> {
    poll(limit, Duration::from_millis(100), || async {
        matches!(n.health().await, Ok(h) if h.state == NodeState::Active).then_some(())
    })
    .await
    .ok_or_else(|| anyhow!("{} ({}) did not become active within {limit:?}", n.name, n.addr()))
}

/// Waits until every node is unsealed and one is active; returns the active node.
pub async fn wait_all_up(c: &Cluster, limit: Duration) -> Result<NodeClient> {
    let deadline = Instant::now() + limit;
    loop {
        let all = health_all(c).await;
        let all_up = all.iter().all(|(_, h)| matches!(h, Ok(h) if h.state.is_up()));
        let active =
            all.iter().find(|(_, h)| matches!(h, Ok(h) if h.state == NodeState::Active)).map(|(n, _)| n.clone());
        if let (true, Some(a)) = (all_up, active) {
            return Ok(a);
        }
        if Instant::now() >= deadline {
            let states: Vec<String> = all
                .iter()
                .map(|(n, h)| match h {
                    Ok(h) => format!("{}: {}", n.name, h.state.as_str()),
                    Err(e) => e.to_string(),
                })
                .collect();
            bail!("the cluster did not settle within {limit:?} (one active, the rest standby): {}", states.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
