//! The spec: schema, parsing with located errors, and semantic validation.

pub mod calendar;
pub mod diag;
pub mod pgp;
pub mod schema;
pub mod spans;
pub mod validate;

pub use diag::{Diagnostic, Report, Severity, Source};
pub use schema::*;
pub use validate::{effective_network, node_arch, parse_duration, parse_version, Quorum};

use std::path::{Path, PathBuf};

/// The built-in example spec (`vaultnix init` writes it; `generate` uses it when no spec is given).
pub const EXAMPLE: &str = include_str!("example.toml");
pub const EXAMPLE_NAME: &str = "<built-in example>";

/// A spec that parsed and validated, with its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub source: Source,
    /// Directory relative paths in the spec (PGP keys) are resolved against.
    pub dir: PathBuf,
    pub warnings: Report,
}

/// Why a spec could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io { path: PathBuf, error: std::io::Error },
    /// Located problems (syntax, types, semantics).
    Invalid(Report),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io { path, error } => write!(f, "cannot read spec {}: {error}", path.display()),
            LoadError::Invalid(r) => write!(f, "{}", r.to_string().trim_end()),
        }
    }
}

impl std::error::Error for LoadError {}

/// A spec is a few kilobytes (100 nodes: ~15 KB). Anything near this is a mistake (a wrong file) or an
/// attack, and parsing a gigabyte takes long enough to look like a hang (found by fuzzing).
pub const MAX_SPEC_BYTES: usize = 1 << 20;

fn too_large(name: &str, len: usize) -> LoadError {
    let src = Source::new(name, "");
    LoadError::Invalid(Report {
        diagnostics: vec![Diagnostic::error(format!(
            "the spec is {len} bytes or more; at most {MAX_SPEC_BYTES} are read"
        ))
        .expected("a vaultnix TOML spec (a few kilobytes)")
        .at(Some(0..0))
        .locate(&src)],
    })
}

/// Reads and checks a spec file.
/// Reads a regular file, at most `max + 1` bytes (so the caller can tell "too large"). A FIFO, a device
/// (`/dev/zero`), a socket or a directory is refused at once: it is opened non-blocking (a FIFO with no
/// writer would otherwise block the open forever) and checked before a byte is read.
pub fn read_regular_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO (named pipe)"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("it is {kind}, not a regular file")));
    }
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let io = |error| LoadError::Io { path: path.to_path_buf(), error };
    let text = read_regular_bounded(path, MAX_SPEC_BYTES as u64).map_err(io)?;
    if text.len() > MAX_SPEC_BYTES {
        return Err(too_large(&path.display().to_string(), text.len()));
    }
    let text = String::from_utf8(text).map_err(|e| {
        let off = e.utf8_error().valid_up_to();
        let src = Source::new(path.display().to_string(), String::from_utf8_lossy(e.as_bytes()).into_owned());
        LoadError::Invalid(Report {
            diagnostics: vec![Diagnostic::error("the spec is not valid UTF-8")
                .expected("a UTF-8 text file")
                .at(Some(off..off + 1))
                .locate(&src)],
        })
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    load_str(&path.display().to_string(), &text, &dir)
}

/// Parses and checks spec text. `name` is what errors are reported under.
pub fn load_str(name: &str, text: &str, dir: &Path) -> Result<Loaded, LoadError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(too_large(name, text.len()));
    }
    let source = Source::new(name, text);
    let mut spec: Spec = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            let mut diagnostics = vec![explain_toml_error(text, &e).locate(&source)];
            // A spec that is valid TOML: every type and key error, not only the first (serde stops at
            // one). The offending line, or its table, is blanked out and the rest parsed again.
            if toml::from_str::<toml::Table>(text).is_ok() {
                diagnostics.extend(further_data_errors(text, &e).into_iter().map(|d| d.locate(&source)));
            }
            return Err(LoadError::Invalid(Report { diagnostics }.locate(&source)));
        }
    };
    let idx = spans::SpanIndex::new(text);
    // The default version is the engine's (serde's default cannot see the engine).
    let names_version = toml::from_str::<toml::Table>(text)
        .ok()
        .is_some_and(|t| t.get("cluster").and_then(|c| c.get("version")).is_some());
    if !names_version {
        spec.cluster.version = validate::default_version_of(spec.cluster.engine).to_string();
    }
    let report = validate::validate(&spec, &idx, dir).locate(&source);
    if report.has_errors() {
        return Err(LoadError::Invalid(report));
    }
    Ok(Loaded { spec, source, dir: dir.to_path_buf(), warnings: report })
}

