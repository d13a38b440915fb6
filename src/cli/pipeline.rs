//! The verbs over one pipeline: `run`, `plan`, `check`, `fmt`, `explain`.

use super::args::{ExecArgs, PipelineArgs};
use super::report::refresh_index;
use super::transfer_bar::TransferBar;
use crate::cache::Cache;
use crate::config;
use crate::exec::dispatch::{Dispatcher, StepCommand, local::Local, slurm::Slurm};
use crate::exec::{self, Event, RunOptions, Status};
use crate::lang;
use crate::plan::{MissingInputs, Plan};
use crate::project;
use crate::remote::Remote;
use crate::report::lockfile;
use anyhow::{Context, Result, anyhow, bail};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Loads and plans the pipeline `args` names, every input required.
pub(super) fn load_plan(cache: &mut Cache, args: &PipelineArgs) -> Result<Plan> {
    // Planning downloads hub weights it does not have (their digest is in the key).
    let _bar = TransferBar::watch_hub();
    project::plan(cache, &args.file, &args.sets, MissingInputs::Fail)
}

/// `run`'s options beyond the pipeline.
pub(super) struct RunArgs {
    pub force: Vec<String>,
    pub until: Option<String>,
    pub json: bool,
    pub locked: bool,
    pub exec: ExecArgs,
}

pub(super) fn run(cache_dir: &Path, saved: &Path, remote: Option<&Remote>, args: &PipelineArgs, run: RunArgs) -> Result<i32> {
    let RunArgs { force, until, json, locked, exec: exec_args } = run;
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    if locked {
        lockfile::check(&plan, until.as_deref(), &args.file)?;
    }
    let started = std::time::Instant::now();
    let run_id = exec::saved::new_run_id(saved, &plan.name);
    let opts = RunOptions { force, until, keep_going: exec_args.keep_going, record_refs: true, ..Default::default() };
    let where_ = Where { cache_dir, saved, remote, job_file: args, run_id: &run_id };
    let outcome = execute(&mut cache, &plan, &where_, opts, &exec_args, json);
    let exec::RunOutcome { reports, records } = outcome?;
    if !locked {
        lockfile::write(&plan, &reports, &records, &args.file)?;
    }
    let canonical = lang::format_file(&args.file).ok();
    let saved_run = exec::saved::SavedRun { plan: &plan, reports: &reports, records: &records, canonical };
    let run_dir = exec::saved::write(saved, &run_id, &mut cache, &saved_run)?;
    refresh_index(&mut cache, remote, saved, &args.file, &plan)?;
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

/// Where a run happens: the cache and results folders, the remote, the file a dispatched job
/// plans from (`maskflow step FILE STEP`) and the run's id.
pub(super) struct Where<'a> {
    pub cache_dir: &'a Path,
    pub saved: &'a Path,
    pub remote: Option<&'a Remote>,
    pub job_file: &'a PipelineArgs,
    pub run_id: &'a str,
}

/// Runs `plan` as `run` does, on the executor the flags and settings ask for, with one line
/// per step on stdout (unless `json`) and progress on stderr.
pub(super) fn execute(
    cache: &mut Cache,
    plan: &Plan,
    at: &Where,
    mut opts: RunOptions,
    exec_args: &ExecArgs,
    json: bool,
) -> Result<exec::RunOutcome> {
    let executor = config::executor_settings(
        Path::new("."),
        &config::ExecutorFlags { kind: exec_args.executor.clone(), jobs: exec_args.jobs, gpus: exec_args.gpus.clone() },
        &|name| std::env::var(name).ok(),
    )?;
    let log_dir = at.saved.join(&plan.name).join(at.run_id).join("logs");
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let job_name = format!("maskflow-{}-{}", plan.name, at.run_id);
    let mut dispatcher = dispatcher_for(&executor, at.cache_dir, at.job_file, log_dir, &job_name, &interrupt)?;
    opts.interrupt = Some(interrupt);
    let mut progress = Progress::default();
    let stdout = std::io::stdout();
    let transfer_bar = TransferBar::watch(at.remote);
    let outcome =
        exec::run(cache, plan, &opts, at.remote, dispatcher.as_mut().map(|d| &mut **d as &mut dyn Dispatcher), &mut |event| match event {
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
    drop(transfer_bar);
    outcome
}

/// The dispatcher the settings ask for: `None` to compute in this process, one step at a
/// time (local, one job, no GPU list).
fn dispatcher_for(
    settings: &config::ExecutorSettings,
    cache_dir: &Path,
    args: &PipelineArgs,
    log_dir: PathBuf,
    job_name: &str,
    interrupt: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<Option<Box<dyn Dispatcher>>> {
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("{}: cannot resolve", p.display()));
    // A job computes one step against the same cache, and nothing else: it neither asks nor
    // feeds the remote (this run made its dependencies local and uploads its record).
    let mut job_args: Vec<std::ffi::OsString> = vec!["--cache".into(), absolute(cache_dir)?.into(), "--no-remote".into(), "step".into()];
    job_args.push(absolute(&args.file)?.into());
    for set in &args.sets {
        job_args.push("--set".into());
        job_args.push(set.into());
    }
    let cmd = StepCommand {
        program: std::env::current_exe().context("cannot find the maskflow executable")?,
        args: job_args,
        dir: std::env::current_dir().context("cannot read the current directory")?,
        env: Vec::new(),
    };
    Ok(match settings {
        config::ExecutorSettings::Local { jobs: 1, gpus } if gpus.is_empty() => None,
        config::ExecutorSettings::Local { jobs, gpus } => Some(Box::new(Local::new(cmd, *jobs, gpus.clone(), log_dir))),
        config::ExecutorSettings::Slurm(slurm) => {
            // Ctrl-C and SIGTERM cancel the run's jobs (the executor sees the flag, calls
            // scancel) instead of killing maskflow with its jobs left queued.
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, interrupt.clone()).context("cannot handle signals")?;
            }
            Some(Box::new(Slurm::new(cmd, slurm.clone(), job_name, log_dir)?))
        }
    })
}

