//! `maskflow run` / `plan` / `explain` against the real binary in temp dirs.

use crate::common;
use common::Space;
use common::TINY;

fn space() -> Space {
    let s = Space::new();
    s.write("p.mf", TINY);
    s
}

fn plan_json(s: &Space, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["plan", "p.mf", "--json"];
    all.extend_from_slice(args);
    let out = s.run(&all);
    serde_json::from_str(out.ok()).expect("plan --json is JSON")
}

fn status_of(plan: &[serde_json::Value], step: &str) -> (String, String, Vec<String>) {
    let s = plan.iter().find(|s| s["step"] == step).unwrap_or_else(|| panic!("no step {step} in {plan:?}"));
    let reasons = s["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    (s["status"].as_str().unwrap().to_string(), s["key"].as_str().unwrap().to_string(), reasons)
}

#[test]
fn first_run_runs_and_second_run_hits() {
    let s = space();
    let first = s.run(&["run", "p.mf", "--until", "split"]);
    first.ok();
    assert_eq!(
        first.step_lines(),
        [
            "run source: new step — 30 persons, 210 images, 28 eval images",
            "run relabel: new step — 0 fixes applied, 0 warnings",
            "run split: new step — 24 train / 6 val persons",
        ]
    );
    let second = s.run(&["run", "p.mf", "--until", "split"]);
    second.ok();
    assert_eq!(second.step_lines(), ["hit source", "hit relabel", "hit split"]);
    assert!(second.stdout.contains("3 steps: 3 hit, 0 run"), "{}", second.stdout);
    // Human-facing results.
    assert!(s.path("saved/p/latest/split.json").is_file());
    assert!(s.path("saved/p/latest/log.txt").is_file());
    assert!(s.read("saved/p/latest/pipeline.mf").contains("data synthetic"));
}

#[test]
fn comment_and_reorder_edits_keep_every_key() {
    let s = space();
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    let before = plan_json(&s, &[]);
    s.write(
        "p.mf",
        "\
train { batch = 8; epochs = 1 }   # reordered keys and blocks
model tiny_cnn {}
prepare { size = 24x32 }
# a new comment
split by person { seed = 42; stratify = [gender]; val = 2e-1 }
data synthetic { size = 48x64; seed = 3; eval_persons = 4; persons = 30 }
",
    );
    let after = plan_json(&s, &[]);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a["key"], b["key"], "key of {} changed", a["step"]);
    }
    for step in ["source", "relabel", "split"] {
        assert_eq!(status_of(&after, step).0, "hit");
    }
}

#[test]
fn changing_the_split_seed_reruns_split_and_downstream_only() {
    let s = space();
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    let plan = plan_json(&s, &["--set", "split.seed=7"]);
    assert_eq!(status_of(&plan, "source").0, "hit");
    assert_eq!(status_of(&plan, "relabel").0, "hit");
    let (status, _, reasons) = status_of(&plan, "split");
    assert_eq!(status, "miss");
    assert_eq!(reasons, ["split.seed 42 → 7"]);
    let (status, _, reasons) = status_of(&plan, "train");
    assert_eq!(status, "miss");
    assert_eq!(reasons, ["new step"]);
    let run = s.run(&["run", "p.mf", "--until", "split", "--set", "split.seed=7"]);
    assert_eq!(run.step_lines()[2], "run split: split.seed 42 → 7 — 24 train / 6 val persons");
}

#[test]
fn plan_writes_nothing() {
    let s = space();
    let plan = plan_json(&s, &[]);
    assert!(plan.iter().all(|p| p["status"] == "miss"));
    let kinds: Vec<&str> = plan.iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["source", "relabel", "split", "prepare", "train", "evaluate"]);
    let records = walk_files(&s.path("cache/records"));
    assert!(records.is_empty(), "plan wrote records: {records:?}");
    assert!(!s.path("saved").exists());
}

#[test]
fn a_flipped_byte_in_a_cached_blob_is_detected_and_recomputed() {
    let s = space();
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    let explain: serde_json::Value = serde_json::from_str(s.run(&["explain", "p.mf", "split"]).ok()).unwrap();
    let key = explain["key"].as_str().unwrap();
    let record: serde_json::Value = serde_json::from_str(&s.read(&format!("cache/records/{}/{}.json", &key[..2], &key[2..]))).unwrap();
    let digest = record["outputs"]["split.json"]["digest"].as_str().unwrap();
    let blob = s.path(&format!("cache/objects/{}/{}", &digest[..2], &digest[2..]));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    let run = s.run(&["run", "p.mf", "--until", "split"]);
    run.ok();
    let lines = run.step_lines();
    assert_eq!(lines[..2], ["hit source", "hit relabel"]);
    assert!(
        lines[2].starts_with(&format!(
            "run split: cached output corrupt: cache/objects/{}/{} (content hashes to ",
            &digest[..2],
            &digest[2..]
        )),
        "{}",
        lines[2]
    );
    // The recomputed blob is the original one again, and the cache verifies.
    assert_ne!(std::fs::read(&blob).unwrap(), bytes);
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
}

#[test]
fn two_concurrent_runs_on_one_cache_both_finish() {
    let s = space();
    let bin = env!("CARGO_BIN_EXE_maskflow");
    let spawn = || {
        std::process::Command::new(bin)
            .args(["run", "p.mf", "--until", "split"])
            .current_dir(s.dir.path())
            .env_remove("MASKFLOW_CACHE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    // Each step was computed once: the other run waited and reused it.
    let out = format!("{}{}", String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&b.stdout));
    assert_eq!(out.matches("run source").count(), 1, "{out}");
    assert_eq!(out.matches("run split").count(), 1, "{out}");
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
}

#[test]
fn unknown_until_step_is_a_clear_error() {
    let s = space();
    let run = s.run(&["run", "p.mf", "--until", "nope"]);
    assert_eq!(run.fails(), "error: no step `nope` in this pipeline (steps: source, relabel, split, prepare, train, evaluate)\n");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir).into_iter().flatten().filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect()
}
