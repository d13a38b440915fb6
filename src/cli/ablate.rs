//! `maskflow ablate A.mf B.mf` (or `ablate FILE --rev REV`): the arms between two pipelines,
//! run as one plan through `run`'s executor, then each change's effect.

use super::args::{ExecArgs, PipelineArgs};
use super::pipeline::{Where, execute};
use crate::cache::Cache;
use crate::exec::{self, RunOptions, Status};
use crate::ir::Pipeline;
use crate::plan::{self, MissingInputs, StepKind};
use crate::remote::Remote;
use crate::report::{ablate, git};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// `ablate`'s options.
pub(super) struct AblateArgs {
    pub a: PathBuf,
    pub b: Option<PathBuf>,
    pub rev: Option<String>,
    pub full: bool,
    pub seeds: usize,
    pub groups: Vec<String>,
    pub plan_only: bool,
    pub yes: bool,
    pub json: bool,
    pub html: Option<PathBuf>,
    pub exec: ExecArgs,
}

/// More trainings to run than this needs `--yes`.
const ASK_ABOVE_TRAININGS: usize = 16;

/// The one IR of a pipeline file (ablate compares single experiments, not sweeps).
fn single(file: &Path, label: &str) -> Result<Pipeline> {
    let loaded = crate::project::load(file, &[])?;
    match loaded.variants.as_slice() {
        [one] => Ok(one.pipeline.clone()),
        many => bail!("{label}: has {} sweep variants; ablate compares two single experiments (pick one with --set)", many.len()),
    }
}

pub(super) fn ablate(cache_dir: &Path, saved: &Path, remote: Option<&Remote>, args: AblateArgs) -> Result<i32> {
    let (a_label, b_label, a, b) = match (&args.b, &args.rev) {
        (Some(_), Some(_)) => bail!("--rev compares one file with a git revision; give one file"),
        (Some(b), None) => (args.a.display().to_string(), b.display().to_string(), single(&args.a, "A")?, single(b, "B")?),
        (None, rev) => {
            let rev = rev.as_deref().unwrap_or("HEAD");
            let copy = git::git_copy(&args.a, rev)?;
            let a = single(&copy.0, &format!("{}@{rev}", args.a.display()))?;
            (format!("{}@{rev}", args.a.display()), args.a.display().to_string(), a, single(&args.a, "B")?)
        }
    };
    let groups: Vec<Vec<String>> =
        args.groups.iter().map(|g| g.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()).collect();
    let changes = ablate::changes(&a, &b, &groups)?;
    let arms = ablate::arms(&a, &b, &changes, args.full, args.seeds)?;
    let stem = Path::new(&b_label).file_stem().map_or("pipeline".into(), |s| s.to_string_lossy().into_owned());
    let name = format!("{stem}-ablate");
    let label = format!("ablate:{b_label}");

    // The arms file: what a dispatched job plans from, and what `runs` lists later.
    let run_id = exec::saved::new_run_id(saved, &name);
    let arms_path = std::path::absolute(saved.join(&name).join(format!("{run_id}.arms.json")))?;
    let file = ablate::ArmsFile { name: name.clone(), label: label.clone(), variants: ablate::loaded(&name, &arms_path, &arms).variants };
    std::fs::create_dir_all(arms_path.parent().expect("in saved/"))?;
    crate::fsutil::write_atomic(&arms_path, &serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("{}: cannot write", arms_path.display()))?;
    let (_, loaded) = ablate::read_arms(&arms_path)?;
    let mut cache = Cache::open(cache_dir)?;
    let plan = plan::build(&label, &loaded, &mut cache, MissingInputs::Fail)?;

    // Plan first: how much is to run, and what it will cost.
    let refs = Default::default();
    let mut per_arm = vec![(0usize, 0usize); arms.len()];
    let mut seen = std::collections::HashSet::new();
    for step in &plan.steps {
        if exec::status(&mut cache, &refs, step, false).status != Status::Hit && seen.insert(step.key) {
            per_arm[step.variant].0 += 1;
            per_arm[step.variant].1 += usize::from(step.kind == StepKind::Train);
        }
    }
    let trainings: usize = per_arm.iter().map(|x| x.1).sum();
    let cached_train_secs: Vec<f64> = plan
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Train)
        .filter_map(|s| cache.read_record(&s.key).ok().flatten().map(|r| r.seconds))
        .collect();
    if args.plan_only || (trainings > ASK_ABOVE_TRAININGS && !args.yes) {
        println!("{a_label} → {b_label}: {} change{}, {} arms", changes.len(), if changes.len() == 1 { "" } else { "s" }, arms.len());
        for c in &changes {
            println!("  {}", c.label);
        }
        let width = arms.iter().map(|x| x.name.len()).max().unwrap_or(0);
        for (arm, (steps, trains)) in arms.iter().zip(&per_arm) {
            println!(
                "{:<width$}  {steps} step{} to run ({trains} training{})",
                arm.name,
                if *steps == 1 { "" } else { "s" },
                if *trains == 1 { "" } else { "s" }
            );
        }
        let estimate = if cached_train_secs.is_empty() {
            "no cached training of this plan to estimate from".to_string()
        } else {
            let mean = cached_train_secs.iter().sum::<f64>() / cached_train_secs.len() as f64;
            format!("about {:.0} s of training (the mean of {} cached trainings)", mean * trainings as f64, cached_train_secs.len())
        };
        println!("{} steps to run, {trainings} trainings: {estimate}", per_arm.iter().map(|x| x.0).sum::<usize>());
        if args.plan_only {
            return Ok(0);
        }
        bail!("{trainings} trainings to run (more than {ASK_ABOVE_TRAININGS}); pass --yes to run them");
    }

    let job_file = PipelineArgs { file: arms_path.clone(), sets: Vec::new() };
    let at = Where { cache_dir, saved, remote, job_file: &job_file, run_id: &run_id };
    let opts = RunOptions { keep_going: args.exec.keep_going, ..Default::default() };
    let outcome = execute(&mut cache, &plan, &at, opts, &args.exec, args.json)?;
    let saved_run = exec::saved::SavedRun { plan: &plan, reports: &outcome.reports, records: &outcome.records, canonical: None };
    let run_dir = exec::saved::write(saved, &run_id, &mut cache, &saved_run)?;
    let report = ablate::report(&mut cache, &plan, &arms, &changes, args.full, &a_label, &b_label)?;
    crate::fsutil::write_atomic(&run_dir.join("ablation.html"), ablate::render_html(&report).as_bytes())?;
    if let Some(path) = &args.html {
        crate::fsutil::write_atomic(path, ablate::render_html(&report).as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!();
        print!("{}", ablate::render_text(&report));
        println!("results in {}", run_dir.display());
    }
    Ok(0)
}

/// The plans of the ablations run in this project (`saved/*-ablate/*.arms.json`, the newest
/// of each), for `runs`.
pub(super) fn saved_ablations(cache: &mut Cache, saved: &Path) -> Vec<plan::Plan> {
    let Ok(entries) = std::fs::read_dir(saved) else { return Vec::new() };
    let mut out = Vec::new();
    for dir in entries.flatten().map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with("-ablate"))) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".arms.json"))
            .collect();
        files.sort();
        if let Some(newest) = files.last()
            && let Ok((label, loaded)) = ablate::read_arms(newest)
            && let Ok(plan) = plan::build(&label, &loaded, cache, MissingInputs::Placeholder)
        {
            out.push(plan);
        }
    }
    out
}
