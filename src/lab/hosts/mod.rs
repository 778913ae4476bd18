//! `vaultnix lab up --hosts`: the cluster on real network hosts.
//!
//! Every node, the load balancer and a client are a "host": a network namespace (net.rs) with the
//! spec's own addresses, plus a private mount namespace (enter.rs) giving the NixOS layout, so the
//! processes run exactly the files `generate` wrote for production (`Layout::NixOs`, checked by
//! sha256 and recorded in the state file). The overlay is real WireGuard (userspace wireguard-go)
//! with the generated keys and the peers `render::nix::wireguard_peers` gives modules/overlay.nix;
//! each host loads the firewall of firewall.rs with nft. Bootstrap and the readiness wait run from a
//! thread inside the LB's network namespace.
//!
//! Everything the lab creates is named with a random per-lab prefix and recorded in
//! `<dir>/hosts.json` *before* it is created, so `down` removes exactly that, also after a crash.

pub mod enter;
pub mod firewall;
pub mod machine;
pub mod net;
pub mod spare;
pub mod timer;
pub mod wan;

use super::process::{self, ProcSpec};
use crate::generate::{generate, GenerateOptions};
use crate::plan::{Machine, Plan, Role};
use crate::render::{paths, Layout, RenderOptions};
use crate::secrets::Rotate;
use crate::spec::OverlayKind;
use anyhow::{anyhow, bail, Context, Result};
use enter::MountOp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const STATE_FILE: &str = "hosts.json";
pub const CLIENT: &str = "client";
/// `<dir>/shared`: every host's /tmp/shared, as the NixOS test driver shares one directory between
/// its VMs.
pub const SHARED: &str = "shared";

/// `<dir>/hosts.json`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HostsState {
    pub prefix: String,
    pub spec: Option<PathBuf>,
    pub bao: PathBuf,
    pub haproxy: PathBuf,
    /// Namespaces this lab created (recorded before each is created).
    pub netns: Vec<String>,
    /// Host name -> its address on the internet.
    pub hosts: BTreeMap<String, IpAddr>,
    /// The byte-identity check: file the host runs -> (its sha256, the generated file's sha256).
    pub checks: Vec<FileCheck>,
    /// Where each machine's NixOS nftables file was taken from (`$VAULTNIX_HOSTS_NIXOS_FIREWALL` at
    /// `up`: `<dir>/<machine>.nft`); None: firewall.rs's ruleset.
    #[serde(default)]
    pub nixos_firewall: Option<PathBuf>,
    /// The `vaultnix` binary each node's drain agent and stop path run (as on NixOS: the binary, with
    /// the generated nodes/<node>.drain.json). None in a state written before the hosts lab had them.
    #[serde(default)]
    pub vaultnix: Option<PathBuf>,
    /// Node -> what `lab up --hosts --backup-timer/--backup-delay` set for its backup timer (the rest
    /// comes from the spec, timer.rs).
    #[serde(default)]
    pub backup_timers: BTreeMap<String, timer::TimerOverride>,
    /// Spare machines added with `lab machine NAME add-server` (spare.rs).
    #[serde(default)]
    pub spares: BTreeMap<String, spare::Spare>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileCheck {
    pub host: String,
    /// The path as the host sees it.
    pub path: String,
    /// The generated file (relative to the lab directory).
    pub generated: String,
    pub sha256: String,
    pub generated_sha256: String,
}

impl FileCheck {
    pub fn equal(&self) -> bool {
        self.sha256 == self.generated_sha256
    }
}

pub fn read_state(dir: &Path) -> Result<Option<HostsState>> {
    let p = dir.join(STATE_FILE);
    match std::fs::read_to_string(&p) {
        Ok(t) => {
            Ok(Some(serde_json::from_str(&t).with_context(|| format!("{} is not a hosts lab state", p.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
    }
}

fn write_state(dir: &Path, st: &HostsState) -> Result<()> {
    let mut t = serde_json::to_string_pretty(st)?;
    t.push('\n');
    crate::output::write_file_atomic(&dir.join(STATE_FILE), t.as_bytes(), false)
}

/// Root, network namespaces and the tools: a clear error when something is missing.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the hosts lab needs root (network and mount namespaces); run as root or use the loopback lab");
    }
    for t in ["ip", "nft", "iptables", "wireguard-go", "wg", "sleep"] {
        if super::which(t).is_none()
            && !Path::new("/usr/sbin").join(t).is_file()
            && !Path::new("/sbin").join(t).is_file()
        {
            bail!("the hosts lab needs `{t}` (scripts/install-tools.sh installs it)");
        }
    }
    Ok(())
}

/// The plan of a hosts lab: the spec's own plan, no rewrite.
pub fn hosts_plan(spec: Option<&Path>) -> Result<Plan> {
    let loaded = match spec {
        Some(p) => crate::spec::load_file(p)?,
        None => crate::spec::example(),
    };
    let plan = Plan::from_loaded(&loaded);
    if plan.overlay.kind == OverlayKind::Tailscale {
        bail!("the hosts lab runs overlay = \"wireguard\" or \"none\"; tailscale needs a coordination server");
    }
    Ok(plan)
}

/// A host of the lab: a machine of the plan, or the client.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub machine: Option<Machine>,
    /// Its address on the internet (the public address, else the plan address).
    pub addr: IpAddr,
}

/// The client's address: in the first `client_cidrs` network (admitted to 8200 directly), else a
/// benchmarking address (198.18.0.100) that only reaches the LB.
fn client_addr(plan: &Plan) -> Result<IpAddr> {
    if let Some(c) = plan.firewall.client_cidrs.first() {
        let s = c.to_string();
        let (net, len) = s.split_once('/').unwrap_or((&s, "32"));
        let net: Ipv4Addr = net.parse().map_err(|_| anyhow!("client_cidrs {s}: the hosts lab supports IPv4 only"))?;
        let len: u32 = len.parse().unwrap_or(32);
        if len <= 24 {
            return Ok(IpAddr::V4(Ipv4Addr::from(u32::from(net) | 100)));
        }
        return Ok(IpAddr::V4(net));
    }
    Ok(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)))
}

