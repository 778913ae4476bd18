//! Located diagnostics: every problem in a spec names file:line:col, shows the offending text and says
//! what was expected.

use std::fmt;
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// What a valid value looks like.
    pub expected: Option<String>,
    /// Byte range in the source, when the problem has a place.
    #[serde(skip)]
    pub span: Option<Range<usize>>,
    /// `file:line:col` once located against a source.
    pub location: Option<String>,
    /// The offending text, once located.
    pub snippet: Option<String>,
    /// The source line, 1-based column and width of the underline (for display).
    #[serde(skip)]
    pub context: Option<(usize, String, usize, usize)>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            expected: None,
            span: None,
            location: None,
            snippet: None,
            context: None,
        }
    }
    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(message) }
    }
    pub fn expected(mut self, e: impl Into<String>) -> Self {
        self.expected = Some(e.into());
        self
    }
    pub fn at(mut self, span: Option<Range<usize>>) -> Self {
        self.span = span;
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Fills `location` and `snippet` from the source text.
    pub fn locate(mut self, src: &Source) -> Self {
        let span = self.span.clone().unwrap_or(0..0);
        let (line, col) = src.line_col(span.start);
        self.location = Some(format!("{}:{}:{}", src.name, line, col));
        if self.span.is_some() {
            let end = span.end.min(src.text.len()).max(span.start);
            let text = src.text.get(span.start..end).unwrap_or("");
            let first = text.lines().next().unwrap_or("").trim_end();
            let line_text = src.line_text(line).trim_end().to_string();
            self.snippet = Some(if first.is_empty() { line_text.clone() } else { first.to_string() });
            let width = first.chars().count().max(1);
            self.context = Some((line, line_text, col, width));
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        // Everything quoted from the spec (its name, values, the source line) is escaped: see
        // escape_controls.
        let msg = escape_controls(&self.message);
        match &self.location {
            Some(loc) => write!(f, "{}: {sev}: {msg}", escape_controls(loc))?,
            None => write!(f, "{sev}: {msg}")?,
        }
        let mut pad = "   ".to_string();
        if let Some((line, text, col, width)) = &self.context {
            // rustc-style: the source line, then a caret under the offending text (both measured on
            // the escaped text, so the caret stays under it).
            let n = line.to_string();
            pad = " ".repeat(n.len());
            let before: String = text.chars().take(col - 1).collect();
            let under: String = text.chars().skip(col - 1).take(*width).collect();
            let lead: String = escape_controls(&before).chars().map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            let width = escape_controls(&under).chars().count().max(1);
            write!(f, "\n{pad} |\n{n} | {}\n{pad} | {lead}{}", escape_controls(text), "^".repeat(width))?;
        } else if let Some(s) = &self.snippet {
            write!(f, "\n{pad} | {}", escape_controls(s))?;
        }
        if let Some(e) = &self.expected {
            write!(f, "\n{pad} = expected: {}", escape_controls(e))?;
        }
        Ok(())
    }
}

/// Text safe to print on a terminal: C0 control characters (except newline and tab), DEL and C1
/// controls are shown escaped as `\u{1b}`, so a spec (or a file name) cannot clear the screen, retitle
/// the window (OSC) or move the cursor when it is quoted in a diagnostic.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A spec's text and the name it is reported under.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source { name: name.into(), text: text.into() }
    }
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let mut off = offset;
        while !self.text.is_char_boundary(off) {
            off -= 1;
        }
        let before = &self.text[..off];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
    pub fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line.saturating_sub(1)).unwrap_or("")
    }
}

/// The outcome of checking a spec: errors and warnings, in source order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
    pub fn locate(self, src: &Source) -> Self {
        let mut diagnostics: Vec<Diagnostic> = self.diagnostics.into_iter().map(|d| d.locate(src)).collect();
        diagnostics.sort_by_key(|d| d.span.as_ref().map(|s| s.start).unwrap_or(usize::MAX));
        Report { diagnostics }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        let n = self.errors().count();
        if n > 0 {
            writeln!(f, "{n} error{} in spec; nothing was written", if n == 1 { "" } else { "s" })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_caret_stays_under_the_value() {
        // An OSC title change and a screen clear inside a value, and a raw ESC in a comment.
        let text = "[cluster] # \u{1b}[2J\nname = \"a\u{1b}]0;pwned\u{7}b\u{9b}\"\n";
        let s = Source::new("c\u{1b}[2J.toml", text);
        let start = text.find("\"a").unwrap();
        let d = Diagnostic::error("invalid cluster name \u{1b}[2J")
            .expected("no \u{7f}")
            .at(Some(start..text.find("\"\n").unwrap() + 1))
            .locate(&s);
        let out = d.to_string();
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.starts_with("c\\u{1b}[2J.toml:2:8: error: invalid cluster name \\u{1b}[2J"), "{out}");
        assert!(out.contains("2 | name = \"a\\u{1b}]0;pwned\\u{7}b\\u{9b}\""), "{out}");
        // 8 spaces before the caret, and one caret per printed character of the value.
        let value = "\"a\\u{1b}]0;pwned\\u{7}b\\u{9b}\"";
        assert!(out.contains(&format!("  |        {}\n", "^".repeat(value.chars().count()))), "{out}");
        assert!(out.contains("expected: no \\u{7f}"), "{out}");
        assert_eq!(escape_controls("tab\tnew\nline"), "tab\tnew\nline");
    }

    #[test]
    fn line_col_counts_characters() {
        let s = Source::new("x.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        // 'é' is two bytes; the '=' after "bé " is column 4
        assert_eq!(s.line_col(10), (2, 4));
    }

    #[test]
    fn located_diagnostic_names_place_and_expectation() {
        let s = Source::new("c.toml", "[cluster]\nname = \"Bad Name\"\n");
        let d = Diagnostic::error("invalid cluster name")
            .expected("lowercase letters, digits and '-'")
            .at(Some(17..27))
            .locate(&s);
        let text = d.to_string();
        assert!(text.starts_with("c.toml:2:8: error: invalid cluster name"), "{text}");
        assert!(text.contains("2 | name = \"Bad Name\""), "{text}");
        assert!(text.contains("  |        ^^^^^^^^^^\n"), "{text}");
        assert!(text.contains("expected: lowercase"), "{text}");
    }
}