/// The built-in example, parsed.
pub fn example() -> Loaded {
    match load_str(EXAMPLE_NAME, EXAMPLE, Path::new(".")) {
        Ok(l) => l,
        // The example is tested; this cannot fail in a released binary.
        Err(e) => unreachable!("built-in example spec is invalid: {e}"),
    }
}

/// A toml/serde error as a diagnostic (not yet located).
fn explain_toml_error(text: &str, e: &toml::de::Error) -> Diagnostic {
    let msg = e.message().trim().to_string();
    let offending = e.span().and_then(|r| text.get(r)).unwrap_or("");
    let (message, expected) = if msg.is_empty() {
        // toml leaves the message empty for some syntax errors (a missing value, a control
        // character); an error line must still say what is wrong.
        explain_bare_syntax_error(text, e.span())
    } else {
        explain_serde_error(&msg, offending, e.span().and_then(|r| key_at(text, r.start)))
    };
    let d = Diagnostic::error(message).at(e.span());
    match expected {
        Some(x) => d.expected(x),
        None => d,
    }
}

/// At most this many further errors are looked for (each costs a parse of the spec).
const MAX_DATA_ERRORS: usize = 50;

/// The byte ranges of the spec's lines and of its table blocks (a `[header]` or `[[header]]` line up
/// to the next one; the keys before the first header are a block too).
fn line_at(text: &str, offset: usize) -> std::ops::Range<usize> {
    let start = text[..offset.min(text.len())].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text[start..].find('\n').map(|i| start + i).unwrap_or(text.len());
    start..end
}

fn block_at(text: &str, offset: usize) -> std::ops::Range<usize> {
    let is_header = |line: &str| line.trim_start().starts_with('[');
    let mut start = 0;
    let mut pos = 0;
    let mut end = text.len();
    for line in text.split_inclusive('\n') {
        if is_header(line) {
            if pos <= offset {
                start = pos;
            } else {
                end = pos;
                break;
            }
        }
        pos += line.len();
    }
    start..end
}

/// The key a block's header names (`[unseal.params]` → "params", `[[nodes]]` → "nodes").
fn header_key(block: &str) -> Option<String> {
    let h = block.lines().next()?.trim();
    let h = h.strip_prefix('[')?.trim_start_matches('[');
    let h = h.split(']').next()?;
    Some(h.rsplit('.').next()?.trim().trim_matches('"').to_string())
}

/// `text` with `range` replaced by spaces (newlines kept, so every other offset, line and column stays).
fn blank(text: &mut [u8], range: std::ops::Range<usize>) {
    for b in &mut text[range] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
}

/// The errors after `first`: the line holding each error is blanked (its whole table block when
/// blanking the line breaks the TOML or only trades the error for a missing required key), then the
/// spec is parsed again, until it parses or nothing more can be told.
fn further_data_errors(text: &str, first: &toml::de::Error) -> Vec<Diagnostic> {
    let mut masked = text.as_bytes().to_vec();
    let mut out = Vec::new();
    let mut seen: Vec<std::ops::Range<usize>> = Vec::new();
    let mut masked_keys: Vec<String> = Vec::new();
    let mut masked_headers: Vec<String> = Vec::new();
    let mut next = first.span();
    for _ in 0..2 * MAX_DATA_ERRORS {
        if out.len() >= MAX_DATA_ERRORS {
            break;
        }
        // Blank what the last error was about: its line if that keeps the TOML valid, else its block.
        let Some(span) = next.take() else { break };
        if span.start >= text.len() {
            break;
        }
        seen.push(span.clone());
        let line = line_at(text, span.start);
        let mut trial = masked.clone();
        blank(&mut trial, line.clone());
        let line_text = &text[line.clone()];
        if !line_text.trim_start().starts_with('[')
            && line_text.contains('=')
            && toml::from_str::<toml::Table>(&String::from_utf8_lossy(&trial)).is_ok()
        {
            masked_keys.extend(key_at(text, line.start + line_text.find('=').unwrap_or(0) + 1).map(str::to_string));
            masked = trial;
        } else {
            let before = masked.clone();
            let block = block_at(text, span.start);
            masked_headers.extend(header_key(&text[block.clone()]));
            blank(&mut masked, block);
            if masked == before {
                break;
            }
        }
        let e = match toml::from_str::<Spec>(&String::from_utf8_lossy(&masked)) {
            Ok(_) => break,
            Err(e) => e,
        };
        let Some(espan) = e.span() else { break };
        if let Some(rest) = e.message().trim().strip_prefix("missing field ") {
            // A table we blanked is missing now: that was reported already, and serde checks for
            // missing keys last, so nothing else is wrong.
            if masked_headers.iter().any(|k| k == rest.trim_matches('`')) {
                break;
            }
            // Blanking a required key is not the user's error: blank its whole table next (a missing
            // top-level table, whose block is the whole text, ends the search).
            if masked_keys.iter().any(|k| k == rest.trim_matches('`')) {
                if block_at(text, espan.start.min(text.len().saturating_sub(1))) == (0..text.len()) {
                    break;
                }
                masked_keys.clear();
                let before = masked.clone();
                let block = block_at(text, espan.start);
                masked_headers.extend(header_key(&text[block.clone()]));
                blank(&mut masked, block);
                if masked == before {
                    break;
                }
                match toml::from_str::<Spec>(&String::from_utf8_lossy(&masked)) {
                    Ok(_) => break,
                    Err(e2) => match e2.span() {
                        Some(s2) if !seen.contains(&s2) && !e2.message().trim().starts_with("missing field ") => {
                            out.push(explain_toml_error(text, &e2));
                            next = Some(s2);
                        }
                        _ => break,
                    },
                }
                continue;
            }
        }
        if seen.contains(&espan) {
            break;
        }
        out.push(explain_toml_error(text, &e));
        next = Some(espan);
    }
    out
}

