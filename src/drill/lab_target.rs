//! Drilling a lab: bring up a fresh loopback lab (or open a running one), implement [`Target`] with the
//! lab's process control, run the trials, and for `--compare-seed` do it all twice, once with seed 000's
//! configuration and once with ours.

use super::report::DrillReport;
use super::run::{self, Progress, Scenario, Target, TrialOptions};
use crate::api::Cluster;
use crate::lab::{Lab, LabHandle, LabOptions};
use crate::render::{paths, render_haproxy_profile, HaproxyProfile, Layout};
use crate::shell::Shell;
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub scenario: Scenario,
    pub spec: Option<PathBuf>,
    /// A running lab to use instead of a fresh one.
    pub dir: Option<PathBuf>,
    pub trials: usize,
    pub rate_hz: f64,
    pub timeout: Duration,
    pub drain: bool,
    pub compare_seed: bool,
    /// Run the trials twice, in two fresh labs from the same spec: `load_balancer.mode = "passthrough"`
    /// and `"terminate"` (issue 16: TCP passthrough vs the L7 mode, side by side).
    pub compare_mode: bool,
    /// Keep the fresh labs' directories (processes are always stopped).
    pub keep: bool,
    pub progress: bool,
}

/// Seed 000's raft timing: OpenBao's default performance_multiplier.
pub const SEED_MULTIPLIER: u8 = 5;

/// A lab as a drill target. Holds the lab's processes only through the lab's own pid files.
pub struct LabTarget {
    lab: Lab,
    cluster: Cluster,
    keys: crate::ops::unseal::Keys,
    token: String,
    /// Nodes we froze: always thawed on drop, whatever happened.
    paused: Vec<String>,
}

impl LabTarget {
    pub fn new(lab: Lab) -> Result<LabTarget> {
        let init = lab.init()?;
        let keys = crate::ops::unseal::Keys::parse(&serde_json::to_string(&init)?)?;
        let cluster = lab.cluster()?.with_token(Some(init.root_token.clone()));
        Ok(LabTarget { lab, cluster, keys, token: init.root_token, paused: Vec::new() })
    }
}

impl Drop for LabTarget {
    fn drop(&mut self) {
        for n in std::mem::take(&mut self.paused) {
            if let Some(pid) = self.lab.pid(&n) {
                // SAFETY: kill(2) on a pid read from this lab's own pid file.
                unsafe { libc::kill(pid as i32, libc::SIGCONT) };
            }
        }
    }
}

impl Target for LabTarget {
    fn cluster(&self) -> &Cluster {
        &self.cluster
    }
    fn kill(&mut self, node: &str) -> Result<()> {
        self.lab.kill(node).map(|_| ())
    }
    async fn stop(&mut self, node: &str) -> Result<()> {
        // The lab's node stop: the rendered drain.json through `vaultnix node drain`'s code, then SIGTERM.
        self.lab.stop_async(node).await.map(|_| ())
    }
    fn pause(&mut self, node: &str, paused: bool) -> Result<()> {
        let pid = self.lab.pid(node).ok_or_else(|| anyhow!("{node} is not running"))?;
        // SAFETY: kill(2) on a pid read from this lab's own pid file (checked alive by `pid`).
        let r = unsafe { libc::kill(pid as i32, if paused { libc::SIGSTOP } else { libc::SIGCONT }) };
        if r != 0 {
            bail!("cannot signal {node} (pid {pid}): {}", std::io::Error::last_os_error());
        }
        if paused {
            self.paused.push(node.to_string());
        } else {
            self.paused.retain(|n| n != node);
        }
        Ok(())
    }
    async fn start(&mut self, node: &str) -> Result<()> {
        self.lab.start(node)?;
        super::run::unseal_started(&self.cluster, &self.keys, node).await
    }
    async fn step_down(&mut self, node: &str, drain: bool) -> Result<(String, usize)> {
        let socket = PathBuf::from(Layout::Lab(self.lab.dir.clone()).haproxy_admin_socket());
        super::run::step_down_at(&self.cluster, node, &socket, drain).await
    }
    async fn ca_step(&mut self, step: crate::secrets::CaStep) -> Result<Vec<String>> {
        let r = crate::ops::ca_rollover::step_lab(&self.lab, step, None, 30).await?;
        let v = &r.verification;
        if !v.ok {
            let bad: Vec<String> =
                v.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.what, c.detail)).collect();
            bail!(
                "ca rollover {}: the {} phase did not verify on the wire: {}",
                step.as_str(),
                v.phase.as_str(),
                bad.join("; ")
            );
        }
        Ok(vec![format!(
            "{}: {} action(s) applied, phase {} verified on the wire ({} checks)",
            step.as_str(),
            r.done.len(),
            v.phase.as_str(),
            v.checks.len()
        )])
    }
    async fn renew_certs(&mut self) -> Result<Vec<String>> {
        let (r, served) = crate::ops::certs::renew_lab(&self.lab, 30).await?;
        let lb = &self.lab.plan.lb.name;
        let nodes = r.renewed.iter().filter(|x| &x.node != lb).count();
        Ok(vec![format!(
            "renewed {nodes} node certificate(s){}, verified on the wire: {} listener(s) serve the new one",
            if r.renewed.iter().any(|x| &x.node == lb) {
                " and the load balancer's (HAProxy reloaded seamlessly)"
            } else {
                ""
            },
            served.iter().filter(|s| s.ok).count()
        )])
    }
    fn reload_trust(&mut self) -> Result<()> {
        self.cluster = self.lab.cluster()?.with_token(Some(self.token.clone()));
        Ok(())
    }
    fn lb_admin_socket(&self) -> Option<PathBuf> {
        Some(PathBuf::from(Layout::Lab(self.lab.dir.clone()).haproxy_admin_socket()))
    }
}

