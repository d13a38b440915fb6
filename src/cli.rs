//! Command-line interface (clap). Each verb is a thin function over the library; errors are
//! printed once, here, and become a non-zero exit status.

use crate::cache::Cache;
use crate::exec::{self, RunOptions, Status};
use crate::lang;
use crate::plan::{self, Plan};
use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "maskflow", version, about = "Declarative, cached pipelines for image-classification experiments")]
pub struct Cli {
    /// Cache directory (content-addressed step outputs).
    #[arg(long, global = true, env = "MASKFLOW_CACHE", default_value = "cache")]
    pub cache: PathBuf,
    /// Where human-facing results go (`saved/<pipeline>/<run-id>/`).
    #[arg(long, global = true, env = "MASKFLOW_SAVED", default_value = "saved")]
    pub saved: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// The pipeline file (`.mf`).
    pub file: PathBuf,
    /// Override a field of the pipeline, e.g. `--set split.seed=7` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the pipeline's steps in dependency order, skipping those already cached.
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Rerun this step even if it is cached (a step name or kind; repeatable).
        #[arg(long, value_name = "STEP")]
        force: Vec<String>,
        /// Stop after this step (and run only what it needs).
        #[arg(long, value_name = "STEP")]
        until: Option<String>,
        /// Print a JSON report instead of step lines.
        #[arg(long)]
        json: bool,
        /// Fail if the plan no longer matches `FILE.lock` (for CI); the lock is not rewritten.
        #[arg(long)]
        locked: bool,
    },
    /// Compare two pipeline versions (or a file with its git HEAD / --rev): changed parameters,
    /// rerun and shared steps, and metrics side by side when both have results.
    Diff {
        /// The old version (or, alone, the working file to compare with git).
        old: PathBuf,
        /// The new version.
        new: Option<PathBuf>,
        /// With one file: the git revision to compare against (default HEAD).
        #[arg(long)]
        rev: Option<String>,
        /// Also list the unchanged parameters of each step.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
    },
    /// List every evaluated variant found in the cache, sorted by macro-F1.
    Runs {
        /// Pipelines to look at (default: every `.mf` under `pipelines/`).
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Write `saved/index.html` (the runs table and the latest plots) instead of printing.
        #[arg(long, conflicts_with_all = ["json", "csv"])]
        html: bool,
    },
    /// Re-execute cached steps ignoring the cache and compare outputs bit for bit.
    Verify {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Steps to verify (names or kinds, comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        steps: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show every step with hit or miss and why, without running or writing anything.
    Plan {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        json: bool,
    },
    /// Check pipelines for errors without running them.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
    },
    /// Print pipelines in canonical form (or, with --check, fail if they are not).
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Exit non-zero if a file is not in canonical form; change nothing.
        #[arg(long)]
        check: bool,
        /// Rewrite the files in place.
        #[arg(long, conflicts_with = "check")]
        write: bool,
    },
    /// Print the key object of one step (what its cache key is computed from).
    Explain {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// The step name, as `maskflow plan` shows it.
        step: String,
    },
    /// Remove cache entries that no pipeline references.
    Gc {
        /// Pipelines whose steps to keep (default: every `.mf` under `pipelines/`).
        files: Vec<PathBuf>,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cache maintenance.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Write a synthetic dataset in the competition layout (train/ and eval/).
    Synth {
        /// Persons in train/ (7 photos each).
        #[arg(long, default_value_t = 2700)]
        persons: usize,
        /// Persons in eval/ (7 photos each).
        #[arg(long, default_value_t = 1800)]
        eval_persons: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Image size, width x height.
        #[arg(long, default_value = "384x512", value_parser = parse_size)]
        size: (u32, u32),
        /// Output directory (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Model tools: parameter counts, timm weight checks.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Score a submission (ImageID,ans) against known labels (ImageID,class), e.g. the
    /// synthetic eval set's eval/labels.csv.
    Score {
        submission: PathBuf,
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Print an architecture's parameter count (timm's counting: BatchNorm statistics excluded).
    Info {
        /// `tiny_cnn`, `efficientnet_nano` or `efficientnet_b0` … `efficientnet_b7`.
        name: String,
        #[arg(long, default_value_t = 18)]
        classes: usize,
        #[arg(long)]
        json: bool,
    },
    /// Load timm-named weights, run IO["input"] in eval mode and compare with IO["logits"].
    CheckWeights {
        #[arg(long)]
        model: String,
        #[arg(long, default_value_t = 18)]
        classes: usize,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        io: PathBuf,
        #[arg(long, default_value_t = 1e-4)]
        tol: f64,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Print the class, gender and age distribution of a dataset and write a PNG of it.
    Stats {
        /// A dataset root (holding train/) or a train directory (holding train.csv).
        dir: PathBuf,
        /// Age bin lower bounds.
        #[arg(long, default_value = "30,60", value_parser = parse_bins)]
        age_bins: [u32; 2],
        /// Where to write the chart (default: stats.png in the current directory).
        #[arg(long, default_value = "stats.png")]
        png: PathBuf,
    },
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("`{s}` is not a size like 384x512"))?;
    let w = w.parse().map_err(|_| format!("`{s}` is not a size like 384x512"))?;
    let h = h.parse().map_err(|_| format!("`{s}` is not a size like 384x512"))?;
    Ok((w, h))
}

fn parse_bins(s: &str) -> Result<[u32; 2], String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [a, b] => {
            let a: u32 = a.trim().parse().map_err(|_| format!("`{s}`: expected two ages like 30,60"))?;
            let b: u32 = b.trim().parse().map_err(|_| format!("`{s}`: expected two ages like 30,60"))?;
            if a < b { Ok([a, b]) } else { Err(format!("`{s}`: the first bound must be below the second")) }
        }
        _ => Err(format!("`{s}`: expected two ages like 30,60")),
    }
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Re-hash every object, tree and record; exit non-zero on any mismatch.
    Verify,
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// An error already shown to the user (diagnostics), carrying only the exit status.
#[derive(Debug)]
struct Reported;
impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reported")
    }
}
impl std::error::Error for Reported {}

