//! `vaultnix lab`: the cluster of a spec, running for real on loopback.
//!
//! The lab plan is `Plan::for_lab(base)`; `generate` renders it with `Layout::Lab(dir)` (the same
//! renderers as production, so certificates cover the loopback addresses); real `bao server` and
//! `haproxy -db` processes run those files; then the ordinary bootstrap runs against them. Only loopback
//! addresses are ever bound.
//!
//! [`LabHandle`] is the fixture live tests share: up, kill/start a node, stop/start HAProxy, down. Its
//! `Drop` stops exactly the processes it started.

pub mod hosts;
pub mod process;

use crate::api::{Cluster, InitResponse};
use crate::generate::{generate, GenerateOptions};
use crate::ops::bootstrap::{bootstrap, BootstrapOptions, BootstrapReport};
use crate::plan::Plan;
use crate::render::{paths, Layout, RenderOptions};
use crate::secrets::Rotate;
use anyhow::{anyhow, bail, Context, Result};
use process::{haproxy_spec, node_spec, ProcSpec, HAPROXY};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `<dir>/lab.json`: what `lab status|env|down` and later commands need to find the lab again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub base: Ipv4Addr,
    /// The spec the lab was built from (absolute), or None for the built-in example.
    pub spec: Option<PathBuf>,
    pub bao: PathBuf,
    pub haproxy: PathBuf,
    /// The `vaultnix` binary the nodes' drain agents run (`vaultnix node agent`), as on NixOS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vaultnix: Option<PathBuf>,
}

pub const STATE_FILE: &str = "lab.json";

pub fn read_state(dir: &Path) -> Result<Option<LabState>> {
    let p = dir.join(STATE_FILE);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| format!("{} is not a lab state", p.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
    }
}

/// The `bao` binary: `$VAULTNIX_BAO`, else `bao` on PATH. Nothing is downloaded.
pub fn find_bao() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VAULTNIX_BAO").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("$VAULTNIX_BAO={} does not exist", p.display());
        }
        return Ok(p);
    }
    which("bao").ok_or_else(|| {
        anyhow!("no `bao` binary: set VAULTNIX_BAO=/path/to/bao or put it on PATH (vaultnix downloads nothing)")
    })
}

pub fn find_haproxy() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VAULTNIX_HAPROXY").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    which("haproxy")
        .or_else(|| ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"].iter().map(PathBuf::from).find(|p| p.is_file()))
        .ok_or_else(|| anyhow!("no `haproxy` binary on PATH (set VAULTNIX_HAPROXY)"))
}

/// The lab process name of a node's drain agent.
pub fn agent_name(node: &str) -> String {
    format!("agent-{node}")
}

/// The `vaultnix` binary lab processes run (drain agents, the WAN relay): $VAULTNIX_BIN, this
/// executable when it is `vaultnix`, the `vaultnix` Cargo built next to this (test) executable, else
/// `vaultnix` on PATH.
pub fn find_vaultnix() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VAULTNIX_BIN").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    if let Ok(p) = std::env::current_exe().map(replaced_exe) {
        if p.file_name().is_some_and(|n| n == "vaultnix") {
            return Ok(p);
        }
        // target/<profile>/deps/<test binary> -> target/<profile>/vaultnix
        if let Some(b) = p.parent().filter(|d| d.ends_with("deps")).and_then(Path::parent).map(|d| d.join("vaultnix")) {
            if b.is_file() {
                return Ok(b);
            }
        }
    }
    which("vaultnix").ok_or_else(|| {
        anyhow!("the lab runs the vaultnix binary (drain agents): set VAULTNIX_BIN or put vaultnix on PATH")
    })
}

/// Linux names a running binary that was replaced on disk (a rebuild, a package upgrade) `<path>
/// (deleted)`: the file now at `<path>` is the one to start.
fn replaced_exe(p: PathBuf) -> PathBuf {
    match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) if Path::new(s).is_file() => PathBuf::from(s),
        _ => p,
    }
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Ports a lab binds on each of its addresses.
fn lab_ports(plan: &Plan) -> Vec<u16> {
    vec![
        plan.api_port,
        plan.cluster_port,
        plan.agent_port,
        plan.lb.stats_port,
        Layout::Lab(PathBuf::new()).metrics_port(),
    ]
}

