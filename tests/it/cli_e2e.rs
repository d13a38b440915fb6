//! The whole pipeline, source → predict, on a tiny synthetic set, through the real binary.

use crate::common;
use common::Space;

const PIPE: &str = "\
data synthetic { persons = 40; eval_persons = 4; seed = 11; size = 48x64 }
split by person { val = 0.25; stratify = [gender] }
prepare { size = 24x32 }
model tiny_cnn { dropout = 0.0 }
train { epochs = 2; batch = 16; optimizer = adamw(lr = 3e-3); schedule = cosine(warmup = 0) }
predict { tta = hflip }
";

#[test]
fn full_pipeline_runs_then_hits_then_verifies() {
    let s = Space::new();
    s.write("p.mf", PIPE);
    let first = s.run(&["run", "p.mf"]);
    first.ok();
    let kinds: Vec<String> = first.step_lines().iter().map(|l| l.split(':').next().unwrap().to_string()).collect();
    assert_eq!(kinds, ["run source", "run relabel", "run split", "run prepare", "run train", "run evaluate", "run predict"]);
    // Results a person reads.
    let metrics: serde_json::Value = serde_json::from_str(&s.read("saved/p/latest/metrics.json")).unwrap();
    let f1 = metrics["macro_f1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&f1), "{metrics}");
    assert!(metrics["accuracy"].as_f64().is_some());
    let submission = s.read("saved/p/latest/submission.csv");
    let info = std::fs::read_dir(s.path("cache/trees")).unwrap().next().unwrap().unwrap().path().join("eval/info.csv");
    let info = std::fs::read_to_string(info).unwrap();
    assert_eq!(submission.lines().count(), info.lines().count(), "one answer per info.csv row");
    for (sub, inf) in submission.lines().zip(info.lines()).skip(1) {
        assert_eq!(sub.split(',').next(), inf.split(',').next(), "rows keep info.csv order");
        let ans: u32 = sub.split(',').nth(1).unwrap().parse().unwrap();
        assert!(ans < 18);
    }
    let preds = s.read("saved/p/latest/val_predictions.csv");
    assert!(preds.starts_with("path,person,true,pred,p0,"), "{}", &preds[..60]);
    assert!(s.path("saved/p/latest/confusion.svg").is_file());
    // Second run: all hits.
    let second = s.run(&["run", "p.mf"]);
    assert!(second.step_lines().iter().all(|l| l.starts_with("hit ")), "{}", second.stdout);
    // Every step recomputes to the same bytes.
    let verify = s.run(&["verify", "p.mf"]);
    assert!(verify.ok().contains("7 steps verified: 7 reproducible"), "{}", verify.stdout);
    // The synthetic eval labels score the submission.
    let labels = std::fs::read_dir(s.path("cache/trees")).unwrap().next().unwrap().unwrap().path().join("eval/labels.csv");
    let score = s.run(&["score", "saved/p/latest/submission.csv", "--labels", labels.to_str().unwrap()]);
    assert!(score.ok().starts_with("macro-F1 "), "{}", score.stdout);
}
