//! Independent steps in parallel: locally (`--jobs`) and on a real one-node Slurm cluster
//! (Debian's slurm-wlm, brought up per test by `scripts/slurm.sh start DIR` on free ports
//! and stopped by the PIDs its daemons wrote).
//!
//! Needs `sbatch` (`scripts/slurm.sh install`, which `.ci/run` does); without it the Slurm
//! tests fail, saying so. `MASKFLOW_SKIP_SLURM=1` skips them explicitly.

use crate::common::{self, Space};
use maskflow::cache::Cache;
use maskflow::digest::Digest;
use slurm_cluster::Cluster;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// TINY with a four-way seed sweep: four independent trainings after one prepare.
fn sweep(epochs: u32) -> String {
    format!(
        "data synthetic {{ persons = 30; eval_persons = 4; seed = 3; size = 48x64 }}\n\
         split by person {{ val = 0.2; stratify = [gender]; seed = 42 }}\n\
         prepare {{ size = 24x32 }}\n\
         model tiny_cnn {{}}\n\
         train {{ epochs = {epochs}; batch = 8; seed = sweep[1, 2, 3, 4] }}\n\
         evaluate {{}}\n"
    )
}

#[path = "../support/slurm_cluster.rs"]
mod slurm_cluster;

/// This test's own cluster, or `None` when `MASKFLOW_SKIP_SLURM` is set.
fn cluster() -> Option<Cluster> {
    if std::env::var_os("MASKFLOW_SKIP_SLURM").is_some() {
        return None;
    }
    Some(Cluster::start())
}

