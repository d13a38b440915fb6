//! Benchmark: the Slurm executor on a one-node cluster of this machine (issue 13), brought up
//! by `scripts/slurm.sh start` and stopped by its PIDs.
//!
//! Prints:
//! - the overhead per step: for each computed step, the seconds from its submission to its
//!   record being visible (steps.json of the Slurm run) minus the seconds the same step took
//!   in a local serial run; median over the steps of a 4-variant sweep;
//! - the sacct/squeue/scontrol calls per minute while a 100-variant sweep is queued (one task
//!   at a time, `--jobs 1`), counted by wrappers put first on PATH, over
//!   `SLURM_BENCH_WINDOW` seconds (default 60); the run is then interrupted (its jobs are
//!   cancelled).
//!
//! Needs `scripts/slurm.sh install`. Run: `cargo bench --bench slurm`.

use slurm_cluster::Cluster;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/support/slurm_cluster.rs"]
mod slurm_cluster;

fn pipeline(seeds: usize, epochs: u32) -> String {
    let list: Vec<String> = (1..=seeds).map(|s| s.to_string()).collect();
    format!(
        "data synthetic {{ persons = 30; eval_persons = 4; seed = 3; size = 48x64 }}\n\
         split by person {{ val = 0.2; stratify = [gender]; seed = 42 }}\n\
         prepare {{ size = 24x32 }}\n\
         model tiny_cnn {{}}\n\
         train {{ epochs = {epochs}; batch = 8; seed = sweep[{}] }}\n\
         evaluate {{}}\n",
        list.join(", ")
    )
}

fn maskflow(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_maskflow"));
    c.args(args).current_dir(dir).env_remove("MASKFLOW_CACHE").env_remove("MASKFLOW_SAVED").envs(env.iter().copied());
    c
}

/// Step name → seconds, from a run's steps.json.
fn seconds(dir: &Path, saved: &str) -> BTreeMap<String, f64> {
    let steps: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(saved).join("p/latest/steps.json")).unwrap()).unwrap();
    steps.as_array().unwrap().iter().map(|s| (s["step"].as_str().unwrap().to_string(), s["seconds"].as_f64().unwrap())).collect()
}

fn main() {
    let cluster = Cluster::start();
    let env = cluster.env();

    // Overhead per step.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.mf"), pipeline(4, 1)).unwrap();
    let ok = |mut c: Command| assert!(c.status().unwrap().success());
    ok(maskflow(dir, &env, &["--cache", "local", "--saved", "saved-local", "run", "p.mf"]));
    let started = Instant::now();
    ok(maskflow(dir, &env, &["--cache", "slurm", "--saved", "saved-slurm", "run", "p.mf", "--executor", "slurm"]));
    let wall = started.elapsed().as_secs_f64();
    let (local, slurm) = (seconds(dir, "saved-local"), seconds(dir, "saved-slurm"));
    let mut overheads: Vec<f64> = slurm.iter().map(|(step, s)| s - local[step]).collect();
    overheads.sort_by(f64::total_cmp);
    println!(
        "overhead per step on Slurm (submit to record visible, minus the local compute): median {:.2} s, min {:.2} s, max {:.2} s over {} steps; the whole sweep {:.1} s on Slurm, {:.1} s locally",
        overheads[overheads.len() / 2],
        overheads[0],
        overheads[overheads.len() - 1],
        overheads.len(),
        wall,
        local.values().sum::<f64>()
    );

    // Calls per minute while a 100-variant sweep is queued.
    let window: u64 = std::env::var("SLURM_BENCH_WINDOW").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.mf"), pipeline(100, 50)).unwrap();
    ok(maskflow(dir, &env, &["run", "p.mf", "--until", "prepare"]));
    ok(maskflow(dir, &env, &["run", "p.mf", "--until", "split"]));
    let shims = dir.join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let calls = dir.join("calls.log");
    for tool in ["sacct", "squeue", "scontrol", "sbatch"] {
        let real = String::from_utf8_lossy(&Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().stdout)
            .trim()
            .to_string();
        let shim = shims.join(tool);
        std::fs::write(&shim, format!("#!/bin/sh\necho \"$(date +%s.%N) {tool}\" >> '{}'\nexec '{real}' \"$@\"\n", calls.display()))
            .unwrap();
        ok({
            let mut c = Command::new("chmod");
            c.args(["+x", &shim.to_string_lossy()]);
            c
        });
    }
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default());
    let mut run = maskflow(dir, &env, &["run", "p.mf", "--executor", "slurm", "--jobs", "1"]).env("PATH", &path).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(window));
    let _ = Command::new("kill").args(["-INT", &run.id().to_string()]).status();
    let _ = run.wait();
    let log = std::fs::read_to_string(&calls).unwrap_or_default();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.lines() {
        *count.entry(line.split_whitespace().nth(1).unwrap_or("?")).or_default() += 1;
    }
    let polls = count.get("sacct").copied().unwrap_or(0);
    let per_minute = |n: usize| n as f64 * 60.0 / window as f64;
    println!(
        "100-variant sweep queued ({window} s window): {:.1} sacct, {:.1} squeue, {:.1} scontrol calls per minute ({} polls; {} sbatch calls)",
        per_minute(polls),
        per_minute(count.get("squeue").copied().unwrap_or(0)),
        per_minute(count.get("scontrol").copied().unwrap_or(0)),
        polls,
        count.get("sbatch").copied().unwrap_or(0)
    );
}