/// A message for a syntax error toml reported without one, from the text at its place.
fn explain_bare_syntax_error(text: &str, span: Option<std::ops::Range<usize>>) -> (String, Option<String>) {
    let at = span.map(|s| s.start).unwrap_or(0);
    let c = text.get(at..).and_then(|t| t.chars().next());
    match c {
        Some(c) if c.is_control() && c != '\n' && c != '\t' && c != '\r' => (
            format!("control character U+{:04X} is not allowed in TOML text", c as u32),
            Some("printable text (inside a quoted string, write it as an escape such as \\u0000)".into()),
        ),
        None | Some('\n') | Some('\r') | Some('#') => (
            "incomplete TOML: a value is missing here".into(),
            Some("a value such as \"text\", 42, true or [ ... ] after '='".into()),
        ),
        Some(c) => (format!("invalid TOML syntax at {c:?}"), None),
    }
}

/// serde's and toml's messages name what they wanted ("expected ..."): lift that into the `expected`
/// field, in words a spec author uses (`u16` → "a whole number from 0 to 65535"), and suggest the
/// closest known key for a misspelled one.
/// The key a `key = value` line sets, when `offset` is inside its value ("persistent_keepalive").
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let line = &before[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..];
    let (key, _) = line.split_once('=')?;
    let key = key.trim().rsplit('.').next()?.trim().trim_matches('"');
    (!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')).then_some(key)
}

/// What a value of `key` looks like, for the keys whose Rust type says too little (a `u16` is not
/// always a port, a `u8` share count cannot be 0, a network is not an address).
fn expected_for_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "persistent_keepalive" => "a number of seconds from 0 (off) to 65535, e.g. 25",
        "shares" | "threshold" => "a whole number from 1 to 255",
        "performance_multiplier" => "a whole number from 1 to 10",
        "min_quorum" => "a whole number of voters from 1 to 255",
        "api_port" | "cluster_port" | "agent_port" | "port" | "stats_port" | "listen_port" => "a port from 1 to 65535",
        "subnet" | "client_cidrs" | "ssh_cidrs" => "a network in CIDR notation such as \"10.0.0.0/24\"",
        "address" | "overlay_address" => "an IPv4 or IPv6 address such as \"192.0.2.10\"",
        _ => return None,
    })
}

fn explain_serde_error(msg: &str, offending: &str, key: Option<&str>) -> (String, Option<String>) {
    let (message, expected) = explain_serde_error_generic(msg, offending);
    let Some(want) = key.and_then(expected_for_key) else { return (message, expected) };
    // Type and value errors name what this key takes; syntax and key errors stay as they are.
    if message.starts_with("wrong type") || message.starts_with("invalid value") {
        return (message, Some(want.to_string()));
    }
    if message == "invalid IP address" || message == "invalid network" {
        let message = if want.contains("CIDR") { "invalid network" } else { "invalid IP address" };
        return (message.to_string(), Some(want.to_string()));
    }
    (message, expected)
}

