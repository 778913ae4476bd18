//! `cargo bench --bench restore`: the restore drill with 10,000 secrets (override with
//! VAULTNIX_BENCH_SECRETS) on two real labs: save from a standby, snapshot-force onto a fresh cluster,
//! unseal with the original keys, read every secret back. Goal: save + restore ≤ 10 s. Prints every
//! phase; needs VAULTNIX_BAO (default <repo>/.tools/bao-2.7.2/bao) and haproxy. With
//! VAULTNIX_BENCH_FROM_REPO=1 the snapshot goes through a restic repository (needs restic): two copies
//! (1 % changed in between: time, repository size, deduplication) and the restore from the newest,
//! with the recovery point and recovery time.

use std::path::PathBuf;
use vaultnix::ops::restore_drill::{run_restore_drill, RestoreDrillOptions};

const SPEC: &str = r#"
[cluster]
name = "bench"
engine = "openbao"
version = "2.7.2"

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

/// VAULTNIX_BENCH_FROM_REPO=1: through a restic repository (`drill restore --from-repo`), with RPO/RTO.
fn from_repo() -> bool {
    std::env::var("VAULTNIX_BENCH_FROM_REPO").is_ok_and(|v| v == "1")
}

fn main() {
    if std::env::var_os("VAULTNIX_BAO").is_none() {
        std::env::set_var("VAULTNIX_BAO", concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bao-2.7.2/bao"));
    }
    let n: usize = std::env::var("VAULTNIX_BENCH_SECRETS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let t = tempfile::tempdir().expect("tempdir");
    let spec = t.path().join("bench.toml");
    std::fs::write(&spec, SPEC).expect("spec");
    let r = match run_restore_drill(&RestoreDrillOptions {
        spec: Some(spec),
        workdir: PathBuf::from(t.path()).join("drill"),
        secrets: n,
        concurrency: 16,
        keep_files: false,
        from_repo: from_repo(),
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("restore bench failed: {e:#}");
            std::process::exit(1);
        }
    };
    println!("restore drill, {} secrets (OpenBao, 3 nodes on loopback, 2 cores)", r.secrets);
    println!(
        "  snapshot size             {:>10} bytes, asked {}, served by the active node: {}",
        r.snapshot_bytes, r.saved_from, r.saved_via_redirect
    );
    println!("  write {n} secrets          {:>8.2} s", r.write_seconds);
    println!("  save (standby)            {:>8.2} s", r.save_seconds);
    println!("  restore (snapshot-force)  {:>8.2} s", r.restore_seconds);
    println!("  unseal with original keys {:>8.2} s  (until every node runs the original cluster)", r.unseal_seconds);
    println!(
        "  read back + verify        {:>8.2} s  ({} ok, {} missing, {} wrong)",
        r.verify_seconds, r.read_back, r.missing, r.wrong
    );
    println!(
        "  save + restore            {:>8.2} s  (goal <= 10 s: {})",
        r.save_restore_seconds,
        if r.save_restore_seconds <= 10.0 { "met" } else { "MISSED" }
    );
    println!("  save + restore + unseal   {:>8.2} s", r.recovered_seconds);
    if let Some(f) = &r.repo {
        println!(
            "  restic, first copy        {:>8.2} s  (repository {} bytes)",
            f.first_copy_seconds, f.repo_bytes_after_first
        );
        println!(
            "  restic, second copy       {:>8.2} s  ({} secrets changed; +{} bytes for a {}-byte snapshot: dedup ratio {:.2})",
            f.second_copy_seconds,
            f.changed_secrets,
            f.repo_bytes_after_second.saturating_sub(f.repo_bytes_after_first),
            f.second_snapshot_bytes,
            f.dedup_ratio
        );
        println!(
            "  RPO                       {:>8.2} s  (age of the newest copy when the restore started)",
            f.rpo_seconds
        );
        println!(
            "  RTO                       {:>8.2} s  (repository -> first verified read; fetch + verify {:.2} s)",
            f.rto_seconds, f.fetch_seconds
        );
    }
    for l in &r.unseal_timeline {
        println!("    {l}");
    }
    if !r.ok() {
        eprintln!("the restored cluster does not hold every secret");
        std::process::exit(1);
    }
}
