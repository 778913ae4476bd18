//! `vaultnix recover lost-quorum`: bring a cluster that can no longer elect a leader back with its
//! surviving nodes, by rewriting their raft configuration with `raft/peers.json`.
//!
//! Order matters and each step is recorded in `<out>/recover/lost-quorum.json`:
//! assess → pause automation → drain the LB → stop the survivors → write peers.json → start them →
//! unseal in order → verify a leader → verify data. The lost nodes are then replaced one by one
//! (`vaultnix node replace`), never restarted with their old data.

use super::{keys_or_default, Log, Target};
use crate::api::{Cluster, NodeClient, NodeState};
use crate::ops::common::{health_all, poll, resolve_token};
use crate::ops::unseal::{unseal_node, Keys};
use crate::plan::{sock, Plan};
use crate::spec::SealKind;
use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const STATE_REL: &str = "recover/lost-quorum.json";

#[derive(Debug, Clone)]
pub struct LostQuorumOptions {
    /// The nodes whose data survives (default: the nodes whose API answers).
    pub survivors: Option<Vec<String>>,
    /// Unseal keys (default: `<out>/secrets/init.json`).
    pub keys: Option<Keys>,
    /// Bound for each wait (stopping, unsealing, electing).
    pub wait: Duration,
    /// Proceed although a leader or a quorum of reachable voters was found.
    pub force: bool,
}

