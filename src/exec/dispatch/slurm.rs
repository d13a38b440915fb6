//! `--executor slurm`: each step computation is a batch job; steps of one stage that become
//! ready together (the trainings of a sweep's variants, a K-fold's folds) form one job array.
//! maskflow submits and polls; it runs no daemon. Results come back only through the cache
//! the nodes share.
//!
//! | what | how |
//! |---|---|
//! | submit | `sbatch --parsable --job-name <run> [--array=0-N%jobs] …` of a script under `saved/<pipeline>/<run-id>/logs/`; the script picks its step by `SLURM_ARRAY_TASK_ID` and appends its output to `logs/<step>-<jobid>.out` |
//! | poll | one call for all jobs of the run: `sacct -X -P -n -S now-7days -o JobID,JobIDRaw,State,ExitCode --name <run>`; without accounting `squeue -h -t all --name <run>`, and `scontrol -o show job` for jobs squeue forgot; every 1 s, backing off to 30 s while nothing changes |
//! | success | COMPLETED, then the step's record must appear within `grace` (NFS lag) |
//! | failure | FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED, BOOT_FAIL, DEADLINE: job id, state, log path and the log's last 20 lines |
//! | preemption | training jobs get `--requeue --signal=B:USR2@90`; the script forwards USR2 to `maskflow step`, which checkpoints and exits 75; the script then requeues the job, which resumes from the checkpoint. PREEMPTED and REQUEUED keep waiting |
//! | interrupt | Ctrl-C or SIGTERM: `scancel` of every job the run submitted |

use super::{Dispatcher, Ended, Job, StepCommand, failure_words, job_args, log_name};
use crate::config::SlurmSettings;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// States that end a job badly.
const FAILED: &[&str] = &["FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "BOOT_FAIL", "DEADLINE"];
const FIRST_INTERVAL: Duration = Duration::from_secs(1);
const LONGEST_INTERVAL: Duration = Duration::from_secs(30);
/// How long one sacct, squeue, scontrol or scancel call may take before it counts as no answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Polls in a row without an answer from sacct or squeue before the run fails.
const SILENT_POLLS: u32 = 8;
/// `maskflow step`'s exit status when training checkpointed on a preemption warning
/// (EX_TEMPFAIL): the job script requeues the job.
pub const PREEMPTED_EXIT: i32 = 75;

pub struct Slurm {
    cmd: StepCommand,
    settings: SlurmSettings,
    job_name: String,
    log_dir: PathBuf,
    /// Every job submitted, by its id as squeue writes it (`12` or `12_3`).
    jobs: BTreeMap<String, Tracked>,
    interval: Duration,
    groups: usize,
}

/// One job, as `maskflow status` reads it from `logs/jobs.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tracked {
    pub step: String,
    #[serde(skip)]
    pub index: usize,
    /// `12` or `12_3`.
    pub id: String,
    /// The raw job id (what SLURM_JOB_ID says in the job), once known.
    pub raw_id: Option<String>,
    pub state: String,
    pub node: Option<String>,
    pub elapsed: Option<String>,
    #[serde(skip)]
    pub ended: bool,
}

/// What one poll says of a job.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    raw_id: Option<String>,
    state: String,
    node: Option<String>,
    elapsed: Option<String>,
}

/// The jobs file `maskflow status` reads: the job name (for squeue) and every job.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobsFile {
    pub job_name: String,
    pub jobs: Vec<Tracked>,
}

pub const JOBS_FILE: &str = "jobs.json";

impl Slurm {
    /// `job_name` names every job of the run (polling asks for it); logs and scripts go in
    /// `log_dir`. Fails early when `sbatch` cannot be found.
    pub fn new(cmd: StepCommand, settings: SlurmSettings, job_name: &str, log_dir: PathBuf) -> Result<Slurm> {
        match Command::new("sbatch").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => bail!("sbatch --version failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            Err(e) => bail!("--executor slurm needs Slurm's sbatch on PATH: {e}"),
        }
        Ok(Slurm { cmd, settings, job_name: job_name.to_string(), log_dir, jobs: BTreeMap::new(), interval: FIRST_INTERVAL, groups: 0 })
    }