/// Picks a random free base 127.X.Y.10 (the LB; nodes at .11, .12, ...): every address and port a lab of
/// up to `nodes` nodes binds is tried with a real bind. Several labs (and test runs) can share a machine.
pub fn alloc_base() -> Result<Ipv4Addr> {
    alloc_base_for(5, &[8200, 8201, 8404, 9102])
}

pub fn alloc_base_for(nodes: u8, ports: &[u16]) -> Result<Ipv4Addr> {
    for _ in 0..200 {
        let r = crate::secrets::random_bytes::<2>()?;
        // 127.0.x.x is left to whatever else runs on the machine.
        let x = 1 + r[0] % 254;
        let base = Ipv4Addr::new(127, x, r[1], 10);
        if addresses_free(base, nodes, ports) {
            return Ok(base);
        }
    }
    bail!("no free loopback range found after 200 tries")
}

fn addresses_free(base: Ipv4Addr, nodes: u8, ports: &[u16]) -> bool {
    let o = base.octets();
    (0..=nodes).all(|i| {
        let ip = IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3] + i));
        ports.iter().all(|p| TcpListener::bind(SocketAddr::new(ip, *p)).is_ok())
    })
}

/// How to bring a lab up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The spec file (None: the built-in example).
    pub spec: Option<PathBuf>,
    pub dir: PathBuf,
    /// None: reuse the lab's recorded base, else allocate a free one.
    pub base: Option<Ipv4Addr>,
    /// Run bootstrap after starting the processes.
    pub bootstrap: bool,
    pub kv: bool,
    pub admin_token: bool,
    /// Also create secrets/backup-token (the backup job's token).
    pub backup_token: bool,
    pub progress: bool,
}

impl LabOptions {
    pub fn new(spec: Option<PathBuf>, dir: impl Into<PathBuf>) -> LabOptions {
        LabOptions {
            spec,
            dir: dir.into(),
            base: None,
            bootstrap: true,
            kv: true,
            admin_token: false,
            backup_token: false,
            progress: false,
        }
    }
}

/// The plan of a lab: the spec's plan moved onto loopback at `base`.
pub fn lab_plan(spec: Option<&Path>, base: Ipv4Addr) -> Result<Plan> {
    let loaded = match spec {
        Some(p) => crate::spec::load_file(p)?,
        None => crate::spec::example(),
    };
    if loaded.spec.nodes.len() > 200 {
        bail!("a lab supports at most 200 nodes");
    }
    Ok(Plan::from_loaded(&loaded).for_lab(base))
}

/// The plan of an existing lab directory (from its lab.json), optionally with another spec file.
pub fn existing_plan(dir: &Path, spec: Option<&Path>) -> Result<(Plan, LabState)> {
    let st = read_state(dir)?.ok_or_else(|| {
        anyhow!("{} is not a lab directory (no {STATE_FILE}): run `vaultnix lab up` first", dir.display())
    })?;
    let spec = spec.map(Path::to_path_buf).or_else(|| st.spec.clone());
    Ok((lab_plan(spec.as_deref(), st.base)?, st))
}

/// A running (or stopped) lab: its directory, plan and tools. Cheap to create for an existing lab.
#[derive(Debug)]
pub struct Lab {
    pub dir: PathBuf,
    pub plan: Plan,
    pub state: LabState,
}

#[derive(Debug)]
pub struct UpReport {
    pub started: Vec<String>,
    pub generated: bool,
    pub bootstrap: Option<BootstrapReport>,
}

impl Lab {
    pub fn open(dir: &Path, spec: Option<&Path>) -> Result<Lab> {
        let dir = crate::output::absolute(dir)?;
        let (plan, state) = existing_plan(&dir, spec)?;
        Ok(Lab { dir, plan, state })
    }

