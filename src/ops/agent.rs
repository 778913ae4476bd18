//! `vaultnix node agent --config nodes/<node>.drain.json`: the drain agent HAProxy's `agent-check`
//! polls on every server (render::haproxy), so that a node can drain itself at a load balancer on
//! another host. On each TCP connection it answers one line and closes:
//!
//! - `up` normally (the health check alone decides);
//! - `down` while this node's stop path (`vaultnix node drain`) is draining it, for as long as the
//!   server process being stopped runs and at most `marker_ttl_seconds`.
//!
//! HAProxy marks the server DOWN after `fall` `down` answers: it leaves rotation, with no other server
//! UP the frontend holds new work (hold.lua), and passthrough's `on-marked-down shutdown-sessions`
//! closes its sessions. Only operational words are ever sent, never an administrative one (`ready`,
//! `drain`, `maint`): HAProxy lets an agent's `ready` cancel a drain set on its admin socket, and
//! `vaultnix step-down` drains there (tests/drill.rs measured 5 HTTP 500 in one drained step-down while
//! the agent answered `up ready`). Failing to reach the agent never marks a server down (only an explicit
//! `down`/`fail`/`stopped` does), so a node without its agent is routed by the health check alone.
//!
//! The stop path tells the agent over a local Unix socket (`control_socket`, one line each way):
//! `down <pid>` is accepted only from root or from the user the process `<pid>` runs
//! as (SO_PEERCRED; the server unit's ExecStop runs as the server's user), `status` answers
//! `<word> <consecutive answers to the LB>`: that is how the stop path learns the LB saw the drain.
//! Nothing is shared on disk and no secret is involved.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The agent's part of `nodes/<node>.drain.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The node's address HAProxy reaches it on (the server line's address).
    pub ip: IpAddr,
    pub port: u16,
    /// The stop path's Unix socket (NixOS: in the agent unit's RuntimeDirectory).
    pub control_socket: String,
    /// HAProxy's `agent-inter`.
    pub inter_ms: u64,
    /// HAProxy's `fall`: consecutive `down` answers before the server is marked DOWN.
    pub fall: u32,
    /// A drain older than this is lifted (a stop that never finished must not keep a node out).
    pub marker_ttl_seconds: u64,
}

const READY: &str = "up";

#[derive(Debug, Default)]
struct State {
    /// The drain: word, the process being stopped, since when.
    drain: Option<(String, u32, Instant)>,
    /// The last word answered to the LB and how many times in a row.
    last: Option<(String, u64)>,
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(s.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()), Some('Z' | 'X') | None),
        Err(_) => false,
    }
}

fn uid_of(pid: u32) -> Option<u32> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    t.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
}

impl State {
    fn word(&mut self, ttl: Duration) -> String {
        match &self.drain {
            Some((w, pid, at)) if at.elapsed() <= ttl && alive(*pid) => w.clone(),
            _ => {
                self.drain = None;
                READY.into()
            }
        }
    }
}

/// One control request from a peer with uid `peer_uid`.
fn control(state: &Mutex<State>, ttl: Duration, line: &str, peer_uid: Option<u32>) -> String {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut it = line.split_ascii_whitespace();
    match (it.next(), it.next().map(str::parse::<u32>), it.next()) {
        (Some("status"), None, None) => {
            let w = st.word(ttl);
            let n = match &st.last {
                Some((lw, n)) if *lw == w => *n,
                _ => 0,
            };
            format!("{w} {n}")
        }
        (Some(w @ "down"), Some(Ok(pid)), None) => {
            if !alive(pid) {
                return format!("refused: no process {pid}");
            }
            let owner = uid_of(pid);
            let ok = matches!(peer_uid, Some(0)) || (peer_uid.is_some() && peer_uid == owner);
            if !ok {
                return format!("refused: only root or the user of process {pid} may drain it");
            }
            let since = match &st.drain {
                Some((_, p, at)) if *p == pid => *at,
                _ => Instant::now(),
            };
            st.drain = Some((w.to_string(), pid, since));
            "ok".into()
        }
        _ => "refused: expected `status` or `down <pid>`".into(),
    }
}

