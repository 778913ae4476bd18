//! WAN between sites: latency, jitter and loss on every packet a host sends to a host of another site.
//!
//! There is no netem here, and the nft `queue` expression is not in this kernel, but the xtables
//! NFQUEUE target is (through nft_compat): each host gets `iptables -A OUTPUT -o eth0 -d <host of
//! another site> -j NFQUEUE --queue-num 0`. The addresses and WireGuard endpoints stay untouched —
//! WireGuard's UDP (and, with `overlay = "none"`, the raft and API traffic) leaves through the queue.
//! The relay is the `vaultnix` binary (`lab wan-relay`, a lab process with a pid file): one thread per
//! host joins the host's network namespace, binds queue 0 there over netlink (NETLINK_NETFILTER,
//! metadata only) and gives each packet its verdict after max(0, rtt/2 + U(-jitter/2, +jitter/2)); a packet is
//! dropped with probability `loss`. The profile lives in `<dir>/wan.json`; the relay re-reads it, so
//! `lab wan` changes a running lab. Sites come from the plan (`site`, default the provider); the
//! client host sits on the load balancer's site.

use super::HostsLab;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub const WAN_FILE: &str = "wan.json";
pub const RELAY: &str = "wan-relay";
const QUEUE: u16 = 0;

/// A WAN profile: round-trip time added between sites, its jitter, and the loss per packet.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct WanProfile {
    pub rtt_ms: f64,
    pub jitter_ms: f64,
    /// Percent of packets dropped, each direction.
    pub loss_pct: f64,
}

impl std::fmt::Display for WanProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rtt={}ms,jitter={}ms,loss={}%", self.rtt_ms, self.jitter_ms, self.loss_pct)
    }
}

fn ms(key: &str, v: &str) -> Result<f64> {
    let (n, mult) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    let x: f64 = n.trim().parse().map_err(|_| anyhow!("{key}={v}: not a duration (e.g. {key}=80ms)"))?;
    if !(0.0..=10_000.0).contains(&(x * mult)) {
        bail!("{key}={v}: must be between 0 and 10 s");
    }
    Ok(x * mult)
}

impl FromStr for WanProfile {
    type Err = anyhow::Error;
    /// `rtt=80ms,jitter=10ms,loss=1%` (any subset; `off` is all zero).
    fn from_str(s: &str) -> Result<WanProfile> {
        let mut p = WanProfile::default();
        if s.trim() == "off" {
            return Ok(p);
        }
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                anyhow!("WAN profile {s:?}: {part:?} is not key=value (rtt=80ms,jitter=10ms,loss=1%)")
            })?;
            match k.trim() {
                "rtt" => p.rtt_ms = ms("rtt", v.trim())?,
                "jitter" => p.jitter_ms = ms("jitter", v.trim())?,
                "loss" => {
                    let n = v.trim().trim_end_matches('%');
                    let x: f64 = n.parse().map_err(|_| anyhow!("loss={v}: not a percentage (e.g. loss=1%)"))?;
                    if !(0.0..=100.0).contains(&x) {
                        bail!("loss={v}: must be between 0 and 100 %");
                    }
                    p.loss_pct = x;
                }
                other => bail!("WAN profile {s:?}: unknown key {other:?} (rtt, jitter, loss)"),
            }
        }
        Ok(p)
    }
}

/// A profile for the paths between two sites (either direction), overriding the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SitePair {
    pub a: String,
    pub b: String,
    #[serde(flatten)]
    pub profile: WanProfile,
}

/// The WAN of a lab: one profile for every cross-site path, and per site pair overrides (an on-prem
/// site 30 ms from one cloud and 80 ms from another). `wan.json` holds it; its top-level fields are the
/// default profile, so a reader of a plain [`WanProfile`] reads the default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WanMap {
    #[serde(flatten)]
    pub default: WanProfile,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<SitePair>,
}

impl From<WanProfile> for WanMap {
    fn from(default: WanProfile) -> WanMap {
        WanMap { default, pairs: Vec::new() }
    }
}