fn explain_serde_error_generic(msg: &str, offending: &str) -> (String, Option<String>) {
    let first = msg.lines().next().unwrap_or(msg).trim().to_string();
    // toml's syntax errors: "invalid table header\nexpected `.`, `]`".
    if let Some(exp) = msg.lines().nth(1).and_then(|l| l.trim().strip_prefix("expected ")) {
        return (format!("TOML syntax: {first}"), Some(exp.to_string()));
    }
    if let Some(detail) = msg.lines().nth(1).map(str::trim).filter(|l| !l.is_empty()) {
        return (format!("TOML syntax: {first}: {detail}"), None);
    }
    if first == "invalid basic string" {
        return ("TOML syntax: unterminated string".into(), Some("a closing `\"` on the same line".into()));
    }
    if first.starts_with("duplicate key") {
        return (format!("TOML syntax: {first}"), Some("each key once per table".into()));
    }
    if let Some(rest) = first.strip_prefix("unknown field ") {
        if let Some((field, exp)) = rest.split_once(", expected ") {
            let exp = exp.strip_prefix("one of ").unwrap_or(exp);
            let known: Vec<&str> = exp.split(", ").map(|k| k.trim_matches('`')).collect();
            let message = match closest(field.trim_matches('`'), &known) {
                Some(k) => format!("unknown key {field} (did you mean `{k}`?)"),
                None => format!("unknown key {field}"),
            };
            return (message, Some(format!("one of {exp}")));
        }
        return (format!("unknown key {rest}"), None);
    }
    if let Some(rest) = first.strip_prefix("unknown variant ") {
        if let Some((v, exp)) = rest.split_once(", expected ") {
            return (format!("unknown value {v}"), Some(exp.to_string()));
        }
    }
    if let Some(rest) = first.strip_prefix("missing field ") {
        return (format!("missing required key {rest}"), Some(format!("{rest} = ... in this table")));
    }
    if let Some(rest) = first.strip_prefix("invalid type: ") {
        if let Some((got, exp)) = rest.split_once(", expected ") {
            return (format!("wrong type: {got}"), Some(human_type(exp)));
        }
    }
    if let Some(rest) = first.strip_prefix("invalid value: ") {
        if let Some((got, exp)) = rest.split_once(", expected ") {
            return (format!("invalid value: {got}"), Some(human_type(exp)));
        }
    }
    if first == "invalid IP address syntax" {
        return if offending.contains('/') {
            ("invalid network".into(), Some("a network in CIDR notation such as \"10.0.0.0/24\"".into()))
        } else {
            ("invalid IP address".into(), Some("an IPv4 or IPv6 address such as \"192.0.2.10\"".into()))
        };
    }
    if let Some((what, exp)) = first.split_once(", expected ") {
        return (what.to_string(), Some(exp.to_string()));
    }
    (first, None)
}

/// serde's Rust type names in words.
fn human_type(exp: &str) -> String {
    let range = |t: &str| -> Option<&'static str> {
        Some(match t {
            "u8" => "a whole number from 0 to 255",
            "u16" => "a whole number from 0 to 65535",
            "u32" => "a whole number from 0 to 4294967295",
            "u64" => "a whole number, 0 or more",
            "a string" => "a string in double quotes",
            _ => return None,
        })
    };
    range(exp).map(str::to_string).unwrap_or_else(|| exp.to_string())
}