pub fn hosts_of(plan: &Plan) -> Result<Vec<Host>> {
    let mut v: Vec<Host> = plan
        .machines()
        .into_iter()
        .map(|m| Host { name: m.name.clone(), addr: m.public_address.unwrap_or(m.ip), machine: Some(m) })
        .collect();
    v.push(Host { name: CLIENT.into(), machine: None, addr: client_addr(plan)? });
    for h in &v {
        if !h.addr.is_ipv4() {
            bail!("host {} has address {}: the hosts lab supports IPv4 only", h.name, h.addr);
        }
        if v.iter().filter(|o| o.addr == h.addr).count() > 1 {
            bail!("two hosts share address {}", h.addr);
        }
    }
    Ok(v)
}

/// How `HostsLab::up_with` brings a lab up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The spec (None: the built-in example).
    pub spec: Option<PathBuf>,
    /// Progress lines on stderr.
    pub progress: bool,
    /// false: return once the processes run and the file check passed, the cluster uninitialized
    /// (what the VM tests start from: their scripts run `operator init`).
    pub bootstrap: bool,
    /// A WAN between sites (per site pair), in place before bao starts: the cluster forms over it.
    pub wan: Option<wan::WanMap>,
    /// Node -> its backup timer's schedule and random delay where `--backup-timer`/`--backup-delay`
    /// set them (else the spec's).
    pub backup_timers: BTreeMap<String, timer::TimerOverride>,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions { spec: None, progress: false, bootstrap: true, wan: None, backup_timers: BTreeMap::new() }
    }
}

/// A hosts lab (running or not).
#[derive(Debug, Clone)]
pub struct HostsLab {
    pub dir: PathBuf,
    pub plan: Plan,
    pub state: HostsState,
    /// The plan's machines and the client (the lab's network).
    pub hosts: Vec<Host>,
    /// Spares (spare.rs): hosts with loopback only, outside `hosts` and its network.
    pub spare_hosts: Vec<Host>,
}

/// A spare's `Host`: no machine of the plan, its loopback address.
fn spare_host(name: &str) -> Host {
    Host { name: name.to_string(), machine: None, addr: IpAddr::V4(Ipv4Addr::LOCALHOST) }
}

fn anchor_spec(dir: &Path, host: &str) -> Result<ProcSpec> {
    let sleep = super::which("sleep").ok_or_else(|| anyhow!("no `sleep` on PATH"))?;
    Ok(ProcSpec {
        name: format!("{host}.host"),
        program: sleep,
        args: vec!["infinity".into()],
        marker: format!("vaultnix-host:{}:{host}", dir.display()),
    })
}

fn wg_spec(dir: &Path, host: &str, iface: &str) -> Result<ProcSpec> {
    let wg = super::which("wireguard-go").ok_or_else(|| anyhow!("no `wireguard-go` on PATH"))?;
    Ok(ProcSpec {
        name: format!("{host}.wireguard"),
        program: wg,
        args: vec!["-f".into(), iface.into()],
        marker: format!("vaultnix-wireguard:{}:{host}", dir.display()),
    })
}

/// How a process is started inside a host.
enum Start<'a> {
    Create { netns: &'a str, ops: Vec<MountOp> },
    Join { anchor: u32 },
}

/// `process::start`, entering the host; argv[0] is the marker when `arg0` (anchor, wireguard-go).
fn start_in(dir: &Path, spec: &ProcSpec, how: Start, arg0: bool) -> Result<u32> {
    if let Some(pid) = process::running(dir, spec) {
        return Ok(pid);
    }
    std::fs::create_dir_all(dir.join("run"))?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let log_path = process::log_file(dir, &spec.name);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let err = log.try_clone()?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args).stdin(Stdio::null()).stdout(log).stderr(err);
    if arg0 {
        cmd.arg0(&spec.marker);
    }
    cmd.env("WG_PROCESS_FOREGROUND", "1");
    match how {
        Start::Create { netns, ops } => enter::create(&mut cmd, netns, ops, dir)?,
        Start::Join { anchor } => enter::join(&mut cmd, anchor, dir, true)?,
    }
    let child = cmd.spawn().map_err(|e| anyhow!("cannot start {} ({}): {e}", spec.name, spec.program.display()))?;
    let pid = child.id();
    drop(child);
    crate::output::write_file_atomic(&process::pid_file(dir, &spec.name), format!("{pid}\n").as_bytes(), false)?;
    Ok(pid)
}

use std::os::unix::process::CommandExt;

impl HostsLab {
    pub fn open(dir: &Path) -> Result<HostsLab> {
        let dir = crate::output::absolute(dir)?;
        let state = read_state(&dir)?.ok_or_else(|| {
            anyhow!("{} is not a hosts lab (no {STATE_FILE}): run `vaultnix lab up --hosts`", dir.display())
        })?;
        let plan = hosts_plan(state.spec.as_deref())?;
        let hosts = hosts_of(&plan)?;
        let spare_hosts = state.spares.keys().map(|n| spare_host(n)).collect();
        Ok(HostsLab { dir, plan, state, hosts, spare_hosts })
    }

