//! `vaultnix doctor`: pre-flight checks of what will actually be deployed against the plan.
//!
//! Offline checks ([`offline`]) read the generated tree (certificates, rendered server JSON) because
//! that is the point: nodes that never join almost always do so because the files deployed disagree
//! with each other (SANs vs. the addresses dialled, a replaced CA). Live checks ([`live`]) talk to the
//! running cluster. Every check yields [`Finding`]s: severity, node, what is wrong and how to fix it.

pub mod bao;
pub mod live;
pub mod offline;

use serde::Serialize;
use std::path::PathBuf;

pub use live::{live, LiveOptions};
pub use offline::offline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One result of one check. `what` and `fix` never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The node concerned, or None for cluster-wide findings.
    pub node: Option<String>,
    /// A stable check identifier (e.g. "join-san"), for scripts and tests.
    pub check: &'static str,
    pub what: String,
    /// Empty for `Ok` findings.
    pub fix: String,
}

impl Finding {
    pub fn ok(check: &'static str, node: Option<&str>, what: impl Into<String>) -> Self {
        Finding { severity: Severity::Ok, node: node.map(str::to_string), check, what: what.into(), fix: String::new() }
    }
    pub fn new(
        severity: Severity,
        check: &'static str,
        node: Option<&str>,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding { severity, node: node.map(str::to_string), check, what: what.into(), fix: fix.into() }
    }
}

/// Exit code for warnings only (no errors); errors map to 1, like every other failure.
pub const EXIT_WARNINGS: u8 = 3;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }
    pub fn extend(&mut self, other: Report) {
        self.findings.extend(other.findings);
    }
    pub fn worst(&self) -> Severity {
        self.findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok)
    }
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
    /// Findings at `min` or worse.
    pub fn at_least(&self, min: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity >= min)
    }
    /// 0: nothing worse than info; 3: warnings only; 1: at least one error.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Severity::Ok | Severity::Info => 0,
            Severity::Warning => EXIT_WARNINGS,
            Severity::Error => 1,
        }
    }
    /// True when some finding of `check` has `severity` (and, if given, concerns `node`).
    pub fn has(&self, check: &str, severity: Severity, node: Option<&str>) -> bool {
        self.findings
            .iter()
            .any(|f| f.check == check && f.severity == severity && (node.is_none() || f.node.as_deref() == node))
    }
}

/// What the offline checks look at.
#[derive(Debug, Clone)]
pub struct OfflineOptions {
    /// The generated tree (`generate --out`).
    pub out: PathBuf,
    /// The layout the tree was generated with (NixOS for `generate`, Lab for `vaultnix lab`).
    pub layout: crate::render::Layout,
    /// Render options the tree was generated with (for the drift check).
    pub render: crate::render::RenderOptions,
    /// The `bao` binary for `operator validate-config`; None: look it up ($VAULTNIX_BAO, then PATH).
    pub bao: Option<PathBuf>,
    /// Skip `bao operator validate-config` entirely (reported as Info).
    pub skip_validate_config: bool,
    /// Unix time "now" (tests move it).
    pub now: i64,
}

impl OfflineOptions {
    pub fn new(out: impl Into<PathBuf>, layout: crate::render::Layout) -> Self {
        OfflineOptions {
            out: out.into(),
            layout,
            render: crate::render::RenderOptions::default(),
            bao: None,
            skip_validate_config: false,
            now: time::OffsetDateTime::now_utc().unix_timestamp(),
        }
    }
}
