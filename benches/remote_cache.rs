//! Benchmark: a fresh clone (empty local cache) against a warm remote cache, next to
//! computing locally (issue 12). Two pipelines: the quick-start (7 steps, a trained model)
//! and the 2,700-person no-op bench pipeline (`--until split`: hash, index, relabel, split
//! of 31,500 images).
//!
//! For each: the local cold compute; the push (bytes uploaded); then, with a new empty cache
//! each time, `run` against the remote until every step hits there: time (median of 3) and
//! the bytes the server sent, read from nginx's access log.
//!
//! Needs nginx (`scripts/cache-server.sh install`). Run: `cargo bench --bench remote_cache`.
//! `REMOTE_BENCH_PERSONS` / `REMOTE_BENCH_EVAL` change the no-op pipeline's size;
//! `REMOTE_BENCH_ONLY=quickstart|noop` runs one of the two.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const WRITER: &str = "maskflow:bench-secret";

struct Server {
    dir: tempfile::TempDir,
    url: String,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = Command::new("bash")
            .arg(script())
            .args(["start", &dir.path().to_string_lossy(), &port.to_string(), WRITER])
            .output()
            .expect("run scripts/cache-server.sh");
        assert!(out.status.success(), "nginx did not start (scripts/cache-server.sh install?):\n{}", String::from_utf8_lossy(&out.stderr));
        Server { url: String::from_utf8_lossy(&out.stdout).trim().to_string(), dir }
    }

    /// (requests, bytes sent to clients, bytes received from them) since line `from`.
    fn traffic(&self, from: usize) -> (usize, u64, u64) {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().skip(from).collect();
        let field = |l: &str, i: usize| l.split(' ').nth(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        (lines.len(), lines.iter().map(|l| field(l, 3)).sum(), lines.iter().map(|l| field(l, 4)).sum())
    }

    fn log_len(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("access.log")).map(|l| l.lines().count()).unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", &self.dir.path().to_string_lossy()]).status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cache-server.sh")
}

/// Runs maskflow in `dir` with its cache and saved folders named by `cache`; returns the
/// seconds and stdout.
fn maskflow(dir: &Path, cache: &str, env: &[(&str, &str)], args: &[&str]) -> (f64, String) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_maskflow"))
        .args(args)
        .current_dir(dir)
        .env("MASKFLOW_CACHE", dir.join(cache))
        .env("MASKFLOW_SAVED", dir.join(format!("{cache}-saved")))
        .envs(env.iter().copied())
        .output()
        .expect("run maskflow");
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "maskflow {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// One pipeline: local compute, push, then fresh caches against the warm remote.
fn bench(server: &Server, dir: &Path, label: &str, run_args: &[&str]) {
    let public = maskflow(dir, "keys", &[], &["key", "generate", "bench", "--out", "bench.key"]).1.trim().to_string();
    let key = dir.join("bench.key").to_string_lossy().into_owned();
    let reader = [("MASKFLOW_REMOTE", server.url.as_str()), ("MASKFLOW_TRUSTED_KEYS", public.as_str())];
    let writer = [reader[0], reader[1], ("MASKFLOW_SIGNING_KEY", key.as_str()), ("MASKFLOW_REMOTE_AUTH", WRITER)];

    let mut args = vec!["run"];
    args.extend(run_args);
    let no_remote: Vec<&str> = args.iter().copied().chain(["--no-remote"]).collect();
    let (local, out) = maskflow(dir, "cache-a", &[], &no_remote);
    let steps = out.lines().filter(|l| l.starts_with("run ")).count();
    println!("{label}: computing locally (empty cache, no remote): {local:.2} s, {steps} steps run");

    let mark = server.log_len();
    // `push` uploads every step computed here (the pipeline file is the first argument).
    let (push_s, _) = maskflow(dir, "cache-a", &writer, &["push", run_args[0]]);
    let (requests, _, uploaded) = server.traffic(mark);
    println!("{label}: push: {push_s:.2} s, {requests} requests, {} received by the server", mb(uploaded));

    let mut times = Vec::new();
    let mut moved = (0, 0, 0);
    for i in 0..3 {
        let mark = server.log_len();
        let (secs, out) = maskflow(dir, &format!("cache-b{i}"), &reader, &args);
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("hit ") || l.starts_with("run ")).collect();
        assert!(!lines.is_empty() && lines.iter().all(|l| l.starts_with("hit ") && l.contains("(remote")), "not all remote hits:\n{out}");
        times.push(secs);
        moved = server.traffic(mark);
    }
    println!(
        "{label}: fresh cache, warm remote, all {} steps hit: {:.2} s (median of 3; {:.1}x faster than computing), {} requests, {} downloaded ({:.2}% of the upload)",
        steps,
        median(times.clone()),
        local / median(times),
        moved.0,
        mb(moved.1),
        100.0 * moved.1 as f64 / uploaded.max(1) as f64
    );
}

fn main() {
    let only = std::env::var("REMOTE_BENCH_ONLY").unwrap_or_default();
    let server = Server::start();
    if only.is_empty() || only == "quickstart" {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart.mf"), tmp.path().join("quickstart.mf")).unwrap();
        bench(&server, tmp.path(), "quickstart", &["quickstart.mf"]);
    }
    if only.is_empty() || only == "noop" {
        let persons = std::env::var("REMOTE_BENCH_PERSONS").unwrap_or_else(|_| "2700".into());
        let eval = std::env::var("REMOTE_BENCH_EVAL").unwrap_or_else(|_| "1800".into());
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let started = Instant::now();
        maskflow(dir, "synth", &[], &["synth", "--persons", &persons, "--eval-persons", &eval, "--seed", "7", "--out", "data"]);
        println!("noop: synth {persons} + {eval} eval persons: {:.1} s", started.elapsed().as_secs_f64());
        std::fs::write(dir.join("bench.mf"), "data { root = \"data\" }\nmodel tiny_cnn {}\n").unwrap();
        bench(&server, dir, "noop", &["bench.mf", "--until", "split"]);
    }
}