/// Runs the drill described by `o`; the report says whether any acknowledged write was lost.
pub async fn drill(o: &DrillOptions, shell: &Shell) -> Result<DrillReport> {
    let topts = TrialOptions {
        scenario: o.scenario,
        trials: o.trials,
        rate_hz: o.rate_hz,
        timeout: o.timeout,
        drain: o.drain,
        ..TrialOptions::default()
    };
    let per_config = if o.compare_seed || o.compare_mode { 2 } else { 1 };
    let bar = progress_bar(o.progress, (o.trials * per_config) as u64);
    let mut configs = Vec::new();
    if let Some(dir) = &o.dir {
        let lab = Lab::open(dir, o.spec.as_deref())?;
        let mut t = LabTarget::new(lab)?;
        let mut r = run::run_trials(&mut t, "ours", &topts, &bar).await?;
        r.haproxy_profile = "as running".into();
        configs.push(r);
    } else {
        let mut plan_list = Vec::new();
        if o.compare_mode {
            plan_list.push(("passthrough", HaproxyProfile::Tuned, Some("passthrough")));
            plan_list.push(("terminate", HaproxyProfile::Tuned, Some("terminate")));
        } else {
            if o.compare_seed {
                plan_list.push(("seed", HaproxyProfile::Seed, None));
            }
            plan_list.push(("ours", HaproxyProfile::Tuned, None));
        }
        for (name, profile, mode) in plan_list {
            bar.phase(&format!("{name}: bringing up a fresh lab"));
            let fresh = FreshLab::up(o, profile, mode)?;
            shell.detail(format!(
                "{name}: lab in {} (LB {})",
                fresh.handle.dir().display(),
                fresh.handle.plan().lb_url()
            ));
            let r = async {
                let lab = Lab::open(fresh.handle.dir(), Some(&fresh.spec))?;
                let mut t = LabTarget::new(lab)?;
                run::run_trials(&mut t, name, &topts, &bar).await
            }
            .await;
            // Stopped (and removed unless kept) whether the trials succeeded or not.
            let dir = fresh.dir.clone();
            fresh.down(o.keep)?;
            if o.keep {
                shell.note(format!("{name}: lab files kept in {}", dir.display()));
            }
            let mut r = r?;
            r.haproxy_profile = match mode {
                Some(m) => format!("{}/{m}", profile.as_str()),
                None => profile.as_str().into(),
            };
            configs.push(r);
        }
    }
    bar.finish();
    Ok(DrillReport::new(o.scenario, o.trials, o.rate_hz, o.drain, configs))
}

/// A lab this drill brought up in a directory of its own; stopped (and deleted unless kept) at the end.
struct FreshLab {
    handle: LabHandle,
    dir: PathBuf,
    spec: PathBuf,
}