    pub fn netns(&self, host: &str) -> String {
        format!("{}-{host}", self.state.prefix)
    }
    fn internet(&self) -> String {
        format!("{}-internet", self.state.prefix)
    }
    fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host)
    }
    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts.iter().chain(&self.spare_hosts).find(|h| h.name == name).ok_or_else(|| {
            anyhow!(
                "no host {name:?} in this lab (hosts: {})",
                self.hosts.iter().chain(&self.spare_hosts).map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The pid of a host's anchor (its namespaces), if it runs.
    pub fn anchor(&self, host: &str) -> Result<u32> {
        let spec = anchor_spec(&self.dir, host)?;
        process::running(&self.dir, &spec)
            .ok_or_else(|| anyhow!("host {host} is not running (`vaultnix lab up --hosts`)"))
    }

    /// Generates (production layout), builds the network, starts every host, WireGuard, the firewall,
    /// bao and HAProxy, bootstraps and waits until ready. On error the caller runs `down`.
    pub fn up(spec: Option<&Path>, dir: &Path, progress: bool) -> Result<HostsLab> {
        Self::up_with(dir, UpOptions { spec: spec.map(Path::to_path_buf), progress, ..UpOptions::default() })
    }

    /// `up` with [`UpOptions`].
    pub fn up_with(dir: &Path, o: UpOptions) -> Result<HostsLab> {
        let UpOptions { spec, progress, bootstrap, wan, backup_timers } = o;
        let spec = spec.as_deref();
        preflight()?;
        let dir = crate::output::absolute(dir)?;
        std::fs::create_dir_all(&dir)?;
        if read_state(&dir)?.is_some() {
            bail!("{} already holds a hosts lab: `vaultnix lab down --dir {}` first", dir.display(), dir.display());
        }
        let spec = spec.map(crate::output::absolute).transpose()?;
        let plan = hosts_plan(spec.as_deref())?;
        let hosts = hosts_of(&plan)?;
        let prefix = format!("vx{}", hex(&crate::secrets::random_bytes::<3>()?));
        let state = HostsState {
            prefix,
            spec,
            bao: super::find_bao()?,
            haproxy: super::find_haproxy()?,
            hosts: hosts.iter().map(|h| (h.name.clone(), h.addr)).collect(),
            nixos_firewall: nixos_firewall_dir(&hosts)?,
            vaultnix: Some(super::find_vaultnix()?),
            backup_timers,
            ..HostsState::default()
        };
        if plan.monitoring.enabled && timer::find_node_exporter().is_none() {
            bail!(
                "the hosts lab runs the node exporter NixOS runs on the servers (monitoring.enabled): \
                 no `prometheus-node-exporter` on PATH (scripts/install-tools.sh installs it)"
            );
        }
        for n in state.backup_timers.keys() {
            if plan.node(n).is_none() {
                bail!("--backup-timer/--backup-delay {n}=…: the spec has no node {n:?}");
            }
        }
        let mut lab = HostsLab { dir: dir.clone(), plan, state, hosts, spare_hosts: Vec::new() };
        // The production files, exactly as `vaultnix generate` writes them.
        generate(
            &lab.plan,
            &Layout::NixOs,
            &GenerateOptions {
                out: dir.clone(),
                check: false,
                rotate: Rotate::default(),
                render: RenderOptions::default(),
            },
        )?;
        // Recorded before anything outside the directory (namespaces, mounts) is made.
        write_state(&dir, &lab.state)?;
        let say = |s: &str| {
            if progress {
                eprintln!("{s}");
            }
        };
        say("generated the production files");
        let shared = dir.join(SHARED);
        std::fs::create_dir_all(&shared)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700))?;
        }
        lab.build_network()?;
        say("network up");
        for h in lab.hosts.clone() {
            lab.start_host(&h)?;
        }
        if lab.plan.overlay.kind == OverlayKind::Wireguard {
            for h in lab.hosts.clone() {
                if h.machine.is_some() {
                    lab.start_wireguard(&h)?;
                }
            }
            say("wireguard up");
        }
        for h in lab.hosts.clone() {
            lab.load_firewall(&h)?;
        }
        if let Some(w) = &wan {
            lab.set_wan_map(w)?;
            say(&format!("WAN between sites: {w}"));
        }
        for n in lab.plan.nodes.clone() {
            // The drain agent first, as the server unit wants and is ordered after vaultnix-drain-agent.
            if let Some(a) = lab.agent_spec(&n.name) {
                lab.start_proc(&a, &n.name)?;
            }
            lab.start_proc(&lab.bao_spec(&n.name), &n.name)?;
            for s in lab.node_extras(&n.name) {
                lab.start_proc(&s, &n.name)?;
            }
        }
        lab.start_haproxy()?;
        lab.state.checks = lab.file_checks()?;
        write_state(&dir, &lab.state)?;
        if let Some(bad) = lab.state.checks.iter().find(|c| !c.equal()) {
            bail!("{} runs {} which differs from the generated {}", bad.host, bad.path, bad.generated);
        }
        if !bootstrap {
            say("processes started; not bootstrapped (--no-bootstrap)");
            return Ok(lab);
        }
        say("processes started; bootstrapping from the load balancer host");
        let lbns = lab.netns(&lab.plan.lb.name);
        let plan = lab.plan.clone();
        let out = dir.clone();
        enter::in_netns(&lbns, || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let mut bo = crate::ops::bootstrap::BootstrapOptions::new(&out);
                bo.progress = progress;
                bo.wait = Duration::from_secs(90);
                // The stop path's token (policy vaultnix-drain), installed below as the unit's credential.
                bo.drain_token = true;
                crate::ops::bootstrap::bootstrap(&plan, &bo).await?;
                let c = crate::api::Cluster::from_out(&plan, &out)?;
                let token = crate::ops::common::resolve_token(&c.lb, &out).await;
                let c = c.with_token(token);
                super::wait_ready(&c, &plan, Duration::from_secs(90)).await
            })
        })?
        .with_context(|| format!("hosts lab bootstrap failed; logs in {}", dir.join("logs").display()))?;
        for n in lab.plan.nodes.clone() {
            lab.install_drain_token(&n.name)?;
        }
        say("ready");
        Ok(lab)
    }

    fn build_network(&mut self) -> Result<()> {
        let internet = self.internet();
        self.record_netns(&internet)?;
        net::add_netns(&internet)?;
        net::add_bridge(&internet)?;
        for (i, h) in self.hosts.clone().iter().enumerate() {
            let ns = self.netns(&h.name);
            self.record_netns(&ns)?;
            net::add_netns(&ns)?;
            net::attach(&internet, &format!("h{i}"), &ns, h.addr)?;
            for o in &self.hosts {
                if o.name != h.name {
                    net::route(&ns, o.addr)?;
                }
            }
        }
        Ok(())
    }

    fn record_netns(&mut self, ns: &str) -> Result<()> {
        if net::netns_exists(ns) {
            bail!("network namespace {ns} exists already (another lab?)");
        }
        self.state.netns.push(ns.to_string());
        write_state(&self.dir, &self.state)
    }

    /// The host's mount namespace: NixOS paths backed by the generated files.
    fn mount_ops(&self, h: &Host) -> Result<Vec<MountOp>> {
        let mut ops = Vec::new();
        let overlay = |target: &str, sub: &str, pre: &[(&str, bool)]| self.overlay_op(&h.name, target, sub, pre);
        let unit = self.unit_name();
        let wg = self.plan.overlay.kind == OverlayKind::Wireguard && h.machine.is_some();
        let secrets_rel = self.plan.secrets_dir.trim_start_matches("/var/lib/").to_string();
        let wg_rel = format!("{secrets_rel}/wg.key");
        // modules/node.nix: `d <secretsDir> 0700` on every machine (where an operator puts tokens).
        let mut var_lib: Vec<(&str, bool)> = vec![(&secrets_rel, true)];
        let data_rel = unit.to_string();
        if matches!(h.machine.as_ref().map(|m| m.role), Some(Role::Server)) {
            var_lib.push((&data_rel, true));
        }
        if wg {
            var_lib.push((&wg_rel, false));
        }
        let mut etc: Vec<(&str, bool)> =
            vec![("vaultnix/ca.crt", false), ("vaultnix/tls.crt", false), ("haproxy/vaultnix-hold.lua", false)];
        // modules/backup.nix: the job's config under /etc, its directory and the textfile directory
        // (tmpfiles), on the host's own disk.
        let backup = self.has_backup_timer(&h.name);
        let dest = timer::destination_tree(&self.plan.backup.destination);
        let textfile_rel = Layout::NixOs.textfile_dir().trim_start_matches("/var/lib/").to_string();
        if backup {
            etc.push((timer::ETC_CONFIG.trim_start_matches("/etc/"), false));
            if let Some(("/var/lib", rel)) = &dest {
                var_lib.push((rel.as_str(), true));
            }
        }
        if backup || timer::node_exporter_spec(self, &h.name).is_some() {
            var_lib.push((&textfile_rel, true));
        }
        ops.push(overlay("/etc", "etc", &etc)?);
        ops.push(overlay("/var/lib", "var-lib", &var_lib)?);
        if let (true, Some(("/var/backups", rel))) = (backup, &dest) {
            ops.push(overlay("/var/backups", "var-backups", &[(rel.as_str(), true)])?);
        }
        let log_rel = unit.to_string();
        ops.push(overlay("/var/log", "var-log", &[(&log_rel, true)])?);
        ops.push(MountOp::tmpfs("/run", "0755")?);
        ops.extend(self.own_dirs()?);
        ops.push(MountOp::bind(&self.dir.join(paths::CA_CRT), "/etc/vaultnix/ca.crt")?);
        if backup {
            ops.push(MountOp::bind(&self.dir.join(paths::backup_json(&h.name)), timer::ETC_CONFIG)?);
        }
        if wg {
            ops.push(MountOp::bind(
                &self.dir.join(paths::wg_key(&h.name)),
                &format!("{}/wg.key", self.plan.secrets_dir),
            )?);
        }
        match h.machine.as_ref().map(|m| m.role) {
            Some(Role::Server) => {
                let node = self.plan.node(&h.name).context("node")?;
                ops.push(MountOp::bind(&self.dir.join(paths::node_crt(&h.name)), "/etc/vaultnix/tls.crt")?);
                let key = Layout::NixOs.key_file(&self.plan, node);
                let cred = Path::new(&key).parent().context("key dir")?.display().to_string();
                ops.push(MountOp::mkdir("/run/credentials", 0o700)?);
                ops.push(MountOp::mkdir(&cred, 0o700)?);
                ops.push(MountOp::touch(&key)?);
                ops.push(MountOp::bind(&self.dir.join(paths::node_key(&h.name)), &key)?);
                // The drain agent's RuntimeDirectory (its control socket).
                let ctl = Layout::NixOs.agent_control_socket(&h.name);
                ops.push(MountOp::mkdir(
                    &Path::new(&ctl).parent().context("control dir")?.display().to_string(),
                    0o755,
                )?);
                if self.plan.seal.kind == crate::spec::SealKind::Static {
                    // The static seal key, a credential of the unit like the TLS key.
                    let seal = Layout::NixOs.seal_key_file(&self.plan);
                    ops.push(MountOp::touch(&seal)?);
                    ops.push(MountOp::bind(&self.dir.join(paths::SEAL_KEY), &seal)?);
                }
            }
            Some(Role::Lb) => {
                let sock = Layout::NixOs.haproxy_admin_socket();
                let d = Path::new(&sock).parent().context("socket dir")?.display().to_string();
                ops.push(MountOp::mkdir(&d, 0o755)?);
                ops.push(MountOp::bind(&self.dir.join(paths::HOLD_LUA), &Layout::NixOs.haproxy_hold_lua())?);
            }
            None => {}
        }
        Ok(ops)
    }

    /// An overlay on `target` whose upper directory is `<host dir>/<sub>/upper`, with `pre` (relative
    /// paths; true: a 0700 directory, false: an empty file, a bind-mount target) in place.
    fn overlay_op(&self, host: &str, target: &str, sub: &str, pre: &[(&str, bool)]) -> Result<MountOp> {
        let hd = self.host_dir(host);
        let upper = hd.join(sub).join("upper");
        let work = hd.join(sub).join("work");
        std::fs::create_dir_all(&work)?;
        std::fs::create_dir_all(&upper)?;
        for (p, is_dir) in pre {
            let p = upper.join(p);
            if *is_dir {
                std::fs::create_dir_all(&p)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
            } else {
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d)?;
                }
                if !p.exists() {
                    std::fs::write(&p, b"")?;
                }
            }
        }
        MountOp::overlay(target, &upper, &work)
    }

    /// The server's systemd unit (and StateDirectory) name.
    fn unit_name(&self) -> &'static str {
        match self.plan.engine {
            crate::spec::Engine::Openbao => "openbao",
            crate::spec::Engine::Vault => "vault",
        }
    }

    /// The host's own /tmp and /root, as a VM has them (a command run on a host writes there, not on
    /// the machine), with /tmp/shared the lab's `shared` directory. The lab directory and the
    /// binaries the host runs stay visible at their paths (enter::private_dir).
    fn own_dirs(&self) -> Result<Vec<MountOp>> {
        let mut keep = vec![self.dir.clone()];
        let bins = [
            Some(self.state.bao.clone()),
            Some(self.state.haproxy.clone()),
            self.state.vaultnix.clone(),
            std::env::current_exe().ok(),
            timer::find_node_exporter(),
            super::which("wireguard-go"),
        ];
        keep.extend(bins.into_iter().flatten().filter_map(|b| b.parent().map(Path::to_path_buf)));
        let canonical: Vec<PathBuf> = keep.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
        keep.extend(canonical);
        let tmp = Path::new("/tmp");
        let mut ops = enter::private_dir(tmp, "1777", &keep, Path::new("/run/vaultnix-lab-tmp"))?;
        if !ops.is_empty() {
            ops.push(MountOp::mkdir("/tmp/shared", 0o700)?);
            ops.push(MountOp::bind(&self.dir.join(SHARED), "/tmp/shared")?);
        }
        ops.extend(enter::private_dir(Path::new("/root"), "0700", &keep, Path::new("/run/vaultnix-lab-root"))?);
        Ok(ops)
    }

    fn start_host(&self, h: &Host) -> Result<u32> {
        let ops = self.mount_ops(h)?;
        let ns = self.netns(&h.name);
        start_in(&self.dir, &anchor_spec(&self.dir, &h.name)?, Start::Create { netns: &ns, ops }, true)
    }

    fn start_proc(&self, spec: &ProcSpec, host: &str) -> Result<u32> {
        let anchor = self.anchor(host)?;
        start_in(&self.dir, spec, Start::Join { anchor }, false)
    }

    pub fn bao_spec(&self, node: &str) -> ProcSpec {
        if let Some(s) = self.spare(node) {
            return process::server_spec(node, &self.state.bao, &s.settings);
        }
        process::node_spec(&self.dir, &self.state.bao, node)
    }
    /// The node's drain agent (`vaultnix node agent` with the generated, production drain.json: it
    /// binds the node's overlay address and the control socket in /run/vaultnix-drain-agent).
    pub fn agent_spec(&self, node: &str) -> Option<ProcSpec> {
        let bin = self.state.vaultnix.as_ref()?;
        self.dir.join(paths::drain_json(node)).exists().then(|| process::agent_spec(&self.dir, bin, node))
    }
    /// A server host's other services: the node exporter and the backup timer, where the spec has
    /// them (timer.rs).
    pub fn node_extras(&self, node: &str) -> Vec<ProcSpec> {
        let mut v: Vec<ProcSpec> = timer::node_exporter_spec(self, node).into_iter().collect();
        v.extend(self.backup_timer_spec(node));
        v
    }
    /// secrets/drain-token as the server unit's credential (`LoadCredential=drain-token:…`), where the
    /// rendered drain.json's token_file names it, inside the node's mount namespace (0600).
    pub fn install_drain_token(&self, node: &str) -> Result<()> {
        let token = std::fs::read(crate::ops::drain::drain_token_path(&self.dir))
            .context("secrets/drain-token (bootstrap creates it)")?;
        let pid = self.anchor(node)?;
        let target = PathBuf::from(format!("/proc/{pid}/root{}", Layout::NixOs.drain_token_file(&self.plan)));
        crate::output::write_file_atomic(&target, &token, true)
            .with_context(|| format!("{node}: installing the drain token"))
    }
    /// Stops a node's server the way its unit does: ExecStop (`vaultnix node drain --config
    /// <drain.json> --pid <server pid>`, run on the node's host: its agent, its credential), then
    /// SIGTERM. Returns what the drain printed.
    pub fn stop_node(&self, node: &str) -> Result<String> {
        let spec = self.bao_spec(node);
        let pid = process::running(&self.dir, &spec).ok_or_else(|| anyhow!("{node} is not running"))?;
        let bin = self.state.vaultnix.clone().context("this hosts lab has no vaultnix binary recorded (older lab)")?;
        let cfg = self.dir.join(paths::drain_json(node)).display().to_string();
        let pid_s = pid.to_string();
        let drained =
            self.run(node, &bin.display().to_string(), &["node", "drain", "--config", &cfg, "--pid", &pid_s], None)?;
        process::stop(&self.dir, &spec, libc::SIGTERM, Duration::from_secs(15))?;
        Ok(drained.trim().to_string())
    }
    /// HAProxy's unit on the LB host: in terminate mode its ExecStartPre first installs the host's
    /// secrets/lb.pem where the rendered configuration binds with (modules/haproxy.nix), then HAProxy
    /// starts.
    pub fn start_haproxy(&self) -> Result<u32> {
        self.install_lb_pem()?;
        self.start_proc(&self.haproxy_spec(), &self.plan.lb.name)
    }

    /// modules/haproxy.nix's `install -m 0600 … lb.pem /run/haproxy/vaultnix-lb.pem`, run before
    /// every start and every reload of the unit (terminate mode only; the LB host's /run is its own).
    pub fn install_lb_pem(&self) -> Result<()> {
        if self.plan.lb.mode != crate::spec::LbMode::Terminate {
            return Ok(());
        }
        let pem = std::fs::read(self.dir.join(paths::LB_PEM)).context("secrets/lb.pem (terminate mode)")?;
        let pid = self.anchor(&self.plan.lb.name)?;
        let target = PathBuf::from(format!("/proc/{pid}/root{}", Layout::NixOs.haproxy_lb_pem()));
        crate::output::write_file_atomic(&target, &pem, true).context("installing lb.pem on the LB host")
    }

    pub fn haproxy_spec(&self) -> ProcSpec {
        process::haproxy_spec(&self.dir, &self.state.haproxy)
    }

    /// Runs a command on a host and returns its stdout (fails with stderr on a non-zero exit).
    pub fn run(&self, host: &str, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
        let out = self.output(host, program, args, stdin)?;
        if !out.status.success() {
            bail!("{host}: {program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn output(
        &self,
        host: &str,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<std::process::Output> {
        let mut cmd = self.command(host, program)?;
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().with_context(|| format!("cannot run {program} on {host}"))?;
        if let Some(b) = stdin {
            use std::io::Write;
            child.stdin.take().context("stdin")?.write_all(b)?;
        }
        Ok(child.wait_with_output()?)
    }

    /// A command that runs on `host`, with BAO_ADDR etc. pointing at the LB.
    pub fn command(&self, host: &str, program: &str) -> Result<Command> {
        self.host(host)?;
        let anchor = self.anchor(host)?;
        let mut cmd = Command::new(program);
        for (k, v) in self.env_vars() {
            cmd.env(k, v);
        }
        // `lab exec client -- bao status` (what `up` suggests) runs the lab's own bao, also when it
        // was found through VAULTNIX_BAO and is not on the caller's PATH.
        if let Some(d) = self.state.bao.parent() {
            let rest = std::env::var_os("PATH").unwrap_or_else(|| machine::SYSTEM_PATH.into());
            let mut dirs = vec![d.to_path_buf()];
            dirs.extend(std::env::split_paths(&rest));
            cmd.env("PATH", std::env::join_paths(dirs)?);
        }
        enter::join(&mut cmd, anchor, &self.dir, false)?;
        Ok(cmd)
    }

    /// BAO_ADDR/VAULT_ADDR (the LB's public address), CA, TLS server name and the root token.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let lb = self.plan.lb.public_address.unwrap_or(self.plan.lb.ip);
        let addr = format!("https://{}", crate::plan::sock(lb, self.plan.lb.port));
        let ca = self.dir.join(paths::CA_CRT).display().to_string();
        let mut v = Vec::new();
        for p in ["BAO", "VAULT"] {
            v.push((format!("{p}_ADDR"), addr.clone()));
            v.push((format!("{p}_CACERT"), ca.clone()));
            v.push((format!("{p}_TLS_SERVER_NAME"), self.plan.lb.hostname.clone()));
            if let Ok(Some(i)) = crate::ops::common::read_init(&self.dir) {
                v.push((format!("{p}_TOKEN"), i.root_token.clone()));
            }
        }
        v
    }

    fn start_wireguard(&self, h: &Host) -> Result<()> {
        let m = h.machine.as_ref().context("machine")?;
        let iface = self.plan.overlay.interface.clone();
        let anchor = self.anchor(&h.name)?;
        start_in(&self.dir, &wg_spec(&self.dir, &h.name, &iface)?, Start::Join { anchor }, true)?;
        let sock = format!("/proc/{anchor}/root/run/wireguard/{iface}.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&sock).exists() {
            if Instant::now() > deadline {
                bail!("wireguard-go on {} did not create {iface} (see logs/{}.wireguard.log)", h.name, h.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut wgkeys = BTreeMap::new();
        for mm in self.plan.machines() {
            let k = std::fs::read_to_string(self.dir.join(paths::wg_key(&mm.name)))?;
            wgkeys.insert(mm.name.clone(), crate::secrets::wg_public_key(k.trim())?);
        }
        let peers = crate::render::nix::wireguard_peers(&self.plan, &m.name, &self.plan.machines(), &wgkeys);
        let key = format!("{}/wg.key", self.plan.secrets_dir);
        let port = self.plan.overlay.listen_port.to_string();
        self.run(&h.name, "wg", &["set", &iface, "private-key", &key, "listen-port", &port], None)?;
        let ka = self.plan.overlay.persistent_keepalive.to_string();
        for p in &peers {
            let mut a: Vec<&str> = vec!["set", &iface, "peer", &p.public_key];
            if let Some(e) = &p.endpoint {
                a.extend(["endpoint", e.as_str()]);
            }
            let ips = p.allowed_ips.join(",");
            a.extend(["allowed-ips", ips.as_str()]);
            if self.plan.overlay.persistent_keepalive > 0 {
                a.extend(["persistent-keepalive", ka.as_str()]);
            }
            self.run(&h.name, "wg", &a, None)?;
        }
        let addr = format!("{}/{}", m.ip, self.plan.overlay.prefix_len);
        self.run(&h.name, "ip", &["addr", "add", &addr, "dev", &iface], None)?;
        self.run(&h.name, "ip", &["link", "set", &iface, "up"], None)?;
        for p in &peers {
            for a in &p.allowed_ips {
                self.run(&h.name, "ip", &["route", "replace", a, "dev", &iface], None)?;
            }
        }
        Ok(())
    }

    /// The nft ruleset host `h` loads (see firewall.rs for where it comes from).
    pub fn ruleset(&self, h: &Host) -> String {
        match &h.machine {
            Some(m) => firewall::ruleset(&self.plan, m),
            None => firewall::client_ruleset(),
        }
    }

    fn load_firewall(&self, h: &Host) -> Result<()> {
        let r = match (&self.state.nixos_firewall, &h.machine) {
            (Some(d), Some(_)) => nixos_ruleset(&d.join(format!("{}.nft", h.name)))?,
            _ => self.ruleset(h),
        };
        std::fs::write(self.host_dir(&h.name).join("nftables.conf"), &r)?;
        self.run(&h.name, "nft", &["-f", "-"], Some(r.as_bytes())).map(|_| ())
    }

    /// sha256 of what each host runs (through its own mount namespace) against the generated file.
    pub fn file_checks(&self) -> Result<Vec<FileCheck>> {
        let manifest = crate::output::read_manifest(&self.dir)?.context("no manifest.json")?;
        let mut v = Vec::new();
        let mut check = |host: &str, pid: u32, path: String, generated: String| -> Result<()> {
            let b = std::fs::read(format!("/proc/{pid}/root{path}")).with_context(|| format!("{host}: {path}"))?;
            let generated_sha256 = match manifest.files.get(&generated) {
                Some(h) => h.clone(),
                None => crate::output::sha256_hex(&std::fs::read(self.dir.join(&generated))?),
            };
            v.push(FileCheck {
                host: host.into(),
                path,
                generated,
                sha256: crate::output::sha256_hex(&b),
                generated_sha256,
            });
            Ok(())
        };
        for n in &self.plan.nodes {
            let pid = process::running(&self.dir, &self.bao_spec(&n.name)).context("bao not running")?;
            let cfg = self.dir.join(paths::server_json(&n.name)).display().to_string();
            check(&n.name, pid, cfg, paths::server_json(&n.name))?;
            check(&n.name, pid, Layout::NixOs.ca_file(&self.plan), paths::CA_CRT.into())?;
            check(&n.name, pid, Layout::NixOs.cert_file(&self.plan, n), paths::node_crt(&n.name))?;
            if self.has_backup_timer(&n.name) {
                check(&n.name, pid, timer::ETC_CONFIG.into(), paths::backup_json(&n.name))?;
            }
        }
        let pid = process::running(&self.dir, &self.haproxy_spec()).context("haproxy not running")?;
        let cfg = self.dir.join(paths::HAPROXY_CFG).display().to_string();
        check(&self.plan.lb.name, pid, cfg, paths::HAPROXY_CFG.into())?;
        check(&self.plan.lb.name, pid, Layout::NixOs.haproxy_ca_file(&self.plan), paths::CA_CRT.into())?;
        check(&self.plan.lb.name, pid, Layout::NixOs.haproxy_hold_lua(), paths::HOLD_LUA.into())?;
        if self.plan.lb.mode == crate::spec::LbMode::Terminate {
            check(&self.plan.lb.name, pid, Layout::NixOs.haproxy_lb_pem(), paths::LB_PEM.into())?;
        }
        Ok(v)
    }

    /// Stops every process, then deletes every namespace the state file records. Files stay unless
    /// `purge`.
    pub fn down(&self, purge: bool) -> Result<Vec<String>> {
        let mut stopped = Vec::new();
        let mut specs = vec![wan::relay_spec(&self.dir), self.haproxy_spec()];
        specs.extend(self.plan.nodes.iter().map(|n| self.bao_spec(&n.name)));
        specs.extend(self.plan.nodes.iter().filter_map(|n| self.agent_spec(&n.name)));
        specs.extend(self.plan.nodes.iter().flat_map(|n| self.node_extras(&n.name)));
        let iface = self.plan.overlay.interface.clone();
        for h in &self.hosts {
            specs.push(wg_spec(&self.dir, &h.name, &iface)?);
        }
        specs.extend(self.state.spares.keys().map(|n| self.bao_spec(n)));
        for h in self.hosts.iter().chain(&self.spare_hosts) {
            specs.push(anchor_spec(&self.dir, &h.name)?);
        }
        let mut errors = Vec::new();
        for s in specs {
            match process::stop(&self.dir, &s, libc::SIGTERM, Duration::from_secs(10)) {
                Ok(true) => stopped.push(s.name.clone()),
                Ok(false) => {}
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        // What a VM test script left running in a host (no pid file names it).
        self.kill_namespace_processes();
        for ns in self.state.netns.iter().rev() {
            if let Err(e) = net::del_netns(ns) {
                errors.push(format!("{e:#}"));
            }
        }
        if !errors.is_empty() {
            bail!("lab down: {}", errors.join("; "));
        }
        let _ = std::fs::remove_file(self.dir.join(STATE_FILE));
        if purge {
            for sub in ["hosts", "data", "logs", "run", "secrets", SHARED, paths::FLAKE] {
                let p = self.dir.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p)?;
                }
            }
            for f in ["manifest.json", paths::GITIGNORE, wan::WAN_FILE] {
                let _ = std::fs::remove_file(self.dir.join(f));
            }
            let _ = std::fs::remove_dir(&self.dir);
        }
        Ok(stopped)
    }

    // ---- faults -------------------------------------------------------------------------------

    /// kill -9 a node's bao (the pid its pid file names, checked against its config).
    pub fn kill_node(&self, node: &str) -> Result<()> {
        let spec = self.bao_spec(node);
        let pid = process::running(&self.dir, &spec).ok_or_else(|| anyhow!("{node} is not running"))?;
        // SAFETY: kill(2) on a pid read from this lab's pid file and checked by its cmdline.
        if unsafe { libc::kill(pid as i32, libc::SIGKILL) } != 0 {
            bail!("cannot kill {node} (pid {pid}): {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while process::running(&self.dir, &spec).is_some() {
            if Instant::now() > deadline {
                bail!("{node} (pid {pid}) survived SIGKILL for 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
    /// Starts a node's bao on its host again (sealed).
    pub fn start_node(&self, node: &str) -> Result<u32> {
        self.start_proc(&self.bao_spec(node), node)
    }
    /// The HAProxy admin socket, reached through the LB host's mount namespace.
    pub fn haproxy_admin_socket(&self) -> Result<PathBuf> {
        let pid = process::running(&self.dir, &self.haproxy_spec()).context("haproxy is not running")?;
        Ok(PathBuf::from(format!("/proc/{pid}/root{}", Layout::NixOs.haproxy_admin_socket())))
    }
    /// A real partition of `node` from the other servers: raft's port dropped in both directions
    /// (the seed's INPUT-only rule leaves the node's own outbound connections working).
    pub fn partition_full(&self, node: &str) -> Result<()> {
        let p = self.plan.cluster_port.to_string();
        for chain in ["INPUT", "OUTPUT"] {
            self.run(node, "iptables", &["-A", chain, "-p", "tcp", "--dport", &p, "-j", "DROP"], None)?;
        }
        Ok(())
    }
    pub fn heal_partition_full(&self, node: &str) -> Result<()> {
        let p = self.plan.cluster_port.to_string();
        for chain in ["INPUT", "OUTPUT"] {
            self.run(node, "iptables", &["-D", chain, "-p", "tcp", "--dport", &p, "-j", "DROP"], None)?;
        }
        Ok(())
    }

    /// The seed's partition: `iptables -A INPUT -p tcp --dport 8201 -j DROP` on `node`.
    pub fn partition(&self, node: &str) -> Result<()> {
        let p = self.plan.cluster_port.to_string();
        self.run(node, "iptables", &["-A", "INPUT", "-p", "tcp", "--dport", &p, "-j", "DROP"], None).map(|_| ())
    }
    pub fn heal_partition(&self, node: &str) -> Result<()> {
        let p = self.plan.cluster_port.to_string();
        self.run(node, "iptables", &["-D", "INPUT", "-p", "tcp", "--dport", &p, "-j", "DROP"], None).map(|_| ())
    }
    /// Full isolation: the host's link to the internet goes down.
    pub fn isolate(&self, host: &str) -> Result<()> {
        self.run(host, "ip", &["link", "set", "eth0", "down"], None).map(|_| ())
    }
    pub fn unisolate(&self, host: &str) -> Result<()> {
        self.run(host, "ip", &["link", "set", "eth0", "up"], None)?;
        // Bringing the link down dropped its routes.
        for o in &self.hosts {
            if o.name != host {
                let _ = self.run(host, "ip", &["route", "replace", &net::cidr(o.addr), "dev", "eth0"], None);
            }
        }
        Ok(())
    }
    /// The LB cannot reach `node` (drops the LB's packets on the node).
    pub fn cut_lb(&self, node: &str) -> Result<()> {
        let lb = self.plan.lb.ip.to_string();
        self.run(node, "iptables", &["-A", "INPUT", "-s", &lb, "-j", "DROP"], None).map(|_| ())
    }
    pub fn uncut_lb(&self, node: &str) -> Result<()> {
        let lb = self.plan.lb.ip.to_string();
        self.run(node, "iptables", &["-D", "INPUT", "-s", &lb, "-j", "DROP"], None).map(|_| ())
    }
}

/// `$VAULTNIX_HOSTS_NIXOS_FIREWALL`: a directory with `<machine>.nft` for every machine of the plan,
/// the file NixOS's nftables service loads (`systemd.services.nftables` ExecStart's script, read back
/// from evaluating the generated `nodes/<machine>.nix` with our modules; tests/hosts_lab.rs does that
/// against the nixpkgs-subset fixture). Checked here, before anything is created.
fn nixos_firewall_dir(hosts: &[Host]) -> Result<Option<PathBuf>> {
    let Some(d) = std::env::var_os("VAULTNIX_HOSTS_NIXOS_FIREWALL").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let d = crate::output::absolute(Path::new(&d))?;
    for h in hosts.iter().filter(|h| h.machine.is_some()) {
        let f = d.join(format!("{}.nft", h.name));
        if !f.is_file() {
            bail!("$VAULTNIX_HOSTS_NIXOS_FIREWALL: {} is missing (one NixOS nftables file per machine)", f.display());
        }
    }
    Ok(Some(d))
}

/// NixOS's nftables file without its `include` lines: the service first loads the deletions of the
/// previous generation (files of the running system); a fresh host has none, as in upstream's own
/// `nft -c` check of the ruleset.
fn nixos_ruleset(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(text.lines().filter(|l| !l.trim_start().starts_with("include ")).collect::<Vec<_>>().join("\n") + "\n")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Namespaces and processes a lab directory's state still names (for `down` checks and tests).
pub fn leftovers(dir: &Path, st: &HostsState) -> Vec<String> {
    let mut v: Vec<String> = st.netns.iter().filter(|n| net::netns_exists(n)).map(|n| format!("netns {n}")).collect();
    if let Ok(rd) = std::fs::read_dir(dir.join("run")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                if let Ok(pid) = t.trim().parse::<u32>() {
                    if process::alive(pid) {
                        v.push(format!("pid {pid} ({})", e.file_name().to_string_lossy()));
                    }
                }
            }
        }
    }
    v
}