fn dispatch(cli: Cli) -> Result<i32> {
    let result = match cli.command {
        Command::Run { pipeline, force, until, json, locked } => cmd_run(&cli.cache, &cli.saved, &pipeline, force, until, json, locked),
        Command::Diff { old, new, rev, all, json, sets } => {
            crate::report::commands::diff(&cli.cache, &old, new.as_deref(), rev.as_deref(), &sets, all, json)
        }
        Command::Runs { files, json, csv, html } => crate::report::commands::runs(&cli.cache, &cli.saved, &files, json, csv, html),
        Command::Verify { pipeline, steps, json } => crate::report::commands::verify(&cli.cache, &pipeline, &steps, json),
        Command::Plan { pipeline, json } => cmd_plan(&cli.cache, &pipeline, json),
        Command::Check { files, sets } => cmd_check(&files, &sets),
        Command::Fmt { files, check, write } => cmd_fmt(&files, check, write),
        Command::Explain { pipeline, step } => cmd_explain(&cli.cache, &pipeline, &step),
        Command::Gc { files, dry_run } => crate::gc::run(&cli.cache, &files, dry_run),
        Command::Cache { command: CacheCommand::Verify } => crate::verify::run(&cli.cache),
        Command::Synth { persons, eval_persons, seed, size, out } => cmd_synth(persons, eval_persons, seed, size, &out),
        Command::Model { command: ModelCommand::Info { name, classes, json } } => cmd_model_info(&name, classes, json),
        Command::Model { command: ModelCommand::CheckWeights { model, classes, weights, io, tol } } => {
            cmd_check_weights(&model, classes, &weights, &io, tol)
        }
        Command::Score { submission, labels, json } => cmd_score(&submission, &labels, json),
        Command::Data { command: DataCommand::Stats { dir, age_bins, png } } => cmd_data_stats(&dir, age_bins, &png),
    };
    match result {
        Err(e) if e.is::<Reported>() => Ok(1),
        other => other,
    }
}

/// Loads a pipeline, printing its diagnostics on failure.
pub fn load(args: &PipelineArgs) -> Result<lang::Loaded> {
    lang::load(&args.file, &args.sets).map_err(|d| {
        eprint!("{}", d.render());
        anyhow!(Reported)
    })
}

