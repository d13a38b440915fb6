//! The verbs over one pipeline: `run`, `plan`, `check`, `fmt`, `explain`.

use super::args::PipelineArgs;
use super::report::refresh_index;
use crate::cache::Cache;
use crate::exec::{self, Event, RunOptions, Status};
use crate::lang;
use crate::plan::{MissingInputs, Plan};
use crate::project;
use crate::remote::Remote;
use crate::report::lockfile;
use anyhow::{Context, Result, anyhow};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Loads and plans the pipeline `args` names, every input required.
pub(super) fn load_plan(cache: &mut Cache, args: &PipelineArgs) -> Result<Plan> {
    project::plan(cache, &args.file, &args.sets, MissingInputs::Fail)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    cache_dir: &Path,
    saved: &Path,
    remote: Option<&Remote>,
    args: &PipelineArgs,
    force: Vec<String>,
    until: Option<String>,
    json: bool,
    locked: bool,
) -> Result<i32> {
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    if locked {
        lockfile::check(&plan, until.as_deref(), &args.file)?;
    }
    let started = std::time::Instant::now();
    let opts = RunOptions { force, until };
    let mut progress = Progress::default();
    let stdout = std::io::stdout();
    let outcome = exec::run(&mut cache, &plan, &opts, remote, &mut |event| match event {
        Event::Progress { step, progress: p } => progress.show(&step.name, p),
        Event::Warning(w) => progress.println(&format!("warning: {w}")),
        Event::Finished(report) => {
            progress.finish();
            if !json {
                let _ = writeln!(stdout.lock(), "{}", exec::report_line(report));
            }
        }
    });
    progress.finish();
    let exec::RunOutcome { reports, records } = outcome?;
    if !locked {
        lockfile::write(&plan, &reports, &records, &args.file)?;
    }
    let canonical = lang::format_file(&args.file).ok();
    let saved_run = exec::saved::SavedRun { plan: &plan, reports: &reports, records: &records, canonical };
    let run_dir = exec::saved::write(saved, &mut cache, &saved_run)?;
    refresh_index(&mut cache, saved, &args.file, &plan)?;
    let ran = reports.iter().filter(|r| r.status == Status::Run).count();
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

/// The training progress bar on stderr (drawn only when stderr is a terminal, so logs and
/// tests see only the step lines on stdout).
#[derive(Default)]
pub(super) struct Progress {
    bar: Option<(String, indicatif::ProgressBar)>,
}

impl Progress {
    pub(super) fn show(&mut self, step: &str, p: crate::train::Progress) {
        use crate::train::Progress as P;
        if self.bar.as_ref().is_none_or(|(name, _)| name != step) {
            self.finish();
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg} eta {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(step.to_string());
            self.bar = Some((step.to_string(), bar));
        }
        let Some((_, bar)) = &self.bar else { return };
        match p {
            P::Step { epoch, epochs, step, steps, loss, lr, running_f1 } => {
                let total = (epochs * steps) as u64;
                if bar.length() != Some(total) {
                    bar.set_length(total);
                }
                bar.set_position((epoch * steps + step + 1) as u64);
                bar.set_message(format!("epoch {}/{epochs} loss {loss:.4} f1 {running_f1:.3} lr {lr:.2e}", epoch + 1));
            }
            P::EpochEnd(e) => bar.println(format!(
                "  epoch {}: train loss {:.4}, val macro-F1 {:.4}, accuracy {:.4}{}",
                e.epoch + 1,
                e.train_loss,
                e.val_f1,
                e.val_accuracy,
                if e.is_best { " (best)" } else { "" }
            )),
            P::Resumed { epochs_done } => bar.println(format!("  resuming after epoch {epochs_done}")),
        }
    }

    /// A line on stderr above the bar (or alone, when no bar is drawn).
    pub(super) fn println(&self, line: &str) {
        match &self.bar {
            Some((_, bar)) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    pub(super) fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

pub(super) fn plan(cache_dir: &Path, remote: Option<&Remote>, args: &PipelineArgs, json: bool) -> Result<i32> {
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    let refs = cache.read_refs(&plan.pipeline);
    let statuses: Vec<_> = plan.steps.iter().map(|s| exec::plan_status(&mut cache, &refs, s, remote)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        for st in &statuses {
            let word = if st.status == Status::Hit { "hit " } else { "miss" };
            let mut line = format!("{word} {}  {}", st.step, &st.key[..12]);
            if let Some(signer) = &st.remote {
                line.push_str(&format!(" (remote, signed by {signer})"));
            }
            if st.status == Status::Miss && !st.reasons.is_empty() {
                line.push_str(": ");
                line.push_str(&st.reasons.join("; "));
            }
            println!("{line}");
        }
    }
    Ok(0)
}

pub(super) fn check(files: &[PathBuf], sets: &[String]) -> Result<i32> {
    let mut failed = false;
    for file in files {
        match project::load(file, sets) {
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

pub(super) fn fmt(files: &[PathBuf], check: bool, write: bool) -> Result<i32> {
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

pub(super) fn explain(cache_dir: &Path, args: &PipelineArgs, step: &str) -> Result<i32> {
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
