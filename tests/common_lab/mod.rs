//! Shared by the live tests of doctor and recovery: a 3-node LAN spec for the lab.

use std::path::{Path, PathBuf};

pub const LAB_SPEC: &str = r#"
[cluster]
name = "rec"
engine = "openbao"
version = "2.7.2"
domain = "vault.internal"

[load_balancer]
hostname = "vault.lab.internal"
address = "192.0.2.10"
provider = "onprem"

[overlay]
kind = "none"

[unseal]
kind = "shamir"
shares = 3
threshold = 2

[raft]
performance_multiplier = 1

[[nodes]]
name = "vault-1"
provider = "onprem"
address = "192.0.2.11"

[[nodes]]
name = "vault-2"
provider = "onprem"
address = "192.0.2.12"

[[nodes]]
name = "vault-3"
provider = "onprem"
address = "192.0.2.13"
"#;

/// Writes the spec into `dir` and returns its path. Fails loudly when the real tools are missing.
pub fn spec_in(dir: &Path) -> PathBuf {
    let bao = std::env::var_os("VAULTNIX_BAO").map(PathBuf::from);
    let bao = bao.unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.7.2/bao")));
    assert!(bao.is_file(), "no bao at {} (set VAULTNIX_BAO): live tests need the real server", bao.display());
    std::env::set_var("VAULTNIX_BAO", &bao);
    let p = dir.join("lab.toml");
    std::fs::write(&p, LAB_SPEC).unwrap();
    p
}
