//! A spare machine: a server host outside the cluster, what the VM cluster test's `spare` is (a
//! fresh single-node server that a snapshot is restored into). It is added to a running hosts lab
//! with the configuration the VM test gives that machine, read from its Nix evaluation
//! (vm-tests/test-script.nix with `gen`): the server JSON, exactly as its `settingsFile`, the
//! certificate and CA files, the `L+` tmpfiles links that put secrets in place, and the key and
//! seal-key files its unit passes with `LoadCredential`.
//!
//! A spare is its own network namespace with loopback only (the VM test's spare listens on
//! 127.0.0.1 and talks to no other machine) and its own mount namespace with the NixOS layout
//! (enter.rs), including the host's own /tmp and /root and the lab's /tmp/shared. It is added
//! powered off: `lab machine NAME start` boots it, as the VM driver's `start()`.

use super::enter::MountOp;
use super::{anchor_spec, start_in, write_state, HostsLab, Start};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What hosts.json records of a spare.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Spare {
    /// The server JSON it runs (`<dir>/hosts/<name>/server.json`, the given settings copied byte for byte).
    pub settings: PathBuf,
    /// `vaultnix.server.certFile`, at /etc/vaultnix/tls.crt.
    pub cert: PathBuf,
    /// `vaultnix.pki.caCertFile`, at /etc/vaultnix/ca.crt.
    pub ca: PathBuf,
    /// tmpfiles `L+ target - - - - source` links: (target on the host, source on the machine).
    pub links: Vec<(String, PathBuf)>,
    /// The unit's credentials: name -> the file on the host (`LoadCredential=name:file`).
    pub credentials: Vec<(String, String)>,
}

/// `lab machine NAME add-server`'s input.
#[derive(Debug, Clone)]
pub struct SpareDef {
    pub settings: PathBuf,
    pub cert: PathBuf,
    pub ca: PathBuf,
    pub links: Vec<String>,
    /// `vaultnix.server.keyFile` (default `<secretsDir>/tls.key`, as modules/node.nix).
    pub key_file: Option<String>,
    /// `vaultnix.server.sealKeyFile`.
    pub seal_key_file: Option<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// A link `TARGET=SOURCE`: TARGET an absolute path under /var/lib (the overlay the host writes), SOURCE
/// an existing file.
fn parse_link(s: &str) -> Result<(String, PathBuf)> {
    let (t, src) = s.split_once('=').ok_or_else(|| anyhow!("--link {s}: expected TARGET=SOURCE"))?;
    if !t.starts_with("/var/lib/") || t.contains("/../") || t.ends_with('/') {
        bail!("--link {s}: the target must be a file under /var/lib/ (where tmpfiles puts the VM test's secrets)");
    }
    let src = PathBuf::from(src);
    if !src.is_file() {
        bail!("--link {s}: {} is not a file", src.display());
    }
    Ok((t.to_string(), src))
}

impl HostsLab {
    /// The spare named `name`, if the lab has one.
    pub fn spare(&self, name: &str) -> Option<&Spare> {
        self.state.spares.get(name)
    }

