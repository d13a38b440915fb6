//! Comparing two evaluations: metric deltas and a paired, person-level bootstrap of the
//! macro-F1 delta.
//!
//! Constraint kept: the interval resamples *persons*, never images, because the 7 photos of a
//! person are not independent; and it pairs the two versions on the same resampled persons,
//! so it is only computed when both were evaluated on the same val persons. Resampling is
//! seeded, so the same inputs always print the same interval.
//!
//! `macro_f1` follows scikit-learn's `f1_score(average="macro")`: the mean over the labels
//! present in the truth or the predictions. (It lives here until `crate::metrics` is merged.)

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;

/// The number of classes (mask × gender × age).
pub const CLASSES: usize = crate::data::labels::NUM_CLASSES;

/// One row of `val_predictions.csv` (`path,person,true,pred,p0,…,p17`).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub path: String,
    pub person: String,
    pub truth: usize,
    pub pred: usize,
}

/// Parses `val_predictions.csv`. `what` names the file in errors, which give the 1-based line.
pub fn read_predictions(bytes: &[u8], what: &str) -> Result<Vec<Prediction>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let headers = reader.headers().with_context(|| format!("{what}: cannot read the header"))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name).with_context(|| format!("{what}: line 1: no `{name}` column"));
    let (path, person, truth, pred) = (col("path")?, col("person")?, col("true")?, col("pred")?);
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.with_context(|| format!("{what}: line {line}: unreadable row"))?;
        let class = |c: usize, name: &str| -> Result<usize> {
            let text = row.get(c).unwrap_or("");
            match text.trim().parse::<usize>() {
                Ok(v) if v < CLASSES => Ok(v),
                _ => bail!("{what}: line {line}: `{name}` is `{text}`, expected a class 0-{}", CLASSES - 1),
            }
        };
        out.push(Prediction {
            path: row.get(path).unwrap_or("").to_string(),
            person: row.get(person).unwrap_or("").to_string(),
            truth: class(truth, "true")?,
            pred: class(pred, "pred")?,
        });
    }
    Ok(out)
}

/// Per-class true positives, false positives and false negatives.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Counts {
    tp: [u32; CLASSES],
    fp: [u32; CLASSES],
    fn_: [u32; CLASSES],
}

impl Counts {
    fn add(&mut self, truth: usize, pred: usize) {
        if truth == pred {
            self.tp[truth] += 1;
        } else {
            self.fp[pred] += 1;
            self.fn_[truth] += 1;
        }
    }

    fn merge(&mut self, other: &Counts) {
        for c in 0..CLASSES {
            self.tp[c] += other.tp[c];
            self.fp[c] += other.fp[c];
            self.fn_[c] += other.fn_[c];
        }
    }

    fn macro_f1(&self) -> f64 {
        let mut sum = 0.0;
        let mut labels = 0;
        for c in 0..CLASSES {
            let (tp, fp, fn_) = (self.tp[c] as f64, self.fp[c] as f64, self.fn_[c] as f64);
            if tp + fp + fn_ == 0.0 {
                continue; // absent from truth and predictions: not averaged over
            }
            labels += 1;
            sum += 2.0 * tp / (2.0 * tp + fp + fn_);
        }
        if labels == 0 { 0.0 } else { sum / labels as f64 }
    }
}

/// Macro-F1 over the labels present in `truth` or `pred` (scikit-learn semantics).
/// Macro-F1 from summed confusion counts: the same number as [`crate::metrics::macro_f1`],
/// computed from per-person counts so that each bootstrap resample costs a sum, not a pass
/// over every image.
#[cfg(test)]
fn counts_macro_f1(truth: &[usize], pred: &[usize]) -> f64 {
    let mut counts = Counts::default();
    for (&t, &p) in truth.iter().zip(pred) {
        counts.add(t.min(CLASSES - 1), p.min(CLASSES - 1));
    }
    counts.macro_f1()
}

fn per_person(preds: &[Prediction]) -> BTreeMap<&str, Counts> {
    let mut map: BTreeMap<&str, Counts> = BTreeMap::new();
    for p in preds {
        map.entry(p.person.as_str()).or_default().add(p.truth, p.pred);
    }
    map
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    Worse,
    WithinNoise,
}

impl Verdict {
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::WithinNoise => "within noise",
        }
    }
}

/// A paired bootstrap of `new − old` macro-F1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bootstrap {
    pub old_macro_f1: f64,
    pub new_macro_f1: f64,
    /// `new − old` on the full val set.
    pub delta: f64,
    /// The 2.5th and 97.5th percentiles of the resampled deltas.
    pub low: f64,
    pub high: f64,
    pub resamples: usize,
    pub persons: usize,
    pub seed: u64,
    pub verdict: Verdict,
}

/// Why a bootstrap could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BootstrapError {
    #[error("the two versions were evaluated on different val persons ({only_old} only in the old, {only_new} only in the new)")]
    DifferentPersons { only_old: usize, only_new: usize },
    #[error("no predictions to compare")]
    Empty,
}

