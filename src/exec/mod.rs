//! The executor: walks a plan in dependency order, skips steps whose record is in the
//! cache, runs the others, and writes their outputs and records.
//!
//! A step's status is decided by [`status`], which `plan` (dry run) and `run` share, so the
//! two can never disagree. A record is written only after the step's outputs are in the
//! cache; a step computed by a concurrent run is waited for (per-key lock) and then reused.

pub mod saved;
pub mod steps;

use crate::cache::manifest::Manifest;
use crate::cache::{Cache, OutputState, RECORD_FORMAT, Record, RefEntry};
use crate::digest::Digest;
use crate::plan::{Plan, Role, Step, StepKind, key};
use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Where a step stands: `plan` says hit or miss; `run` says hit or run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Its record is in the cache with intact outputs.
    Hit,
    /// It must run (a dry run's word for it).
    Miss,
    /// It ran in this run.
    Run,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Hit => "hit",
            Status::Miss => "miss",
            Status::Run => "run",
        }
    }
}

/// A step's cache status and, for a miss, the reasons.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub step: String,
    pub kind: StepKind,
    pub key: String,
    pub status: Status,
    pub reasons: Vec<String>,
    #[serde(skip)]
    pub record: Option<Record>,
    /// Files found damaged while checking (to quarantine before a rerun).
    #[serde(skip)]
    pub damaged: Vec<std::path::PathBuf>,
}

/// Decides hit or miss for one step, explaining a miss. Reads records and stamps; writes nothing.
pub fn status(cache: &mut Cache, refs: &BTreeMap<String, RefEntry>, step: &Step, forced: bool) -> StepStatus {
    let mut st = StepStatus {
        step: step.name.clone(),
        kind: step.kind,
        key: step.key.hex(),
        status: Status::Miss,
        reasons: Vec::new(),
        record: None,
        damaged: Vec::new(),
    };
    match cache.read_record(&step.key) {
        Ok(Some(record)) => {
            let mut intact = true;
            for out in record.outputs.values() {
                match cache.check_output(out) {
                    OutputState::Ok => {}
                    OutputState::Missing(path) => {
                        st.reasons.push(format!("cached output missing: {}", path.display()));
                        intact = false;
                    }
                    OutputState::Corrupt(path, why) => {
                        st.reasons.push(format!("cached output corrupt: {} ({why})", path.display()));
                        st.damaged.push(path);
                        intact = false;
                    }
                }
            }
            if intact && !forced {
                st.status = Status::Hit;
            }
            if forced {
                st.reasons.push("forced".into());
            }
            st.record = Some(record);
            return st;
        }
        Ok(None) => {}
        Err(e) => {
            st.reasons.push(format!("cached record unreadable: {e}"));
            if let crate::cache::CacheError::Corrupt { path, .. } = &e {
                st.damaged.push(path.clone());
            }
            return st;
        }
    }
    match refs.get(&step.name) {
        Some(old) if old.key != step.key => {
            let mut describe = |name: &str, a: &serde_json::Value, _b: &serde_json::Value| describe_file(cache, step, name, a);
            let reasons = key::explain(&old.key_object, &step.key_object, &mut describe);
            if reasons.is_empty() {
                st.reasons.push("key changed".into());
            } else {
                st.reasons.extend(reasons);
            }
        }
        Some(_) => st.reasons.push("no cached result".into()),
        None => st.reasons.push("new step".into()),
    }
    st
}

/// Words for a changed input file digest: for the data manifest, how many files changed.
fn describe_file(cache: &mut Cache, step: &Step, name: &str, old: &serde_json::Value) -> Option<String> {
    if name != "manifest" {
        return Some(format!("{name} changed"));
    }
    let new = &step.scanned.as_ref()?.manifest;
    let old_digest = Digest::from_hex(old.as_str()?)?;
    let old = cache.read_blob(&old_digest).ok()?;
    let old = Manifest::from_text(std::str::from_utf8(&old).ok()?)?;
    Some(Manifest::diff(&old, new).summary())
}

pub struct RunOptions {
    /// Steps to rerun even when cached (names or kinds).
    pub force: Vec<String>,
    /// Run only this step (a name or kind) and what it needs.
    pub until: Option<String>,
}

/// What one step did in a run.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub kind: StepKind,
    pub key: String,
    pub status: Status,
    pub reasons: Vec<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// What a run tells its caller while it goes: training progress, and each step as it ends.
