//! Human-facing results: `saved/<pipeline>/<run-id>/` and the `latest` link.
//!
//! Everything here is a copy: files under `saved/` can be edited or deleted without touching
//! the cache. A run directory is built under a temporary name and renamed into place, and
//! `latest` is replaced atomically, so a crash never leaves a half-written run as `latest`.

use super::StepReport;
use super::steps::human_outputs;
use crate::cache::{Cache, Record};
use crate::fsutil;
use crate::plan::Plan;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct SavedRun<'a> {
    pub plan: &'a Plan,
    pub reports: &'a [StepReport],
    /// The record of each reported step, by step name (a remote hit's record too: the
    /// outputs copied here were fetched by the run).
    pub records: &'a BTreeMap<String, Record>,
    /// The canonical (formatted) pipeline text, when available.
    pub canonical: Option<String>,
}

/// A new run's id (taken when the run starts: its jobs' logs go in the run's folder).
pub fn new_run_id(saved_root: &Path, pipeline: &str) -> String {
    run_id(&saved_root.join(pipeline))
}

/// A run id from the current UTC time: `20261127-231502`, with `-2`, `-3`… on collision.
fn run_id(dir: &Path) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let base: String = now.trim_end_matches('Z').replace(['-', ':'], "").replace('T', "-");
    let mut id = base.clone();
    let mut n = 2;
    while dir.join(&id).exists() {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// The folder of an evaluated model under `tb/`: its variant's name (`default` for a pipeline
/// without sweeps) and fold, with `/` made safe.
pub fn tensorboard_folder(plan: &Plan, step: &crate::plan::Step) -> String {
    let variant = &plan.variants[step.variant].name;
    let mut name = if variant.is_empty() { "default".to_string() } else { variant.replace('/', "_") };
    if let Some(fold) = step.fold {
        name.push_str(&format!("-fold{fold}"));
    }
    name
}

/// Writes the run directory and points `latest` at it. Returns the run directory.
pub fn write(saved_root: &Path, id: &str, cache: &mut Cache, run: &SavedRun) -> Result<PathBuf> {
    let pipeline_dir = saved_root.join(&run.plan.name);
    std::fs::create_dir_all(&pipeline_dir).with_context(|| format!("{}: cannot create", pipeline_dir.display()))?;
    let tmp = fsutil::temp_path_for(&pipeline_dir.join(id));
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = tmp.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))
    };
    if let Some(text) = &run.canonical {
        write("pipeline.mf", text.as_bytes())?;
    }
    let variants: Vec<_> = run.plan.variants.iter().collect();
    write("pipeline.json", &serde_json::to_vec_pretty(&variants)?)?;
    let log: String = run.reports.iter().map(|r| super::report_line(r) + "\n").collect();
    write("log.txt", log.as_bytes())?;
    write("steps.json", &serde_json::to_vec_pretty(run.reports)?)?;
    // Human-facing outputs of every step of this run, hit or run.
    for report in run.reports {
        let (Some(step), Some(record)) = (run.plan.step(&report.step), run.records.get(&report.step)) else { continue };
        for name in human_outputs(step.kind) {
            let Some(out) = record.outputs.get(*name) else { continue };
            let bytes = cache.read_blob(&out.digest)?;
            let rel = if step.name == step.kind.name() { name.to_string() } else { format!("{}/{}", step.name, name) };
            write(&rel, &bytes)?;
        }
    }
    // TensorBoard event files, one folder per evaluated model, from the history in the cache.
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0).floor();
    for report in run.reports {
        let (Some(step), Some(record)) = (run.plan.step(&report.step), run.records.get(&report.step)) else { continue };
        let Some(out) = record.outputs.get("history.json").filter(|_| step.kind == crate::plan::StepKind::Evaluate) else { continue };
        let bytes = cache.read_blob(&out.digest)?;
        let history: Vec<crate::train::EpochRecord> =
            serde_json::from_slice(&bytes).with_context(|| format!("{}: history.json is not a training history", step.name))?;
        let dir = format!("tb/{}", tensorboard_folder(run.plan, step));
        write(&format!("{dir}/{}", crate::tensorboard::file_name(wall)), &crate::tensorboard::event_file(&history, wall))?;
    }
    // Dispatched jobs wrote their logs into the run's folder as they went: they join the
    // rest, and the folder is made whole by the rename below.
    let early = pipeline_dir.join(id);
    if early.join("logs").is_dir() {
        std::fs::rename(early.join("logs"), tmp.join("logs")).with_context(|| format!("{}: cannot move", early.join("logs").display()))?;
        let _ = std::fs::remove_dir(&early);
    }
    // Two runs finishing in the same second race for the id: rename fails for the loser
    // (the destination exists and is not empty), which then takes the next free id.
    let mut id = id.to_string();
    let mut attempt = 2;
    let dest = loop {
        let dest = pipeline_dir.join(&id);
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => break dest,
            Err(_) if dest.exists() && attempt < 100 => {
                id = format!("{}-{attempt}", id.split('-').take(2).collect::<Vec<_>>().join("-"));
                attempt += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("{}: cannot create run directory", dest.display())),
        }
    };
    fsutil::sync_dir(&pipeline_dir)?;
    // Replace `latest` atomically: a new symlink under a temporary name, renamed over the old.
    let link_tmp = fsutil::temp_path_for(&pipeline_dir.join("latest"));
    std::os::unix::fs::symlink(&id, &link_tmp).with_context(|| format!("{}: cannot create link", link_tmp.display()))?;
    std::fs::rename(&link_tmp, pipeline_dir.join("latest"))
        .with_context(|| format!("{}: cannot replace", pipeline_dir.join("latest").display()))?;
    Ok(dest)
}