impl WanMap {
    /// The NFQUEUE number of the paths between sites `a` and `b`: 0 for the default profile, 1 + the
    /// index of the pair that overrides it.
    pub fn queue(&self, a: &str, b: &str) -> u16 {
        self.pairs
            .iter()
            .position(|p| (p.a == a && p.b == b) || (p.a == b && p.b == a))
            .map_or(QUEUE, |i| QUEUE + 1 + i as u16)
    }
    /// The profile behind queue `q`.
    pub fn profile(&self, q: u16) -> WanProfile {
        match q.checked_sub(QUEUE + 1) {
            Some(i) => self.pairs.get(i as usize).map_or(self.default, |p| p.profile),
            None => self.default,
        }
    }
}

impl std::fmt::Display for WanMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.default)?;
        for p in &self.pairs {
            write!(f, "; {}/{}: {}", p.a, p.b, p.profile)?;
        }
        Ok(())
    }
}

impl FromStr for WanMap {
    type Err = anyhow::Error;
    /// `rtt=80ms,jitter=10ms;onprem/oracle:rtt=30ms` — the default profile, then `SITE/SITE:profile`
    /// overrides separated by `;` (`off` alone: no WAN).
    fn from_str(s: &str) -> Result<WanMap> {
        let mut m = WanMap::default();
        let mut seen_default = false;
        for item in s.split(';').map(str::trim).filter(|x| !x.is_empty()) {
            match item.split_once(':') {
                Some((sites, prof)) if !sites.contains('=') => {
                    let (a, b) = sites.split_once('/').ok_or_else(|| {
                        anyhow!("WAN pair {item:?}: expected SITE/SITE:profile, e.g. onprem/oracle:rtt=30ms")
                    })?;
                    let (a, b) = (a.trim().to_string(), b.trim().to_string());
                    if a.is_empty() || b.is_empty() || a == b {
                        bail!("WAN pair {item:?}: two different sites, e.g. onprem/oracle:rtt=30ms");
                    }
                    if m.pairs.iter().any(|p| (p.a == a && p.b == b) || (p.a == b && p.b == a)) {
                        bail!("WAN pair {a}/{b} is given twice");
                    }
                    let profile = prof.parse().with_context(|| format!("WAN pair {a}/{b}"))?;
                    m.pairs.push(SitePair { a, b, profile });
                }
                _ => {
                    if seen_default {
                        bail!("WAN profile {s:?}: two default profiles ({item:?}); pairs are SITE/SITE:profile");
                    }
                    seen_default = true;
                    m.default = item.parse()?;
                }
            }
        }
        Ok(m)
    }
}

pub fn read_profile(dir: &Path) -> Result<Option<WanProfile>> {
    Ok(read_map(dir)?.map(|m| m.default))
}

pub fn read_map(dir: &Path) -> Result<Option<WanMap>> {
    let p = dir.join(WAN_FILE);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| format!("{} is not a WAN profile", p.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
    }
}

/// The `vaultnix` binary the relay runs as (crate::lab::find_vaultnix).
pub fn vaultnix_bin() -> Result<std::path::PathBuf> {
    crate::lab::find_vaultnix()
}

/// The relay as a lab process. Stopping it needs only the pid file and the marker, so this never
/// fails; starting it checks the binary first (`set_wan`).
pub fn relay_spec(dir: &Path) -> crate::lab::process::ProcSpec {
    let marker = format!("--dir={}", dir.display());
    crate::lab::process::ProcSpec {
        name: RELAY.into(),
        program: vaultnix_bin().unwrap_or_else(|_| "vaultnix".into()),
        args: vec!["lab".into(), "wan-relay".into(), marker.clone()],
        marker,
    }
}

fn ready_file(dir: &Path) -> std::path::PathBuf {
    dir.join("run").join("wan-relay.ready")
}

impl HostsLab {
    /// The site of a host (the client sits on the LB's site).
    pub fn site(&self, host: &str) -> String {
        if let Some(n) = self.plan.nodes.iter().find(|n| n.name == host) {
            return n.site.clone();
        }
        // The LB (and the client next to it): its provider, as a node without a `site` label.
        let lb = self.plan.machines().into_iter().find(|m| m.name == self.plan.lb.name);
        lb.map(|m| m.provider.as_str().to_string()).unwrap_or_default()
    }

