//! The rendered hold (haproxy/hold.lua + the frontend's `tcp-request` lines): with the real HAProxy, a
//! connection arriving while the backend has no UP server waits until one comes UP instead of being
//! closed, and is bounded. A missing haproxy binary fails the test. Loopback only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vaultnix::generate::{generate, GenerateOptions};
use vaultnix::plan::Plan;
use vaultnix::render::{Layout, RenderOptions};
use vaultnix::secrets::Rotate;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.0 exchange through HAProxy: (first line of the answer, or "" if closed; elapsed).
fn ask(port: u16) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    (text.lines().next().unwrap_or("").to_string(), t.elapsed())
}

#[test]
fn new_connections_wait_for_a_server_and_the_wait_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan::from_loaded(&vaultnix::spec::example()).for_lab(std::net::Ipv4Addr::new(127, 0, 0, 10));
    let layout = Layout::Lab(dir.path().to_path_buf());
    let opts = GenerateOptions {
        out: dir.path().to_path_buf(),
        check: false,
        rotate: Rotate::default(),
        render: RenderOptions { nix: false, ..RenderOptions::default() },
    };
    generate(&plan, &layout, &opts).unwrap();
    let rendered = std::fs::read_to_string(dir.path().join("flake/haproxy/haproxy.cfg")).unwrap();
    // The generated global `lua-load` line and frontend hold lines, verbatim; only the backend is ours
    // (plain TCP check on a loopback port that starts listening later).
    let keep = |p: &str| rendered.lines().filter(|l| l.trim_start().starts_with(p)).collect::<Vec<_>>().join("\n");
    let (lua, hold) = (keep("lua-load"), keep("tcp-request"));
    assert!(lua.contains("hold.lua") && hold.contains("lua.wait_for_server vault_active"), "{rendered}");
    let (front, back) = (free_port(), free_port());
    let cfg = format!(
        "global\n{lua}\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind 127.0.0.1:{front}\n{hold}\n    default_backend vault_active\n\
         backend vault_active\n    server s 127.0.0.1:{back} check inter 100ms fall 1 rise 1\n"
    );
    let path = dir.path().join("hold-test.cfg");
    std::fs::write(&path, cfg).unwrap();
    let _h = Kill(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy must be installed"),
    );
    // Wait (bounded) for the frontend, then for the first failed check to mark the server DOWN.
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", front)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "haproxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));

    // No server at all: held for the bound (5 s), then closed.
    let (line, took) = ask(front);
    assert_eq!(line, "", "answered without any server?");
    assert!(took >= Duration::from_millis(4500) && took < Duration::from_secs(9), "{took:?}");

    // A server that comes up 1.5 s after the connection: the connection is held, then served.
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let l = TcpListener::bind(("127.0.0.1", back)).unwrap();
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                    let mut b = [0u8; 256];
                    // Health checks connect and close; a client sends a request.
                    if matches!(c.read(&mut b), Ok(n) if n > 0) {
                        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
                        return;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    let (line, took) = ask(front);
    server.join().unwrap();
    assert_eq!(line, "HTTP/1.0 200 OK");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_millis(4500), "{took:?}");
}
