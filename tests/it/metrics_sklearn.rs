//! maskflow's metrics against scikit-learn 1.9.1 numbers
//! (tests/fixtures/metrics/sklearn_reference.json, made by scripts/make_metrics_reference.py).

use maskflow::metrics;
use serde_json::Value;

fn cases() -> Vec<Value> {
    let text = include_str!("../fixtures/metrics/sklearn_reference.json");
    let doc: Value = serde_json::from_str(text).expect("reference JSON parses");
    doc["cases"].as_array().expect("cases array").clone()
}

fn labels(v: &Value) -> Vec<u32> {
    v.as_array().expect("label array").iter().map(|x| x.as_u64().expect("label") as u32).collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-12, "{what}: ours {a}, sklearn {b}");
}

#[test]
fn brief_example_is_0_45_not_0_10() {
    let y_true = [0, 0, 1, 1, 2, 2, 5];
    let y_pred = [0, 1, 1, 1, 2, 0, 2];
    close(metrics::macro_f1(&y_true, &y_pred), 0.45, "macro f1");
}

#[test]
fn macro_f1_and_accuracy_match_sklearn() {
    for case in cases() {
        let name = case["name"].as_str().unwrap_or("?").to_string();
        let (t, p) = (labels(&case["y_true"]), labels(&case["y_pred"]));
        close(metrics::macro_f1(&t, &p), case["macro_f1"].as_f64().unwrap(), &name);
        close(metrics::accuracy(&t, &p), case["accuracy"].as_f64().unwrap(), &name);
    }
}

#[test]
fn per_class_scores_match_sklearn() {
    for case in cases() {
        let (t, p) = (labels(&case["y_true"]), labels(&case["y_pred"]));
        let ours = metrics::per_class(&t, &p);
        assert_eq!(ours.len(), 18);
        for (c, s) in ours.iter().enumerate() {
            close(s.precision, case["precision"][c].as_f64().unwrap(), "precision");
            close(s.recall, case["recall"][c].as_f64().unwrap(), "recall");
            close(s.f1, case["f1"][c].as_f64().unwrap(), "f1");
            assert_eq!(s.support, case["support"][c].as_u64().unwrap());
        }
    }
}

#[test]
fn task_f1_matches_sklearn() {
    for case in cases() {
        let (t, p) = (labels(&case["y_true"]), labels(&case["y_pred"]));
        let tasks = metrics::task_f1(&t, &p);
        close(tasks.mask, case["tasks"]["mask"].as_f64().unwrap(), "mask");
        close(tasks.gender, case["tasks"]["gender"].as_f64().unwrap(), "gender");
        close(tasks.age, case["tasks"]["age"].as_f64().unwrap(), "age");
    }
}

#[test]
fn confusion_matrix_matches_sklearn() {
    for case in cases() {
        let (t, p) = (labels(&case["y_true"]), labels(&case["y_pred"]));
        let m = metrics::confusion_matrix(&t, &p);
        for (i, row) in m.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(*v, case["confusion"][i][j].as_u64().unwrap(), "cell {i},{j}");
            }
        }
    }
}

#[test]
fn empty_input_and_argmax() {
    assert_eq!(metrics::macro_f1(&[], &[]), 0.0);
    assert_eq!(metrics::accuracy(&[], &[]), 0.0);
    assert_eq!(metrics::argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
    assert_eq!(metrics::argmax(&[f32::NAN, 0.5, 0.2]), 1);
    assert_eq!(maskflow::data::labels::class_digits(17), (2, 1, 2));
    assert_eq!(maskflow::data::labels::class_digits(9), (1, 1, 0));
}