    /// Generates the lab files (unless processes are running), starts what is not running and
    /// bootstraps. Safe to re-run.
    pub async fn up(opts: &LabOptions) -> Result<(Lab, UpReport)> {
        let dir = crate::output::absolute(&opts.dir)?;
        let spec = opts.spec.as_ref().map(|p| crate::output::absolute(p)).transpose()?;
        let prev = read_state(&dir)?;
        let base = match (&prev, opts.base) {
            (Some(p), Some(b)) if p.base != b => bail!(
                "{} is a lab on {} already; use that base (or `vaultnix lab down --purge` first)",
                dir.display(),
                p.base
            ),
            (Some(p), _) => p.base,
            (None, Some(b)) => b,
            (None, None) => alloc_base()?,
        };
        if !base.is_loopback() {
            bail!("the lab base must be a loopback address (127.0.0.0/8), not {base}");
        }
        let spec = spec.or_else(|| prev.as_ref().and_then(|p| p.spec.clone()));
        let plan = lab_plan(spec.as_deref(), base)?;
        let state =
            LabState { base, spec, bao: find_bao()?, haproxy: find_haproxy()?, vaultnix: Some(find_vaultnix()?) };
        let lab = Lab { dir: dir.clone(), plan, state };
        let any_running = lab.procs().iter().any(|p| process::running(&dir, p).is_some());
        let mut generated = false;
        if !any_running {
            if opts.base.is_none() && prev.is_none() {
                // alloc_base() checked the ports; nothing else to do.
            } else {
                lab.check_ports_free()?;
            }
            let g = generate(
                &lab.plan,
                &Layout::Lab(dir.clone()),
                &GenerateOptions {
                    out: dir.clone(),
                    check: false,
                    rotate: Rotate::default(),
                    render: RenderOptions { nix: false, ..RenderOptions::default() },
                },
            )?;
            generated = !g.diff.is_empty();
        }
        for sub in ["run", "logs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for n in &lab.plan.nodes {
            let d = dir.join(format!("data/{}", n.name));
            std::fs::create_dir_all(&d)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut text = serde_json::to_string_pretty(&lab.state)?;
        text.push('\n');
        crate::output::write_file_atomic(&dir.join(STATE_FILE), text.as_bytes(), false)?;
        let mut started = Vec::new();
        for p in lab.procs() {
            if process::running(&dir, &p).is_none() {
                process::start(&dir, &p)?;
                started.push(p.name.clone());
            }
        }
        let bootstrap = if opts.bootstrap {
            let mut bo = BootstrapOptions::new(&dir);
            bo.kv = opts.kv;
            bo.admin_token = opts.admin_token;
            bo.backup_token = opts.backup_token;
            // The lab's node stop runs the server unit's ExecStop path (`vaultnix node drain`).
            bo.drain_token = true;
            bo.progress = opts.progress;
            bo.wait = Duration::from_secs(60);
            let rep = bootstrap(&lab.plan, &bo).await.map_err(|e| lab.with_logs_hint(e))?;
            // "up" means ready: every planned voter votes and autopilot reports the planned tolerance.
            // Any token the lab has (root, admin, or a cert login on self-initialized labs).
            let c = lab.cluster()?;
            let token = crate::ops::common::resolve_token(&c.lb, &dir).await;
            let c = c.with_token(token);
            wait_ready(&c, &lab.plan, Duration::from_secs(60)).await.map_err(|e| lab.with_logs_hint(e))?;
            Some(rep)
        } else {
            None
        };
        Ok((lab, UpReport { started, generated, bootstrap }))
    }

    fn check_ports_free(&self) -> Result<()> {
        let mut ips: Vec<IpAddr> = self.plan.nodes.iter().map(|n| n.ip).collect();
        ips.push(self.plan.lb.bind);
        for ip in ips {
            for p in lab_ports(&self.plan) {
                if let Err(e) = TcpListener::bind(SocketAddr::new(ip, p)) {
                    bail!("{ip}:{p} is in use ({e}); another lab or service holds it: pick another --base");
                }
            }
        }
        Ok(())
    }

    fn with_logs_hint(&self, e: anyhow::Error) -> anyhow::Error {
        e.context(format!("lab bootstrap failed; process logs are in {}", self.dir.join("logs").display()))
    }

    /// Every process of the lab: the nodes' drain agents, the nodes, then HAProxy.
    pub fn procs(&self) -> Vec<ProcSpec> {
        let mut v: Vec<ProcSpec> = self.agent_procs();
        v.extend(self.plan.nodes.iter().map(|n| node_spec(&self.dir, &self.state.bao, &n.name)));
        v.push(haproxy_spec(&self.dir, &self.state.haproxy));
        // HAProxy processes replaced by a reload that still finish their sessions (stopped first).
        v.extend(process::old_haproxy_specs(&self.dir, &self.state.haproxy));
        v
    }

    /// Reloads HAProxy seamlessly, as the NixOS unit's reload does: a new process with the re-read
    /// configuration (and so its CA file and certificate) takes the listening sockets over the admin
    /// socket (`-x`, `expose-fd listeners`) and tells the old one to finish (`-sf`); the old one stops
    /// accepting, serves its established sessions until they end, and is stopped by `down` if it still
    /// runs (run/haproxy-old-<pid>.pid). Returns (old pid, new pid).
    pub fn reload_haproxy(&self) -> Result<(u32, u32)> {
        process::reload_haproxy(&self.dir, &haproxy_spec(&self.dir, &self.state.haproxy))
    }

    /// `vaultnix node agent` per node, with the node's rendered drain.json (labs recorded before the
    /// agent existed have none).
    fn agent_procs(&self) -> Vec<ProcSpec> {
        let Some(bin) = &self.state.vaultnix else { return Vec::new() };
        self.plan.nodes.iter().map(|n| process::agent_spec(&self.dir, bin, &n.name)).collect()
    }

    pub fn proc(&self, name: &str) -> Result<ProcSpec> {
        if let Some(p) = self.agent_procs().into_iter().find(|p| p.name == name) {
            return Ok(p);
        }
        if name == HAPROXY {
            return Ok(haproxy_spec(&self.dir, &self.state.haproxy));
        }
        self.plan
            .node(name)
            .map(|n| node_spec(&self.dir, &self.state.bao, &n.name))
            .ok_or_else(|| anyhow!("no node {name:?} in this lab"))
    }

    /// The pid of a running lab process (a node name or "haproxy").
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.proc(name).ok().and_then(|p| process::running(&self.dir, &p))
    }