impl Default for LostQuorumOptions {
    fn default() -> Self {
        LostQuorumOptions { survivors: None, keys: None, wait: Duration::from_secs(90), force: false }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    survivors: Vec<String>,
    lost: Vec<String>,
    /// Steps completed, in order.
    done: Vec<String>,
    /// Seconds each step took.
    seconds: BTreeMap<String, f64>,
    started_unix_ms: u64,
    /// When the survivors were stopped (the cluster is fully down from here until a leader).
    stop_unix_ms: Option<u64>,
    /// Real hosts: the per-host commands were printed; the next run continues after them.
    instructions_printed: bool,
    leader: Option<String>,
    leader_unix_ms: Option<u64>,
    finished: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LostQuorumReport {
    pub survivors: Vec<String>,
    pub lost: Vec<String>,
    pub leader: Option<String>,
    /// Steps done in this run, with seconds.
    pub steps: Vec<(String, f64)>,
    /// Real hosts: commands printed, run them and re-run the command.
    pub waiting_for_operator: bool,
    pub finished: bool,
    /// From stopping the survivors to a verified leader (across runs).
    pub seconds_down: Option<f64>,
    /// Wall time of this run.
    pub seconds_this_run: f64,
    /// What to do next (replace the lost nodes).
    pub next: Vec<String>,
    pub state_file: PathBuf,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The `raft/peers.json` for the survivors: every survivor votes (with fewer than a quorum left there
/// is nobody else to vote).
pub fn peers_json(plan: &Plan, survivors: &[String]) -> Result<String> {
    let v: Vec<serde_json::Value> = survivors
        .iter()
        .map(|s| {
            let n = plan.node(s).ok_or_else(|| anyhow!("no node {s:?} in the plan"))?;
            Ok(json!({ "id": n.node_id, "address": sock(n.ip, plan.cluster_port), "non_voter": false }))
        })
        .collect::<Result<_>>()?;
    let mut s = serde_json::to_string_pretty(&v)?;
    s.push('\n');
    Ok(s)
}

fn read_state(p: &Path) -> Result<Option<State>> {
    match std::fs::read_to_string(p) {
        Ok(t) => {
            Ok(Some(serde_json::from_str(&t).with_context(|| format!("{} is not a recovery state", p.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
    }
}

fn save_state(p: &Path, s: &State) -> Result<()> {
    let mut t = serde_json::to_string_pretty(s)?;
    t.push('\n');
    crate::output::write_file_atomic(p, t.as_bytes(), false)
}

struct Run<'a, 'b> {
    t: &'a Target,
    st: State,
    path: PathBuf,
    steps: Vec<(String, f64)>,
    log: Log<'b>,
}

impl Run<'_, '_> {
    fn done(&self, step: &str) -> bool {
        self.st.done.iter().any(|d| d == step)
    }
    fn finish_step(&mut self, step: &str, started: Instant) -> Result<()> {
        let secs = started.elapsed().as_secs_f64();
        self.st.done.push(step.to_string());
        self.st.seconds.insert(step.to_string(), secs);
        self.steps.push((step.to_string(), secs));
        save_state(&self.path, &self.st)
    }
    fn say(&mut self, msg: &str) {
        (self.log)(msg);
    }
}

pub async fn lost_quorum(t: &Target, o: &LostQuorumOptions, log: Log<'_>) -> Result<LostQuorumReport> {
    let run_start = Instant::now();
    let path = t.out.join(STATE_REL);
    let cluster = Cluster::from_out(&t.plan, &t.out)?;
    let mut prev = read_state(&path)?;
    if prev.as_ref().is_some_and(|s| s.finished) {
        // A finished recovery is kept for the record; a new loss starts a new procedure.
        let archived = t.out.join(format!("recover/lost-quorum.{}.json", now_ms()));
        std::fs::rename(&path, &archived).with_context(|| format!("cannot archive {}", path.display()))?;
        prev = None;
    }
    let st = match prev {
        Some(s) => {
            if let Some(want) = &o.survivors {
                let a: BTreeSet<&String> = want.iter().collect();
                let b: BTreeSet<&String> = s.survivors.iter().collect();
                if a != b {
                    bail!(
                        "a recovery with survivors {} is in progress ({}); finish it, or delete that file to start over",
                        s.survivors.join(","),
                        path.display()
                    );
                }
            }
            log(&format!("resuming the recovery in {} (done: {})", path.display(), s.done.join(", ")));
            s
        }
        None => assess(t, &cluster, o, log).await?,
    };
    save_state(&path, &st)?;
    let mut run = Run { t, st, path, steps: Vec::new(), log };

    if !t.is_lab() && !run.st.instructions_printed {
        print_host_instructions(&mut run)?;
        run.st.instructions_printed = true;
        save_state(&run.path, &run.st)?;
        return Ok(report(run, run_start, true));
    }

    for step in ["pause-automation", "drain-lb", "stop-survivors", "peers-json", "start-survivors"] {
        if run.done(step) {
            continue;
        }
        let started = Instant::now();
        match (step, &t.lab) {
            ("pause-automation", Some(_)) => {
                run.say("pause automation: the lab runs no backup timer and no unseal loop; nothing to pause")
            }
            ("drain-lb", Some(_)) => run.say(
                "drain the LB: the lab's HAProxy sends traffic only to a node answering 200 on sys/health; with no leader it routes nowhere, so no client write lands during the procedure",
            ),
            ("stop-survivors", Some(lab)) => {
                run.st.stop_unix_ms = Some(now_ms());
                for s in run.st.survivors.clone() {
                    let was = lab.stop(&s)?;
                    run.say(&format!("stopped {s}{}", if was { "" } else { " (was not running)" }));
                }
                wait_unreachable(&cluster, &run.st.survivors, o.wait).await?;
            }
            ("peers-json", Some(_)) => {
                let text = peers_json(&t.plan, &run.st.survivors)?;
                for s in run.st.survivors.clone() {
                    let n = t.node(&s)?;
                    let raft = t.data_dir(n).join("raft");
                    if !raft.join("raft.db").is_file() {
                        bail!("{} has no raft.db: {s} holds no raft data, so it cannot be a survivor", raft.display());
                    }
                    let p = raft.join("peers.json");
                    crate::output::write_file_atomic(&p, text.as_bytes(), true)?;
                    run.say(&format!("wrote {}", p.display()));
                }
            }
            ("start-survivors", Some(lab)) => {
                for s in run.st.survivors.clone() {
                    let pid = lab.start(&s)?;
                    run.say(&format!("started {s} (pid {pid})"));
                }
            }
            // Real hosts: the operator ran the printed commands; check that the survivors answer again.
            ("start-survivors", None) => {
                wait_reachable(&cluster, &run.st.survivors, o.wait).await.map_err(|e| {
                    anyhow!("{e:#}\nrun the printed commands on the survivors (start the servers), then re-run")
                })?;
            }
            _ => {}
        }
        run.finish_step(step, started)?;
    }

    if !run.done("unseal") {
        let started = Instant::now();
        let keys = keys_or_default(o.keys.clone(), &t.out)?;
        for s in run.st.survivors.clone() {
            let n = node_client(&cluster, &s)?;
            match (t.plan.seal.kind, &keys) {
                (SealKind::Shamir, Some(k)) => {
                    let out = unseal_node(&n, k, o.wait).await?;
                    run.say(&format!("unsealed {s} ({out:?})"));
                }
                (SealKind::Shamir, None) => bail!(
                    "{s} needs unseal keys: pass --keys-file (init.json or one key per line), or run `vaultnix unseal`, then re-run"
                ),
                _ => {
                    poll(o.wait, Duration::from_millis(250), || async {
                        n.seal_status().await.ok().filter(|ss| ss.initialized && !ss.sealed)
                    })
                    .await
                    .ok_or_else(|| anyhow!("{s} did not auto-unseal within {:?}: check its seal/KMS", o.wait))?;
                    run.say(&format!("{s} auto-unsealed"));
                }
            }
        }
        run.finish_step("unseal", started)?;
    }

    if !run.done("verify-leader") {
        let started = Instant::now();
        let survivors = run.st.survivors.clone();
        let leader = poll(o.wait, Duration::from_millis(250), || {
            let c = &cluster;
            let survivors = &survivors;
            async move {
                health_all(c)
                    .await
                    .into_iter()
                    .find(|(n, h)| {
                        survivors.contains(&n.name) && matches!(h, Ok(h) if h.state == NodeState::Active)
                    })
                    .map(|(n, _)| n.name.clone())
            }
        })
        .await
        .ok_or_else(|| {
            anyhow!(
                "no survivor became active within {:?}: check the server logs for peers.json errors (the file is deleted once applied)",
                o.wait
            )
        })?;
        run.st.leader = Some(leader.clone());
        run.st.leader_unix_ms = Some(now_ms());
        run.say(&format!("{leader} is active"));
        let active = node_client(&cluster, &leader)?;
        if let Some(tok) = resolve_token(&active, &t.out).await {
            let cfg = active.clone().with_token(Some(tok)).raft_configuration().await?;
            let ids: BTreeSet<String> = cfg.servers.iter().map(|s| s.node_id.clone()).collect();
            let want: BTreeSet<String> =
                run.st.survivors.iter().filter_map(|s| t.plan.node(s)).map(|n| n.node_id.clone()).collect();
            if ids != want {
                bail!(
                    "the raft configuration holds {:?}, expected the survivors {:?}: peers.json was not applied on every survivor",
                    ids,
                    want
                );
            }
            run.say(&format!("raft configuration: {}", ids.into_iter().collect::<Vec<_>>().join(", ")));
        }
        run.finish_step("verify-leader", started)?;
    }

    if !run.done("verify-data") {
        let started = Instant::now();
        let leader = run.st.leader.clone().unwrap_or_default();
        let active = node_client(&cluster, &leader)?;
        match resolve_token(&active, &t.out).await {
            Some(tok) => {
                let a = active.with_token(Some(tok));
                let mounts = a.mounts().await?;
                // A write goes through raft: proves the new configuration commits, not only reads.
                let probe = format!("cubbyhole/vaultnix-recover-{}", now_ms());
                a.call(Method::POST, &probe, Some(&json!({ "check": "lost-quorum" }))).await?;
                let back = a.call(Method::GET, &probe, None).await?;
                if back.pointer("/data/check").and_then(|v| v.as_str()) != Some("lost-quorum") {
                    bail!("wrote {probe} but read back {back}");
                }
                let _ = a.call(Method::DELETE, &probe, None).await;
                run.say(&format!("data: {} mounts readable; a write through raft committed and read back", mounts.len()));
            }
            None => run.say(
                "no token (secrets/admin-token, secrets/init.json, $BAO_TOKEN): read a known secret yourself to verify the data",
            ),
        }
        run.finish_step("verify-data", started)?;
    }

    if !t.is_lab() {
        run.say("put the nodes back in the LB (on the LB host):");
        for n in &t.plan.nodes {
            let line = format!(
                "  echo 'set server vault_active/{} state ready' | socat stdio {}",
                n.name,
                t.layout.haproxy_admin_socket()
            );
            run.say(&line);
        }
        run.say("resume automation on every node: systemctl start vaultnix-backup.timer");
    }
    run.st.finished = true;
    save_state(&run.path, &run.st)?;
    Ok(report(run, run_start, false))
}

fn report(run: Run<'_, '_>, run_start: Instant, waiting: bool) -> LostQuorumReport {
    let st = &run.st;
    let seconds_down = match (st.stop_unix_ms, st.leader_unix_ms) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1000.0),
        _ => None,
    };
    let next = if st.finished {
        st.lost.iter().map(|l| format!("vaultnix node replace {l} --out {}", run.t.out.display())).collect()
    } else {
        vec!["run the printed commands, then re-run `vaultnix recover lost-quorum` to unseal and verify".into()]
    };
    LostQuorumReport {
        survivors: st.survivors.clone(),
        lost: st.lost.clone(),
        leader: st.leader.clone(),
        steps: run.steps,
        waiting_for_operator: waiting,
        finished: st.finished,
        seconds_down,
        seconds_this_run: run_start.elapsed().as_secs_f64(),
        next,
        state_file: run.path,
    }
}

fn node_client(c: &Cluster, name: &str) -> Result<NodeClient> {
    c.node(name).cloned().ok_or_else(|| anyhow!("no node {name:?} in the plan"))
}

/// Decides survivors and lost nodes, refusing when recovery would do harm.
async fn assess(t: &Target, c: &Cluster, o: &LostQuorumOptions, log: Log<'_>) -> Result<State> {
    let health = health_all(c).await;
    let mut reachable = Vec::new();
    for (n, h) in &health {
        match h {
            Ok(h) => {
                log(&format!("{}: {}", n.name, h.state.as_str()));
                if h.state == NodeState::Active && !o.force {
                    bail!(
                        "{} is active: the cluster has a leader, there is nothing to recover (`vaultnix doctor --live` shows what is wrong)",
                        n.name
                    );
                }
                reachable.push(n.name.clone());
            }
            Err(e) => log(&format!("{}: unreachable ({e})", n.name)),
        }
    }
    let survivors = match &o.survivors {
        Some(s) => {
            for name in s {
                t.node(name)?;
            }
            s.clone()
        }
        None => reachable.clone(),
    };
    if survivors.is_empty() {
        bail!("no node answers and no --survivors given: name the nodes whose data survived (--survivors a,b)");
    }
    let lost: Vec<String> = t.plan.nodes.iter().map(|n| n.name.clone()).filter(|n| !survivors.contains(n)).collect();
    for l in &lost {
        if reachable.contains(l) {
            bail!(
                "{l} answers but is not among the survivors: stop it first (or include it in --survivors); two raft configurations must never run side by side"
            );
        }
    }
    let surviving_voters = survivors.iter().filter(|s| t.plan.node(s).is_some_and(|n| n.voter)).count();
    if surviving_voters >= t.plan.quorum.quorum && !o.force {
        bail!(
            "{surviving_voters} surviving voter(s) are a quorum ({}): an election should succeed without peers.json — wait ~15 s, check `vaultnix doctor --live`; --force rewrites the raft configuration anyway",
            t.plan.quorum.quorum
        );
    }
    log(&format!(
        "survivors: {}; lost: {}",
        survivors.join(", "),
        if lost.is_empty() { "-".into() } else { lost.join(", ") }
    ));
    Ok(State { survivors, lost, started_unix_ms: now_ms(), ..State::default() })
}

async fn wait_unreachable(c: &Cluster, names: &[String], limit: Duration) -> Result<()> {
    for name in names {
        let n = node_client(c, name)?;
        poll(limit, Duration::from_millis(200), || async { n.health().await.err().filter(|e| e.is_unreachable()) })
            .await
            .ok_or_else(|| anyhow!("{name} still answers {:?} after being stopped", n.addr()))?;
    }
    Ok(())
}

async fn wait_reachable(c: &Cluster, names: &[String], limit: Duration) -> Result<()> {
    for name in names {
        let n = node_client(c, name)?;
        poll(limit, Duration::from_millis(250), || async { n.health().await.ok() })
            .await
            .ok_or_else(|| anyhow!("{name} ({}) does not answer within {limit:?}", n.addr()))?;
    }
    Ok(())
}

/// Real hosts: the per-host runbook (the tool cannot ssh). Verified on the next run through the API.
fn print_host_instructions(run: &mut Run<'_, '_>) -> Result<()> {
    let t = run.t;
    let unit = t.unit();
    let text = peers_json(&t.plan, &run.st.survivors)?;
    let mut lines: Vec<String> = Vec::new();
    lines.push("1. pause automation on EVERY node (it would fight the procedure):".into());
    for n in &t.plan.nodes {
        lines.push(format!("   [{}] systemctl stop vaultnix-backup.timer vaultnix-backup.service", n.name));
    }
    lines.push("   stop any unseal loop or config management that restarts the servers.".into());
    lines.push(format!("2. drain the load balancer (on {}):", t.plan.lb.name));
    for n in &t.plan.nodes {
        lines.push(format!(
            "   echo 'set server vault_active/{} state maint' | socat stdio {}",
            n.name,
            t.layout.haproxy_admin_socket()
        ));
    }
    lines.push(format!("3. make sure the lost nodes stay down: {}", run.st.lost.join(", ")));
    for l in &run.st.lost {
        lines.push(format!(
            "   [{l}] systemctl stop {unit}; systemctl mask --runtime {unit}   # if the host is up at all"
        ));
    }
    lines.push("4. stop the survivors, then write raft/peers.json on each:".into());
    for s in &run.st.survivors {
        let n = t.node(s)?;
        let data = t.data_dir(n);
        lines.push(format!("   [{s}] systemctl stop {unit}"));
        lines.push(format!("   [{s}] cat > {}/raft/peers.json <<'EOF'", data.display()));
        lines.extend(text.lines().map(|l| format!("   {l}")));
        lines.push("   EOF".into());
        lines.push(format!(
            "   [{s}] chown --reference={d}/raft/raft.db {d}/raft/peers.json && chmod 0600 {d}/raft/peers.json",
            d = data.display()
        ));
    }
    lines.push("5. start the survivors, in this order:".into());
    for s in &run.st.survivors {
        lines.push(format!("   [{s}] systemctl start {unit}"));
    }
    lines.push(format!(
        "then re-run `vaultnix recover lost-quorum --out {}`: it checks the survivors answer, unseals them in order, verifies a leader and the data",
        t.out.display()
    ));
    for l in lines {
        run.say(&l);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_json_lists_survivors_as_voters_at_their_cluster_address() {
        let plan = Plan::from_loaded(&crate::spec::example());
        let text = peers_json(&plan, &["vault-1".into(), "vault-3".into()]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!([
                { "id": "vault-1", "address": "10.88.0.1:8201", "non_voter": false },
                { "id": "vault-3", "address": "10.88.0.3:8201", "non_voter": false },
            ])
        );
        assert!(peers_json(&plan, &["nope".into()]).is_err());
    }
}