/// `squeue` lines (`id|state|name`) of the cluster's jobs still pending or running.
fn queued(cluster: &Cluster) -> Vec<String> {
    let out = Command::new("squeue").args(["-h", "-o", "%i|%T|%j"]).env("SLURM_CONF", &cluster.conf).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

/// A `maskflow run` in the background, killed if the test ends early (a failed assertion
/// must not leave it polling a cluster that is gone).
struct Background(Option<std::process::Child>);

impl Background {
    fn take(&mut self) -> std::process::Child {
        self.0.take().expect("taken once")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Step name → key, from `plan --json`.
fn keys(space: &Space, cache: &str) -> BTreeMap<String, String> {
    let plan: serde_json::Value = serde_json::from_str(space.run(&["--cache", cache, "plan", "p.mf", "--json"]).ok()).unwrap();
    plan.as_array().unwrap().iter().map(|s| (s["step"].as_str().unwrap().to_string(), s["key"].as_str().unwrap().to_string())).collect()
}

/// Step name → each output's digest, from the records in `cache`.
fn digests(space: &Space, cache: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let store = Cache::open(&space.path(cache)).unwrap();
    keys(space, cache)
        .into_iter()
        .map(|(step, key)| {
            let record = store.read_record(&Digest::from_hex(&key).unwrap()).unwrap().unwrap_or_else(|| panic!("no record for {step}"));
            (step, record.outputs.into_iter().map(|(name, o)| (name, o.digest.hex())).collect())
        })
        .collect()
}

/// The jobs file of the newest run of pipeline `p` that went to Slurm.
fn jobs_of(space: &Space, saved: &str) -> Option<serde_json::Value> {
    let runs = std::fs::read_dir(space.path(&format!("{saved}/p"))).ok()?;
    let mut files: Vec<PathBuf> = runs.flatten().map(|e| e.path().join("logs/jobs.json")).filter(|p| p.is_file()).collect();
    files.sort();
    Some(serde_json::from_slice(&std::fs::read(files.last()?).unwrap()).unwrap())
}

fn rfc3339(s: &str) -> std::time::SystemTime {
    humantime::parse_rfc3339(s).unwrap()
}

#[test]
fn jobs_two_gives_the_serial_digests_and_the_trainings_overlap() {
    let space = Space::new();
    space.write("p.mf", &sweep(2));
    space.run(&["--cache", "serial", "run", "p.mf", "--jobs", "1"]).ok();
    let parallel = space.run(&["--cache", "parallel", "--saved", "saved-parallel", "run", "p.mf", "--jobs", "2"]);
    assert_eq!(parallel.step_lines().len(), 12, "{}", parallel.ok());
    assert_eq!(digests(&space, "parallel"), digests(&space, "serial"));
    // steps.json: some two trainings ran at the same time.
    let steps: serde_json::Value = serde_json::from_str(&space.read("saved-parallel/p/latest/steps.json")).unwrap();
    let trainings: Vec<(std::time::SystemTime, std::time::SystemTime)> = steps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "train")
        .map(|s| (rfc3339(s["started"].as_str().unwrap()), rfc3339(s["ended"].as_str().unwrap())))
        .collect();
    assert_eq!(trainings.len(), 4);
    let overlap = trainings.iter().enumerate().any(|(i, a)| trainings[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1));
    assert!(overlap, "no two trainings overlapped: {trainings:?}");
    // Each step's output went to its own log, and the lines on stdout are whole.
    assert!(common::exists(&space.path("saved-parallel/p/latest/logs/train[train.seed=3].out")));
    assert!(parallel.stdout.lines().all(|l| l.starts_with("run ") || l.starts_with("12 steps")), "{}", parallel.stdout);
}

#[test]
fn gpus_hold_model_steps_to_one_per_device() {
    // No GPU here: the ids only gate the model steps (and name CUDA_VISIBLE_DEVICES for each);
    // with two ids, no more than two trainings or evaluations ever run at once, however many
    // jobs are allowed.
    let space = Space::new();
    space.write("p.mf", &sweep(2));
    space.run(&["--cache", "serial", "run", "p.mf"]).ok();
    space.run(&["--cache", "gpus", "--saved", "saved-gpus", "run", "p.mf", "--jobs", "4", "--gpus", "0,1"]).ok();
    assert_eq!(digests(&space, "gpus"), digests(&space, "serial"));
    let steps: serde_json::Value = serde_json::from_str(&space.read("saved-gpus/p/latest/steps.json")).unwrap();
    let spans: Vec<(std::time::SystemTime, std::time::SystemTime)> = steps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "train" || s["kind"] == "evaluate")
        .map(|s| (rfc3339(s["started"].as_str().unwrap()), rfc3339(s["ended"].as_str().unwrap())))
        .collect();
    assert_eq!(spans.len(), 8);
    let most = spans.iter().map(|(t, _)| spans.iter().filter(|(a, b)| a <= t && t < b).count()).max().unwrap();
    assert!(most <= 2, "{most} model steps ran at once on two GPU ids");
}

#[test]
fn a_sweep_on_slurm_is_one_array_with_the_local_digests_and_a_rerun_submits_nothing() {
    let Some(cluster) = cluster() else { return };
    let space = Space::new();
    space.write("p.mf", &sweep(1));
    let run = space.run_env(&["run", "p.mf", "--executor", "slurm"], &cluster.env());
    assert_eq!(run.step_lines().len(), 12, "{}{}", run.ok(), run.stderr);
    let jobs = jobs_of(&space, "saved").expect("a jobs file");
    let trains: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["step"].as_str().unwrap().starts_with("train["))
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    let array = trains[0].split('_').next().unwrap();
    let mut expected: Vec<String> = (0..4).map(|t| format!("{array}_{t}")).collect();
    let mut got: Vec<String> = trains.iter().map(|s| s.to_string()).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "the four trainings are not one array of 4: {jobs}");
    space.run(&["--cache", "local", "run", "p.mf", "--jobs", "1"]).ok();
    assert_eq!(digests(&space, "cache"), digests(&space, "local"));
    // A second run: all hits, no job.
    let again = space.run_env(&["run", "p.mf", "--executor", "slurm"], &cluster.env());
    assert!(again.ok().lines().filter(|l| !l.starts_with("12 steps")).all(|l| l.starts_with("hit ")), "{}", again.stdout);
    let latest = std::fs::read_link(space.path("saved/p/latest")).unwrap();
    assert!(!space.path("saved/p").join(latest).join("logs").exists(), "the all-hits run submitted jobs");
}

#[test]
fn a_failed_job_names_its_step_id_state_and_log_and_keep_going_finishes_the_rest() {
    let Some(cluster) = cluster() else { return };
    let space = Space::new();
    space.write("p.mf", &sweep(1));
    let env = [cluster.env()[0], ("MASKFLOW_FAIL_STEP", "train[train.seed=2]")];
    let run = space.run_env(&["run", "p.mf", "--executor", "slurm"], &env);
    let stderr = run.fails();
    assert!(stderr.starts_with("error: step `train[train.seed=2]` failed (not started: evaluate"), "{stderr}");
    assert!(stderr.contains("FAILED; log: ") && stderr.contains("/logs/train[train.seed=2]-"), "{stderr}");
    assert!(stderr.contains("  | error: step `train[train.seed=2]` failed on purpose (MASKFLOW_FAIL_STEP)"), "{stderr}");
    let job = regex_lite_job(stderr);
    assert!(stderr.contains(&format!("Slurm job {job} FAILED")), "{stderr}");
    // The other trainings finished and are cached.
    for seed in [1, 3, 4] {
        assert!(run.stdout.contains(&format!("run train[train.seed={seed}]")), "{}", run.stdout);
    }
    // With --keep-going, their evaluations run too; only the failed branch is left.
    let kept = space.run_env(&["run", "p.mf", "--executor", "slurm", "--keep-going"], &env);
    let stderr = kept.fails();
    for seed in [1, 3, 4] {
        assert!(kept.stdout.contains(&format!("run evaluate[train.seed={seed}]")), "{}", kept.stdout);
    }
    assert!(stderr.starts_with("error: step `train[train.seed=2]` failed (not started: evaluate[train.seed=2])"), "{stderr}");
}

