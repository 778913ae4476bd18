//! All user-facing messages go through here (quiet/verbose, stderr for diagnostics). It lives in the
//! library (like cargo's `Shell`) so that library code that reports progress never imports `cli/`.

use crate::spec::diag::escape_controls as esc;
use crate::spec::Diagnostic;

#[derive(Debug, Clone, Copy)]
pub struct Shell {
    pub quiet: bool,
    pub verbose: bool,
}

impl Shell {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Shell { quiet, verbose }
    }
    /// A result line on stdout (suppressed by --quiet).
    pub fn status(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", esc(msg.as_ref()));
        }
    }
    /// Detail shown with --verbose.
    pub fn detail(&self, msg: impl AsRef<str>) {
        if self.verbose {
            eprintln!("{}", esc(msg.as_ref()));
        }
    }
    /// Informational note on stderr (suppressed by --quiet).
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("note: {}", esc(msg.as_ref()));
        }
    }
    pub fn warn(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("warning: {}", esc(msg.as_ref()));
        }
    }
    pub fn warn_diag(&self, d: &Diagnostic) {
        if !self.quiet {
            eprintln!("{d}");
        }
    }
    pub fn error(&self, msg: impl AsRef<str>) {
        // Errors quote paths and spec values: nothing in them reaches the terminal raw.
        let m = esc(msg.as_ref());
        if m.starts_with("error") || m.contains(": error: ") {
            eprintln!("{m}");
        } else {
            eprintln!("error: {m}");
        }
    }
}
