//! The project around the pipeline files: where they are found, and how a file (with
//! `--set` overrides) becomes a plan. Every verb that reads pipelines goes through here.
//!
//! Paths inside a pipeline are relative to the project root (the current directory), like
//! `cache/` and `saved/`; see `plan`.

use crate::cache::Cache;
use crate::lang::{self, Diagnostics, Loaded};
use crate::plan::{self, MissingInputs, Plan};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Where a project keeps its pipelines.
pub const PIPELINES_DIR: &str = "pipelines";

/// The pipelines that `runs`, `gc` and `saved/index.html` consider when none are named:
/// every `.mf` file under `pipelines/` (sub-folders included), in path order. Empty when
/// there is no such folder.
pub fn default_pipelines() -> Vec<PathBuf> {
    let is_pipeline = |e: &walkdir::DirEntry| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "mf");
    walkdir::WalkDir::new(PIPELINES_DIR).sort_by_file_name().into_iter().flatten().filter(is_pipeline).map(|e| e.into_path()).collect()
}

/// Loads a pipeline file: the front end, all diagnostics together on failure.
pub fn load(file: &Path, sets: &[String]) -> Result<Loaded, Diagnostics> {
    lang::load(file, sets)
}

/// Loads and plans a pipeline, named in refs and `saved/` as the user wrote its path.
/// Diagnostics come back inside the error, as data (`anyhow::Error::downcast_ref`).
pub fn plan(cache: &mut Cache, file: &Path, sets: &[String], missing: MissingInputs) -> Result<Plan> {
    plan_labelled(cache, file, sets, missing, &file.display().to_string())
}

/// [`plan`] under another name (`diff` names a git revision `FILE@REV`).
pub fn plan_labelled(cache: &mut Cache, file: &Path, sets: &[String], missing: MissingInputs, label: &str) -> Result<Plan> {
    let loaded = load(file, sets)?;
    plan::build(label, &loaded, cache, missing)
}