    /// Submits one group (jobs of one stage) as a job or an array; returns the job id.
    fn submit(&mut self, group: &[Job]) -> Result<String> {
        std::fs::create_dir_all(&self.log_dir).with_context(|| format!("{}: cannot create", self.log_dir.display()))?;
        self.groups += 1;
        let script = self.log_dir.join(format!("job-{}.sh", self.groups));
        crate::fsutil::write_atomic(&script, self.script(group).as_bytes())
            .with_context(|| format!("{}: cannot write", script.display()))?;
        let mut args: Vec<String> = vec![
            "--parsable".into(),
            "--job-name".into(),
            self.job_name.clone(),
            "--chdir".into(),
            self.cmd.dir.display().to_string(),
            // Slurm's own output (the script sends the step's to logs/<step>-<jobid>.out).
            "--output".into(),
            self.log_dir.join("slurm-%j.out").display().to_string(),
            "--open-mode=append".into(),
        ];
        if group.len() > 1 {
            let limit = self.settings.jobs.map(|k| format!("%{k}")).unwrap_or_default();
            args.push(format!("--array=0-{}{limit}", group.len() - 1));
        }
        let s = &self.settings;
        for (flag, value) in
            [("--partition", &s.partition), ("--account", &s.account), ("--qos", &s.qos), ("--time", &s.time), ("--mem", &s.mem)]
        {
            if let Some(v) = value {
                args.push(format!("{flag}={v}"));
            }
        }
        if let Some(n) = s.cpus_per_step {
            args.push(format!("--cpus-per-task={n}"));
        }
        let models = group[0].uses_model();
        if models && let Some(n) = s.gpus_per_step {
            args.push(format!("--gpus={n}"));
        }
        if group[0].kind == crate::plan::StepKind::Train {
            args.push("--requeue".into());
            args.push("--signal=B:USR2@90".into());
        }
        args.extend(s.extra.iter().cloned());
        args.push(script.display().to_string());
        let out =
            Command::new("sbatch").args(&args).envs(self.cmd.env.iter().map(|(k, v)| (k, v))).output().context("cannot run sbatch")?;
        if !out.status.success() {
            bail!("sbatch {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        // `--parsable` prints `id` or `id;cluster`.
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            bail!("sbatch printed no job id: {text:?}");
        }
        for (task, job) in group.iter().enumerate() {
            let key = if group.len() > 1 { format!("{id}_{task}") } else { id.clone() };
            self.jobs.insert(
                key.clone(),
                Tracked {
                    step: job.name.clone(),
                    index: job.index,
                    id: key,
                    raw_id: None,
                    state: "SUBMITTED".into(),
                    node: None,
                    elapsed: None,
                    ended: false,
                },
            );
        }
        self.save();
        Ok(id)
    }

    /// The batch script of a group: the step by array index, its output appended to its log,
    /// USR2 forwarded to `maskflow step`, and a requeue when it checkpointed for preemption.
    fn script(&self, group: &[Job]) -> String {
        let mut s = String::from("#!/bin/bash\n# Written by maskflow: one step of a pipeline per array task.\n");
        s.push_str("case \"${SLURM_ARRAY_TASK_ID:-0}\" in\n");
        for (task, job) in group.iter().enumerate() {
            let args: Vec<String> = std::iter::once(self.cmd.program.clone().into_os_string())
                .chain(job_args(&self.cmd, job))
                .map(|a| shell_quote(&a.to_string_lossy()))
                .collect();
            s.push_str(&format!("  {task}) log_name={}; command=({});;\n", shell_quote(&log_name(&job.name)), args.join(" ")));
        }
        s.push_str("  *) echo \"no step for array task $SLURM_ARRAY_TASK_ID\" >&2; exit 2;;\nesac\n");
        s.push_str(&format!("exec >>{}/\"$log_name-$SLURM_JOB_ID.out\" 2>&1\n", shell_quote(&self.log_dir.display().to_string())));
        s.push_str("echo \"maskflow: job $SLURM_JOB_ID on $(hostname -s), restart ${SLURM_RESTART_COUNT:-0}\"\n");
        s.push_str("export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}\n");
        s.push_str("\"${command[@]}\" &\nchild=$!\ntrap 'kill -USR2 \"$child\" 2>/dev/null' USR2\n");
        // `wait` returns early when the trapped signal arrives: wait again until the child is gone.
        s.push_str("while true; do wait \"$child\"; code=$?; kill -0 \"$child\" 2>/dev/null || break; done\n");
        s.push_str(&format!(
            "if [ \"$code\" = {PREEMPTED_EXIT} ]; then echo \"maskflow: checkpointed; requeueing\"; scontrol requeue \"$SLURM_JOB_ID\"; exit 0; fi\nexit \"$code\"\n"
        ));
        s
    }

    /// One poll of every job of the run: sacct, else squeue (plus scontrol for what squeue
    /// no longer lists). At most three calls, whatever the number of jobs.
    /// `Err` with the tools' words when neither sacct nor squeue answered.
    fn poll(&mut self) -> Result<BTreeMap<String, Seen>, String> {
        // sacct lists only today's jobs unless told otherwise: a run that spans midnight
        // must still see what it submitted yesterday.
        let sacct = bounded(Command::new("sacct").args([
            "-X",
            "-P",
            "-n",
            "-S",
            "now-7days",
            "-o",
            "JobID,JobIDRaw,State,ExitCode",
            "--name",
            &self.job_name,
        ]));
        if let Ok(out) = &sacct {
            return Ok(parse_sacct(out));
        }
        let mut seen =
            parse_squeue(&bounded(Command::new("squeue").args(["-h", "-t", "all", "--name", &self.job_name, "-o", "%i|%A|%T|%N|%M"]))?);
        let forgotten = self.jobs.iter().any(|(id, t)| !t.ended && !seen.contains_key(id));
        if forgotten && let Ok(out) = bounded(Command::new("scontrol").args(["-o", "show", "job"])) {
            for (id, s) in parse_scontrol(&out, &self.job_name) {
                seen.entry(id).or_insert(s);
            }
        }
        Ok(seen)
    }

    /// Writes `logs/jobs.json` for `maskflow status`.
    fn save(&self) {
        let file = JobsFile { job_name: self.job_name.clone(), jobs: self.jobs.values().cloned().collect() };
        if let Ok(bytes) = serde_json::to_vec_pretty(&file) {
            let _ = crate::fsutil::write_atomic(&self.log_dir.join(JOBS_FILE), &bytes);
        }
    }

    fn log_path(&self, t: &Tracked) -> PathBuf {
        t.log_in(&self.log_dir)
    }
}

impl Dispatcher for Slurm {
    fn free_slots(&self) -> usize {
        // Slurm queues; arrays carry their own limit (`%jobs`).
        usize::MAX
    }