    /// (host, destination) pairs whose packets cross the WAN: every other host on another site.
    pub fn wan_pairs(&self) -> Vec<(String, IpAddr)> {
        let mut v = Vec::new();
        for h in &self.hosts {
            for o in &self.hosts {
                if o.name != h.name && self.site(&h.name) != self.site(&o.name) {
                    v.push((h.name.clone(), o.addr));
                }
            }
        }
        v
    }

    fn wan_rule(&self, to: IpAddr, op: &str, queue: u16) -> Vec<String> {
        let q = queue.to_string();
        [op, "OUTPUT", "-o", "eth0", "-d", &super::net::cidr(to), "-m", "comment", "--comment", "vaultnix-wan"]
            .iter()
            .chain(["-j", "NFQUEUE", "--queue-num", &q].iter())
            .map(|s| s.to_string())
            .collect()
    }

    /// The sites of this lab's hosts.
    pub fn sites(&self) -> std::collections::BTreeSet<String> {
        self.hosts.iter().map(|h| self.site(&h.name)).collect()
    }

    /// (host, destination, queue) for every cross-site path under `m`.
    fn wan_paths(&self, m: &WanMap) -> Vec<(String, IpAddr, u16)> {
        let site_of: BTreeMap<IpAddr, String> = self.hosts.iter().map(|h| (h.addr, self.site(&h.name))).collect();
        self.wan_pairs()
            .into_iter()
            .map(|(h, to)| {
                let q = m.queue(&self.site(&h), site_of.get(&to).map_or("", String::as_str));
                (h, to, q)
            })
            .collect()
    }

    /// Sets one WAN profile for every cross-site path (no per-pair overrides).
    pub fn set_wan(&self, p: &WanProfile) -> Result<()> {
        self.set_wan_map(&WanMap::from(*p))
    }

