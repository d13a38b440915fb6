//! Benchmark: pipeline overhead on a competition-sized dataset (2,700 persons, 18,900 train
//! images; 1,800 eval persons, 12,600 eval images), against the real `maskflow` binary.
//!
//! Prints: synth time, cold run, no-op rerun (median of 7), and a rerun after one image's
//! bytes changed (with the number of files re-hashed); then the prepare step, cold and after
//! one more image changed (issue 3: that rerun re-decodes one image and ends in <= 2 s
//! before training). Run: `cargo bench --bench noop_run`.
//! Set `NOOP_BENCH_PERSONS` / `NOOP_BENCH_EVAL` to change the size, `NOOP_BENCH_PREPARE` to the
//! prepare size (`WxH`, default 96x128; `none` skips the prepare figures).

use std::process::Command;
use std::time::Instant;

fn maskflow(dir: &std::path::Path, args: &[&str]) -> (f64, String) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_maskflow"))
        .args(args)
        .current_dir(dir)
        .env_remove("MASKFLOW_CACHE")
        .output()
        .expect("run maskflow");
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "maskflow {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let persons: u32 = std::env::var("NOOP_BENCH_PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2700);
    let eval: u32 = std::env::var("NOOP_BENCH_EVAL").ok().and_then(|v| v.parse().ok()).unwrap_or(1800);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (synth_s, _) =
        maskflow(dir, &["synth", "--persons", &persons.to_string(), "--eval-persons", &eval.to_string(), "--seed", "7", "--out", "data"]);
    println!("synth {persons} persons + {eval} eval persons ({} images): {synth_s:.2} s", (persons + eval) * 7);
    if eval == 0 {
        // No eval set: leave the directory out (an empty info.csv is an error, rightly).
        let _ = std::fs::remove_dir_all(dir.join("data/eval"));
    }
    let prepare = std::env::var("NOOP_BENCH_PREPARE").unwrap_or_else(|_| "96x128".into());
    let prepare_block = if prepare == "none" { String::new() } else { format!("prepare {{ size = {prepare} }}\n") };
    std::fs::write(dir.join("bench.mf"), format!("data {{ root = \"data\" }}\n{prepare_block}model tiny_cnn {{}}\n")).unwrap();
    let args = ["run", "bench.mf", "--until", "split", "--json"];
    let (cold, _) = maskflow(dir, &args);
    println!("cold run (hash every file, index, relabel, split): {:.3} s", cold);
    let warm: Vec<f64> = (0..7).map(|_| maskflow(dir, &args).0).collect();
    let (_, last) = maskflow(dir, &args);
    let report: serde_json::Value = serde_json::from_str(&last).unwrap();
    println!("no-op rerun, median of 7: {:.1} ms (files hashed: {})", median(warm) * 1e3, report["files_hashed"]);
    // Change one image's pixels (same size, new bytes).
    change_one_image(dir, 0);
    let (one, out) = maskflow(dir, &args);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = &report["steps"][0];
    println!(
        "rerun after one image changed: {:.1} ms (files hashed: {}; source: {} {})",
        one * 1e3,
        report["files_hashed"],
        first["status"].as_str().unwrap_or(""),
        first["reasons"]
    );
    if prepare == "none" {
        return;
    }
    let args = ["run", "bench.mf", "--until", "prepare", "--json"];
    let (cold, out) = maskflow(dir, &args);
    println!("prepare {prepare}, cold (decode every image): {cold:.2} s ({})", prepare_summary(&out));
    let (noop, _) = maskflow(dir, &args);
    println!("no-op rerun through prepare: {:.1} ms", noop * 1e3);
    change_one_image(dir, 1);
    let (one, out) = maskflow(dir, &args);
    println!("rerun through prepare after one more image changed: {one:.2} s ({})", prepare_summary(&out));
}

/// The prepare step's summary line ("N train + M eval images at WxH: d decoded, r reused").
fn prepare_summary(json: &str) -> String {
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    steps.iter().find(|s| s["kind"] == "prepare" || s["name"] == "prepare").map(|s| s["summary"].to_string()).unwrap_or_default()
}

/// Changes the pixels (same size, new bytes) of the `nth` train image in name order.
fn change_one_image(dir: &std::path::Path, nth: usize) {
    let victim = walkdir::WalkDir::new(dir.join("data/train/images"))
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
        .nth(nth)
        .unwrap()
        .into_path();
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&victim, &bytes).unwrap();
}