/// The known key closest to a misspelled one (at most 2 edits, or one is a prefix of the other).
fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, k)| *d <= 2 || (unknown.len() >= 4 && (k.starts_with(unknown) || unknown.starts_with(k))))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_valid() {
        let l = example();
        assert_eq!(l.spec.nodes.len(), 3);
        assert_eq!(l.spec.cluster.engine, Engine::Openbao);
        assert!(!l.warnings.has_errors());
    }

    #[test]
    fn the_default_version_is_the_engines() {
        let base = "[load_balancer]\nhostname = \"x.example.com\"\naddress = \"192.0.2.9\"\n[[nodes]]\nname = \"n1\"\nprovider = \"onprem\"\naddress = \"192.0.2.1\"\n[cluster]\nname = \"a\"\nallow_single_node = true\n";
        let v =
            |extra: &str| load_str("t.toml", &format!("{base}{extra}"), Path::new(".")).map(|l| l.spec.cluster.version);
        assert_eq!(v("").unwrap(), "2.7.2");
        assert_eq!(v("engine = \"vault\"\n").unwrap(), "1.20.4");
        assert_eq!(v("engine = \"vault\"\nversion = \"1.17.0\"\n").unwrap(), "1.17.0");
        for bad in ["engine = \"vault\"\nversion = \"2.7.2\"\n", "version = \"99.99.99\"\n", "version = \"2.8\"\n"] {
            let e = v(bad).unwrap_err().to_string();
            assert!(e.contains("is not a version vaultnix knows"), "{bad}: {e}");
        }
    }

    #[test]
    fn type_error_is_located() {
        let text = "[cluster]\nname = \"a\"\n[load_balancer]\nhostname = \"x.y\"\naddress = \"1.2.3.4\"\n[[nodes]]\nname = \"n1\"\nprovider = \"aws\"\n";
        let err = load_str("t.toml", text, Path::new(".")).unwrap_err();
        let s = err.to_string();
        assert!(s.contains("t.toml:8:12"), "{s}");
        assert!(s.contains("unknown value"), "{s}");
        assert!(s.contains("onprem"), "{s}");
    }

    #[test]
    fn type_errors_name_what_the_key_takes() {
        let cases = [
            ("[overlay]\npersistent_keepalive = 70000\n", "a number of seconds from 0 (off) to 65535"),
            ("[unseal]\nshares = 300\n", "a whole number from 1 to 255"),
            ("[unseal]\nthreshold = \"3\"\n", "a whole number from 1 to 255"),
            ("[overlay]\nsubnet = \"10.0.0.0\"\n", "expected: a network in CIDR notation"),
            ("[firewall]\nclient_cidrs = [\"10.0.0.0/8\", \"192.0.2.1\"]\n", "expected: a network in CIDR notation"),
            ("[cluster]\napi_port = 70000\n", "a port from 1 to 65535"),
        ];
        for (text, want) in cases {
            let s = load_str("t.toml", text, Path::new(".")).unwrap_err().to_string();
            assert!(s.contains(want), "{text}: {s}");
            assert!(!s.contains("an IPv4") && !s.contains("(a port)") && !s.contains("0 to 255"), "{text}: {s}");
        }
    }

    #[test]
    fn misspelled_key_gets_a_suggestion() {
        let text = "[cluster]\nname = \"a\"\nengnie = \"vault\"\n";
        let s = load_str("t.toml", text, Path::new(".")).unwrap_err().to_string();
        assert!(s.contains("t.toml:3:1: error: unknown key `engnie` (did you mean `engine`?)"), "{s}");
        assert!(!s.contains("one of one of"), "{s}");
        assert_eq!(closest("zzzzzz", &["engine", "name"]), None);
        assert_eq!(edit_distance("overlay_adress", "overlay_address"), 1);
    }

    #[test]
    fn bare_syntax_errors_still_say_what_is_wrong() {
        // Found by tests/fuzz_spec.rs: toml reports these with an empty message.
        for (text, want) in [("address =", "a value is missing"), ("#\0", "control character U+0000")] {
            let s = load_str("t.toml", text, Path::new(".")).unwrap_err().to_string();
            assert!(s.contains(want), "{s}");
        }
        let s = load_str("t.toml", "a = [1,", Path::new(".")).unwrap_err().to_string();
        assert!(s.contains("invalid array") && s.contains("expected: `]`"), "{s}");
    }

    #[test]
    fn oversized_specs_are_refused_without_reading_them_whole() {
        // Found by tests/fuzz_spec.rs: a 1 GB generated spec took longer than the per-case time bound.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("big.toml");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap(); // sparse: 64 MiB of NULs
        let s = load_file(&p).unwrap_err().to_string();
        assert!(s.contains("big.toml:1:1") && s.contains("at most 1048576"), "{s}");
        let s = load_str("x.toml", &"#".repeat(MAX_SPEC_BYTES + 1), Path::new(".")).unwrap_err().to_string();
        assert!(s.contains("x.toml:1:1"), "{s}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = r#"
[cluster]
name = "c"
[load_balancer]
hostname = "lb.example.com"
address = "192.0.2.1"
[overlay]
kind = "none"
[unseal]
shares = 3
threshold = 4
[[nodes]]
name = "a"
provider = "linode"
arch = "aarch64"
address = "192.0.2.10"
[[nodes]]
name = "a"
provider = "onprem"
address = "192.0.2.10"
"#;
        let err = load_str("t.toml", text, Path::new(".")).unwrap_err();
        let LoadError::Invalid(r) = err else { panic!("expected invalid") };
        let msgs: Vec<String> = r.errors().map(|d| d.to_string()).collect();
        let all = msgs.join("\n");
        assert!(all.contains("duplicate node name"), "{all}");
        assert!(all.contains("used twice"), "{all}");
        assert!(all.contains("x86_64 only"), "{all}");
        assert!(all.contains("threshold 4 is larger than shares 3"), "{all}");
        assert!(msgs.len() >= 4, "{all}");
    }
}
