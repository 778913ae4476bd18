//! Shared by the live ops tests: a 3-node LAN spec written into the test's temp dir (membership edits
//! it), the real `bao`, and a lock so the labs of one test binary run one at a time (2 shared cores).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub const SPEC: &str = r#"# ops test cluster
[cluster]
name = "ops"
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

static LOCK: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn bao_2_7() -> PathBuf {
    let b = std::env::var_os("VAULTNIX_BAO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.7.2/bao")));
    assert!(b.is_file(), "no bao at {} (set VAULTNIX_BAO): live tests need the real server", b.display());
    b
}

/// Sets VAULTNIX_BAO (the real 2.7.2 unless given) and writes the spec (with `extra` appended to
/// [unseal]-free places by the caller) into `dir`.
pub fn spec_in(dir: &Path, text: &str) -> PathBuf {
    if std::env::var_os("VAULTNIX_BAO").is_none() {
        std::env::set_var("VAULTNIX_BAO", bao_2_7());
    }
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("cluster.toml");
    std::fs::write(&p, text).unwrap();
    p
}
