//! Data flows one way (spec → plan → render → files) and library code never imports from `cli/`:
//! checked on the source tree, so a new `use crate::cli::…` outside src/cli fails here.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// (layer, modules it must not name). `cli` may use everything; nothing below it may use `cli`.
const RULES: &[(&str, &[&str])] = &[
    ("spec", &["cli", "plan", "render", "generate", "output", "lab", "drill", "ops", "doctor", "recover", "api"]),
    ("plan", &["cli", "render", "generate", "output", "lab", "drill", "ops", "doctor", "recover"]),
    // render still names ops::backup::BackupConfig (the backup.json type): to move below render.
    ("render", &["cli", "generate", "lab", "drill", "doctor", "recover", "api"]),
    ("api", &["cli", "lab", "drill", "ops", "doctor", "recover"]),
    ("lab", &["cli"]),
    ("drill", &["cli"]),
    ("ops", &["cli"]),
    ("doctor", &["cli"]),
    ("recover", &["cli"]),
    ("generate.rs", &["cli"]),
    ("output.rs", &["cli", "lab", "drill", "ops", "doctor", "recover"]),
    ("pki.rs", &["cli", "lab", "drill", "ops", "doctor", "recover"]),
    ("secrets.rs", &["cli", "lab", "drill", "ops", "doctor", "recover"]),
    ("shell.rs", &["cli"]),
];

#[test]
fn library_layers_import_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut checked = 0;
    for (layer, banned) in RULES {
        let root = src.join(layer);
        let mut files = Vec::new();
        if root.is_dir() {
            rust_files(&root, &mut files);
        } else {
            assert!(root.is_file(), "layer {layer} not found at {}", root.display());
            files.push(root);
        }
        for f in files {
            checked += 1;
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for b in *banned {
                    if code.contains(&format!("crate::{b}::")) || code.contains(&format!("crate::{b};")) {
                        violations.push(format!("{}:{}: {layer} uses crate::{b}: {}", f.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} files checked: the layout moved, update RULES");
    assert!(violations.is_empty(), "imports against the layering:\n{}", violations.join("\n"));
}
