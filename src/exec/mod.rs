//! The executor: walks a plan in dependency order, skips steps whose record is in the
//! cache, runs the others, and writes their outputs and records.
//!
//! A step's status is decided by [`status`], which `plan` (dry run) and `run` share, so the
//! two can never disagree. A record is written only after the step's outputs are in the
//! cache; a step computed by a concurrent run is waited for (per-key lock) and then reused.

pub mod dispatch;
pub mod saved;
mod schedule;
pub mod steps;

use crate::cache::manifest::Manifest;
use crate::cache::{Cache, Output, OutputState, RECORD_FORMAT, Record, RefEntry};
use crate::digest::Digest;
use crate::plan::{Plan, Role, Step, StepKind, key};
use crate::remote::{Lookup, Remote, RemoteHit};
use anyhow::{Context, Result, anyhow};
use dispatch::{Dispatcher, Ended, Job};
use schedule::Schedule;
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
    /// For a hit on the remote: the key that signed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
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
        remote: None,
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

/// [`status`] for a dry run with a remote: a local miss that the remote holds is a hit
/// there. A remote that cannot answer leaves the miss, its words among the reasons.
pub fn plan_status(cache: &mut Cache, refs: &BTreeMap<String, RefEntry>, step: &Step, remote: Option<&Remote>) -> StepStatus {
    let mut st = status(cache, refs, step, false);
    if st.status == Status::Miss
        && let Some(remote) = remote
    {
        match remote.lookup(&step.key) {
            Lookup::Hit(hit) => {
                st.status = Status::Hit;
                st.reasons.clear();
                st.remote = Some(hit.signer);
            }
            Lookup::Ignored(why) => st.reasons.push(why),
            Lookup::Absent | Lookup::Down => {}
        }
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

#[derive(Default)]
pub struct RunOptions {
    /// Steps to rerun even when cached (names or kinds).
    pub force: Vec<String>,
    /// Run only this step (a name or kind) and what it needs.
    pub until: Option<String>,
    /// Exactly the step of this name and what it needs (`maskflow step`, which a dispatched
    /// job runs).
    pub only: Option<String>,
    /// After a failure, go on with every step not downstream of it.
    pub keep_going: bool,
    /// Keep this run's keys as the pipeline's refs (what the next explanation compares
    /// with). A dispatched job does not: the run that dispatched it does.
    pub record_refs: bool,
    /// Set (by a signal handler) to stop: dispatched jobs are cancelled, the run fails.
    pub interrupt: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl RunOptions {
    fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }
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
    /// When the step started and ended (RFC 3339, milliseconds): the evidence that
    /// dispatched steps overlapped.
    pub started: String,
    pub ended: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// What a run tells its caller while it goes: training progress, warnings (a remote that
/// failed, as an accelerator that failed), and each step as it ends.
pub enum Event<'a> {
    Progress { step: &'a Step, progress: crate::train::Progress },
    Warning(String),
    Finished(&'a StepReport),
}

/// The steps to consider: all, `until` and its ancestors, or `only` and its ancestors.
pub fn selected_steps(plan: &Plan, until: Option<&str>, only: Option<&str>) -> Result<Vec<usize>> {
    let matches: Vec<usize> = match (until, only) {
        (_, Some(name)) => plan.steps.iter().position(|s| s.name == name).into_iter().collect(),
        (Some(target), None) => plan.steps.iter().enumerate().filter(|(_, s)| s.is_named(target)).map(|(i, _)| i).collect(),
        (None, None) => return Ok((0..plan.steps.len()).collect()),
    };
    if matches.is_empty() {
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        return Err(anyhow!("no step `{}` in this pipeline (steps: {})", only.or(until).unwrap_or_default(), names.join(", ")));
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

/// What a run did: one report per selected step, and the record each step has now (a
/// local record, or a remote one whose outputs are fetched only where needed), by step name.
pub struct RunOutcome {
    pub reports: Vec<StepReport>,
    pub records: BTreeMap<String, Record>,
}

/// The steps that failed, each with its error, and those that never started because of
/// them. Rendered as one error by [`RunFailure::into_error`].
struct RunFailure {
    failed: Vec<(String, anyhow::Error)>,
    not_started: Vec<String>,
}

impl RunFailure {
    fn into_error(mut self) -> anyhow::Error {
        if self.failed.len() == 1 {
            let (name, e) = self.failed.remove(0);
            let left = if self.not_started.is_empty() { String::new() } else { format!(" (not started: {})", self.not_started.join(", ")) };
            return e.context(format!("step `{name}` failed{left}"));
        }
        let names: Vec<&str> = self.failed.iter().map(|(n, _)| n.as_str()).collect();
        let mut words = format!("{} step{} failed: {}", names.len(), if names.len() == 1 { "" } else { "s" }, names.join(", "));
        for (name, e) in &self.failed {
            words.push_str(&format!("\n- `{name}`: {e:#}"));
        }
        if !self.not_started.is_empty() {
            words.push_str(&format!("\nnot started: {}", self.not_started.join(", ")));
        }
        anyhow!(words)
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Runs a plan: each selected step, once its dependencies are done, is a hit (local, or on
/// the remote) or is computed and recorded: here, one at a time, or (with a dispatcher) in
/// other processes, as many at once as the dispatcher takes. `events` hears of progress,
/// warnings and each step as it ends. With a remote that uploads, every step of the run
/// ends up on it.
pub fn run(
    cache: &mut Cache,
    plan: &Plan,
    opts: &RunOptions,
    remote: Option<&Remote>,
    mut dispatcher: Option<&mut dyn Dispatcher>,
    events: &mut dyn FnMut(Event),
) -> Result<RunOutcome> {
    for f in &opts.force {
        if !plan.steps.iter().any(|s| s.is_named(f)) {
            return Err(anyhow!("--force: no step `{f}` in this pipeline"));
        }
    }
    let selected = selected_steps(plan, opts.until.as_deref(), opts.only.as_deref())?;
    let refs = cache.read_refs(&plan.pipeline);
    let mut ex = Executor { cache, plan, remote, events, have: BTreeMap::new() };
    let mut schedule = Schedule::new(&selected, |i| plan.steps[i].deps.iter().map(|(_, d)| *d).collect(), opts.keep_going);
    let mut reports = Vec::new();
    let mut failed: Vec<(usize, anyhow::Error)> = Vec::new();
    // Computations waiting for the dispatcher, and those it runs: reasons and start times.
    let mut to_dispatch: Vec<(usize, Vec<String>)> = Vec::new();
    let mut dispatched: BTreeMap<usize, (Vec<String>, Instant, String)> = BTreeMap::new();
    loop {
        while let Some(i) = schedule.start_next() {
            let step = &plan.steps[i];
            let forced = opts.force.iter().any(|f| step.is_named(f));
            let (started, started_at) = (Instant::now(), now_rfc3339());
            let outcome = match ex.resolve(i, &refs, forced) {
                Ok(Resolved::Hit(reasons)) => Ok((Status::Hit, reasons, None)),
                Ok(Resolved::Compute(reasons, damaged)) if dispatcher.is_none() => ex.compute_here(i, &refs, forced, reasons, &damaged),
                Ok(Resolved::Compute(reasons, _)) => {
                    // Dependencies fetched from the remote are made local here, once,
                    // before the job that needs them starts.
                    match step.deps.iter().try_for_each(|&(_, d)| ex.localize(d)) {
                        Ok(()) => {
                            to_dispatch.push((i, reasons));
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            ex.conclude(i, outcome, started, started_at, &mut schedule, &mut reports, &mut failed);
        }
        if let Some(d) = dispatcher.as_deref_mut() {
            if opts.interrupted() {
                d.cancel_all();
                break;
            }
            let n = d.free_slots().min(to_dispatch.len());
            if n > 0 {
                let jobs: Vec<Job> = to_dispatch
                    .drain(..n)
                    .map(|(i, reasons)| {
                        let step = &plan.steps[i];
                        let report = ex.cache.dir(crate::cache::Dir::Tmp).join(format!("report-{}.json", step.key.hex()));
                        dispatched.insert(i, (reasons, Instant::now(), now_rfc3339()));
                        Job { index: i, name: step.name.clone(), kind: step.kind, report }
                    })
                    .collect();
                let indices: Vec<usize> = jobs.iter().map(|j| j.index).collect();
                if let Err(e) = d.start(jobs) {
                    let words = format!("{e:#}");
                    for i in indices {
                        let (_, started, started_at) = dispatched.remove(&i).expect("just dispatched");
                        ex.conclude(i, Err(anyhow!("{words}")), started, started_at, &mut schedule, &mut reports, &mut failed);
                    }
                    continue;
                }
            }
            if schedule.running() == 0 {
                break;
            }
            let interrupt = || opts.interrupted();
            for (i, end) in d.wait(&interrupt)? {
                let (reasons, mut started, mut started_at) = dispatched.remove(&i).expect("only dispatched steps end");
                if let Some(t) = d.start_time(i) {
                    // It waited (for a GPU id) after it was handed over: its time counts from
                    // its process's start.
                    started = Instant::now() - t.elapsed().unwrap_or_default();
                    started_at = humantime::format_rfc3339_millis(t).to_string();
                }
                let outcome = match end {
                    Ended::Exited => ex.collect_dispatched(i, d.record_grace(), reasons),
                    Ended::Failed(words) => Err(anyhow!(words)),
                };
                ex.conclude(i, outcome, started, started_at, &mut schedule, &mut reports, &mut failed);
            }
        } else if schedule.is_over() {
            break;
        }
    }
    // Refs and stamps are bookkeeping: they are updated even when a step failed, so the
    // next explanation compares against what actually ran.
    // A failed step's error is what the user needs; a bookkeeping error (say, the disk
    // filled up) comes second.
    let new_refs: BTreeMap<String, RefEntry> = reports
        .iter()
        .filter_map(|r: &StepReport| plan.steps.iter().find(|s| s.name == r.step))
        .map(|s| (s.name.clone(), RefEntry { key: s.key, key_object: s.key_object.clone() }))
        .collect();
    let refs_written = if opts.record_refs { ex.cache.update_refs(&plan.pipeline, &new_refs) } else { Ok(()) };
    let bookkeeping = refs_written.and_then(|()| ex.cache.flush());
    if opts.interrupted() {
        return Err(anyhow!(
            "interrupted: {} step{} not finished",
            selected.len() - reports.len(),
            if selected.len() - reports.len() == 1 { "" } else { "s" }
        ));
    }
    if !failed.is_empty() {
        let not_started = schedule.not_started().into_iter().map(|i| plan.steps[i].name.clone()).collect();
        let failed = failed.into_iter().map(|(i, e)| (plan.steps[i].name.clone(), e)).collect();
        return Err(RunFailure { failed, not_started }.into_error());
    }
    bookkeeping?;
    let records = ex.have.into_iter().map(|(i, have)| (plan.steps[i].name.clone(), have.into_record())).collect();
    Ok(RunOutcome { reports, records })
}

/// What [`Executor::resolve`] found a step to be.
enum Resolved {
    /// Available (local, or a remote hit), with the words for the line.
    Hit(Vec<String>),
    /// To compute, with the reasons and any damaged files seen.
    Compute(Vec<String>, Vec<std::path::PathBuf>),
}

/// Where a step's record is: here with all its outputs, or on the remote.
enum Have {
    Local(Record),
    Remote(RemoteHit),
}

impl Have {
    fn record(&self) -> &Record {
        match self {
            Have::Local(r) => r,
            Have::Remote(hit) => &hit.record,
        }
    }

    fn into_record(self) -> Record {
        match self {
            Have::Local(r) => r,
            Have::Remote(hit) => hit.record,
        }
    }
}

struct Executor<'r, 'p> {
    cache: &'r mut Cache,
    plan: &'p Plan,
    remote: Option<&'r Remote>,
    events: &'r mut dyn FnMut(Event<'_>),
    have: BTreeMap<usize, Have>,
}

impl Executor<'_, '_> {
    fn warn(&mut self, message: String) {
        (self.events)(Event::Warning(message));
    }

    /// Whether step `i` is available (a local hit, or a remote hit whose shown outputs are
    /// fetched) or must be computed, and why.
    fn resolve(&mut self, i: usize, refs: &BTreeMap<String, RefEntry>, forced: bool) -> Result<Resolved> {
        let plan = self.plan;
        let step = &plan.steps[i];
        let st = status(self.cache, refs, step, forced);
        if st.status == Status::Hit {
            self.have.insert(i, Have::Local(st.record.expect("a hit has a record")));
            return Ok(Resolved::Hit(st.reasons));
        }
        if !forced && let Some(remote) = self.remote {
            match remote.lookup(&step.key) {
                // What `saved/` shows (metrics, plots, the submission) is fetched now, so that
                // a hit is reported only when it is usable; the rest waits for a step that
                // needs it.
                Lookup::Hit(hit) => match self.fetch_shown(step, &hit.record) {
                    Ok(()) => {
                        let reasons = vec![format!("remote, signed by {}", hit.signer)];
                        // A step whose outputs are all shown (an evaluation: its metrics,
                        // predictions and plots) is now whole here: its record is kept, so
                        // `runs` and `saved/index.html` list it like any local result.
                        let whole = hit.record.outputs.values().all(|o| self.cache.check_output(o) == OutputState::Ok);
                        if whole {
                            self.cache.write_record(&hit.record).with_context(|| format!("step `{}`", step.name))?;
                            self.have.insert(i, Have::Local(hit.record));
                        } else {
                            self.have.insert(i, Have::Remote(*hit));
                        }
                        return Ok(Resolved::Hit(reasons));
                    }
                    Err(e) => self.warn(format!("{e:#}; computing `{}` here", step.name)),
                },
                Lookup::Ignored(why) => self.warn(format!("{why}; computing `{}` here", step.name)),
                Lookup::Absent | Lookup::Down => {}
            }
        }
        Ok(Resolved::Compute(st.reasons, st.damaged))
    }

    /// Computes step `i` in this process, under the step's lock (a concurrent run computing
    /// the same step is waited for and its record reused).
    fn compute_here(
        &mut self,
        i: usize,
        refs: &BTreeMap<String, RefEntry>,
        forced: bool,
        reasons: Vec<String>,
        damaged: &[std::path::PathBuf],
    ) -> Result<(Status, Vec<String>, Option<String>)> {
        let step = &self.plan.steps[i];
        let _lock = self.cache.lock_step(&step.key)?;
        if !forced {
            let mut again = status(self.cache, refs, step, false);
            if again.status == Status::Hit {
                self.have.insert(i, Have::Local(again.record.take().expect("a hit has a record")));
                return Ok((Status::Hit, vec!["computed by a concurrent run".into()], None));
            }
        }
        for path in damaged {
            self.cache.quarantine(path);
        }
        let summary = self.compute(i)?;
        Ok((Status::Run, reasons, summary))
    }

    /// After a dispatched job ended well: the step's record, which must be in the cache
    /// (within `grace`, for a shared filesystem's lag) with intact outputs, and the job's
    /// summary from its report.
    fn collect_dispatched(
        &mut self,
        i: usize,
        grace: std::time::Duration,
        reasons: Vec<String>,
    ) -> Result<(Status, Vec<String>, Option<String>)> {
        let step = &self.plan.steps[i];
        let deadline = Instant::now() + grace;
        let record = loop {
            let st = status(self.cache, &BTreeMap::new(), step, false);
            if st.status == Status::Hit {
                break st.record.expect("a hit has a record");
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "the job ended but the step's record did not appear in the cache within {}s ({})",
                    grace.as_secs(),
                    st.reasons.join("; ")
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        };
        let report = self.cache.dir(crate::cache::Dir::Tmp).join(format!("report-{}.json", step.key.hex()));
        let summary = std::fs::read(&report)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["summary"].as_str().map(String::from));
        let _ = std::fs::remove_file(&report);
        self.have.insert(i, Have::Local(record));
        Ok((Status::Run, reasons, summary))
    }

    /// Ends step `i` in the schedule and the reports: uploads it when asked, tells `events`,
    /// or records the failure.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &mut self,
        i: usize,
        outcome: Result<(Status, Vec<String>, Option<String>)>,
        started: Instant,
        started_at: String,
        schedule: &mut Schedule,
        reports: &mut Vec<StepReport>,
        failed: &mut Vec<(usize, anyhow::Error)>,
    ) {
        let step = &self.plan.steps[i];
        let outcome = outcome.and_then(|done| {
            if self.remote.is_some_and(|r| r.upload) {
                self.publish(i)?;
            }
            Ok(done)
        });
        match outcome {
            Ok((status, reasons, summary)) => {
                let report = StepReport {
                    step: step.name.clone(),
                    kind: step.kind,
                    key: step.key.hex(),
                    status,
                    reasons,
                    seconds: started.elapsed().as_secs_f64(),
                    started: started_at,
                    ended: now_rfc3339(),
                    summary,
                };
                (self.events)(Event::Finished(&report));
                reports.push(report);
                schedule.finish(i);
            }
            Err(e) => {
                failed.push((i, e));
                schedule.fail(i);
            }
        }
    }

    /// Computes step `i` here, its dependencies' outputs made local first.
    fn compute(&mut self, i: usize) -> Result<Option<String>> {
        let plan = self.plan;
        let step = &plan.steps[i];
        let started = Instant::now();
        for &(_, d) in &step.deps {
            self.localize(d)?;
        }
        let inputs: BTreeMap<Role, &Record> = step.deps.iter().map(|(role, d)| (*role, self.have[d].record())).collect();
        let events = &mut *self.events;
        let output = steps::run_step(self.cache, plan, step, &inputs, &mut |progress| events(Event::Progress { step, progress }))?;
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
        self.cache.write_record(&record).with_context(|| format!("step `{}`", step.name))?;
        self.have.insert(i, Have::Local(record));
        Ok(output.summary)
    }

    /// Makes every output of step `i` local: a remote hit's outputs are fetched (and its
    /// record then written here); when that fails, the step is computed here instead.
    fn localize(&mut self, i: usize) -> Result<()> {
        let Some(Have::Remote(hit)) = self.have.get(&i) else { return Ok(()) };
        let record = hit.record.clone();
        let fetched = record.outputs.values().try_for_each(|out| self.fetch(out));
        let plan = self.plan;
        let step = &plan.steps[i];
        match fetched {
            Ok(()) => {
                self.cache.write_record(&record).with_context(|| format!("step `{}`", step.name))?;
                self.have.insert(i, Have::Local(record));
                Ok(())
            }
            Err(e) => {
                self.warn(format!("{e:#}; computing `{}` here", step.name));
                let _lock = self.cache.lock_step(&step.key)?;
                self.compute(i).map(|_| ())
            }
        }
    }

    /// Fetches the outputs of a remote record that `saved/` shows.
    fn fetch_shown(&mut self, step: &Step, record: &Record) -> Result<()> {
        let shown: Vec<Output> = steps::human_outputs(step.kind).iter().filter_map(|name| record.outputs.get(*name).cloned()).collect();
        shown.iter().try_for_each(|out| self.fetch(out))
    }

    fn fetch(&mut self, out: &Output) -> Result<()> {
        self.remote.expect("remote hits come from a remote").fetch(self.cache, out)
    }

    /// Uploads step `i`'s record and outputs when it is local (a remote hit is there already).
    fn publish(&mut self, i: usize) -> Result<()> {
        let (Some(remote), Some(Have::Local(record))) = (self.remote, self.have.get(&i)) else { return Ok(()) };
        let record = record.clone();
        remote.upload(self.cache, &record)?;
        Ok(())
    }
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
