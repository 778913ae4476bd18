//! `vaultnix metrics`: host metrics for the node exporter's textfile collector, written by the vaultnix
//! binary itself (a systemd timer of modules/monitoring.nix runs it; the live tests run the same):
//!
//! - `vaultnix_cert_not_after_timestamp_seconds{cert=NAME}`: the notAfter of each named certificate
//!   (the VaultnixNodeCertExpiring / VaultnixCaCertExpiring alerts read it);
//! - `vaultnix_raft_db_size_bytes{file="raft.db"|"vault.db"}`: the raft log and FSM database sizes
//!   under the raft data directory (VaultnixRaftDbGrowing).
//!
//! The file is replaced atomically (temp file + rename), so the collector never reads half of it.

use anyhow::{bail, Context, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The file written inside the textfile directory.
pub const TEXTFILE_NAME: &str = "vaultnix.prom";

#[derive(Debug, Clone, Default)]
pub struct MetricsOptions {
    /// (label, PEM file) of every certificate to report.
    pub certs: Vec<(String, PathBuf)>,
    /// The raft storage directory (`storage.raft.path`), if its database sizes are reported.
    pub raft_dir: Option<PathBuf>,
}

/// Parses `NAME=PATH` (NAME: lowercase letters, digits, `-`, `_`).
pub fn parse_cert_arg(s: &str) -> Result<(String, PathBuf)> {
    let Some((name, path)) = s.split_once('=') else {
        bail!("--cert {s:?}: expected NAME=PATH, e.g. node=/etc/vaultnix/tls.crt");
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        bail!("--cert {s:?}: NAME must be lowercase letters, digits, '-' or '_'");
    }
    if path.is_empty() {
        bail!("--cert {s:?}: PATH is empty");
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// The textfile contents. Fails (and nothing is written) when a certificate cannot be read or parsed;
/// a raft database that does not exist yet (the server never started) is left out.
pub fn render_textfile(o: &MetricsOptions) -> Result<String> {
    let mut s = String::new();
    if !o.certs.is_empty() {
        let _ = writeln!(
            s,
            "# HELP vaultnix_cert_not_after_timestamp_seconds notAfter of a certificate vaultnix deployed."
        );
        let _ = writeln!(s, "# TYPE vaultnix_cert_not_after_timestamp_seconds gauge");
        for (name, path) in &o.certs {
            let pem =
                std::fs::read_to_string(path).with_context(|| format!("reading certificate {}", path.display()))?;
            let info =
                crate::pki::inspect(&pem).with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            let _ = writeln!(
                s,
                "vaultnix_cert_not_after_timestamp_seconds{{cert={},path={}}} {}",
                label(name),
                label(&path.to_string_lossy()),
                info.not_after
            );
        }
    }
    if let Some(dir) = &o.raft_dir {
        let mut rows = Vec::new();
        for (file, rel) in [("raft.db", "raft/raft.db"), ("vault.db", "vault.db")] {
            match std::fs::metadata(dir.join(rel)) {
                Ok(m) => rows.push((file, m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.join(rel).display())),
            }
        }
        if !rows.is_empty() {
            let _ = writeln!(s, "# HELP vaultnix_raft_db_size_bytes Size of a raft storage database file.");
            let _ = writeln!(s, "# TYPE vaultnix_raft_db_size_bytes gauge");
            for (file, len) in rows {
                let _ = writeln!(s, "vaultnix_raft_db_size_bytes{{file={}}} {len}", label(file));
            }
        }
    }
    Ok(s)
}

/// Renders and atomically replaces `<dir>/vaultnix.prom`; returns its path.
pub fn write_textfile(dir: &Path, o: &MetricsOptions) -> Result<PathBuf> {
    if !dir.is_dir() {
        bail!("textfile directory {} does not exist", dir.display());
    }
    let text = render_textfile(o)?;
    let path = dir.join(TEXTFILE_NAME);
    crate::output::write_file_atomic(&path, text.as_bytes(), false)?;
    Ok(path)
}

/// A Prometheus label value: quoted, with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_arg_is_validated() {
        assert_eq!(parse_cert_arg("node=/a/b.crt").unwrap(), ("node".into(), PathBuf::from("/a/b.crt")));
        for bad in ["node", "=x", "Node=x", "a b=x", "ca="] {
            assert!(parse_cert_arg(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn label_escapes() {
        assert_eq!(label("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