    /// Adds spare `name` (powered off) to the running lab. Nothing is created when the input is bad.
    pub fn add_spare(&mut self, name: &str, def: &SpareDef) -> Result<()> {
        if !valid_name(name) {
            bail!("spare name {name:?}: use 1-20 of a-z, 0-9 and '-'");
        }
        if self.hosts.iter().any(|h| h.name == name) || self.state.spares.contains_key(name) {
            bail!("the lab has a host named {name} already");
        }
        let text = std::fs::read(&def.settings).with_context(|| format!("--settings {}", def.settings.display()))?;
        serde_json::from_slice::<serde_json::Value>(&text)
            .with_context(|| format!("--settings {}: not JSON", def.settings.display()))?;
        for (what, p) in [("--cert", &def.cert), ("--ca", &def.ca)] {
            if !p.is_file() {
                bail!("{what} {}: no such file", p.display());
            }
        }
        let links = def.links.iter().map(|l| parse_link(l)).collect::<Result<Vec<_>>>()?;
        let secrets = &self.plan.secrets_dir;
        let mut credentials =
            vec![("tls.key".to_string(), def.key_file.clone().unwrap_or_else(|| format!("{secrets}/tls.key")))];
        if let Some(s) = &def.seal_key_file {
            credentials.push(("seal.key".into(), s.clone()));
        }
        for (n, f) in &credentials {
            if !links.iter().any(|(t, _)| t == f) {
                bail!("credential {n} is read from {f}, which no --link puts on the host");
            }
        }
        let hd = self.host_dir(name);
        std::fs::create_dir_all(&hd)?;
        let settings = hd.join("server.json");
        crate::output::write_file_atomic(&settings, &text, false)?;
        let spare = Spare { settings, cert: def.cert.clone(), ca: def.ca.clone(), links, credentials };
        let ns = self.netns(name);
        self.record_netns(&ns)?;
        self.state.spares.insert(name.to_string(), spare.clone());
        self.spare_hosts.push(super::spare_host(name));
        write_state(&self.dir, &self.state)?;
        super::net::add_netns(&ns)?;
        std::fs::write(self.crashed_marker(name), b"")?;
        let ops = self.spare_mount_ops(name, &spare)?;
        start_in(&self.dir, &anchor_spec(&self.dir, name)?, Start::Create { netns: &ns, ops }, true)?;
        Ok(())
    }

    /// The spare's mount namespace: a server host's layout, from the given files.
    fn spare_mount_ops(&self, name: &str, s: &Spare) -> Result<Vec<MountOp>> {
        let unit = self.unit_name();
        let secrets_rel = self.plan.secrets_dir.trim_start_matches("/var/lib/").to_string();
        let link_rels: Vec<String> =
            s.links.iter().map(|(t, _)| t.trim_start_matches("/var/lib/").to_string()).collect();
        let mut var_lib: Vec<(&str, bool)> = vec![(&secrets_rel, true), (unit, true)];
        var_lib.extend(link_rels.iter().map(|r| (r.as_str(), false)));
        let mut ops = vec![
            self.overlay_op(name, "/etc", "etc", &[("vaultnix/ca.crt", false), ("vaultnix/tls.crt", false)])?,
            self.overlay_op(name, "/var/lib", "var-lib", &var_lib)?,
            self.overlay_op(name, "/var/log", "var-log", &[(unit, true)])?,
            MountOp::tmpfs("/run", "0755")?,
        ];
        ops.extend(self.own_dirs()?);
        ops.push(MountOp::bind(&s.ca, "/etc/vaultnix/ca.crt")?);
        ops.push(MountOp::bind(&s.cert, "/etc/vaultnix/tls.crt")?);
        for (t, src) in &s.links {
            ops.push(MountOp::bind(src, t)?);
        }
        let cred = format!("/run/credentials/{unit}.service");
        ops.push(MountOp::mkdir("/run/credentials", 0o700)?);
        ops.push(MountOp::mkdir(&cred, 0o700)?);
        for (n, f) in &s.credentials {
            let at = format!("{cred}/{n}");
            ops.push(MountOp::touch(&at)?);
            ops.push(MountOp::bind(Path::new(f), &at)?);
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_links_are_checked() {
        assert!(valid_name("spare") && valid_name("spare-2"));
        assert!(!valid_name("") && !valid_name("-x") && !valid_name("Spare") && !valid_name("a/b"));
        let f = tempfile::NamedTempFile::new().unwrap();
        let ok = format!("/var/lib/vaultnix/secrets/tls.key={}", f.path().display());
        assert_eq!(parse_link(&ok).unwrap().0, "/var/lib/vaultnix/secrets/tls.key");
        for bad in [
            format!("/etc/passwd={}", f.path().display()),
            format!("/var/lib/../etc/x={}", f.path().display()),
            "/var/lib/vaultnix/secrets/tls.key=/nonexistent".to_string(),
            "/var/lib/x".to_string(),
        ] {
            assert!(parse_link(&bad).is_err(), "{bad}");
        }
    }
}
