//! `maskflow gc`: remove cache entries that no listed pipeline references.
//!
//! Live set: for every variant of every listed pipeline, the records of its planned steps,
//! their output objects and trees. gc refuses to run if any pipeline fails to load or plan
//! (an incomplete live set would delete results that are still wanted), and holds the
//! cache's exclusive lock so no run is writing meanwhile.

use crate::cache::{Cache, Dir};
use crate::plan::{Plan, StepKind};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What a collection removed (or, in a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Collected {
    pub dry_run: bool,
    pub entries: usize,
    pub bytes: u64,
    /// Step records kept because a plan references them.
    pub kept_records: usize,
}

/// Removes everything in `cache` that none of `plans` references. The caller holds the
/// cache's exclusive lock (`Cache::open_exclusive`) and planned every pipeline it keeps.
pub fn collect(cache: &mut Cache, plans: &[Plan], dry_run: bool) -> Result<Collected> {
    let mut live_records = HashSet::new();
    let mut live_objects = HashSet::new();
    let mut live_trees = HashSet::new();
    let mut live_pixels = HashSet::new();
    for plan in plans {
        for step in &plan.steps {
            if let Ok(Some(record)) = cache.read_record(&step.key) {
                for out in record.outputs.values() {
                    live_objects.insert(cache.object_path(&out.digest));
                    if out.tree {
                        live_trees.insert(cache.tree_path(&out.digest));
                    }
                }
                live_records.insert(cache.record_path(&step.key));
                if step.kind == StepKind::Prepare {
                    live_pixels.extend(pixel_entries(cache, plan, step));
                }
            }
        }
    }
    let mut removed = 0usize;
    let mut bytes = 0u64;
    let mut remove = |path: &Path, is_dir: bool| -> Result<()> {
        let size = if is_dir { dir_size(path) } else { std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) };
        if !dry_run {
            if is_dir { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
                .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
        removed += 1;
        bytes += size;
        Ok(())
    };
    // Records first, so an interrupted gc never leaves a record whose outputs are gone.
    for (dir, live) in [(Dir::Records, &live_records), (Dir::Objects, &live_objects)] {
        for entry in walkdir::WalkDir::new(cache.dir(dir)).into_iter().flatten() {
            if entry.file_type().is_file() && !live.contains(entry.path()) {
                remove(entry.path(), false)?;
            }
        }
    }
    // Shard-part memos (`pixels/parts/`) name the object holding a part: live while it is.
    let parts_dir = cache.dir(Dir::PixelParts);
    let memo_is_live = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let digest = text.split_whitespace().next().and_then(crate::digest::Digest::from_hex);
        digest.is_some_and(|d| live_objects.contains(&cache.object_path(&d)))
    };
    for entry in walkdir::WalkDir::new(cache.dir(Dir::Pixels)).into_iter().flatten() {
        let live = if entry.path().starts_with(&parts_dir) { memo_is_live(entry.path()) } else { live_pixels.contains(entry.path()) };
        if entry.file_type().is_file() && !live {
            remove(entry.path(), false)?;
        }
    }
    for entry in std::fs::read_dir(cache.dir(Dir::Trees)).into_iter().flatten().flatten() {
        if !live_trees.contains(&entry.path()) {
            remove(&entry.path(), true)?;
        }
    }
    // Leftovers of interrupted steps: no run holds them while gc has the exclusive lock.
    for entry in std::fs::read_dir(cache.dir(Dir::Tmp)).into_iter().flatten().flatten() {
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        remove(&entry.path(), is_dir)?;
    }
    Ok(Collected { dry_run, entries: removed, bytes, kept_records: live_records.len() })
}

/// The per-image pixel-cache entries a live prepare step was built from: one per image of
/// its source manifest under its prepare params.
fn pixel_entries(cache: &mut Cache, plan: &crate::plan::Plan, step: &crate::plan::Step) -> Vec<PathBuf> {
    use crate::cache::manifest::Manifest;
    use crate::data::prepare::PixelCache;
    let Some((_, source)) = step.deps.iter().find(|(role, _)| *role == crate::plan::Role::Source) else { return vec![] };
    let Ok(Some(record)) = cache.read_record(&plan.steps[*source].key) else { return vec![] };
    let Some(out) = record.outputs.get("manifest") else { return vec![] };
    let Ok(bytes) = cache.read_blob(&out.digest) else { return vec![] };
    let Some(manifest) = Manifest::from_text(&String::from_utf8_lossy(&bytes)) else { return vec![] };
    let params = crate::exec::steps::prepare_params(&plan.pipeline_ir(step).prepare);
    let pixels = PixelCache::new(cache.dir(Dir::Pixels));
    manifest.files.iter().map(|f| pixels.entry_path(&PixelCache::key(&f.digest.0, &params))).collect()
}

fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir).into_iter().flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}
