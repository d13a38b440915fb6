//! `maskflow gc`: remove cache entries that no listed pipeline references.
//!
//! Live set: for every variant of every listed pipeline, the records of its planned steps,
//! their output objects and trees. gc refuses to run if any pipeline fails to load or plan
//! (an incomplete live set would delete results that are still wanted), and holds the
//! cache's exclusive lock so no run is writing meanwhile.

use crate::cache::Cache;
use crate::cli::{PipelineArgs, load_plan};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub fn run(cache_dir: &Path, files: &[PathBuf], dry_run: bool) -> Result<i32> {
    let files: Vec<PathBuf> = if files.is_empty() { default_pipelines()? } else { files.to_vec() };
    let mut cache = Cache::open_exclusive(cache_dir)?;
    let mut live_records = HashSet::new();
    let mut live_objects = HashSet::new();
    let mut live_trees = HashSet::new();
    let mut live_pixels = HashSet::new();
    for file in &files {
        let plan = load_plan(&mut cache, &PipelineArgs { file: file.clone(), sets: vec![] })
            .with_context(|| format!("{}: cannot plan; nothing removed", file.display()))?;
        for step in &plan.steps {
            if let Ok(Some(record)) = cache.read_record(&step.key) {
                for out in record.outputs.values() {
                    live_objects.insert(cache.object_path(&out.digest));
                    if out.tree {
                        live_trees.insert(cache.tree_path(&out.digest));
                    }
                }
                live_records.insert(cache.record_path(&step.key));
                if step.kind == "prepare" {
                    live_pixels.extend(pixel_entries(&mut cache, &plan, step));
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
    for sub in ["records", "objects"] {
        for entry in walkdir::WalkDir::new(cache.root().join(sub)).into_iter().flatten() {
            if entry.file_type().is_file() {
                let live = if sub == "records" { &live_records } else { &live_objects };
                if !live.contains(entry.path()) {
                    remove(entry.path(), false)?;
                }
            }
        }
    }
    // Shard-part memos (`pixels/parts/`) name the object holding a part: live while it is.
    let parts_dir = cache.root().join("pixels").join("parts");
    let memo_is_live = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let digest = text.split_whitespace().next().and_then(crate::digest::Digest::from_hex);
        digest.is_some_and(|d| live_objects.contains(&cache.object_path(&d)))
    };
    for entry in walkdir::WalkDir::new(cache.root().join("pixels")).into_iter().flatten() {
        let live = if entry.path().starts_with(&parts_dir) { memo_is_live(entry.path()) } else { live_pixels.contains(entry.path()) };
        if entry.file_type().is_file() && !live {
            remove(entry.path(), false)?;
        }
    }
    for entry in std::fs::read_dir(cache.root().join("trees")).into_iter().flatten().flatten() {
        if !live_trees.contains(&entry.path()) {
            remove(&entry.path(), true)?;
        }
    }
    // Leftovers of interrupted steps: no run holds them while gc has the exclusive lock.
    for entry in std::fs::read_dir(cache.root().join("tmp")).into_iter().flatten().flatten() {
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        remove(&entry.path(), is_dir)?;
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!("{verb} {removed} entries ({:.1} MB); kept {} step records", bytes as f64 / 1e6, live_records.len());
    Ok(0)
}

/// The per-image pixel-cache entries a live prepare step was built from: one per image of
/// its source manifest under its prepare params.
fn pixel_entries(cache: &mut Cache, plan: &crate::plan::Plan, step: &crate::plan::Step) -> Vec<PathBuf> {
    use crate::cache::manifest::Manifest;
    use crate::data::prepare::PixelCache;
    let Some((_, source)) = step.deps.iter().find(|(role, _)| *role == "source") else { return vec![] };
    let Ok(Some(record)) = cache.read_record(&plan.steps[*source].key) else { return vec![] };
    let Some(out) = record.outputs.get("manifest") else { return vec![] };
    let Ok(bytes) = cache.read_blob(&out.digest) else { return vec![] };
    let Some(manifest) = Manifest::from_text(&String::from_utf8_lossy(&bytes)) else { return vec![] };
    let params = crate::exec::steps::prepare_params(&plan.pipeline_ir(step).prepare);
    let pixels = PixelCache::new(cache.root().join("pixels"));
    manifest.files.iter().map(|f| pixels.entry_path(&PixelCache::key(&f.digest.0, &params))).collect()
}

fn default_pipelines() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new("pipelines").sort_by_file_name().into_iter().flatten() {
        if entry.path().extension().is_some_and(|e| e == "mf") {
            files.push(entry.path().to_path_buf());
        }
    }
    if files.is_empty() {
        anyhow::bail!("no pipelines given and none found under pipelines/; nothing removed");
    }
    Ok(files)
}

fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir).into_iter().flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}