    /// Sets the WAN: checks the pairs' sites, writes wan.json, (re)starts the relay when the queues it
    /// must bind changed (waits until every queue is bound), then routes each cross-site path through
    /// its pair's queue. Idempotent; a running relay picks up changed profiles.
    pub fn set_wan_map(&self, m: &WanMap) -> Result<()> {
        let sites = self.sites();
        for p in &m.pairs {
            for s in [&p.a, &p.b] {
                if !sites.contains(s) {
                    bail!(
                        "WAN pair {}/{}: this lab has no site {s:?} (its sites: {})",
                        p.a,
                        p.b,
                        sites.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
        }
        let mut t = serde_json::to_string_pretty(m)?;
        t.push('\n');
        let spec = relay_spec(&self.dir);
        let queues = m.pairs.len() + 1;
        if let Some(pid) = crate::lab::process::running(&self.dir, &spec) {
            let bound = std::fs::read_to_string(ready_file(&self.dir)).unwrap_or_default();
            if bound.trim() != format!("{pid} {queues}") {
                // The relay binds the queues wan.json names when it starts: a new set needs a new relay.
                crate::lab::process::stop(&self.dir, &spec, libc::SIGTERM, Duration::from_secs(5))?;
            }
        }
        crate::output::write_file_atomic(&self.dir.join(WAN_FILE), t.as_bytes(), false)?;
        if crate::lab::process::running(&self.dir, &spec).is_none() {
            vaultnix_bin()?;
            let _ = std::fs::remove_file(ready_file(&self.dir));
            let pid = crate::lab::process::start(&self.dir, &spec)?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if std::fs::read_to_string(ready_file(&self.dir)).is_ok_and(|s| s.trim() == format!("{pid} {queues}")) {
                    break;
                }
                if !crate::lab::process::alive(pid) || Instant::now() > deadline {
                    bail!("the WAN relay did not bind its queues (see logs/{RELAY}.log)");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for (h, to, q) in self.wan_paths(m) {
            // A rule for this destination on another queue (an earlier map) goes first.
            let dest = format!("-d {}", super::net::cidr(to));
            let want = format!("--queue-num {q}");
            for line in self.host_wan_rules(&h) {
                if line.contains(&format!("{dest} ")) && !line.ends_with(&want) {
                    self.delete_rule_line(&h, &line)?;
                }
            }
            let check = self.wan_rule(to, "-C", q);
            let check: Vec<&str> = check.iter().map(String::as_str).collect();
            if self.output(&h, "iptables", &check, None).map(|o| o.status.success()).unwrap_or(false) {
                continue;
            }
            let add = self.wan_rule(to, "-A", q);
            let add: Vec<&str> = add.iter().map(String::as_str).collect();
            self.run(&h, "iptables", &add, None)?;
        }
        Ok(())
    }

    /// `host`'s WAN rules as `iptables -S` prints them (`-A OUTPUT … --queue-num N`).
    fn host_wan_rules(&self, host: &str) -> Vec<String> {
        match self.run(host, "iptables", &["-S", "OUTPUT"], None) {
            Ok(s) => s.lines().filter(|l| l.contains("vaultnix-wan")).map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn delete_rule_line(&self, host: &str, line: &str) -> Result<()> {
        let Some(rest) = line.strip_prefix("-A ") else { bail!("{host}: unexpected rule {line:?}") };
        let mut args = vec!["-D"];
        args.extend(rest.split_whitespace());
        self.run(host, "iptables", &args, None).map(|_| ())
    }

    /// Removes the WAN: the rules first, then the relay and wan.json.
    pub fn clear_wan(&self) -> Result<()> {
        for h in &self.hosts {
            for line in self.host_wan_rules(&h.name) {
                self.delete_rule_line(&h.name, &line)?;
            }
        }
        crate::lab::process::stop(&self.dir, &relay_spec(&self.dir), libc::SIGTERM, Duration::from_secs(5))?;
        let _ = std::fs::remove_file(self.dir.join(WAN_FILE));
        let _ = std::fs::remove_file(ready_file(&self.dir));
        Ok(())
    }

    /// The WAN rules each host has installed (for status and leftover checks).
    pub fn wan_rules(&self) -> Vec<String> {
        let mut v = Vec::new();
        for h in &self.hosts {
            v.extend(self.host_wan_rules(&h.name).into_iter().map(|l| format!("{}: {l}", h.name)));
        }
        v
    }
}

// ---- the relay (runs as `vaultnix lab wan-relay --dir DIR`) ---------------------------------------

/// Runs until killed: one thread per host with WAN rules.
pub fn run_relay(dir: &Path) -> Result<()> {
    let lab = HostsLab::open(dir)?;
    let map = read_map(&lab.dir)?.unwrap_or_default();
    let queues = map.pairs.len() + 1;
    let profile = Arc::new(RwLock::new(map.clone()));
    // One thread per (host, queue) the host's paths use.
    let mut bound: Vec<(String, u16)> = lab.wan_paths(&map).into_iter().map(|(h, _, q)| (h, q)).collect();
    bound.sort();
    bound.dedup();
    let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
    for (h, queue) in &bound {
        let anchor = lab.anchor(h)?;
        let p = profile.clone();
        let tx = tx.clone();
        let name = h.clone();
        let queue = *queue;
        std::thread::spawn(move || {
            let r = (|| -> Result<Queue> {
                let f = std::fs::File::open(format!("/proc/{anchor}/ns/net"))?;
                use std::os::fd::AsRawFd;
                // SAFETY: setns on an open namespace fd; affects this thread only.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns: {}", std::io::Error::last_os_error());
                }
                Queue::bind(queue)
            })();
            match r {
                Ok(q) => {
                    let _ = tx.send(Ok(()));
                    if let Err(e) = q.serve(&p) {
                        eprintln!("wan-relay {name}: {e:#}");
                        std::process::exit(1);
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.context(format!("host {name}"))));
                }
            }
        });
    }
    drop(tx);
    for _ in &bound {
        rx.recv().map_err(|_| anyhow!("a relay thread died"))??;
    }
    let pid = std::process::id();
    crate::output::write_file_atomic(&ready_file(&lab.dir), format!("{pid} {queues}\n").as_bytes(), false)?;
    eprintln!("wan-relay: {} (host, queue) pair(s) bound, profile {map}", bound.len());
    let mut last = map;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(m)) = read_map(&lab.dir) {
            // Same pairs (set_wan_map restarts the relay otherwise): new profiles apply at once.
            if m != last && m.pairs.len() + 1 == queues {
                eprintln!("wan-relay: profile {m}");
                if let Ok(mut w) = profile.write() {
                    *w = m.clone();
                }
                last = m;
            }
        }
    }
}

// NETLINK_NETFILTER / nfnetlink_queue (linux/netfilter/nfnetlink_queue.h).
const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NLMSG_ERROR: u16 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;

/// One netlink message: nlmsghdr, nfgenmsg (AF_UNSPEC, version 0, the queue), attributes.
fn nfmsg(msg: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b.extend([libc::AF_UNSPEC as u8, 0]);
    b.extend(queue.to_be_bytes());
    for (t, d) in attrs {
        b.extend(((4 + d.len()) as u16).to_ne_bytes());
        b.extend(t.to_ne_bytes());
        b.extend(d);
        while b.len() % 4 != 0 {
            b.push(0);
        }
    }
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    b
}

/// Packet ids in a buffer of netlink messages (and the first netlink error, if any).
fn parse(buf: &[u8]) -> (Vec<u32>, Option<i32>) {
    let mut ids = Vec::new();
    let mut err = None;
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap_or_default());
        if len < 16 || off + len > buf.len() {
            break;
        }
        let m = &buf[off..off + len];
        if ty == NLMSG_ERROR && len >= 20 {
            let e = i32::from_ne_bytes(m[16..20].try_into().unwrap_or_default());
            if e != 0 && err.is_none() {
                err = Some(e);
            }
        } else if ty == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            let mut a = 20;
            while a + 4 <= m.len() {
                let alen = u16::from_ne_bytes([m[a], m[a + 1]]) as usize;
                let aty = u16::from_ne_bytes([m[a + 2], m[a + 3]]) & 0x3fff;
                if alen < 4 || a + alen > m.len() {
                    break;
                }
                if aty == NFQA_PACKET_HDR && alen >= 8 {
                    ids.push(u32::from_be_bytes(m[a + 4..a + 8].try_into().unwrap_or_default()));
                }
                a += (alen + 3) & !3;
            }
        }
        off += (len + 3) & !3;
    }
    (ids, err)
}