/// Loads and plans a pipeline against the cache.
pub fn load_plan(cache: &mut Cache, args: &PipelineArgs) -> Result<Plan> {
    let loaded = load(args)?;
    // Data, relabel and weights paths are relative to the project root (the current
    // directory), like `cache/` and `saved/`; `extends` and ensemble members are relative
    // to the file that names them.
    plan::build(&args.file.display().to_string(), &loaded.name, Path::new("."), &loaded.variants, cache)
}

#[allow(clippy::too_many_arguments)]
fn cmd_run(
    cache_dir: &Path,
    saved: &Path,
    args: &PipelineArgs,
    force: Vec<String>,
    until: Option<String>,
    json: bool,
    locked: bool,
) -> Result<i32> {
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    if locked {
        crate::report::lockfile::check(&plan, until.as_deref(), &args.file)?;
    }
    let started = std::time::Instant::now();
    let opts = RunOptions { force, until, json };
    let stdout = std::io::stdout();
    let result = exec::run(&mut cache, &plan, &opts, &mut |r| {
        if !json {
            let _ = writeln!(stdout.lock(), "{}", exec::report_line(r));
        }
    });
    let reports = result?;
    if !locked {
        crate::report::lockfile::write(&cache, &plan, &reports, &args.file)?;
    }
    let canonical = lang::format_file(&args.file).ok();
    let run_dir = exec::saved::write(saved, &mut cache, &exec::saved::SavedRun { plan: &plan, reports: &reports, canonical })?;
    crate::report::commands::refresh_index(&mut cache, saved, &args.file, &plan)?;
    let ran = reports.iter().filter(|r| r.status == "run").count();
    if json {
        let out = serde_json::json!({
            "pipeline": plan.pipeline,
            "saved": run_dir.display().to_string(),
            "files_hashed": cache.stats().hashed,
            "seconds": started.elapsed().as_secs_f64(),
            "steps": reports,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} steps: {} hit, {} run in {:.2}s; results in {}",
            reports.len(),
            reports.len() - ran,
            ran,
            started.elapsed().as_secs_f64(),
            run_dir.display()
        );
    }
    Ok(0)
}

fn cmd_plan(cache_dir: &Path, args: &PipelineArgs, json: bool) -> Result<i32> {
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    let refs = cache.read_refs(&plan.pipeline);
    let statuses: Vec<_> = plan.steps.iter().map(|s| exec::status(&mut cache, &plan, &refs, s, false)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        for st in &statuses {
            let word = if st.status == Status::Hit { "hit " } else { "miss" };
            let mut line = format!("{word} {}  {}", st.step, &st.key[..12]);
            if st.status == Status::Miss && !st.reasons.is_empty() {
                line.push_str(": ");
                line.push_str(&st.reasons.join("; "));
            }
            println!("{line}");
        }
    }
    Ok(0)
}