    /// Starts one process (a node comes up sealed). No-op if it runs.
    pub fn start(&self, name: &str) -> Result<u32> {
        process::start(&self.dir, &self.proc(name)?)
    }

    /// SIGKILLs one process (a crash). Returns false if it was not running.
    pub fn kill(&self, name: &str) -> Result<bool> {
        process::stop(&self.dir, &self.proc(name)?, libc::SIGKILL, Duration::from_secs(5))
    }

    /// A node: first the server unit's ExecStop (`vaultnix node drain` with the node's rendered
    /// nodes/<node>.drain.json: the active node steps down and the LB's fall window passes), then
    /// SIGTERM, then SIGKILL after 15 s. HAProxy: SIGTERM.
    pub fn stop(&self, name: &str) -> Result<bool> {
        crate::api::block_on(self.stop_async(name))
    }

    /// [`Lab::stop`] for async callers: the drain and the wait for the process to exit never block the
    /// caller's runtime (a drill's writer keeps sending meanwhile).
    pub async fn stop_async(&self, name: &str) -> Result<bool> {
        let p = self.proc(name)?;
        if self.plan.node(name).is_some() {
            if let Some(pid) = process::running(&self.dir, &p) {
                let cfg = self.dir.join(crate::render::layout::paths::drain_json(name));
                if cfg.exists() {
                    eprintln!("{name}: {}", crate::ops::drain::drain_for_stop_async(&cfg, Some(pid)).await);
                }
            }
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || process::stop(&dir, &p, libc::SIGTERM, Duration::from_secs(15)))
            .await
            .map_err(|e| anyhow!("stopping {name}: {e}"))?
    }

    /// Stops every process this lab's pid files name (HAProxy first). Data stays unless `purge`.
    pub fn down(&self, purge: bool) -> Result<Vec<String>> {
        let mut stopped = Vec::new();
        let mut procs = self.procs();
        procs.reverse();
        for p in procs {
            if process::stop(&self.dir, &p, libc::SIGTERM, Duration::from_secs(15))? {
                stopped.push(p.name.clone());
            }
        }
        if purge {
            purge_dir(&self.dir)?;
        }
        Ok(stopped)
    }

    /// API clients for the lab (no token).
    pub fn cluster(&self) -> Result<Cluster> {
        Cluster::from_out(&self.plan, &self.dir)
    }

    pub fn init(&self) -> Result<InitResponse> {
        crate::ops::common::read_init(&self.dir)?
            .ok_or_else(|| anyhow!("{} has no secrets/init.json (not bootstrapped)", self.dir.display()))
    }

