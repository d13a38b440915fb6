//! `maskflow diff`, lockfiles (`run --locked`), `maskflow verify` and `maskflow runs` against
//! the real binary in temp dirs.

use crate::common;
use common::Space;
use common::TINY;
use maskflow::cache::{Cache, RECORD_FORMAT, Record};
use maskflow::digest::Digest;
use serde_json::{Value, json};

fn space() -> Space {
    let s = Space::new();
    s.write("p.mf", TINY);
    s
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn diff_of_b4_focal_lists_only_the_changed_gamma() {
    let s = Space::new();
    let original = repo_file("pipelines/b4_focal.mf");
    s.write("pipelines/b4_focal.mf", &original);
    // Change gamma, reorder the train block and add comments.
    let train_block = "train {\n    epochs = 10\n    batch = 32\n";
    assert!(original.contains(train_block));
    let edited = original
        .replace("gamma = 2.0", "gamma = 1.5  # softer focusing")
        .replace(train_block, "train {\n    # reordered\n    batch = 32\n    epochs = 10\n");
    s.write("b4_gamma.mf", &edited);
    let out = s.run(&["diff", "pipelines/b4_focal.mf", "b4_gamma.mf"]);
    assert_eq!(
        out.ok(),
        "\
--- pipelines/b4_focal.mf
+++ b4_gamma.mf

step      status  changes
source    shared
relabel   shared
split     shared
prepare   shared
train     rerun   loss.gamma 2.0 → 1.5
evaluate  rerun   (train changed)
predict   rerun   (train changed)

1 parameter changed; rerun: train, evaluate, predict; shared: source, relabel, split, prepare
"
    );
    let json: Value = serde_json::from_str(s.run(&["diff", "pipelines/b4_focal.mf", "b4_gamma.mf", "--json"]).ok()).unwrap();
    assert_eq!(
        json["changed_parameters"],
        json!([{"path": "loss.terms[0].kind.gamma", "old": 2.0, "new": 1.5, "text": "loss.gamma 2.0 → 1.5"}])
    );
    let states: Vec<(&str, &str)> =
        json["steps"].as_array().unwrap().iter().map(|s| (s["step"].as_str().unwrap(), s["state"].as_str().unwrap())).collect();
    assert_eq!(states[4], ("train", "rerun"));
    // --all also lists what did not change.
    let all = s.run(&["diff", "pipelines/b4_focal.mf", "b4_gamma.mf", "--all"]);
    let text = all.ok();
    assert!(
        text.contains("\nsplit     shared  scheme.kind = \"holdout\"\n                  scheme.val = 0.2\n                  seed = 42\n"),
        "{text}"
    );
    assert!(text.contains("\ntrain     rerun   loss.gamma 2.0 → 1.5\n"), "{text}");
    assert!(text.ends_with("\n1 parameter changed; rerun: train, evaluate, predict; shared: source, relabel, split, prepare\n"), "{text}");
}

#[test]
fn diff_against_git_head_and_a_revision() {
    let s = space();
    let git = |args: &[&str]| {
        let st = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        assert!(st.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&st.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "p.mf"]);
    git(&["commit", "-qm", "one"]);
    s.write("p.mf", &TINY.replace("seed = 42", "seed = 7"));
    git(&["commit", "-qam", "two"]);
    s.write("p.mf", &TINY.replace("seed = 42", "seed = 9").replace("epochs = 1", "epochs = 2"));
    let out = s.run(&["diff", "p.mf"]);
    let text = out.ok();
    assert!(text.starts_with("--- p.mf@HEAD\n+++ p.mf\n"), "{text}");
    assert!(text.contains("split     rerun   split.seed 7 → 9\n"), "{text}");
    assert!(
        text.contains(
            "train     rerun   train.epochs 1 → 2\n                  (split changed)\nevaluate  rerun   (split, train changed)\n"
        ),
        "{text}"
    );
    assert!(text.contains("\n2 parameters changed; rerun: split, train, evaluate; shared: source, relabel, prepare\n"), "{text}");
    let out = s.run(&["diff", "p.mf", "--rev", "HEAD~1"]);
    assert!(out.ok().contains("split     rerun   split.seed 42 → 9\n"), "{}", out.stdout);
    // The temporary copy is gone.
    let names: Vec<String> = std::fs::read_dir(s.dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
    assert!(!names.iter().any(|n| n.starts_with(".p.")), "{names:?}");
    assert!(s.run(&["diff", "p.mf", "--rev", "nope"]).fails().contains("git show nope:p.mf"));
}

fn lock(s: &Space) -> Value {
    serde_json::from_str(&s.read("p.mf.lock")).unwrap()
}

#[test]
fn run_writes_a_stable_sorted_lockfile() {
    let s = space();
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    let text = s.read("p.mf.lock");
    let value: Value = serde_json::from_str(&text).unwrap();
    // Sorted keys at every level, pretty: re-serialising the parsed value gives the same text.
    assert_eq!(text, serde_json::to_string_pretty(&value).unwrap() + "\n");
    let steps = value["steps"].as_object().unwrap();
    assert_eq!(steps.keys().collect::<Vec<_>>(), ["relabel", "source", "split"]);
    let explain: Value = serde_json::from_str(s.run(&["explain", "p.mf", "split"]).ok()).unwrap();
    assert_eq!(steps["split"]["key"], explain["key"]);
    // `explain` lists what the key is computed from in the pipeline's own spelling.
    let inputs = explain["inputs"].as_array().unwrap();
    assert!(inputs.contains(&json!("split.seed = 42")) && inputs.contains(&json!("split.val = 0.2")), "{inputs:?}");
    let key = explain["key"].as_str().unwrap();
    let record: Value = serde_json::from_str(&s.read(&format!("cache/records/{}/{}.json", &key[..2], &key[2..]))).unwrap();
    assert_eq!(steps["split"]["outputs"]["split.json"], record["outputs"]["split.json"]["digest"]);
    assert_eq!(value["step_versions"]["train"], 6);
    assert_eq!(value["maskflow_version"], env!("CARGO_PKG_VERSION"));
    // A second run (all hits) leaves the same bytes.
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    assert_eq!(s.read("p.mf.lock"), text);
}

#[test]
fn locked_run_passes_after_a_comment_edit_and_fails_naming_the_change() {
    let s = space();
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    let before = s.read("p.mf.lock");
    s.write("p.mf", &format!("# a new comment\n{}", TINY.replace("val = 0.2; stratify = [gender]", "stratify = [gender]; val = 0.2")));
    let ok = s.run(&["run", "p.mf", "--until", "split", "--locked"]);
    assert_eq!(ok.step_lines(), ["hit source", "hit relabel", "hit split"]);
    s.write("p.mf", &TINY.replace("seed = 42", "seed = 7"));
    let failed = s.run(&["run", "p.mf", "--until", "split", "--locked"]);
    assert_eq!(
        failed.fails(),
        "error: p.mf.lock does not match p.mf (--locked):\n  split: pipeline changed: split.seed 42 → 7\nrun without --locked to update the lock\n"
    );
    assert_eq!(failed.stdout, "", "nothing ran");
    assert_eq!(s.read("p.mf.lock"), before, "--locked never rewrites the lock");
    // Without --locked, the run updates the lock, which then passes.
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    s.run(&["run", "p.mf", "--until", "split", "--locked"]).ok();
    assert_ne!(lock(&s)["steps"]["split"]["key"], serde_json::from_str::<Value>(&before).unwrap()["steps"]["split"]["key"]);
}

#[test]
fn locked_run_names_a_changed_data_manifest_and_a_missing_lock() {
    let s = Space::new();
    common::synth(&s, "d", 12, 2);
    s.write("p.mf", "data { root = \"d\" }\nsplit by person { val = 0.25; seed = 1 }\nmodel tiny_cnn {}\n");
    assert!(
        s.run(&["run", "p.mf", "--until", "split", "--locked"])
            .fails()
            .contains("p.mf.lock: no lockfile; run without --locked once to create it")
    );
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    let csv = s.read("d/train/train.csv");
    s.write("d/train/train.csv", &format!("{csv}\n"));
    let failed = s.run(&["run", "p.mf", "--until", "split", "--locked"]);
    assert_eq!(
        failed.fails(),
        "error: p.mf.lock does not match p.mf (--locked):\n  source: data manifest changed\n  downstream steps affected: relabel, split\nrun without --locked to update the lock\n"
    );
}

fn record_of(s: &Space, step: &str) -> (String, Value) {
    let explain: Value = serde_json::from_str(s.run(&["explain", "p.mf", step]).ok()).unwrap();
    let key = explain["key"].as_str().unwrap().to_string();
    let path = format!("cache/records/{}/{}.json", &key[..2], &key[2..]);
    let record = serde_json::from_str(&s.read(&path)).unwrap();
    (path, record)
}

#[test]
fn verify_reports_reproducible_data_steps() {
    let s = space();
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    let records_before = walk(&s.path("cache/records"));
    let out = s.run(&["verify", "p.mf", "--steps", "source,relabel,split"]);
    assert_eq!(out.ok(), "source: reproducible\nrelabel: reproducible\nsplit: reproducible\n3 steps verified: 3 reproducible, 0 not\n");
    assert_eq!(walk(&s.path("cache/records")), records_before, "verify writes no record");
    // Default: every step; those never run are reported and fail the command.
    let all = s.run(&["verify", "p.mf"]);
    all.fails();
    assert!(all.stdout.contains("prepare: not cached (no cached result; run it first)\n"), "{}", all.stdout);
    assert!(all.stdout.contains("train: not cached (no cached result; run it first)\n"), "{}", all.stdout);
    assert!(s.run(&["verify", "p.mf", "--steps", "nope"]).fails().starts_with("error: --steps: no step `nope`"));
}

#[test]
fn verify_fails_naming_the_step_when_a_cached_output_is_tampered_with() {
    let s = space();
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    let (_, record) = record_of(&s, "split");
    let digest = record["outputs"]["split.json"]["digest"].as_str().unwrap().to_string();
    let blob = format!("cache/objects/{}/{}", &digest[..2], &digest[2..]);
    s.write(&blob, "{\"folds\": []}");
    let out = s.run(&["verify", "p.mf", "--steps", "source,relabel,split"]);
    out.fails();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["source: reproducible", "relabel: reproducible"]);
    assert!(lines[2].starts_with(&format!("split: differs: split.json cached copy corrupt: {blob} (content hashes to ")), "{}", lines[2]);
    assert!(lines[2].ends_with("; the re-computed output matches the record"), "{}", lines[2]);
    assert_eq!(lines[3], "3 steps verified: 2 reproducible, 1 not");
}

#[test]
fn verify_names_the_output_whose_recomputed_digest_differs() {
    let s = space();
    s.run(&["run", "p.mf", "--until", "split"]).ok();
    // Point the split record at another (intact) object: the record now claims bytes that
    // re-execution does not produce.
    let (path, mut record) = record_of(&s, "split");
    let (_, relabel) = record_of(&s, "relabel");
    let real = record["outputs"]["split.json"]["digest"].as_str().unwrap().to_string();
    let other = relabel["outputs"]["relabel_report.json"].clone();
    record["outputs"]["split.json"] = other.clone();
    s.write(&path, &serde_json::to_string_pretty(&record).unwrap());
    let out = s.run(&["verify", "p.mf", "--steps", "split"]);
    out.fails();
    let other = other["digest"].as_str().unwrap();
    assert_eq!(
        out.stdout,
        format!("split: differs: split.json {} → {}\n1 step verified: 0 reproducible, 1 not\n", &other[..12], &real[..12])
    );
}

/// A fake evaluate record (evaluate does not execute in this build yet) with metrics and
/// `val_predictions.csv`, stored under the key the plan gives `step`.
fn fake_evaluation(s: &Space, pipeline: &str, metrics: Value, predictions: &str) {
    fake_step_evaluation(s, pipeline, "evaluate", metrics, predictions)
}

fn fake_step_evaluation(s: &Space, pipeline: &str, step: &str, metrics: Value, predictions: &str) {
    let explain: Value = serde_json::from_str(s.run(&["explain", pipeline, step]).ok()).unwrap();
    let mut cache = Cache::open(&s.path("cache")).unwrap();
    let preds = cache.put_bytes(predictions.as_bytes()).unwrap();
    let record = Record {
        format: RECORD_FORMAT,
        kind: "evaluate".into(),
        key: Digest::from_hex(explain["key"].as_str().unwrap()).unwrap(),
        key_object: explain["key_object"].clone(),
        key_text: String::new(),
        outputs: [("val_predictions.csv".to_string(), preds)].into_iter().collect(),
        metrics: Some(metrics),
        finished: "2026-11-28T00:00:00Z".into(),
        seconds: 1.0,
        maskflow_version: "0.1.0".into(),
    };
    cache.write_record(&record).unwrap();
}

fn predictions(right: &[bool]) -> String {
    let mut out = String::from("path,person,true,pred\n");
    for (i, r) in right.iter().enumerate() {
        let truth = i % 18;
        let pred = if *r { truth } else { (truth + 1) % 18 };
        out.push_str(&format!("p{}/{i}.jpg,p{},{truth},{pred}\n", i / 7, i / 7));
    }
    out
}

fn metrics_json(f1: f64, acc: f64, class0: f64) -> Value {
    json!({"macro_f1": f1, "accuracy": acc, "per_task": {"mask": 0.9, "gender": f1, "age": 0.5},
           "per_class": [{"class": 0, "precision": 1.0, "recall": 1.0, "f1": class0, "support": 3},
                         {"class": 1, "precision": 1.0, "recall": 1.0, "f1": 0.5, "support": 3}]})
}

#[test]
fn diff_shows_metrics_side_by_side_with_a_verdict_and_runs_lists_them() {
    let s = space();
    s.write("q.mf", &TINY.replace("epochs = 1", "epochs = 3"));
    let n = 30 * 7;
    fake_evaluation(&s, "p.mf", metrics_json(0.6, 0.7, 0.4), &predictions(&(0..n).map(|i| i % 2 == 0).collect::<Vec<_>>()));
    fake_evaluation(&s, "q.mf", metrics_json(0.8, 0.9, 0.9), &predictions(&(0..n).map(|i| i % 10 != 0).collect::<Vec<_>>()));
    let out = s.run(&["diff", "p.mf", "q.mf"]);
    let text = out.ok();
    assert!(
        text.contains(
            "\nmetrics of evaluate (old → new)\nmetric        old     new    delta\nmacro_f1   0.6000  0.8000  +0.2000\naccuracy   0.7000  0.9000  +0.2000\nmask f1    0.9000  0.9000  +0.0000\ngender f1  0.6000  0.8000  +0.2000\nage f1     0.5000  0.5000  +0.0000\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "\nper-class F1, largest change first\nclass            old     new    delta\nwear·M·<30    0.4000  0.9000  +0.5000\nwear·M·30–59  0.5000  0.5000  +0.0000\n"
        ),
        "{text}"
    );
    assert!(text.contains("(paired bootstrap over 30 val persons, 1000 resamples, seed 0): better\n"), "{text}");
    let json: Value = serde_json::from_str(s.run(&["diff", "p.mf", "q.mf", "--json"]).ok()).unwrap();
    assert_eq!(json["metrics"][0]["bootstrap"]["verdict"], "better");
    assert!(json["metrics"][0]["bootstrap"]["low"].as_f64().unwrap() > 0.0);

    let runs = s.run(&["runs", "p.mf", "q.mf"]);
    assert_eq!(
        runs.ok(),
        "\
pipeline  variant  fold  train.epochs  macro_f1  accuracy  mask_f1  gender_f1  age_f1
q.mf                     3               0.8000    0.9000   0.9000     0.8000  0.5000
p.mf                     1               0.6000    0.7000   0.9000     0.6000  0.5000
"
    );
    let csv = s.run(&["runs", "p.mf", "q.mf", "--csv"]);
    assert_eq!(csv.ok().lines().next().unwrap(), "pipeline,variant,fold,train.epochs,macro_f1,accuracy,mask_f1,gender_f1,age_f1");
    let rows: Value = serde_json::from_str(s.run(&["runs", "p.mf", "q.mf", "--json"]).ok()).unwrap();
    assert_eq!(rows[0]["params"], json!({"train.epochs": 3}));
    // The static page: the same table, the charts of the latest saved run inlined.
    s.write("saved/q/latest/evaluate/curves.svg", "<svg id=\"fake-curves\"></svg>");
    assert_eq!(s.run(&["runs", "p.mf", "q.mf", "--html"]).ok(), "wrote saved/index.html\n");
    let html = s.read("saved/index.html");
    assert!(html.contains("<tr><td>q.mf</td><td></td><td></td><td>3</td><td>0.8000</td>"), "{html}");
    assert!(html.contains("<h3>q/latest/evaluate/curves.svg</h3>\n<figure class=\"chart\" id=\"q/latest/evaluate/curves.svg\"><svg id=\"fake-curves\"></svg></figure>"), "{html}");
    assert!(!html.contains("http"), "no network references");
}

#[test]
fn diff_of_k_fold_versions_compares_each_fold_and_shows_mean_and_std() {
    let s = Space::new();
    let kfold = TINY.replace("val = 0.2", "folds = 2");
    s.write("a.mf", &kfold);
    s.write("b.mf", &kfold.replace("epochs = 1", "epochs = 2"));
    let all_right = predictions(&[true; 14]);
    for (file, f1s) in [("a.mf", [0.5, 0.7]), ("b.mf", [0.6, 0.6])] {
        for (fold, f1) in f1s.iter().enumerate() {
            fake_step_evaluation(&s, file, &format!("evaluate[fold={fold}]"), metrics_json(*f1, 0.5, 0.5), &all_right);
        }
    }
    let text = s.run(&["diff", "a.mf", "b.mf"]).ok().to_string();
    assert!(text.contains("\nmetrics of evaluate[fold=0] (old → new)\n"), "{text}");
    assert!(text.contains("\nmetrics of evaluate[fold=1] (old → new)\n"), "{text}");
    // Identical predictions on both sides: a zero-width interval.
    assert!(text.contains("macro-F1 delta +0.0000, 95% interval [+0.0000, +0.0000] (paired bootstrap over 2 val persons"), "{text}");
    assert!(text.contains(": within noise\n"), "{text}");
    // mean ± sample std: old 0.6 ± 0.1414, new 0.6 ± 0.
    assert!(
        text.ends_with("\nmacro-F1 over evaluations: old 0.6000 ± 0.1414 (n=2), new 0.6000 ± 0.0000 (n=2)\npage: saved/diff/a-vs-b.html\n"),
        "{text}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> =
        walkdir::WalkDir::new(dir).into_iter().flatten().filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect();
    v.sort();
    v
}