    fn start(&mut self, jobs: Vec<Job>) -> Result<()> {
        // One array per stage among the steps that became ready together.
        let mut groups: BTreeMap<crate::plan::StepKind, Vec<Job>> = BTreeMap::new();
        for job in jobs {
            groups.entry(job.kind).or_default().push(job);
        }
        for group in groups.values() {
            self.submit(group)?;
        }
        self.interval = FIRST_INTERVAL;
        Ok(())
    }

    fn wait(&mut self, interrupted: &dyn Fn() -> bool) -> Result<Vec<(usize, Ended)>> {
        let mut silent = 0;
        loop {
            let seen = match self.poll() {
                Ok(seen) => {
                    silent = 0;
                    seen
                }
                // A controller that stopped answering is not a reason to wait forever: after
                // a few polls (backing off, minutes in all) the run fails, saying so.
                Err(words) if silent + 1 >= SILENT_POLLS => {
                    self.cancel_all();
                    bail!("Slurm does not answer ({SILENT_POLLS} polls in a row): {words}");
                }
                Err(_) => {
                    silent += 1;
                    BTreeMap::new()
                }
            };
            let mut ended = Vec::new();
            let mut changed = false;
            let ids: Vec<String> = self.jobs.iter().filter(|(_, t)| !t.ended).map(|(id, _)| id.clone()).collect();
            for id in ids {
                let Some(s) = seen.get(&id) else { continue };
                let t = self.jobs.get_mut(&id).expect("tracked");
                if t.state != s.state || t.node != s.node {
                    changed = true;
                }
                t.state = s.state.clone();
                t.node = s.node.clone().or(t.node.take());
                t.elapsed = s.elapsed.clone();
                t.raw_id = s.raw_id.clone().or(t.raw_id.take());
                if s.state == "COMPLETED" {
                    t.ended = true;
                    ended.push((t.index, Ended::Exited));
                } else if FAILED.contains(&s.state.as_str()) {
                    t.ended = true;
                    let (index, what) = (t.index, format!("Slurm job {} {}", t.raw_id.clone().unwrap_or(id.clone()), s.state));
                    let t = self.jobs[&id].clone();
                    ended.push((index, Ended::Failed(failure_words(&what, &self.log_path(&t)))));
                }
            }
            if changed || !ended.is_empty() {
                self.save();
            }
            if !ended.is_empty() {
                self.interval = FIRST_INTERVAL;
                return Ok(ended);
            }
            self.interval = if changed { FIRST_INTERVAL } else { (self.interval * 2).min(LONGEST_INTERVAL) };
            let until = Instant::now() + self.interval;
            while Instant::now() < until {
                if interrupted() {
                    return Ok(Vec::new());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn cancel_all(&mut self) {
        let ids: Vec<String> = self.jobs.iter().filter(|(_, t)| !t.ended).map(|(id, _)| id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let _ = bounded(Command::new("scancel").args(&ids));
        for id in ids {
            if let Some(t) = self.jobs.get_mut(&id) {
                t.state = "CANCELLED".into();
                t.ended = true;
            }
        }
        self.save();
    }

    fn record_grace(&self) -> Duration {
        self.settings.grace
    }
}

/// Runs a Slurm client with [`CALL_TIMEOUT`]; its stdout when it exits 0, else its words.
fn bounded(command: &mut Command) -> Result<String, String> {
    let name = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name}: no answer within {} s", CALL_TIMEOUT.as_secs()));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| format!("{name}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{name} {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Single-quotes a word for bash.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The first word of a state (`CANCELLED by 0` → `CANCELLED`).
fn state_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or_default().trim_end_matches('+').to_string()
}

/// Expands an id as the tools write it: `12`, `12_3`, or a pending array's `12_[0-3,5%2]`.
fn expand_id(id: &str) -> Vec<String> {
    let Some((job, rest)) = id.split_once("_[") else { return vec![id.to_string()] };
    let ranges = rest.trim_end_matches(']').split('%').next().unwrap_or_default();
    let mut out = Vec::new();
    for part in ranges.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let step = 1;
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.split(':').next().unwrap_or(b).parse::<u32>()) {
            out.extend((a..=b).step_by(step).map(|t| format!("{job}_{t}")));
        }
    }
    out
}

fn none_if_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "(null)" && s != "n/a").then(|| s.to_string())
}

/// `sacct -X -P -n -o JobID,JobIDRaw,State,ExitCode` lines.
fn parse_sacct(text: &str) -> BTreeMap<String, Seen> {
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 3 {
            continue;
        }
        for id in expand_id(f[0]) {
            let raw = if id == f[0] { none_if_empty(f[1]) } else { None };
            seen.insert(id, Seen { raw_id: raw, state: state_word(f[2]), node: None, elapsed: None });
        }
    }
    seen
}

/// `squeue -h -o %i|%A|%T|%N|%M` lines.
fn parse_squeue(text: &str) -> BTreeMap<String, Seen> {
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 5 {
            continue;
        }
        for id in expand_id(f[0]) {
            let raw = if id == f[0] { none_if_empty(f[1]) } else { None };
            seen.insert(id, Seen { raw_id: raw, state: state_word(f[2]), node: none_if_empty(f[3]), elapsed: none_if_empty(f[4]) });
        }
    }
    seen
}