    /// `export ...` lines pointing `bao`/`vault` at the lab through its load balancer.
    pub fn env(&self) -> Result<String> {
        let addr = format!("https://{}:{}", self.plan.lb.hostname, self.plan.lb.port);
        let ca = self.dir.join(paths::CA_CRT);
        let token = crate::ops::common::read_init(&self.dir)?.map(|i| i.root_token);
        // The certificate names the LB hostname, which does not resolve here: clients dial the LB's
        // loopback address and verify the name via the TLS server name.
        let ip_addr = format!("https://{}", crate::plan::sock(self.plan.lb.bind, self.plan.lb.port));
        let mut s = String::new();
        s.push_str(&format!("export BAO_ADDR={ip_addr}\n"));
        s.push_str(&format!("export VAULT_ADDR={ip_addr}\n"));
        s.push_str(&format!("export BAO_CACERT={}\n", shell_quote(&ca.display().to_string())));
        s.push_str(&format!("export VAULT_CACERT={}\n", shell_quote(&ca.display().to_string())));
        s.push_str(&format!("export BAO_TLS_SERVER_NAME={}\n", self.plan.lb.hostname));
        s.push_str(&format!("export VAULT_TLS_SERVER_NAME={}\n", self.plan.lb.hostname));
        if let Some(t) = token {
            s.push_str(&format!("export BAO_TOKEN={t}\nexport VAULT_TOKEN={t}\n"));
        } else if crate::ops::common::admin_identity(&self.dir).is_some() {
            // Self-initialized: no root token exists; the operator certificate logs in.
            let crt = shell_quote(&crate::ops::common::admin_cert_path(&self.dir).display().to_string());
            let key = shell_quote(&crate::ops::common::admin_key_path(&self.dir).display().to_string());
            s.push_str(&format!("export BAO_CLIENT_CERT={crt}\nexport VAULT_CLIENT_CERT={crt}\n"));
            s.push_str(&format!("export BAO_CLIENT_KEY={key}\nexport VAULT_CLIENT_KEY={key}\n"));
            s.push_str(
                "# no root token (self-initialized): log in with `bao login -method=cert name=vaultnix-admin`\n",
            );
        }
        s.push_str(&format!("# lab {:?} through its load balancer ({addr})\n", self.plan.name));
        s.push_str(&format!(
            "# run: eval \"$(vaultnix lab env --dir {})\"\n",
            shell_quote(&self.dir.display().to_string())
        ));
        Ok(s)
    }
}

pub fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What `wait_ready` last saw, for its error message.
fn readiness(
    conf: &crate::api::raft::RaftConfiguration,
    ap: &crate::api::raft::AutopilotState,
    plan: &Plan,
) -> Result<(), String> {
    for n in plan.nodes.iter().filter(|n| n.voter) {
        match conf.servers.iter().find(|s| s.node_id == n.node_id) {
            Some(s) if s.voter => {}
            Some(_) => return Err(format!("{} is not a voter yet", n.name)),
            None => return Err(format!("{} has not joined", n.name)),
        }
    }
    let want = i64::try_from(plan.quorum.tolerates).unwrap_or(i64::MAX);
    if !ap.healthy || ap.failure_tolerance < want {
        return Err(format!(
            "autopilot healthy={} failure_tolerance={} (planned {want})",
            ap.healthy, ap.failure_tolerance
        ));
    }
    Ok(())
}

