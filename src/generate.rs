//! The `generate` operation: spec → plan → render → atomic write (or compare, with `--check`).

use crate::output::{self, Diff, Manifest};
use crate::plan::Plan;
use crate::render::{self, Layout, OutFile, RenderOptions};
use crate::secrets::{self, Material, Rotate};
use anyhow::Result;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub out: PathBuf,
    pub check: bool,
    pub rotate: Rotate,
    pub render: RenderOptions,
}

#[derive(Debug)]
pub struct Generated {
    pub files: Vec<OutFile>,
    pub manifest: Manifest,
    pub diff: Diff,
    pub events: Vec<String>,
    /// With --check: whether the tree on disk matches.
    pub drift: bool,
}

/// Renders everything for `plan` with `layout` and the material in `out` (created when missing unless
/// `check`).
pub fn render_tree(
    plan: &Plan,
    out: &Path,
    layout: &Layout,
    opts: &GenerateOptions,
    now: i64,
) -> Result<(Vec<OutFile>, Manifest, Material)> {
    let material = secrets::prepare(plan, out, &opts.rotate, !opts.check, now)?;
    let files = render::render_all(plan, &material, layout, &opts.render)?;
    let manifest = output::manifest_for(&plan.name, &files);
    Ok((files, manifest, material))
}

pub fn generate(plan: &Plan, layout: &Layout, opts: &GenerateOptions) -> Result<Generated> {
    // One writer at a time from reading the CA to the swap: parallel runs on a fresh directory would
    // each create a CA, and all but the last would be thrown away.
    let _lock = if opts.check {
        None
    } else {
        output::check_out_dir(&output::resolve_out(&opts.out)?)?;
        Some(output::lock_tree(&opts.out, std::time::Duration::from_secs(120), &|m: &str| eprintln!("vaultnix: {m}"))?)
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let material = secrets::prepare(plan, &opts.out, &opts.rotate, !opts.check, now)?;
    generate_with(plan, layout, opts, material)
}

/// `generate` with key material already prepared (`certs renew` selects which certificates to reissue).
pub fn generate_with(
    plan: &Plan,
    layout: &Layout,
    opts: &GenerateOptions,
    mut material: Material,
) -> Result<Generated> {
    let files = render::render_all(plan, &material, layout, &opts.render)?;
    let manifest = output::manifest_for(&plan.name, &files);
    // A damaged manifest is drift (--check reports it) or is rewritten, never a dead end.
    let old_manifest = output::read_manifest(&opts.out).unwrap_or_else(|e| {
        material.events.push(format!("ignored the previous manifest ({e:#})"));
        None
    });
    let mut all = files.clone();
    all.push(OutFile {
        path: output::MANIFEST.into(),
        contents: output::manifest_text(&manifest).into_bytes(),
        secret: false,
    });
    let mut diff = output::diff(&opts.out, &all, old_manifest.as_ref())?;
    if opts.check {
        // A hand-edited file whose manifest entry was updated to match is still drift: compare the
        // manifest on disk with the files on disk too.
        if let Some(m) = &old_manifest {
            for (p, h) in &m.files {
                if let Ok(b) = std::fs::read(opts.out.join(p)) {
                    if &output::sha256_hex(&b) != h && !diff.changed.contains(p) {
                        diff.changed.push(p.clone());
                    }
                }
            }
        }
        let drift = !diff.is_empty();
        return Ok(Generated { files, manifest, diff, events: material.events, drift });
    }
    if !diff.is_empty() {
        output::write_tree(&opts.out, &files, &manifest)?;
    }
    Ok(Generated { files, manifest, diff, events: material.events, drift: false })
}