/// The job id in `Slurm job N FAILED`.
fn regex_lite_job(text: &str) -> String {
    let rest = text.split("Slurm job ").nth(1).expect("a Slurm job in the error");
    rest.split_whitespace().next().unwrap().to_string()
}

#[test]
fn status_shows_queued_and_running_jobs_and_ctrl_c_cancels_every_job() {
    let Some(cluster) = cluster() else { return };
    let space = Space::new();
    space.write("p.mf", &sweep(200));
    space.run(&["run", "p.mf", "--until", "prepare"]).ok();
    space.run(&["run", "p.mf", "--until", "split"]).ok();
    // One array task at a time (`--jobs 1` on Slurm: `--array=0-3%1`).
    let mut run = space.command(&["run", "p.mf", "--executor", "slurm", "--jobs", "1"], &cluster.env());
    let mut child = Background(Some(run.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = space.run(&["status", "p.mf"]).ok().to_string();
        if s.contains("running  train[train.seed=1]") && s.contains("queued   train[train.seed=4]") {
            break s;
        }
        assert!(Instant::now() < deadline, "the trainings never ran:\n{s}\n{:?}", queued(&cluster));
        std::thread::sleep(Duration::from_millis(300));
    };
    common::assert_golden("status_during_a_slurm_run", &normalise_status(&status));
    // Ctrl-C: every job of the run is cancelled.
    let mut child = child.take();
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let exit = child.wait().unwrap();
    assert!(!exit.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !queued(&cluster).is_empty() {
        assert!(Instant::now() < deadline, "jobs left after Ctrl-C: {:?}", queued(&cluster));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Job ids, node names and elapsed times vary from run to run.
fn normalise_status(text: &str) -> String {
    let node = hostname();
    let word = |w: &str| -> String {
        let (core, comma) = w.strip_suffix(',').map_or((w, ""), |c| (c, ","));
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        let core = match core.split_once('_') {
            Some((id, task)) if digits(id) && digits(task) => format!("ID_{task}"),
            _ if core.contains(':') && core.split(':').all(digits) => "ELAPSED".into(),
            _ if core == node => "NODE".into(),
            _ => core.to_string(),
        };
        format!("{core}{comma}")
    };
    text.lines().map(|l| l.split(' ').map(word).collect::<Vec<_>>().join(" ") + "\n").collect()
}

fn hostname() -> String {
    String::from_utf8_lossy(&Command::new("hostname").arg("-s").output().unwrap().stdout).trim().to_string()
}

#[test]
fn a_preempted_training_checkpoints_is_requeued_and_resumes_to_the_same_weights() {
    let Some(cluster) = cluster() else { return };
    let space = Space::new();
    space.write("p.mf", &sweep(30).replace("seed = sweep[1, 2, 3, 4]", "seed = 5"));
    space.run(&["--cache", "local", "run", "p.mf"]).ok();
    space.run(&["run", "p.mf", "--until", "prepare"]).ok();
    space.run(&["run", "p.mf", "--until", "split"]).ok();
    let mut child = Background(Some(
        space.command(&["run", "p.mf", "--executor", "slurm"], &cluster.env()).stdout(std::process::Stdio::piped()).spawn().unwrap(),
    ));
    // Wait for the training job to run, then warn it as Slurm does before preemption.
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let out = Command::new("squeue").args(["-h", "-t", "running", "-o", "%A"]).env("SLURM_CONF", &cluster.conf).output().unwrap();
        if let Some(id) = String::from_utf8_lossy(&out.stdout).lines().next() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "the training never ran");
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Command::new("scancel").args(["--signal=USR2", "--batch", &job]).env("SLURM_CONF", &cluster.conf).status().unwrap();
    assert!(signalled.success());
    let out = child.take().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("run train: new step — 30 epochs (resumed after epoch "), "{stdout}");
    let logs = space.path("saved/p/latest/logs");
    let log = std::fs::read_to_string(logs.join(format!("train-{job}.out"))).unwrap();
    assert!(log.contains("checkpointed; requeueing") && log.contains("restart 1"), "{log}");
    let weights = |cache: &str| digests(&space, cache)["train"]["model.safetensors"].clone();
    assert_eq!(weights("cache"), weights("local"), "the resumed training's weights differ from an uninterrupted run's");
}