/// Waits (bounded by `timeout`, polling every 250 ms) until every planned voter is a raft voter and
/// autopilot is healthy with at least the planned failure tolerance. Needs a token on `c`.
pub async fn wait_ready(c: &Cluster, plan: &Plan, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::from("no node answered");
    loop {
        for n in &c.nodes {
            let (conf, ap) = match (n.raft_configuration().await, n.autopilot_state().await) {
                (Ok(c), Ok(a)) => (c, a),
                (Err(e), _) | (_, Err(e)) => {
                    last = format!("{}: {e}", n.name);
                    continue;
                }
            };
            match readiness(&conf, &ap, plan) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            break;
        }
        if std::time::Instant::now() >= deadline {
            bail!("the cluster is not ready after {}s: {last}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Removes what a lab wrote (never anything else in the directory).
fn purge_dir(dir: &Path) -> Result<()> {
    for sub in ["data", "logs", "run", "secrets", "backups", "textfile", crate::render::paths::FLAKE] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    for f in [STATE_FILE, crate::output::MANIFEST, crate::render::paths::GITIGNORE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    // Leave the directory itself if the user keeps other things there.
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// The live-test fixture: a lab that stops exactly its processes when dropped.
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// let tmp = std::path::PathBuf::from("/tmp/my-lab");
/// let lab = vaultnix::lab::LabHandle::up(Some("tests/specs/lab.toml".as_ref()), &tmp)?;
/// let c = lab.cluster_with_root()?;          // API clients with the root token
/// lab.kill("vault-2")?;                      // kill -9
/// lab.start("vault-2")?;                     // back, sealed
/// lab.unseal("vault-2")?;                    // with the keys from init.json
/// lab.stop_haproxy()?; lab.start_haproxy()?;
/// lab.down()?;                               // or just drop it
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LabHandle {
    pub lab: Lab,
    pub up: UpReport,
    stopped: bool,
}

impl LabHandle {
    /// A fresh lab in `dir` on a newly allocated loopback base: generated, started, bootstrapped (with a
    /// kv-v2 mount at secret/). Blocks; usable from sync and async tests.
    pub fn up(spec: Option<&Path>, dir: &Path) -> Result<LabHandle> {
        let mut o = LabOptions::new(spec.map(Path::to_path_buf), dir);
        o.base = Some(alloc_base()?);
        LabHandle::up_with(o)
    }

    pub fn up_with(opts: LabOptions) -> Result<LabHandle> {
        let r = crate::api::block_on(async { Lab::up(&opts).await });
        match r {
            Ok((lab, up)) => Ok(LabHandle { lab, up, stopped: false }),
            Err(e) => {
                // Do not leave half a lab running.
                if let Ok(lab) = Lab::open(&opts.dir, opts.spec.as_deref()) {
                    let _ = lab.down(false);
                }
                Err(e)
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.lab.dir
    }
    pub fn plan(&self) -> &Plan {
        &self.lab.plan
    }
    pub fn node_names(&self) -> Vec<String> {
        self.lab.plan.nodes.iter().map(|n| n.name.clone()).collect()
    }
    pub fn cluster(&self) -> Result<Cluster> {
        self.lab.cluster()
    }
    pub fn root_token(&self) -> Result<String> {
        Ok(self.lab.init()?.root_token)
    }
    pub fn cluster_with_root(&self) -> Result<Cluster> {
        Ok(self.cluster()?.with_token(Some(self.root_token()?)))
    }
    pub fn kill(&self, node: &str) -> Result<bool> {
        self.lab.kill(node)
    }
    pub fn stop(&self, node: &str) -> Result<bool> {
        self.lab.stop(node)
    }
    pub fn start(&self, node: &str) -> Result<u32> {
        self.lab.start(node)
    }
    /// Unseals one node with the keys from the lab's init.json (bounded: 60 s).
    pub fn unseal(&self, node: &str) -> Result<()> {
        let c = self.cluster()?;
        let n = c.node(node).ok_or_else(|| anyhow!("no node {node:?}"))?.clone();
        let keys = crate::ops::unseal::Keys::parse(&serde_json::to_string(&self.lab.init()?)?)?;
        crate::api::block_on(async move { crate::ops::unseal::unseal_node(&n, &keys, Duration::from_secs(60)).await })?;
        Ok(())
    }
    pub fn stop_haproxy(&self) -> Result<bool> {
        self.lab.stop(HAPROXY)
    }
    pub fn start_haproxy(&self) -> Result<u32> {
        self.lab.start(HAPROXY)
    }
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.lab.pid(name)
    }
    /// Stops every process (keeps the files).
    pub fn down(mut self) -> Result<Vec<String>> {
        self.stopped = true;
        self.lab.down(false)
    }
}

impl Drop for LabHandle {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.lab.down(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_replaced_while_running_is_found_at_its_path() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("vaultnix");
        let deleted = PathBuf::from(format!("{} (deleted)", bin.display()));
        // Nothing at the path: the name is kept (and then not taken for a vaultnix binary).
        assert_eq!(replaced_exe(deleted.clone()), deleted);
        std::fs::write(&bin, b"").unwrap();
        assert_eq!(replaced_exe(deleted), bin);
        assert_eq!(replaced_exe(bin.clone()), bin);
    }
}