/// Resamples persons with replacement `resamples` times (seeded) and recomputes macro-F1 of
/// both versions on each resample. The verdict is `better`/`worse` when the 95% interval
/// excludes 0, else `within noise`.
pub fn paired_bootstrap(old: &[Prediction], new: &[Prediction], resamples: usize, seed: u64) -> Result<Bootstrap, BootstrapError> {
    let (a, b) = (per_person(old), per_person(new));
    let only_old = a.keys().filter(|k| !b.contains_key(*k)).count();
    let only_new = b.keys().filter(|k| !a.contains_key(*k)).count();
    if only_old + only_new > 0 {
        return Err(BootstrapError::DifferentPersons { only_old, only_new });
    }
    if a.is_empty() || resamples == 0 {
        return Err(BootstrapError::Empty);
    }
    let persons: Vec<(Counts, Counts)> = a.iter().map(|(k, ca)| (*ca, b[k])).collect();
    let total = |side: fn(&(Counts, Counts)) -> &Counts| {
        let mut c = Counts::default();
        persons.iter().for_each(|p| c.merge(side(p)));
        c.macro_f1()
    };
    let (old_f1, new_f1) = (total(|p| &p.0), total(|p| &p.1));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut deltas = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let (mut ca, mut cb) = (Counts::default(), Counts::default());
        for _ in 0..persons.len() {
            let (pa, pb) = &persons[rng.random_range(0..persons.len())];
            ca.merge(pa);
            cb.merge(pb);
        }
        deltas.push(cb.macro_f1() - ca.macro_f1());
    }
    deltas.sort_by(f64::total_cmp);
    let (low, high) = (percentile(&deltas, 2.5), percentile(&deltas, 97.5));
    let verdict = if low > 0.0 {
        Verdict::Better
    } else if high < 0.0 {
        Verdict::Worse
    } else {
        Verdict::WithinNoise
    };
    Ok(Bootstrap {
        old_macro_f1: old_f1,
        new_macro_f1: new_f1,
        delta: new_f1 - old_f1,
        low,
        high,
        resamples,
        persons: persons.len(),
        seed,
        verdict,
    })
}

/// Linear-interpolated percentile of sorted values (NumPy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// One metric of two evaluations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDelta {
    pub name: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
    pub delta: Option<f64>,
}

fn delta(name: String, old: Option<f64>, new: Option<f64>) -> MetricDelta {
    let d = match (old, new) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    MetricDelta { name, old, new, delta: d }
}

/// Headline metrics (macro-F1, accuracy, per-task F1) of two `metrics` values, in that order.
pub fn headline_deltas(old: &serde_json::Value, new: &serde_json::Value) -> Vec<MetricDelta> {
    let mut out = vec![
        delta("macro_f1".into(), old["macro_f1"].as_f64(), new["macro_f1"].as_f64()),
        delta("accuracy".into(), old["accuracy"].as_f64(), new["accuracy"].as_f64()),
    ];
    for task in ["mask", "gender", "age"] {
        let (a, b) = (old["per_task"][task].as_f64(), new["per_task"][task].as_f64());
        if a.is_some() || b.is_some() {
            out.push(delta(format!("{task} f1"), a, b));
        }
    }
    out
}

/// Per-class F1 of two `metrics` values, largest absolute change first (ties by class).
/// Per-class F1 changes, largest first, each class named in words (`wear·F·<30`) under the
/// age cut-offs `bins`.
pub fn per_class_deltas(old: &serde_json::Value, new: &serde_json::Value, bins: crate::data::labels::AgeBins) -> Vec<MetricDelta> {
    let by_class = |v: &serde_json::Value| -> BTreeMap<u64, f64> {
        v["per_class"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| Some((c["class"].as_u64()?, c["f1"].as_f64()?))).collect())
            .unwrap_or_default()
    };
    let (a, b) = (by_class(old), by_class(new));
    let mut classes: Vec<u64> = a.keys().chain(b.keys()).copied().collect();
    classes.sort();
    classes.dedup();
    let mut out: Vec<(u64, MetricDelta)> = classes
        .into_iter()
        .map(|c| (c, delta(crate::charts::class_name(c as usize, bins), a.get(&c).copied(), b.get(&c).copied())))
        .collect();
    out.sort_by(|(ca, x), (cb, y)| {
        let (x, y) = (x.delta.map_or(-1.0, f64::abs), y.delta.map_or(-1.0, f64::abs));
        y.total_cmp(&x).then(ca.cmp(cb))
    });
    out.into_iter().map(|(_, d)| d).collect()
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_macro_f1_equals_the_metrics_library() {
        // sklearn: f1_score([0,0,1,2],[0,1,1,1], average="macro") = (2/3 + 1/2 + 0) / 3
        let f = counts_macro_f1(&[0, 0, 1, 2], &[0, 1, 1, 1]);
        assert!((f - 7.0 / 18.0).abs() < 1e-12, "{f}");
        assert_eq!(counts_macro_f1(&[3, 3], &[3, 3]), 1.0);
        let truth = [0usize, 0, 1, 1, 2, 2, 5];
        let pred = [0usize, 1, 1, 1, 2, 0, 2];
        let as_u32 = |v: &[usize]| v.iter().map(|&x| x as u32).collect::<Vec<_>>();
        let reference = crate::metrics::macro_f1(&as_u32(&truth), &as_u32(&pred));
        assert!((counts_macro_f1(&truth, &pred) - reference).abs() < 1e-12);
        assert!((reference - 0.45).abs() < 1e-12);
    }
}