/// Serves forever (the agent unit's ExecStart; a lab process).
pub async fn serve(c: &AgentConfig) -> Result<()> {
    let addr = SocketAddr::new(c.ip, c.port);
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("the drain agent cannot listen on {addr}"))?;
    let sock = Path::new(&c.control_socket);
    if let Some(d) = sock.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // A socket left by an agent that died; never anything else.
    if std::fs::symlink_metadata(sock).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
        std::fs::remove_file(sock)?;
    }
    let unix = tokio::net::UnixListener::bind(sock).with_context(|| format!("binding {}", sock.display()))?;
    // Anyone may connect; who may drain is decided per request from the peer's credentials.
    std::fs::set_permissions(sock, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    eprintln!("vaultnix drain agent: {addr} for the load balancer, {} for the stop path", sock.display());
    let state = Arc::new(Mutex::new(State::default()));
    let ttl = Duration::from_secs(c.marker_ttl_seconds);
    let ctl = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = unix.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let uid = s.peer_cred().ok().map(|c| c.uid());
                    let (r, mut w) = s.into_split();
                    let mut line = String::new();
                    let mut r = BufReader::new(r);
                    let read = tokio::time::timeout(Duration::from_secs(2), r.read_line(&mut line));
                    if matches!(read.await, Ok(Ok(_))) {
                        let reply = control(&state, ttl, line.trim(), uid);
                        let _ = w.write_all(format!("{reply}\n").as_bytes()).await;
                    }
                });
            }
        })
    };
    loop {
        let (mut s, _) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("drain agent: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let word = state.lock().unwrap_or_else(|e| e.into_inner()).word(ttl);
        let sent = tokio::time::timeout(Duration::from_secs(1), async {
            s.write_all(format!("{word}\n").as_bytes()).await?;
            s.shutdown().await
        })
        .await;
        if matches!(sent, Ok(Ok(()))) {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let n = match &st.last {
                Some((w, n)) if *w == word => n + 1,
                _ => 1,
            };
            st.last = Some((word, n));
        }
        if ctl.is_finished() {
            bail!("the drain agent's control socket stopped");
        }
    }
}

/// One control request (the stop path's side).
pub async fn request(c: &AgentConfig, line: &str) -> Result<String> {
    let fut = async {
        let s = tokio::net::UnixStream::connect(&c.control_socket)
            .await
            .with_context(|| format!("the drain agent's socket {}", c.control_socket))?;
        let (r, mut w) = s.into_split();
        w.write_all(format!("{line}\n").as_bytes()).await?;
        let mut out = String::new();
        BufReader::new(r).read_line(&mut out).await?;
        Ok::<_, anyhow::Error>(out.trim().to_string())
    };
    tokio::time::timeout(Duration::from_secs(3), fut).await.map_err(|_| anyhow!("the drain agent did not answer"))?
}

/// Tells the agent to answer `word` (`down`) while `pid` runs.
pub async fn set(c: &AgentConfig, word: &str, pid: u32) -> Result<()> {
    let r = request(c, &format!("{word} {pid}")).await?;
    if r != "ok" {
        bail!("the drain agent {r}");
    }
    Ok(())
}

/// Waits (bounded) until the agent has answered `word` to the LB at least `times` times in a row.
/// False when the time ran out (no LB polls it, or cannot reach it).
pub async fn wait_answered(c: &AgentConfig, word: &str, times: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = request(c, "status").await {
            if let Some((w, n)) = r.rsplit_once(' ') {
                if w == word && n.parse::<u64>().is_ok_and(|n| n >= times) {
                    return true;
                }
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_or_the_processes_user_drains_it_and_only_while_it_runs() {
        let st = Mutex::new(State::default());
        let ttl = Duration::from_secs(120);
        let me = std::process::id();
        let my_uid = uid_of(me).unwrap();
        assert_eq!(control(&st, ttl, "status", None), "up 0");
        assert!(control(&st, ttl, &format!("down {me}"), Some(my_uid + 1)).starts_with("refused"), "another user");
        assert!(control(&st, ttl, &format!("down {me}"), None).starts_with("refused"), "no credentials");
        assert!(control(&st, ttl, "down 4294967294", Some(0)).starts_with("refused"), "no such process");
        // Never an administrative word: an agent's `ready`/`drain`/`maint` overrides the admin socket.
        for w in ["drain", "maint", "ready", "up"] {
            assert!(control(&st, ttl, &format!("{w} {me}"), Some(0)).starts_with("refused"), "{w}");
        }
        assert_eq!(control(&st, ttl, &format!("down {me}"), Some(my_uid)), "ok");
        assert_eq!(control(&st, ttl, "status", None), "down 0");
        assert_eq!(control(&st, ttl, &format!("down {me}"), Some(0)), "ok");
        assert_eq!(st.lock().unwrap().word(ttl), "down");
        // Past its bound the drain is lifted.
        assert_eq!(st.lock().unwrap().word(Duration::ZERO), "up");
        assert_eq!(control(&st, ttl, "status", None), "up 0");
    }

    #[test]
    fn answers_the_lb_one_line_per_connection_and_counts_them() {
        let d = tempfile::tempdir().unwrap();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let c = AgentConfig {
            ip: "127.0.0.1".parse().unwrap(),
            port,
            control_socket: d.path().join("agent.sock").display().to_string(),
            inter_ms: 250,
            fall: 2,
            marker_ttl_seconds: 120,
        };
        crate::api::block_on(async {
            let srv = tokio::spawn({
                let c = c.clone();
                async move { serve(&c).await }
            });
            let poll = || async {
                for _ in 0..100 {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let mut out = String::new();
                        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out).await.unwrap();
                        return out;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("the agent never listened");
            };
            assert_eq!(poll().await, "up\n");
            set(&c, "down", std::process::id()).await.unwrap();
            assert_eq!(poll().await, "down\n");
            assert_eq!(poll().await, "down\n");
            assert!(wait_answered(&c, "down", 2, Duration::from_secs(2)).await);
            assert!(!wait_answered(&c, "down", 3, Duration::from_millis(100)).await);
            assert!(set(&c, "down", 4_294_967_294).await.is_err());
            srv.abort();
        });
    }
}