struct Queue {
    fd: std::os::fd::OwnedFd,
    queue: u16,
}

impl Queue {
    fn bind(queue: u16) -> Result<Queue> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket syscalls; the fd is owned by the OwnedFd from here on.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
        if fd < 0 {
            bail!("netlink socket: {}", std::io::Error::last_os_error());
        }
        let q = Queue { fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }, queue };
        let size: libc::c_int = 8 << 20;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with pointers to live ints; bind with a zeroed sockaddr_nl.
        unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&size as *const libc::c_int).cast(), 4);
            libc::setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, (&one as *const libc::c_int).cast(), 4);
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            if libc::bind(fd, (&sa as *const libc::sockaddr_nl).cast(), std::mem::size_of::<libc::sockaddr_nl>() as u32)
                != 0
            {
                bail!("netlink bind: {}", std::io::Error::last_os_error());
            }
        }
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        let mut params = 0xffffu32.to_be_bytes().to_vec();
        params.push(NFQNL_COPY_META);
        let msgs = [
            (NFQA_CFG_CMD, vec![NFQNL_CFG_CMD_BIND, 0, 0, 0]),
            (NFQA_CFG_PARAMS, params),
            (NFQA_CFG_QUEUE_MAXLEN, 16384u32.to_be_bytes().to_vec()),
        ];
        for (seq, (t, d)) in msgs.into_iter().enumerate() {
            q.send(&nfmsg(NFQNL_MSG_CONFIG, flags, seq as u32 + 1, queue, &[(t, d)]))?;
            let mut buf = vec![0u8; 8192];
            let n = q.recv(&mut buf, 5000)?.ok_or_else(|| anyhow!("no answer to the queue configuration"))?;
            if let (_, Some(e)) = parse(&buf[..n]) {
                bail!(
                    "binding NFQUEUE {queue}: {} (is nfnetlink_queue available?)",
                    std::io::Error::from_raw_os_error(-e)
                );
            }
        }
        Ok(q)
    }

    fn send(&self, b: &[u8]) -> Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: sendto with a live buffer and a zeroed sockaddr_nl (the kernel).
        let r = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                b.as_ptr().cast(),
                b.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            bail!("netlink send: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` for a datagram; None on timeout.
    fn recv(&self, buf: &mut [u8], timeout_ms: i32) -> Result<Option<usize>> {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one live pollfd; recv into a live buffer.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(None);
            }
            bail!("poll: {e}");
        }
        if r == 0 {
            return Ok(None);
        }
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR)) {
                return Ok(None);
            }
            bail!("netlink recv: {e}");
        }
        Ok(Some(n as usize))
    }

    fn verdict(&self, id: u32, v: u32) -> Result<()> {
        let mut d = v.to_be_bytes().to_vec();
        d.extend(id.to_be_bytes());
        self.send(&nfmsg(NFQNL_MSG_VERDICT, libc::NLM_F_REQUEST as u16, 0, self.queue, &[(NFQA_VERDICT_HDR, d)]))
    }

    /// Receives packets and gives each its verdict when its delay has passed.
    fn serve(&self, profile: &RwLock<WanMap>) -> Result<()> {
        let mut rng = Rng::new();
        // Min-heap on the release time.
        let mut pending: BinaryHeap<std::cmp::Reverse<(Instant, u32)>> = BinaryHeap::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let now = Instant::now();
            while let Some(std::cmp::Reverse((t, id))) = pending.peek().copied() {
                if t > now {
                    break;
                }
                pending.pop();
                self.verdict(id, NF_ACCEPT)?;
            }
            let wait = match pending.peek() {
                Some(std::cmp::Reverse((t, _))) => t.saturating_duration_since(now).as_millis().min(50) as i32,
                None => 50,
            };
            let Some(n) = self.recv(&mut buf, wait)? else { continue };
            let p = profile.read().map(|m| m.profile(self.queue)).unwrap_or_default();
            let (ids, _) = parse(&buf[..n]);
            for id in ids {
                if p.loss_pct > 0.0 && rng.unit() * 100.0 < p.loss_pct {
                    self.verdict(id, NF_DROP)?;
                    continue;
                }
                let one_way = p.rtt_ms / 2.0 + (rng.unit() - 0.5) * p.jitter_ms;
                if one_way <= 0.0 {
                    self.verdict(id, NF_ACCEPT)?;
                } else {
                    pending.push(std::cmp::Reverse((Instant::now() + Duration::from_secs_f64(one_way / 1000.0), id)));
                }
            }
        }
    }
}

