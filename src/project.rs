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

/// What `maskflow init` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Files written, relative to the project root.
    pub created: Vec<PathBuf>,
    /// Files that were already there and were left as they are.
    pub kept: Vec<PathBuf>,
    /// Lines added to `.gitignore`.
    pub ignored: Vec<String>,
}

/// The starter pipeline `maskflow init` writes.
pub const STARTER_PIPELINE: &str = include_str!("templates/starter.mf");
const STARTER_SETTINGS: &str = include_str!("templates/maskflow.toml");
const IGNORED: [&str; 2] = ["/cache/", "/saved/"];

/// Writes a starter layout under `root`: `pipelines/starter.mf`, `maskflow.toml`, and the
/// `.gitignore` lines for `cache/` and `saved/`. An existing file is never overwritten (as
/// `cargo init` refuses to clobber), and `.gitignore` only gains the lines it lacks.
pub fn init(root: &Path) -> std::io::Result<InitReport> {
    let mut report = InitReport::default();
    std::fs::create_dir_all(root.join(PIPELINES_DIR))?;
    for (rel, text) in [(Path::new(PIPELINES_DIR).join("starter.mf"), STARTER_PIPELINE), (PathBuf::from("maskflow.toml"), STARTER_SETTINGS)]
    {
        let path = root.join(&rel);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                std::io::Write::write_all(&mut f, text.as_bytes())?;
                report.created.push(rel);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => report.kept.push(rel),
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    let gitignore = root.join(".gitignore");
    let existing = match std::fs::read_to_string(&gitignore) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", gitignore.display()))),
    };
    let has = |line: &str| existing.lines().any(|l| l.trim().trim_start_matches('/').trim_end_matches('/') == line.trim_matches('/'));
    let missing: Vec<&str> = IGNORED.iter().copied().filter(|l| !has(l)).collect();
    if !missing.is_empty() {
        let mut text = existing.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# maskflow's cache and results (maskflow init)\n");
        for l in &missing {
            text.push_str(l);
            text.push('\n');
        }
        crate::fsutil::write_atomic(&gitignore, text.as_bytes())?;
        report.ignored = missing.iter().map(|l| l.to_string()).collect();
    }
    Ok(report)
}