/// `maskflow step FILE STEP`: computes one step here (what a dispatched job runs); its
/// report goes to `--report` for the run that dispatched it.
pub(super) fn step(cache_dir: &Path, remote: Option<&Remote>, args: &PipelineArgs, name: &str, report: Option<&Path>) -> Result<i32> {
    let mut cache = Cache::open(cache_dir)?;
    let plan = if args.file.extension().is_some_and(|x| x == "json") {
        // The arms of `maskflow ablate`, as it wrote them for its jobs.
        let (label, loaded) = crate::report::ablate::read_arms(&args.file)?;
        crate::plan::build(&label, &loaded, &mut cache, MissingInputs::Fail)?
    } else {
        load_plan(&mut cache, args)?
    };
    // Slurm's warning before preemption (`--signal=B:USR2@90`, forwarded by the job script):
    // training stops after its next checkpoint, and the job is requeued to resume from it.
    signal_hook::flag::register(signal_hook::consts::SIGUSR2, crate::train::preemption_flag()).context("cannot handle SIGUSR2")?;
    // A test hook (tests/it/cluster.rs): a job that fails as a broken step would.
    if std::env::var("MASKFLOW_FAIL_STEP").is_ok_and(|s| s == name) {
        bail!("step `{name}` failed on purpose (MASKFLOW_FAIL_STEP)");
    }
    let opts = RunOptions { only: Some(name.to_string()), ..Default::default() };
    let mut progress = Progress::default();
    let outcome = exec::run(&mut cache, &plan, &opts, remote, None, &mut |event| match event {
        Event::Progress { step, progress: p } => progress.show(&step.name, p),
        Event::Warning(w) => progress.println(&format!("warning: {w}")),
        Event::Finished(r) => {
            progress.finish();
            println!("{}", exec::report_line(r));
        }
    });
    progress.finish();
    let outcome = match outcome {
        Err(ref e) if let Some(p) = e.chain().find_map(|c| c.downcast_ref::<crate::train::Preempted>()) => {
            println!("{name}: {p}");
            return Ok(crate::exec::dispatch::slurm::PREEMPTED_EXIT);
        }
        other => other?,
    };
    if let Some(path) = report
        && let Some(r) = outcome.reports.iter().find(|r| r.step == name)
    {
        crate::fsutil::write_atomic(path, &serde_json::to_vec_pretty(r)?).with_context(|| format!("{}: cannot write", path.display()))?;
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
            P::Pretrained(r) => self.println(&format!(
                "{step}: pretrained weights: {} tensors loaded, {} skipped (the checkpoint's classifier), {} initialised (maskflow's heads)",
                r.loaded, r.skipped, r.initialised
            )),
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
    // What the key is computed from, in the user's spelling (`loss.gamma = 2.0`), then the
    // key object itself.
    let kind = s.kind.to_string();
    let mut leaves = Vec::new();
    crate::report::diff::leaves("params", &s.key_object["params"], &mut leaves);
    crate::report::diff::leaves("env", &s.key_object["env"], &mut leaves);
    let inputs: Vec<String> = leaves
        .iter()
        .map(|(path, v)| {
            format!("{} = {}", crate::plan::spelling::label(&kind, path, &s.key_object), crate::plan::key::show(&Some(v.clone())))
        })
        .collect();
    let out = serde_json::json!({ "step": s.name, "key": s.key.hex(), "inputs": inputs, "key_object": s.key_object });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// `maskflow status FILE`: each step cached, or where its job of the latest Slurm run
/// stands (queued, running, failed), from the jobs file and one squeue call.
pub(super) fn status(cache_dir: &Path, saved: &Path, args: &PipelineArgs) -> Result<i32> {
    use crate::exec::dispatch::slurm;
    let mut cache = Cache::open(cache_dir)?;
    let plan = project::plan(&mut cache, &args.file, &args.sets, MissingInputs::Placeholder)?;
    let jobs = slurm::latest_jobs(&saved.join(&plan.name)).map(|(logs, file)| (logs, slurm::live_jobs(file)));
    let refs = cache.read_refs(&plan.pipeline);
    let width = plan.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for step in &plan.steps {
        let cached = exec::status(&mut cache, &refs, step, false).status == Status::Hit;
        let job = jobs.as_ref().and_then(|(logs, all)| Some((logs, all.iter().rev().find(|t| t.step == step.name)?)));
        let (word, detail) = match (cached, job) {
            (true, _) => ("cached", String::new()),
            (false, Some((logs, t))) if t.failed() => {
                ("failed", format!("job {} {}, log {}", t.raw_id.as_deref().unwrap_or(&t.id), t.state, t.log_in(logs).display()))
            }
            (false, Some((_, t))) if t.state == "RUNNING" || t.state == "COMPLETING" => {
                ("running", format!("job {} on {}, {}", t.id, t.node.as_deref().unwrap_or("?"), t.elapsed.as_deref().unwrap_or("0:00")))
            }
            (false, Some((_, t))) if t.state == "COMPLETED" => ("finished", format!("job {}, its record not in the cache", t.id)),
            (false, Some((_, t))) => ("queued", format!("job {} {}", t.id, t.state)),
            (false, None) => ("pending", "not submitted".to_string()),
        };
        let line = format!("{word:<8} {:<width$}  {detail}", step.name);
        println!("{}", line.trim_end());
    }
    Ok(0)
}