/// xorshift64*: uniform numbers for jitter and loss (not for anything secret).
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let b = crate::secrets::random_bytes::<8>().unwrap_or([7; 8]);
        Rng(u64::from_ne_bytes(b) | 1)
    }
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_profiles_parse_and_bad_ones_say_why() {
        let p: WanProfile = "rtt=80ms,jitter=10ms,loss=1%".parse().unwrap();
        assert_eq!(p, WanProfile { rtt_ms: 80.0, jitter_ms: 10.0, loss_pct: 1.0 });
        assert_eq!("rtt=0.15s".parse::<WanProfile>().unwrap().rtt_ms, 150.0);
        assert_eq!("off".parse::<WanProfile>().unwrap(), WanProfile::default());
        let e = "rtt=fast".parse::<WanProfile>().unwrap_err().to_string();
        assert!(e.contains("rtt=fast"), "{e}");
        assert!("loss=120%".parse::<WanProfile>().is_err());
        assert!("delay=3ms".parse::<WanProfile>().unwrap_err().to_string().contains("unknown key"));
        assert!("rtt=10ms,jitter=20ms,loss".parse::<WanProfile>().unwrap_err().to_string().contains("key=value"));
    }

    #[test]
    fn site_pair_overrides_parse_print_and_pick_their_queue() {
        let m: WanMap = "rtt=80ms,jitter=10ms; onprem/oracle:rtt=30ms ;linode/onprem:rtt=5ms,loss=1%".parse().unwrap();
        assert_eq!(m.default, WanProfile { rtt_ms: 80.0, jitter_ms: 10.0, loss_pct: 0.0 });
        assert_eq!(m.pairs.len(), 2);
        assert_eq!(m.queue("onprem", "oracle"), 1);
        assert_eq!(m.queue("oracle", "onprem"), 1, "either direction");
        assert_eq!(m.queue("onprem", "linode"), 2);
        assert_eq!(m.queue("oracle", "linode"), 0, "no override: the default");
        assert_eq!(m.profile(1).rtt_ms, 30.0);
        assert_eq!(m.profile(2).loss_pct, 1.0);
        assert_eq!(m.profile(0), m.default);
        assert_eq!(m.to_string(), "rtt=80ms,jitter=10ms,loss=0%; onprem/oracle: rtt=30ms,jitter=0ms,loss=0%; linode/onprem: rtt=5ms,jitter=0ms,loss=1%");
        // wan.json: the default's fields at the top (what read_profile reads), the pairs beside them.
        let j = serde_json::to_string(&m).unwrap();
        let back: WanMap = serde_json::from_str(&j).unwrap();
        assert_eq!(back, m);
        assert_eq!(serde_json::from_str::<WanProfile>(&j).unwrap(), m.default);
        assert_eq!("rtt=60ms".parse::<WanMap>().unwrap(), WanMap::from("rtt=60ms".parse::<WanProfile>().unwrap()));
        assert_eq!("onprem/oracle:rtt=30ms".parse::<WanMap>().unwrap().default, WanProfile::default());
        for (bad, why) in [
            ("onprem:rtt=30ms", "SITE/SITE"),
            ("onprem/onprem:rtt=30ms", "two different sites"),
            ("a/b:rtt=1ms;b/a:rtt=2ms", "given twice"),
            ("rtt=1ms;rtt=2ms", "two default profiles"),
            ("a/b:rtt=fast", "WAN pair a/b"),
        ] {
            let e = format!("{:#}", bad.parse::<WanMap>().unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn cross_site_pairs_follow_the_plan_sites() {
        let plan = crate::plan::Plan::from_loaded(&crate::spec::example());
        let hosts = super::super::hosts_of(&plan).unwrap();
        let lab =
            HostsLab { dir: "/nonexistent".into(), plan, state: Default::default(), hosts, spare_hosts: Vec::new() };
        assert_eq!(lab.site("client"), lab.site(&lab.plan.lb.name));
        let n = lab.hosts.len();
        let same: usize = lab
            .hosts
            .iter()
            .map(|h| lab.hosts.iter().filter(|o| o.name != h.name && lab.site(&o.name) == lab.site(&h.name)).count())
            .sum();
        let pairs = lab.wan_pairs();
        assert_eq!(pairs.len(), n * (n - 1) - same);
        // The client and the LB share a site: no WAN between them, in either direction.
        let lb = lab.host(&lab.plan.lb.name).unwrap().addr;
        assert!(!pairs.iter().any(|(h, to)| h == "client" && *to == lb), "{pairs:?}");
        assert!(pairs.iter().any(|(h, _)| h == "vault-1"), "{pairs:?}");
    }

    #[test]
    fn netlink_messages_round_trip_packet_ids() {
        let m = nfmsg(NFQNL_MSG_CONFIG, 5, 1, 0, &[(NFQA_CFG_CMD, vec![1, 0, 0, 0])]);
        assert_eq!(m.len(), 16 + 4 + 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        // A packet message with a packet header attribute (id 0x01020304, big endian).
        let pkt = nfmsg(NFQNL_MSG_PACKET, 0, 0, 0, &[(NFQA_PACKET_HDR, vec![1, 2, 3, 4, 8, 0, 3])]);
        let mut two = pkt.clone();
        two.extend(&pkt);
        assert_eq!(parse(&two).0, vec![0x0102_0304, 0x0102_0304]);
    }
}