/// `scontrol -o show job`: one line per job, `Key=Value` words; only jobs named `name`.
fn parse_scontrol(text: &str, name: &str) -> BTreeMap<String, Seen> {
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let fields: BTreeMap<&str, &str> = line.split_whitespace().filter_map(|w| w.split_once('=')).collect();
        if fields.get("JobName") != Some(&name) {
            continue;
        }
        let Some(raw) = fields.get("JobId") else { continue };
        let id = match (fields.get("ArrayJobId"), fields.get("ArrayTaskId")) {
            (Some(a), Some(t)) => format!("{a}_{t}"),
            _ => raw.to_string(),
        };
        let node = fields.get("NodeList").and_then(|n| none_if_empty(n));
        let state = state_word(fields.get("JobState").copied().unwrap_or("UNKNOWN"));
        for id in expand_id(&id) {
            seen.insert(
                id,
                Seen {
                    raw_id: Some(raw.to_string()),
                    state: state.clone(),
                    node: node.clone(),
                    elapsed: fields.get("RunTime").map(|s| s.to_string()),
                },
            );
        }
    }
    seen
}

/// The newest run of a pipeline that dispatched jobs to Slurm: its logs folder and jobs
/// file (`saved/<pipeline>/<run-id>/logs/jobs.json`), for `maskflow status`.
pub fn latest_jobs(pipeline_dir: &Path) -> Option<(PathBuf, JobsFile)> {
    let newest = std::fs::read_dir(pipeline_dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name() != "latest")
        .map(|e| e.path().join("logs"))
        .filter_map(|logs| Some((std::fs::metadata(logs.join(JOBS_FILE)).ok()?.modified().ok()?, logs)))
        .max_by_key(|(modified, _)| *modified)?
        .1;
    let file = serde_json::from_slice(&std::fs::read(newest.join(JOBS_FILE)).ok()?).ok()?;
    Some((newest, file))
}

