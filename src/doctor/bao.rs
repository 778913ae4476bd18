//! Running the engine's own config validator (`bao operator validate-config`, OpenBao ≥ 2.4) on each
//! rendered server config: it knows the server's schema better than we do.

use super::{Finding, Severity};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHECK: &str = "validate-config";
/// One validation takes ~0.1 s; a generous bound for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `$VAULTNIX_BAO` when set, else `bao` on PATH.
pub fn find_bao() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VAULTNIX_BAO").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("bao")).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Validates one rendered config file; one finding.
pub fn validate_config(bao: &Path, node: &str, config: &Path) -> Finding {
    let rel = config.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let out = match run_bounded(
        Command::new(bao)
            .arg("operator")
            .arg("validate-config")
            .arg("-format=json")
            .arg(format!("-config={}", config.display())),
        TIMEOUT,
    ) {
        Ok(o) => o,
        Err(e) => {
            return Finding::new(
                Severity::Warning,
                CHECK,
                Some(node),
                format!("could not run {} operator validate-config: {e}", bao.display()),
                "check $VAULTNIX_BAO points at an OpenBao >= 2.4 binary",
            )
        }
    };
    let v: serde_json::Value = match serde_json::from_str(out.stdout.trim()) {
        Ok(v) => v,
        Err(_) => {
            return Finding::new(
                Severity::Info,
                CHECK,
                Some(node),
                format!(
                    "{} did not answer validate-config with JSON (exit {:?}); OpenBao < 2.4 has no validate-config",
                    bao.display(),
                    out.code
                ),
                "use OpenBao >= 2.4 (set $VAULTNIX_BAO) to have the server schema checked",
            )
        }
    };
    let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("");
    let mut detail: Vec<String> = Vec::new();
    if let Some(m) = v.get("message").and_then(|m| m.as_str()).filter(|m| !m.is_empty()) {
        detail.push(m.to_string());
    }
    if let Some(ws) = v.get("warnings").and_then(|w| w.as_array()) {
        detail.extend(ws.iter().filter_map(|w| w.as_str()).map(str::to_string));
    }
    match status {
        "ok" => Finding::ok(CHECK, Some(node), format!("bao operator validate-config accepts {rel}")),
        "warn" => Finding::new(
            Severity::Warning,
            CHECK,
            Some(node),
            format!("bao operator validate-config warns about {rel}: {}", detail.join("; ")),
            "the server ignores unknown fields: fix the spec/renderer, then `vaultnix generate` (do not hand-edit)",
        ),
        _ => Finding::new(
            Severity::Error,
            CHECK,
            Some(node),
            format!("bao operator validate-config rejects {rel}: {}", detail.join("; ")),
            "the server will not start with this config: run `vaultnix generate` to restore it, or report a renderer bug",
        ),
    }
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
}

/// Runs a command with a deadline; the child is killed (by its own pid) when the deadline passes.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = reader.join().unwrap_or_default();
    Ok(Output { code: status.code(), stdout })
}
