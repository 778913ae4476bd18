//! The hosts' network: one namespace per host, each joined by a veth pair to a bridge in an
//! "internet" namespace. Hosts carry the spec's own addresses; every other host's address gets an
//! on-link /32 route. No namespace has a default route and the internet namespace has no uplink, so
//! nothing leaves the lab. Every object lives inside a namespace the lab created: deleting the
//! namespaces removes all of it.

use anyhow::{bail, Context, Result};
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// Runs `ip ARGS` (in the machine's namespace; `-n NS` selects a lab namespace) and fails with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} (is it installed? see scripts/install-tools.sh)"))?;
    if !out.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Creates namespace `name` with its loopback up.
pub fn add_netns(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])
}

pub fn del_netns(name: &str) -> Result<()> {
    if netns_exists(name) {
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

pub const BRIDGE: &str = "br0";

pub fn add_bridge(internet: &str) -> Result<()> {
    ip(&["-n", internet, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["-n", internet, "link", "set", BRIDGE, "up"])
}

/// Connects host namespace `host` (interface eth0, address `addr`) to the bridge (port `port`).
pub fn attach(internet: &str, port: &str, host: &str, addr: IpAddr) -> Result<()> {
    ip(&["-n", internet, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host])?;
    ip(&["-n", internet, "link", "set", port, "master", BRIDGE, "up"])?;
    let cidr = cidr(addr);
    ip(&["-n", host, "addr", "add", &cidr, "dev", "eth0"])?;
    ip(&["-n", host, "link", "set", "eth0", "up"])
}

/// On-link route from `host` to another host's address.
pub fn route(host: &str, to: IpAddr) -> Result<()> {
    ip(&["-n", host, "route", "add", &cidr(to), "dev", "eth0"])
}

pub fn cidr(a: IpAddr) -> String {
    format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 })
}
