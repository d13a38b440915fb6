//! `--jobs N` (and `--gpus 0,1,…`): steps computed in child processes on this machine.
//!
//! Why processes and not threads: burn's CPU backend seeds one process-wide RNG, so two
//! trainings in one process would interleave their random streams; a process per step keeps
//! each bit-identical to a serial run.
//!
//! | resource | how it is shared |
//! |---|---|
//! | CPU | each child gets `RAYON_NUM_THREADS` = cores / N (at least 1): its own pool |
//! | GPU | a model step (train, evaluate, predict, ensemble) takes a free id from `--gpus` and runs with `CUDA_VISIBLE_DEVICES=<id>`, so burn's CUDA device 0 in that process is that GPU; without a free id it waits |
//! | output | each child writes to `logs/<step>.out`; the parent prints one line per step |

use super::{Dispatcher, Ended, Job, StepCommand, failure_words, job_args, log_name};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Local {
    cmd: StepCommand,
    jobs: usize,
    /// Free GPU ids (empty without `--gpus`: no step waits for one).
    free_gpus: Vec<String>,
    uses_gpus: bool,
    threads_each: usize,
    log_dir: PathBuf,
    /// Model steps waiting for a GPU.
    queued: VecDeque<Job>,
    running: Vec<Running>,
    started: BTreeMap<usize, std::time::SystemTime>,
}

struct Running {
    index: usize,
    child: Child,
    log: PathBuf,
    gpu: Option<String>,
}

impl Local {
    /// `jobs` at once (at least 1), GPU ids from `--gpus`, logs in `log_dir`.
    pub fn new(cmd: StepCommand, jobs: usize, gpus: Vec<String>, log_dir: PathBuf) -> Local {
        let jobs = jobs.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Local {
            cmd,
            jobs,
            uses_gpus: !gpus.is_empty(),
            free_gpus: gpus,
            threads_each: (cores / jobs).max(1),
            log_dir,
            queued: VecDeque::new(),
            running: Vec::new(),
            started: BTreeMap::new(),
        }
    }

    fn spawn(&mut self, job: Job, gpu: Option<String>) -> Result<()> {
        std::fs::create_dir_all(&self.log_dir).with_context(|| format!("{}: cannot create", self.log_dir.display()))?;
        let log = self.log_dir.join(format!("{}.out", log_name(&job.name)));
        let out = std::fs::File::create(&log).with_context(|| format!("{}: cannot create", log.display()))?;
        let mut command = Command::new(&self.cmd.program);
        command
            .args(job_args(&self.cmd, &job))
            .current_dir(&self.cmd.dir)
            .envs(self.cmd.env.iter().map(|(k, v)| (k, v)))
            .env("RAYON_NUM_THREADS", self.threads_each.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().with_context(|| format!("{}: cannot write", log.display()))?)
            .stderr(out);
        if let Some(id) = &gpu {
            command.env("CUDA_VISIBLE_DEVICES", id);
        }
        let child = command.spawn().with_context(|| format!("cannot start {}", self.cmd.program.display()))?;
        self.started.insert(job.index, std::time::SystemTime::now());
        self.running.push(Running { index: job.index, child, log, gpu });
        Ok(())
    }

    /// Starts queued model steps for which a GPU is free.
    fn start_queued(&mut self) -> Result<()> {
        while !self.free_gpus.is_empty()
            && let Some(job) = self.queued.pop_front()
        {
            let gpu = self.free_gpus.remove(0);
            self.spawn(job, Some(gpu))?;
        }
        Ok(())
    }
}

impl Dispatcher for Local {
    fn free_slots(&self) -> usize {
        self.jobs.saturating_sub(self.running.len() + self.queued.len())
    }

    fn start(&mut self, jobs: Vec<Job>) -> Result<()> {
        for job in jobs {
            if self.uses_gpus && job.uses_model() {
                self.queued.push_back(job);
            } else {
                self.spawn(job, None)?;
            }
        }
        self.start_queued()
    }

    fn wait(&mut self, interrupted: &dyn Fn() -> bool) -> Result<Vec<(usize, Ended)>> {
        loop {
            // Queued model steps take the GPU ids freed since the last call: only now, after
            // the executor has recorded the ends, so no two steps ever seem to share an id.
            self.start_queued()?;
            let mut ended = Vec::new();
            let mut still = Vec::new();
            for mut r in std::mem::take(&mut self.running) {
                match r.child.try_wait() {
                    Ok(None) => still.push(r),
                    Ok(Some(status)) => {
                        self.free_gpus.extend(r.gpu.take());
                        let end = if status.success() {
                            Ended::Exited
                        } else {
                            Ended::Failed(failure_words(&format!("process {} exited with {status}", r.child.id()), &r.log))
                        };
                        ended.push((r.index, end));
                    }
                    Err(e) => {
                        self.free_gpus.extend(r.gpu.take());
                        ended.push((r.index, Ended::Failed(format!("cannot wait for process {}: {e}", r.child.id()))));
                    }
                }
            }
            self.running = still;
            if !ended.is_empty() || interrupted() {
                return Ok(ended);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cancel_all(&mut self) {
        self.queued.clear();
        for r in &mut self.running {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        self.running.clear();
    }

    fn start_time(&self, index: usize) -> Option<std::time::SystemTime> {
        self.started.get(&index).copied()
    }
}
