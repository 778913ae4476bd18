//! The hosts lab (issue 15): the cluster on real network hosts (network + mount namespaces), real
//! WireGuard, the NixOS firewall, the seed's partition. Needs root; without root or namespaces it
//! FAILS with the reason (it never skips). Everything it makes is removed by a Drop guard that runs
//! `lab down`, also when an assertion fails midway.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};
use vaultnix::drill::checker::{check, History};
use vaultnix::drill::client::{ensure_mount, read_back, Writer, WriterConfig};
use vaultnix::lab::hosts::{self, enter, HostsLab};

/// TCP connect from `host` to ip:port, bounded by 2 s: true when it connected.
fn can_connect(lab: &HostsLab, host: &str, ip: &str, port: u16) -> bool {
    let script = format!("timeout 2 bash -c '</dev/tcp/{ip}/{port}'");
    lab.output(host, "bash", &["-c", &script], None).map(|o| o.status.success()).unwrap_or(false)
}

fn mounts_under(p: &Path) -> Vec<String> {
    let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    m.lines().filter(|l| l.contains(&*p.display().to_string())).map(str::to_string).collect()
}

#[test]
fn hosts_lab_forms_over_wireguard_firewall_partition_and_cleans_up() {
    common::hosts_preflight();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let guard = common::HostsGuard(dir.clone());
    let nixos_fw = common::nixos_rulesets(&common::spec("hosts.toml"), tmp.path());
    if let Some(d) = &nixos_fw {
        // Read by HostsLab::up (this test binary runs this one test: no other thread reads the env).
        std::env::set_var("VAULTNIX_HOSTS_NIXOS_FIREWALL", d);
    }
    let t0 = Instant::now();
    let t0_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // vault-3's backup timer without the random delay (`--backup-delay vault-3=0`): its catch-up run
    // comes at boot, not up to 10 min later.
    let timers = [("vault-3".to_string(), hosts::timer::TimerOverride { schedule: None, delay: Some(0) })];
    let o = hosts::UpOptions {
        spec: Some(common::spec("hosts.toml")),
        backup_timers: timers.into_iter().collect(),
        ..Default::default()
    };
    let lab = HostsLab::up_with(&dir, o).expect("hosts lab up");
    eprintln!("hosts lab ready in {:.1}s", t0.elapsed().as_secs_f64());
    // What each machine loaded is NixOS's file (its rpfilter chain is not in firewall.rs's ruleset).
    assert_eq!(lab.state.nixos_firewall, nixos_fw);
    if nixos_fw.is_some() {
        for h in lab.hosts.iter().filter(|h| h.machine.is_some()) {
            let r = lab.run(&h.name, "nft", &["list", "ruleset"], None).unwrap();
            assert!(r.contains("chain rpfilter") && r.contains("chain input-allow"), "{}: {r}", h.name);
        }
    }
    let bao = common::bao().display().to_string();

    // The files the hosts run are the generated ones, byte for byte.
    assert!(lab.state.checks.len() >= 3 * 3 + 2, "{:?}", lab.state.checks);
    for c in &lab.state.checks {
        assert!(c.equal(), "{c:?}");
    }
    assert!(lab.state.checks.iter().any(|c| c.path == "/etc/vaultnix/tls.crt"));
    // Every server runs the backup job's generated config (its timer and the node exporter run on the
    // host, docs/lab.md; vm_scripts runs the backup subtest on them).
    for n in &lab.plan.nodes {
        assert!(
            lab.state.checks.iter().any(|c| c.host == n.name && c.path == "/etc/vaultnix/backup.json"),
            "{}: {:?}",
            n.name,
            lab.state.checks
        );
        for unit in ["prometheus-node-exporter.service", "vaultnix-backup.timer"] {
            assert_eq!(lab.unit_state(&n.name, unit).unwrap().as_str(), "active", "{}: {unit}", n.name);
        }
    }

    // The cluster formed over WireGuard: list-peers (from the client, through the LB) shows the
    // overlay addresses; the handshakes happened.
    let (servers, addrs, peers) = common::raft_peers(&lab, "client");
    assert_eq!(addrs, ["10.88.0.1:8201", "10.88.0.2:8201", "10.88.0.3:8201"], "{peers}");
    assert!(servers.iter().all(|s| s["voter"] == true), "{peers}");
    let wg = lab.run("vault-1", "wg", &["show", "wg0", "latest-handshakes"], None).unwrap();
    assert_eq!(wg.lines().filter(|l| !l.trim().ends_with("\t0")).count(), 3, "handshakes with all 3 peers: {wg}");

    // Firewall, from the client: 8201 closed on every node's address; 8200 answers via the LB and, as
    // the spec's client_cidrs admit the client (192.0.2.0/24), on each node's own address (the
    // `clients` listener: with an overlay the API listener binds the overlay address only).
    assert!(lab.plan.firewall.client_cidrs.iter().any(|c| c.to_string() == "192.0.2.0/24"));
    for n in &lab.plan.nodes {
        let public = n.public_address.unwrap().to_string();
        assert!(!can_connect(&lab, "client", &public, 8201), "client reached {}:8201", n.name);
        assert!(can_connect(&lab, "client", &public, 8200), "client_cidrs client cannot reach {}:8200", n.name);
        // A host that neither the LB nor client_cidrs cover (another server's public address) is dropped.
        let other = lab.plan.nodes.iter().find(|o| o.name != n.name).unwrap();
        assert!(
            !can_connect(&lab, &other.name, &public, 8200),
            "{} reached {}:8200 on its public address",
            other.name,
            n.name
        );
        assert!(!can_connect(&lab, "client", &n.ip.to_string(), 8200), "client reached {} overlay", n.name);
    }
    let lb = lab.plan.lb.public_address.unwrap().to_string();
    assert!(can_connect(&lab, "client", &lb, 8200), "client cannot reach the LB");
    lab.run("client", &bao, &["status"], None).expect("bao status through the LB");
    // From the LB host: the node API over the overlay answers, 8201 on a node's public address does not.
    assert!(can_connect(&lab, "vault-lb", "10.88.0.1", 8200));
    assert!(!can_connect(&lab, "vault-lb", &lab.plan.nodes[0].public_address.unwrap().to_string(), 8201));

    // The seed's partition drill on a follower, then full isolation; writes through the LB all along.
    let leader = servers.iter().find(|s| s["leader"] == true).unwrap()["node_id"].as_str().unwrap().to_string();
    let follower = lab.plan.nodes.iter().map(|n| n.name.clone()).find(|n| *n != leader).unwrap();
    let plan = lab.plan.clone();
    let out = dir.clone();
    let token = vaultnix::ops::common::read_init(&dir).unwrap().unwrap().root_token;
    let lbns = lab.netns(&lab.plan.lb.name);
    let verdict = enter::in_netns(&lbns, || -> anyhow::Result<_> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let c = vaultnix::api::Cluster::from_out(&plan, &out)?.with_token(Some(token.clone()));
            ensure_mount(&c.lb, Instant::now() + Duration::from_secs(20)).await?;
            let cfg = WriterConfig {
                prefix: "hosts".into(),
                rate_hz: 20.0,
                timeout: Duration::from_secs(5),
                max_in_flight: 8,
                max_requests: 2000,
                max_duration: Duration::from_secs(60),
            };
            let t0 = Instant::now();
            let w = Writer::start(c.lb.clone(), cfg, t0);
            tokio::time::sleep(Duration::from_secs(2)).await;
            lab.partition(&follower)?;
            let rules = lab.run(&follower, "iptables", &["-S", "INPUT"], None)?;
            assert!(rules.contains("--dport 8201 -j DROP"), "{rules}");
            tokio::time::sleep(Duration::from_secs(4)).await;
            lab.heal_partition(&follower)?;
            lab.isolate(&follower)?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            // The isolated node cannot take a write.
            let fip = plan.node(&follower).unwrap().ip.to_string();
            let script = format!(
                "BAO_CLIENT_TIMEOUT=5s BAO_MAX_RETRIES=0 timeout 15 {bao} write -address=https://{fip}:8200 -tls-server-name={follower}.vault.internal vaultnix-drill/isolated v=1"
            );
            let o = lab.output(&follower, "bash", &["-c", &script], None)?;
            assert!(!o.status.success(), "the isolated node accepted a write: {}", String::from_utf8_lossy(&o.stdout));
            tokio::time::sleep(Duration::from_secs(3)).await;
            lab.unisolate(&follower)?;
            // The node rejoins: all voters back, planned tolerance.
            vaultnix::lab::wait_ready(&c, &plan, Duration::from_secs(60)).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = w.finish().await?;
            let active = c.nodes.iter().find(|n| n.name == leader).unwrap().clone();
            let readback = read_back(&c.lb, &active, "hosts", &r.ops).await?;
            Ok(check(&History { ops: r.ops, horizon: r.horizon, readback }))
        })
    })
    .unwrap()
    .expect("partition drill");
    eprintln!(
        "partition drill: {} writes, {} acked, {} failed, {} lost",
        verdict.writes,
        verdict.acked,
        verdict.failed,
        verdict.lost.len()
    );
    assert!(verdict.acked > 50, "the majority kept serving: {verdict:?}");
    assert!(verdict.lost.is_empty(), "acknowledged writes lost: {:?}", verdict.lost);
    assert!(verdict.unverified.is_empty(), "{:?}", verdict.unverified);

    // The stop path, as NixOS runs it (drain.enable): each node's drain agent answers HAProxy's
    // agent-check over the overlay (8202 admitted from the LB only), and stopping the active node runs
    // `vaultnix node drain` on its host (agent `down`, LB confirms, step-down) before SIGTERM.
    if nixos_fw.is_some() {
        for h in lab.hosts.iter().filter(|h| lab.plan.node(&h.name).is_some()) {
            let r = lab.run(&h.name, "nft", &["list", "ruleset"], None).unwrap();
            assert!(r.contains("ip saddr 10.88.0.10 tcp dport 8202 accept"), "{}: agent port from the LB: {r}", h.name);
        }
    }
    let agents = common::wait_drain_agents(&lab);
    assert!(agents.iter().all(|s| s == "L7OK"), "HAProxy reaches every drain agent: {agents:?}");
    let o = vaultnix::drill::run::TrialOptions {
        scenario: vaultnix::drill::run::Scenario::LeaderStop,
        trials: 1,
        rate_hz: 20.0,
        timeout: Duration::from_secs(6),
        trial_limit: Duration::from_secs(90),
        ..Default::default()
    };
    let stop = vaultnix::drill::hosts_target::trials(&lab, "stop", &o, &vaultnix::drill::run::NoProgress).unwrap();
    let t = &stop.trials[0];
    eprintln!("leader stop on the hosts: {} requests, errors {:?}, lost {}", t.figures.requests, t.errors, stop.lost);
    assert_ne!(t.leader_after.as_deref(), Some(t.leader_before.as_str()), "leadership did not move");
    assert!(t.figures.old_node_healthy.is_some(), "the stopped node did not come back as a voter");
    // Passthrough: at most a request in flight on the session the drain cut (ambiguous, never lost).
    let other: Vec<_> = t.errors.iter().filter(|(k, _)| k.as_str() != "transport").collect();
    assert!(other.is_empty(), "the stop path failed requests: {:?}", t.errors);
    assert!(t.errors.get("transport").copied().unwrap_or(0) <= 1, "{:?}", t.errors);
    assert_eq!(stop.lost, 0, "{:?}", stop.verdict);

    // What `up` suggests, `lab exec client -- bao status`, runs the lab's bao by name through the LB,
    // also when the caller's PATH has no bao (it was found through VAULTNIX_BAO).
    let path = std::env::var_os("PATH");
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let st = lab.output(hosts::CLIENT, "bao", &["status", "-format=json"], None);
    match path {
        Some(p) => std::env::set_var("PATH", p),
        None => std::env::remove_var("PATH"),
    }
    let st = st.expect("bao by name on the client host");
    let out = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success() && out.contains("\"sealed\": false"), "{out}{}", String::from_utf8_lossy(&st.stderr));

    // Each host has its own /tmp and /root (a command on a host never writes the machine's), and one
    // /tmp/shared between them, as the NixOS driver shares a directory between VMs.
    let probe = format!("vx-probe-{}", std::process::id());
    let (a, b) = (&lab.plan.nodes[0].name, &lab.plan.nodes[1].name);
    let script = format!("echo t > /tmp/{probe} && echo r > /root/{probe} && echo s > /tmp/shared/{probe}");
    lab.run(a, "sh", &["-c", &script], None).unwrap();
    for p in [format!("/tmp/{probe}"), format!("/root/{probe}")] {
        assert!(!Path::new(&p).exists(), "{p} was written on the machine");
        assert!(lab.run(b, "test", &["!", "-e", &p], None).is_ok(), "{p} is visible on {b}");
    }
    assert_eq!(lab.run(b, "cat", &[&format!("/tmp/shared/{probe}")], None).unwrap().trim(), "s");
    assert!(dir.join(hosts::SHARED).join(&probe).is_file());
    // The backup timer runs as systemd runs modules/backup.nix's (OnCalendar=daily, Persistent=true,
    // RandomizedDelaySec=600s from the spec's default): on a first boot the stamp is created and the
    // first elapse is the next midnight after boot plus less than 10 min (exactly midnight where the
    // delay is 0); a host that was down over an elapse runs the job at boot, and the stamp records
    // that trigger.
    use vaultnix::lab::hosts::timer::STAMP;
    let n3 = lab.plan.nodes[2].name.clone();
    assert_eq!(n3, "vault-3");
    let unix = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let midnight = vaultnix::spec::calendar::parse("daily").unwrap().next_after(t0_unix).unwrap();
    for (node, delay) in [("vault-1", 600), ("vault-3", 0)] {
        let log = vaultnix::lab::process::log_file(&dir, &format!("{node}.backup-timer"));
        let text = std::fs::read_to_string(&log).unwrap();
        let header =
            format!("OnCalendar=daily Persistent=true RandomizedDelaySec={delay}s; last trigger: none (no stamp)");
        assert!(text.contains(&header), "{node}: {text}");
        let first =
            text.lines().find_map(|l| l.strip_prefix("vaultnix-backup.timer: next elapse ")).expect("next elapse");
        let first = time::OffsetDateTime::parse(first.trim(), &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp();
        assert!((midnight..=midnight + delay).contains(&first), "{node}: first elapse {first}, midnight {midnight}");
    }
    let log = vaultnix::lab::process::log_file(&dir, &format!("{n3}.backup-timer"));
    let stamp_of =
        |lab: &HostsLab| -> i64 { lab.run(&n3, "stat", &["-c", "%Y", STAMP], None).unwrap().trim().parse().unwrap() };
    assert!((t0_unix - 1..=unix()).contains(&stamp_of(&lab)), "the stamp is created at the first boot");
    lab.crash(&n3).unwrap();
    let two_days_ago = unix() - 2 * 86_400;
    lab.run(&n3, "touch", &["-d", &format!("@{two_days_ago}"), STAMP], None).unwrap();
    let booted = unix();
    lab.boot(&n3).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // What the timer started at boot logged (the log is appended to).
    let since_boot = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let after = text.rsplit("RandomizedDelaySec=0s; last trigger: ").next().unwrap().to_string();
        if text.matches("Persistent=true").count() >= 2 && after.contains("vaultnix-backup.service run 1 (triggered") {
            break after;
        }
        assert!(Instant::now() < deadline, "the missed run did not come within 60 s of boot: {text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("backup timer after boot: last trigger {since_boot}");
    assert!(!since_boot.starts_with("none"), "the stamp was not read: {since_boot}");
    let stamp = stamp_of(&lab);
    assert!(stamp >= booted, "the stamp records the trigger after boot: {stamp} < {booted}");

    // A spare with bad input is refused, naming why, and nothing of it is made.
    let mut reopened = HostsLab::open(&dir).unwrap();
    let f = tmp.path().join("spare.json");
    std::fs::write(&f, b"{}").unwrap();
    let def = |links: Vec<String>| hosts::spare::SpareDef {
        settings: f.clone(),
        cert: dir.join("flake/pki/ca.crt"),
        ca: dir.join("flake/pki/ca.crt"),
        links,
        key_file: None,
        seal_key_file: None,
    };
    let key = dir.join("secrets/ca.key").display().to_string();
    for (name, links, why) in [
        ("spare", vec![format!("/etc/shadow={key}")], "must be a file under /var/lib/"),
        ("spare", vec![], "credential tls.key is read from /var/lib/vaultnix/secrets/tls.key, which no --link"),
        (a.as_str(), vec![], "has a host named"),
    ] {
        let e = reopened.add_spare(name, &def(links)).unwrap_err();
        assert!(format!("{e:#}").contains(why), "{e:#}");
    }
    assert!(!vaultnix::lab::hosts::net::netns_exists(&lab.netns("spare")));
    assert!(!dir.join("hosts/spare").exists() && hosts::read_state(&dir).unwrap().unwrap().spares.is_empty());

    // Down removes everything: namespaces, processes, mounts.
    let st = lab.state.clone();
    lab.down(false).unwrap();
    let left = hosts::leftovers(&dir, &st);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(mounts_under(&dir).is_empty(), "mounts left: {:?}", mounts_under(&dir));
    assert!(hosts::read_state(&dir).unwrap().is_none());
    drop(guard);
}
