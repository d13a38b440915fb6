//! The metrics side of `maskflow diff`: macro-F1 semantics and the paired person bootstrap,
//! on synthetic prediction CSVs.

fn macro_f1(truth: &[usize], pred: &[usize]) -> f64 {
    let as_u32 = |v: &[usize]| v.iter().map(|&x| x as u32).collect::<Vec<_>>();
    maskflow::metrics::macro_f1(&as_u32(truth), &as_u32(pred))
}

use maskflow::report::metrics::{self, BootstrapError, Prediction, Verdict, paired_bootstrap, read_predictions};

/// A CSV of `persons` × 7 images whose prediction is right with probability `p_right`
/// (decided by a hash of (salt, person, image), so two CSVs with different salts make
/// independent errors).
fn csv(persons: usize, p_right: f64, salt: u64) -> String {
    let mut out = String::from("path,person,true,pred");
    for c in 0..18 {
        out.push_str(&format!(",p{c}"));
    }
    out.push('\n');
    for p in 0..persons {
        for i in 0..7u64 {
            let truth = (p * 7 + i as usize) % 18;
            let mut h = (salt ^ (p as u64) << 8 ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h ^= h >> 29;
            h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            h ^= h >> 32;
            let right = (h % 10_000) as f64 / 10_000.0 < p_right;
            let pred = if right { truth } else { (truth + 1 + (h as usize >> 20) % 17) % 18 };
            out.push_str(&format!("{p:04}/img{i}.jpg,{p:04},{truth},{pred}"));
            for c in 0..18 {
                out.push_str(if c == pred { ",0.9" } else { ",0.005" });
            }
            out.push('\n');
        }
    }
    out
}

fn preds(persons: usize, p_right: f64, salt: u64) -> Vec<Prediction> {
    read_predictions(csv(persons, p_right, salt).as_bytes(), "val_predictions.csv").unwrap()
}

#[test]
fn macro_f1_matches_scikit_learn() {
    // f1_score([0,1,2,0,1,2], [0,2,1,0,0,1], average="macro") == 0.2666…
    let f = macro_f1(&[0, 1, 2, 0, 1, 2], &[0, 2, 1, 0, 0, 1]);
    assert!((f - 0.26666666666666666).abs() < 1e-12, "{f}");
    // A label only predicted (never true) still counts, with F1 0.
    assert!((macro_f1(&[0, 0], &[0, 5]) - (2.0 / 3.0) / 2.0).abs() < 1e-12);
}

#[test]
fn a_clearly_better_version_is_better_and_the_reverse_is_worse() {
    let (weak, strong) = (preds(60, 0.5, 1), preds(60, 0.95, 2));
    let b = paired_bootstrap(&weak, &strong, 1000, 0).unwrap();
    assert_eq!(b.verdict, Verdict::Better, "{b:?}");
    assert!(b.low > 0.0 && b.low <= b.delta && b.delta <= b.high, "{b:?}");
    assert_eq!(b.persons, 60);
    let full_old = macro_f1(&weak.iter().map(|p| p.truth).collect::<Vec<_>>(), &weak.iter().map(|p| p.pred).collect::<Vec<_>>());
    assert!((b.old_macro_f1 - full_old).abs() < 1e-12);
    let r = paired_bootstrap(&strong, &weak, 1000, 0).unwrap();
    assert_eq!(r.verdict, Verdict::Worse, "{r:?}");
    assert!((r.delta + b.delta).abs() < 1e-12);
}

#[test]
fn same_quality_with_different_errors_is_within_noise_and_seeded() {
    let (a, b) = (preds(40, 0.8, 11), preds(40, 0.8, 12));
    let x = paired_bootstrap(&a, &b, 1000, 0).unwrap();
    assert_eq!(x.verdict, Verdict::WithinNoise, "{x:?}");
    assert!(x.low < 0.0 && x.high > 0.0);
    assert_eq!(paired_bootstrap(&a, &b, 1000, 0).unwrap(), x, "same seed, same interval");
    assert_ne!(paired_bootstrap(&a, &b, 1000, 1).unwrap().low, x.low, "the seed matters");
    // Identical predictions: a zero-width interval at 0.
    let same = paired_bootstrap(&a, &a, 200, 0).unwrap();
    assert_eq!((same.delta, same.low, same.high, same.verdict), (0.0, 0.0, 0.0, Verdict::WithinNoise));
}

#[test]
fn different_val_persons_give_no_interval() {
    let e = paired_bootstrap(&preds(10, 0.8, 1), &preds(12, 0.8, 1), 100, 0).unwrap_err();
    assert_eq!(e, BootstrapError::DifferentPersons { only_old: 0, only_new: 2 });
}

#[test]
fn a_bad_prediction_row_names_the_line() {
    let text = "path,person,true,pred\na.jpg,1,3,4\nb.jpg,1,3,18\n";
    let e = read_predictions(text.as_bytes(), "v.csv").unwrap_err();
    assert_eq!(format!("{e:#}"), "v.csv: line 3: `pred` is `18`, expected a class 0-17");
    let e = read_predictions(b"path,true,pred\n", "v.csv").unwrap_err();
    assert_eq!(format!("{e:#}"), "v.csv: line 1: no `person` column");
}

#[test]
fn per_class_deltas_are_sorted_by_size() {
    let old = serde_json::json!({"per_class": [{"class": 0, "f1": 0.5}, {"class": 1, "f1": 0.9}, {"class": 2, "f1": 0.4}]});
    let new = serde_json::json!({"per_class": [{"class": 0, "f1": 0.6}, {"class": 1, "f1": 0.6}, {"class": 2, "f1": 0.38}]});
    let names: Vec<String> = metrics::per_class_deltas(&old, &new, [30, 60]).into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["wear·M·30–59", "wear·M·<30", "wear·M·≥60"]);
}
