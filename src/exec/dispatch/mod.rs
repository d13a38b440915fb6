//! Computing steps in other processes: several at once on this machine ([`local`]) or as
//! jobs on a Slurm cluster ([`slurm`]). The executor decides *what* runs (hits are resolved
//! in its own process); a dispatcher decides only *where*.
//!
//! The contract that makes both interchangeable:
//! - a job runs `maskflow step FILE STEP` (the [`StepCommand`] plus the step's name), which
//!   computes that one step against the same cache, its dependencies already there;
//! - a result comes back only through the cache: the executor reads the step's record once
//!   the job ended, and a job that ended well without a record is a failure;
//! - the job's output goes to its log file, so lines of parallel steps never interleave.

pub mod local;
pub mod slurm;

use crate::plan::StepKind;
use anyhow::Result;
use std::ffi::OsString;
use std::path::PathBuf;

/// How to run one step in a new process: the program and arguments of `maskflow step FILE
/// [--set …]`, to which a dispatcher appends the step's name and `--report PATH`.
#[derive(Debug, Clone)]
pub struct StepCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Where the job runs (the project root: the pipeline's relative paths hold there).
    pub dir: PathBuf,
    /// Environment every job gets (the cache's location, for one).
    pub env: Vec<(String, OsString)>,
}

/// A step's computation, handed to a dispatcher.
#[derive(Debug, Clone)]
pub struct Job {
    /// The step's index in the plan.
    pub index: usize,
    pub name: String,
    pub kind: StepKind,
    /// Where the job writes its step report (JSON), for the executor's summary line.
    pub report: PathBuf,
}

impl Job {
    /// Whether the step trains or runs a model, and so wants an accelerator.
    pub fn uses_model(&self) -> bool {
        matches!(self.kind, StepKind::Train | StepKind::Evaluate | StepKind::Predict | StepKind::Ensemble)
    }
}

/// How a dispatched job ended.
#[derive(Debug)]
pub enum Ended {
    /// The process or job ended well; the executor then looks for the step's record.
    Exited,
    /// It failed; the words name the job (id, state), its log and the log's last lines.
    Failed(String),
}

/// Runs step computations elsewhere and says when they end.
pub trait Dispatcher {
    /// How many more jobs it takes now.
    fn free_slots(&self) -> usize;
    /// Starts these jobs (a cluster may group them, as an array of one stage).
    fn start(&mut self, jobs: Vec<Job>) -> Result<()>;
    /// Waits until at least one started job has ended, and returns those that have, by plan
    /// index. Returns early with nothing when `interrupted()` turns true.
    fn wait(&mut self, interrupted: &dyn Fn() -> bool) -> Result<Vec<(usize, Ended)>>;
    /// Stops every job it started that has not ended (Ctrl-C, SIGTERM).
    fn cancel_all(&mut self);
    /// When the job's process actually started, where that differs from when it was handed
    /// over (a local model step waits for a GPU id); `None`: when handed over.
    fn start_time(&self, _index: usize) -> Option<std::time::SystemTime> {
        None
    }
    /// How long a record may take to appear after its job ended well (a shared
    /// filesystem's lag); then the job counts as failed.
    fn record_grace(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A file name for a step's log: the step name with anything but letters, digits and
/// `-_.=[]` replaced by `_`.
pub fn log_name(step: &str) -> String {
    step.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.=[]".contains(c) { c } else { '_' }).collect()
}

/// The last `n` lines of a log file, for an error message (empty when unreadable).
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Words for a failed job: what, its log, and the log's last 20 lines, indented.
pub fn failure_words(what: &str, log: &std::path::Path) -> String {
    let tail = log_tail(log, 20);
    let mut words = format!("{what}; log: {}", log.display());
    if !tail.is_empty() {
        words.push_str("\n  | ");
        words.push_str(&tail.lines().collect::<Vec<_>>().join("\n  | "));
    }
    words
}

/// The command line of one job: the step command, the step's name and its report path.
fn job_args(cmd: &StepCommand, job: &Job) -> Vec<OsString> {
    let mut args = cmd.args.clone();
    args.push(job.name.clone().into());
    args.push("--report".into());
    args.push(job.report.clone().into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_keep_step_names_readable_and_safe() {
        assert_eq!(log_name("train[train.seed=1]"), "train[train.seed=1]");
        assert_eq!(log_name("a/b c"), "a_b_c");
    }

    #[test]
    fn a_failure_names_its_log_and_shows_the_last_twenty_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.out");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let words = failure_words("job 7 FAILED", &log);
        assert!(words.starts_with(&format!("job 7 FAILED; log: {}", log.display())), "{words}");
        assert!(words.contains("  | line 11\n") && words.ends_with("  | line 30") && !words.contains("line 10\n"), "{words}");
    }
}