/// The run's jobs with their live state from one squeue call (as last recorded when squeue
/// fails or no longer knows a job).
pub fn live_jobs(file: JobsFile) -> Vec<Tracked> {
    let live = match Command::new("squeue").args(["-h", "-t", "all", "--name", &file.job_name, "-o", "%i|%A|%T|%N|%M"]).output() {
        Ok(out) if out.status.success() => parse_squeue(&String::from_utf8_lossy(&out.stdout)),
        _ => BTreeMap::new(),
    };
    file.jobs
        .into_iter()
        .map(|mut t| {
            if let Some(s) = live.get(&t.id) {
                t.state = s.state.clone();
                t.node = s.node.clone().or(t.node);
                t.elapsed = s.elapsed.clone();
                t.raw_id = s.raw_id.clone().or(t.raw_id);
            }
            t
        })
        .collect()
}

impl Tracked {
    /// This job's log, in the run's logs folder.
    pub fn log_in(&self, log_dir: &Path) -> PathBuf {
        log_dir.join(format!("{}-{}.out", log_name(&self.step), self.raw_id.as_deref().unwrap_or(&self.id)))
    }

    /// Whether the state is one that failed the step.
    pub fn failed(&self) -> bool {
        FAILED.contains(&self.state.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expand_from_every_tool_form() {
        assert_eq!(expand_id("12"), ["12"]);
        assert_eq!(expand_id("12_3"), ["12_3"]);
        assert_eq!(expand_id("12_[2-3%2]"), ["12_2", "12_3"]);
        assert_eq!(expand_id("12_[0,2-3]"), ["12_0", "12_2", "12_3"]);
    }

    #[test]
    fn squeue_sacct_and_scontrol_lines_parse_to_states() {
        let q = parse_squeue("2_0|3|RUNNING|vm|0:05\n2_[2-3%2]|2|PENDING||0:00\n7|7|FAILED|vm|0:01\n");
        assert_eq!(
            q["2_0"],
            Seen { raw_id: Some("3".into()), state: "RUNNING".into(), node: Some("vm".into()), elapsed: Some("0:05".into()) }
        );
        assert_eq!(q["2_3"].state, "PENDING");
        assert_eq!(q["2_3"].raw_id, None, "a pending task has no raw id yet");
        assert_eq!(q["7"].state, "FAILED");
        let a = parse_sacct("5_1|6|CANCELLED by 0|0:15\n5_[2-3]|5|PENDING|0:0\n");
        assert_eq!((a["5_1"].state.as_str(), a["5_1"].raw_id.as_deref()), ("CANCELLED", Some("6")));
        assert_eq!(a["5_2"].state, "PENDING");
        let c = parse_scontrol(
            "JobId=9 ArrayJobId=8 ArrayTaskId=1 JobName=run-x JobState=COMPLETED NodeList=vm RunTime=00:00:03\nJobId=10 JobName=other JobState=RUNNING\n",
            "run-x",
        );
        assert_eq!(c.len(), 1);
        assert_eq!((c["8_1"].state.as_str(), c["8_1"].raw_id.as_deref()), ("COMPLETED", Some("9")));
    }

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("train[a=1]"), "'train[a=1]'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