pub enum Event<'a> {
    Progress { step: &'a Step, progress: crate::train::Progress },
    Finished(&'a StepReport),
}

/// The steps to consider: all, or `until` and its ancestors.
pub fn selected_steps(plan: &Plan, until: Option<&str>) -> Result<Vec<usize>> {
    let Some(target) = until else { return Ok((0..plan.steps.len()).collect()) };
    let matches: Vec<usize> = plan.steps.iter().enumerate().filter(|(_, s)| s.is_named(target)).map(|(i, _)| i).collect();
    if matches.is_empty() {
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        return Err(anyhow!("no step `{target}` in this pipeline (steps: {})", names.join(", ")));
    }
    let mut keep = BTreeSet::new();
    let mut stack = matches;
    while let Some(i) = stack.pop() {
        if keep.insert(i) {
            stack.extend(plan.steps[i].deps.iter().map(|(_, d)| *d));
        }
    }
    Ok(keep.into_iter().collect())
}

/// Runs a plan: each selected step in dependency order is a hit, or is computed and
/// recorded. `events` hears of progress and of each step as it ends.
pub fn run(cache: &mut Cache, plan: &Plan, opts: &RunOptions, events: &mut dyn FnMut(Event)) -> Result<Vec<StepReport>> {
    for f in &opts.force {
        if !plan.steps.iter().any(|s| s.is_named(f)) {
            return Err(anyhow!("--force: no step `{f}` in this pipeline"));
        }
    }
    let selected = selected_steps(plan, opts.until.as_deref())?;
    let refs = cache.read_refs(&plan.pipeline);
    let mut records: BTreeMap<usize, Record> = BTreeMap::new();
    let mut reports = Vec::new();
    let mut new_refs = BTreeMap::new();
    let mut failure = None;
    for &i in &selected {
        let step = &plan.steps[i];
        let forced = opts.force.iter().any(|f| step.is_named(f));
        let started = Instant::now();
        let (status, reasons, record, summary) = match hit_or_lock(cache, &refs, step, forced)? {
            Found::Hit(st) => (Status::Hit, st.reasons, st.record.expect("a hit has a record"), None),
            Found::Miss(st, _lock) => {
                let inputs: BTreeMap<Role, &Record> =
                    step.deps.iter().map(|(role, d)| (*role, records.get(d).expect("dependencies run first"))).collect();
                let output = match steps::run_step(cache, plan, step, &inputs, &mut |progress| events(Event::Progress { step, progress })) {
                    Ok(o) => o,
                    Err(e) => {
                        failure = Some(e.context(format!("step `{}` failed", step.name)));
                        break;
                    }
                };
                let record = Record {
                    format: RECORD_FORMAT,
                    kind: step.kind.to_string(),
                    key: step.key,
                    key_object: step.key_object.clone(),
                    key_text: crate::canonical::json(&step.key_object),
                    outputs: output.outputs,
                    metrics: output.metrics,
                    finished: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                    seconds: started.elapsed().as_secs_f64(),
                    maskflow_version: env!("CARGO_PKG_VERSION").to_string(),
                };
                cache.write_record(&record).with_context(|| format!("step `{}`", step.name))?;
                (Status::Run, st.reasons, record, output.summary)
            }
        };
        let report = StepReport {
            step: step.name.clone(),
            kind: step.kind,
            key: step.key.hex(),
            status,
            reasons,
            seconds: started.elapsed().as_secs_f64(),
            summary,
        };
        events(Event::Finished(&report));
        reports.push(report);
        records.insert(i, record);
        new_refs.insert(step.name.clone(), RefEntry { key: step.key, key_object: step.key_object.clone() });
    }
    // Refs and stamps are bookkeeping: they are updated even when a step failed, so the
    // next explanation compares against what actually ran.
    // A failed step's error is what the user needs; a bookkeeping error (say, the disk
    // filled up) comes second.
    let bookkeeping = cache.update_refs(&plan.pipeline, &new_refs).and_then(|()| cache.flush());
    if let Some(e) = failure {
        return Err(e);
    }
    bookkeeping?;
    Ok(reports)
}

/// A step found in the cache, or one to compute, holding its lock.
enum Found {
    Hit(StepStatus),
    Miss(StepStatus, std::fs::File),
}

/// Decides whether `step` must run. A miss takes the step's lock; if another run was
/// computing the same step, the lock waits for it and its record then makes this a hit.
/// Damaged outputs found on the way are moved aside before the step recomputes them.
fn hit_or_lock(cache: &mut Cache, refs: &BTreeMap<String, RefEntry>, step: &Step, forced: bool) -> Result<Found> {
    let st = status(cache, refs, step, forced);
    if st.status == Status::Hit {
        return Ok(Found::Hit(st));
    }
    let lock = cache.lock_step(&step.key)?;
    if !forced {
        let mut again = status(cache, refs, step, false);
        if again.status == Status::Hit {
            again.reasons = vec!["computed by a concurrent run".into()];
            return Ok(Found::Hit(again));
        }
    }
    for path in &st.damaged {
        cache.quarantine(path);
    }
    Ok(Found::Miss(st, lock))
}

/// Renders one step report as the single human line `run` prints (and `log.txt` keeps).
pub fn report_line(r: &StepReport) -> String {
    let mut line = format!("{} {}", r.status.word(), r.step);
    match r.status {
        Status::Run | Status::Miss => {
            if !r.reasons.is_empty() {
                line.push_str(": ");
                line.push_str(&r.reasons.join("; "));
            }
            if let Some(summary) = &r.summary {
                line.push_str(" — ");
                line.push_str(summary);
            }
        }
        Status::Hit => {
            if !r.reasons.is_empty() {
                line.push_str(&format!(" ({})", r.reasons.join("; ")));
            }
        }
    }
    line
}