fn cmd_check(files: &[PathBuf], sets: &[String]) -> Result<i32> {
    let mut failed = false;
    for file in files {
        match lang::load(file, sets) {
            Ok(loaded) => {
                let n = loaded.variants.len();
                println!("{}: ok ({} variant{})", file.display(), n, if n == 1 { "" } else { "s" });
            }
            Err(d) => {
                eprint!("{}", d.render());
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn cmd_fmt(files: &[PathBuf], check: bool, write: bool) -> Result<i32> {
    let mut status = 0;
    for file in files {
        let formatted = match lang::format_file(file) {
            Ok(f) => f,
            Err(d) => {
                eprint!("{}", d.render());
                status = 1;
                continue;
            }
        };
        let current = std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
        if check {
            if current != formatted {
                println!("{}: not in canonical form (run `maskflow fmt --write {}`)", file.display(), file.display());
                status = 1;
            }
        } else if write {
            if current != formatted {
                crate::fsutil::write_atomic(file, formatted.as_bytes()).with_context(|| format!("{}: cannot write", file.display()))?;
            }
        } else {
            print!("{formatted}");
        }
    }
    Ok(status)
}

fn cmd_explain(cache_dir: &Path, args: &PipelineArgs, step: &str) -> Result<i32> {
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    let Some(s) = plan.step(step) else {
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        return Err(anyhow!("no step `{step}` in {} (steps: {})", args.file.display(), names.join(", ")));
    };
    let out = serde_json::json!({ "step": s.name, "key": s.key.hex(), "key_object": s.key_object });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

fn cmd_synth(persons: usize, eval_persons: usize, seed: u64, size: (u32, u32), out: &Path) -> Result<i32> {
    if out.exists() {
        return Err(anyhow!("{}: already exists; choose a new --out directory", out.display()));
    }
    let started = std::time::Instant::now();
    let params = crate::data::synth::SynthParams { persons, eval_persons, seed, width: size.0, height: size.1 };
    let summary = crate::data::synth::generate(&params, out)?;
    println!(
        "wrote {} ({} train persons, {} eval persons, {} images) in {:.1}s",
        out.display(),
        persons,
        eval_persons,
        summary.train_images + summary.eval_images,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn cmd_data_stats(dir: &Path, age_bins: [u32; 2], png: &Path) -> Result<i32> {
    let train_dir = if dir.join("train.csv").is_file() { dir.to_path_buf() } else { dir.join("train") };
    let index = crate::data::layout::read_train(&train_dir, crate::data::layout::BadImagePolicy::Error)?;
    let stats = crate::data::stats::stats(&index, age_bins);
    print!("{}", crate::data::stats::render_table(&stats));
    crate::data::stats::write_png(&stats, png)?;
    println!("chart: {}", png.display());
    Ok(0)
}

fn cmd_model_info(name: &str, classes: usize, json: bool) -> Result<i32> {
    let info = crate::model::info(name, classes)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "{}: {} trainable parameters with {} classes (default input {}x{})",
            info.arch, info.params, info.classes, info.default_input, info.default_input
        );
    }
    Ok(0)
}

fn cmd_check_weights(model: &str, classes: usize, weights: &Path, io: &Path, tol: f64) -> Result<i32> {
    let report = crate::model::check_weights(model, classes, weights, io, tol)?;
    let verdict = if report.passed { "ok" } else { "FAILED" };
    println!("{}: max |Δlogit| = {:.3e} (tolerance {:.1e}): {verdict}", weights.display(), report.max_abs_diff, report.tol);
    Ok(if report.passed { 0 } else { 1 })
}

/// Reads a two-column CSV (`id,value`) with a header, keyed by id.
fn read_id_csv(path: &Path, value_column: &str) -> Result<Vec<(String, u32)>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: no header", path.display()))?.clone();
    let id_col = headers.iter().position(|h| h == "ImageID").with_context(|| format!("{}: no `ImageID` column", path.display()))?;
    let val_col =
        headers.iter().position(|h| h == value_column).with_context(|| format!("{}: no `{value_column}` column", path.display()))?;
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{}:{line}: malformed row", path.display()))?;
        let value = record.get(val_col).unwrap_or("").trim();
        let class: u32 =
            value.parse().ok().filter(|c| *c < 18).with_context(|| format!("{}:{line}: `{value}` is not a class 0..17", path.display()))?;
        rows.push((record.get(id_col).unwrap_or("").to_string(), class));
    }
    Ok(rows)
}

fn cmd_score(submission: &Path, labels: &Path, json: bool) -> Result<i32> {
    let predicted = read_id_csv(submission, "ans")?;
    let truth: std::collections::HashMap<String, u32> = read_id_csv(labels, "class")?.into_iter().collect();
    let (mut y_true, mut y_pred) = (Vec::new(), Vec::new());
    for (id, ans) in &predicted {
        let t = truth.get(id).with_context(|| format!("{}: image `{id}` has no label in {}", submission.display(), labels.display()))?;
        y_true.push(*t);
        y_pred.push(*ans);
    }
    if y_true.len() != truth.len() {
        return Err(anyhow!("{}: {} rows, but {} has {} labels", submission.display(), y_true.len(), labels.display(), truth.len()));
    }
    let f1 = crate::metrics::macro_f1(&y_true, &y_pred);
    let acc = crate::metrics::accuracy(&y_true, &y_pred);
    if json {
        println!("{}", serde_json::json!({ "macro_f1": f1, "accuracy": acc, "images": y_true.len() }));
    } else {
        println!("macro-F1 {f1:.4}, accuracy {acc:.4} over {} images", y_true.len());
    }
    Ok(0)
}
