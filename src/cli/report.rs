//! The report verbs: `diff`, `runs`, `verify`, and the `saved/index.html` page that `run`
//! refreshes.

use super::args::PipelineArgs;
use super::pipeline::{Progress, load_plan};
use crate::cache::{Cache, Record};
use crate::digest::Digest;
use crate::plan::{MissingInputs, Plan};
use crate::project;
use crate::remote::Remote;
use crate::report::{diff, git, runs, table, verify};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Loads and plans a pipeline, tolerating missing data and weights (placeholder digests).
fn plan_tolerant(cache: &mut Cache, file: &Path, sets: &[String], label: &str) -> Result<Plan> {
    project::plan_labelled(cache, file, sets, MissingInputs::Placeholder, label)
}

/// What `maskflow diff` compares and how it reports.
pub(super) struct DiffArgs<'a> {
    pub old: &'a Path,
    pub new: Option<&'a Path>,
    pub rev: Option<&'a str>,
    pub sets: &'a [String],
    pub all: bool,
    pub json: bool,
    /// Also write the comparison page here.
    pub html: Option<&'a Path>,
}

/// `maskflow diff OLD NEW` or `maskflow diff FILE [--rev REV]` (REV defaults to HEAD).
pub(super) fn diff(cache_dir: &Path, saved: &Path, args: DiffArgs) -> Result<i32> {
    let DiffArgs { old, new, rev, sets, all, json, html } = args;
    let mut cache = Cache::open(cache_dir)?;
    let (old_plan, new_plan) = match new {
        Some(new) => {
            if rev.is_some() {
                bail!("--rev compares one file with a git revision; give one file");
            }
            let a = plan_tolerant(&mut cache, old, sets, &old.display().to_string())?;
            (a, plan_tolerant(&mut cache, new, sets, &new.display().to_string())?)
        }
        None => {
            let rev = rev.unwrap_or("HEAD");
            let copy = git::git_copy(old, rev)?;
            let a = plan_tolerant(&mut cache, &copy.0, sets, &format!("{}@{rev}", old.display()))?;
            drop(copy);
            (a, plan_tolerant(&mut cache, old, sets, &old.display().to_string())?)
        }
    };
    let mut d = diff::diff_plans(&old_plan, &new_plan, all);
    diff::add_metrics(&mut d, &mut cache, &old_plan, &new_plan, 0);
    // With results on both sides, the comparison page goes to saved/diff/ (and to --html).
    let page = match diff::comparison(&d, &mut cache, &old_plan, &new_plan) {
        Some(c) => Some(crate::report::page::render(&c)?),
        None if html.is_some() => bail!("no page to write: {} and {} have no evaluation in common with results", d.old, d.new),
        None => None,
    };
    let mut written = Vec::new();
    if let Some(text) = &page {
        let default = saved.join("diff").join(crate::report::page::file_name(&d.old, &d.new));
        for path in html.into_iter().map(Path::to_path_buf).chain([default]) {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            }
            crate::fsutil::write_atomic(&path, text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
            written.push(path);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", diff::render(&d, table::stdout_colour()));
        for path in &written {
            println!("page: {}", path.display());
        }
    }
    Ok(0)
}

/// Refreshes `saved/index.html` after `maskflow run FILE`: the default pipelines plus FILE,
/// whose `plan` the run already built. A pipeline that no longer plans is left out of the
/// page with a note, never an error: the run itself succeeded.
pub(super) fn refresh_index(cache: &mut Cache, remote: Option<&Remote>, saved: &Path, file: &Path, plan: &Plan) -> Result<PathBuf> {
    let same = |a: &Path, b: &Path| a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    let mut others = Vec::new();
    let mut order = Vec::new(); // None: the run's own plan.
    for f in project::default_pipelines() {
        if same(&f, file) {
            order.push(None);
            continue;
        }
        match plan_tolerant(cache, &f, &[], &f.display().to_string()) {
            Ok(p) => {
                order.push(Some(others.len()));
                others.push(p);
            }
            Err(e) => eprintln!(
                "note: {} leaves out {}: {}",
                saved.join("index.html").display(),
                f.display(),
                super::render_error(&e).lines().next().unwrap_or("").trim_start_matches("error: ")
            ),
        }
    }
    if !order.contains(&None) {
        order.push(None);
    }
    let plans: Vec<&Plan> = order.iter().map(|o| o.map_or(plan, |i| &others[i])).collect();
    runs::write_index(&find_record(cache, remote), &read_blob(cache), saved, &plans)
}

/// A blob of the local cache, for the index's charts: read and checked against its digest
/// (a corrupt or missing one is simply not drawn).
fn read_blob(cache: &Cache) -> impl Fn(&Digest) -> Option<Vec<u8>> + '_ {
    move |d| std::fs::read(cache.object_path(d)).ok().filter(|bytes| Digest::of(bytes) == *d)
}

/// A step's record for the results table: the local one, else a remote one that counts.
fn find_record<'a>(cache: &'a Cache, remote: Option<&'a Remote>) -> impl Fn(&Digest) -> Option<Record> + 'a {
    move |key| cache.read_record(key).ok().flatten().or_else(|| remote?.record(key))
}

/// `maskflow runs [PIPELINES…]` (default: `pipelines/*.mf`).
pub(super) fn runs(
    cache_dir: &Path,
    remote: Option<&Remote>,
    saved: &Path,
    files: &[PathBuf],
    json: bool,
    csv: bool,
    html: bool,
) -> Result<i32> {
    let named = !files.is_empty();
    let files = if named { files.to_vec() } else { project::default_pipelines() };
    let mut cache = Cache::open(cache_dir)?;
    let mut plans = Vec::new();
    for f in &files {
        plans.push(plan_tolerant(&mut cache, f, &[], &f.display().to_string())?);
    }
    if !named {
        // The arms of `maskflow ablate` are experiments too.
        plans.extend(super::ablate::saved_ablations(&mut cache, saved));
    }
    let plans: Vec<&Plan> = plans.iter().collect();
    if html {
        let path = runs::write_index(&find_record(&cache, remote), &read_blob(&cache), saved, &plans)?;
        println!("wrote {}", path.display());
        return Ok(0);
    }
    let rows = runs::collect(&find_record(&cache, remote), &plans);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if csv {
        print!("{}", runs::render_csv(&rows)?);
    } else {
        print!("{}", runs::render_text(&rows, table::stdout_colour()));
    }
    Ok(0)
}

/// `maskflow verify FILE [--steps a,b]`: non-zero exit on any difference or uncached step.
pub(super) fn verify(cache_dir: &Path, args: &PipelineArgs, steps: &[String], json: bool) -> Result<i32> {
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    let mut progress = Progress::default();
    let verdicts = verify::verify(&mut cache, &plan, steps, &mut |step, p| progress.show(&step.name, p));
    progress.finish();
    let verdicts = verdicts?;
    let bad = verdicts.iter().filter(|v| v.outcome != verify::Outcome::Reproducible).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        for v in &verdicts {
            println!("{}", v.line());
        }
        println!(
            "{} step{} verified: {} reproducible, {} not",
            verdicts.len(),
            if verdicts.len() == 1 { "" } else { "s" },
            verdicts.len() - bad,
            bad
        );
    }
    Ok(if bad == 0 { 0 } else { 1 })
}