impl FreshLab {
    fn up(o: &DrillOptions, profile: HaproxyProfile, mode: Option<&str>) -> Result<FreshLab> {
        let dir = new_private_dir()?;
        // The lab reads a spec file: write the one this configuration runs (for the seed: the same spec
        // with the seed's raft multiplier), so the lab renders exactly what is measured.
        let text = match &o.spec {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            None => crate::spec::EXAMPLE.to_string(),
        };
        let text = match profile {
            HaproxyProfile::Seed => with_multiplier(&text, SEED_MULTIPLIER)?,
            HaproxyProfile::Tuned => text,
        };
        let text = match mode {
            Some(m) => with_lb_mode(&text, m)?,
            None => text,
        };
        let spec = dir.join("drill-spec.toml");
        crate::output::write_file_atomic(&spec, text.as_bytes(), false)?;
        let lab_dir = dir.join("lab");
        let mut lo = LabOptions::new(Some(spec.clone()), &lab_dir);
        lo.base = Some(crate::lab::alloc_base()?);
        lo.kv = false;
        let handle = match LabHandle::up_with(lo) {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if profile == HaproxyProfile::Seed {
            if let Err(e) = use_seed_haproxy(&handle) {
                drop(handle);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        }
        Ok(FreshLab { handle, dir, spec })
    }

    fn down(self, keep: bool) -> Result<()> {
        self.handle.down()?;
        if !keep {
            std::fs::remove_dir_all(&self.dir).with_context(|| format!("cannot remove {}", self.dir.display()))?;
        }
        Ok(())
    }
}

/// Same renderer, seed profile: HAProxy restarted on it before any trial.
fn use_seed_haproxy(handle: &LabHandle) -> Result<()> {
    let layout = Layout::Lab(handle.dir().to_path_buf());
    let cfg = render_haproxy_profile(handle.plan(), &layout, HaproxyProfile::Seed);
    crate::output::write_file_atomic(&handle.dir().join(paths::HAPROXY_CFG), cfg.as_bytes(), false)?;
    handle.stop_haproxy()?;
    handle.start_haproxy()?;
    Ok(())
}

/// The spec text with `[raft] performance_multiplier` set (comments and layout kept).
pub fn with_multiplier(text: &str, m: u8) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("the spec is not valid TOML")?;
    if !doc.contains_table("raft") {
        doc["raft"] = toml_edit::table();
    }
    doc["raft"]["performance_multiplier"] = toml_edit::value(i64::from(m));
    Ok(doc.to_string())
}

/// The spec text with `[load_balancer] mode` set (comments and layout kept).
pub fn with_lb_mode(text: &str, mode: &str) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("the spec is not valid TOML")?;
    if !doc.contains_table("load_balancer") {
        bail!("the spec has no [load_balancer] table");
    }
    doc["load_balancer"]["mode"] = toml_edit::value(mode);
    Ok(doc.to_string())
}

pub(crate) fn new_private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let mut b = [0u8; 6];
        getrandom::getrandom(&mut b).map_err(|e| anyhow!("no randomness: {e}"))?;
        let d = base.join(format!("vaultnix-drill-{}", hex::encode(b)));
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(anyhow!("cannot create {}: {e}", d.display())),
        }
    }
    bail!("cannot create a private directory under {}", base.display())
}

/// The progress display: an indicatif bar on stderr, hidden when stderr is not a terminal.
pub struct Bar(indicatif::ProgressBar);

pub fn progress_bar(enabled: bool, len: u64) -> Bar {
    let pb = if enabled {
        indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr())
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos}/{len} trials {msg}")
    {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    Bar(pb)
}

impl Bar {
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn phase(&self, msg: &str) {
        self.0.set_message(msg.to_string());
    }
    fn trial_done(&self) {
        self.0.inc(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_spec_sets_the_multiplier_and_keeps_the_rest() {
        let t = with_multiplier("# c\n[cluster]\nname = \"x\"\n", 5).unwrap();
        assert!(t.contains("# c\n[cluster]\nname = \"x\"\n"));
        assert!(t.contains("[raft]\nperformance_multiplier = 5\n"), "{t}");
        let t = with_multiplier("[raft]\nperformance_multiplier = 1 # lan\n", 5).unwrap();
        assert!(t.contains("performance_multiplier = 5"), "{t}");
        assert!(!t.contains("= 1"));
    }

    #[test]
    fn mode_spec_sets_the_lb_mode_and_keeps_the_rest() {
        let t = with_lb_mode("[load_balancer]\nhostname = \"lb\" # x\nmode = \"passthrough\"\n", "terminate").unwrap();
        assert!(t.contains("hostname = \"lb\" # x"), "{t}");
        assert!(t.contains("mode = \"terminate\""), "{t}");
        assert!(!t.contains("passthrough"), "{t}");
        let text = with_lb_mode(crate::spec::EXAMPLE, "terminate").unwrap();
        let loaded = crate::spec::load_str("example", &text, std::path::Path::new(".")).unwrap();
        assert_eq!(loaded.spec.load_balancer.mode, crate::spec::LbMode::Terminate);
        assert!(with_lb_mode("[cluster]\n", "terminate").is_err());
    }

    #[test]
    fn private_dirs_are_0700() {
        use std::os::unix::fs::PermissionsExt;
        let d = new_private_dir().unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir(&d).unwrap();
        assert_eq!(mode, 0o700);
    }
}
