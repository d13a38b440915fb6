//! Classification metrics over the 18 competition classes, with scikit-learn's semantics.
//!
//! The constraint this module keeps: `macro_f1` equals sklearn's
//! `f1_score(y_true, y_pred, average='macro')` with `labels` unspecified — the mean runs over
//! the sorted union of labels present in `y_true` or `y_pred`; a class absent from both does
//! not count, and a class predicted but never true has F1 0 (sklearn's default
//! `zero_division`). No burn here: metrics work on plain label slices.

use serde::Serialize;

use crate::data::labels::{NUM_CLASSES, class_digits};

/// Macro-averaged F1 over the labels present in `y_true` or `y_pred` (sklearn semantics).
/// Returns 0.0 for empty input. Labels may be any `u32`; pairs are taken up to the shorter slice.
pub fn macro_f1(y_true: &[u32], y_pred: &[u32]) -> f64 {
    let stats = LabelStats::new(y_true, y_pred);
    if stats.labels.is_empty() {
        return 0.0;
    }
    let sum: f64 = stats.labels.iter().map(|&l| stats.f1(l)).sum();
    sum / stats.labels.len() as f64
}

/// Fraction of positions where `y_true` and `y_pred` agree (0.0 for empty input).
pub fn accuracy(y_true: &[u32], y_pred: &[u32]) -> f64 {
    let n = y_true.len().min(y_pred.len());
    if n == 0 {
        return 0.0;
    }
    let hits = y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count();
    hits as f64 / n as f64
}

/// `m[t][p]` = number of samples of true class `t` predicted as `p`. Labels ≥ 18 are ignored.
pub fn confusion_matrix(y_true: &[u32], y_pred: &[u32]) -> [[u64; NUM_CLASSES]; NUM_CLASSES] {
    let mut m = [[0u64; NUM_CLASSES]; NUM_CLASSES];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        if (t as usize) < NUM_CLASSES && (p as usize) < NUM_CLASSES {
            m[t as usize][p as usize] += 1;
        }
    }
    m
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassScores {
    pub class: u32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of true samples of this class.
    pub support: u64,
}

/// Per-class scores for classes `0..NUM_CLASSES` (a zero denominator gives 0, as in sklearn).
pub fn per_class(y_true: &[u32], y_pred: &[u32]) -> Vec<ClassScores> {
    let stats = LabelStats::new(y_true, y_pred);
    (0..NUM_CLASSES as u32)
        .map(|c| ClassScores {
            class: c,
            precision: ratio(stats.tp(c), stats.tp(c) + stats.fp(c)),
            recall: ratio(stats.tp(c), stats.tp(c) + stats.fn_(c)),
            f1: stats.f1(c),
            support: stats.tp(c) + stats.fn_(c),
        })
        .collect()
}

/// Macro F1 of each sub-task, derived from `class = mask * 6 + gender * 3 + age`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct TaskF1 {
    /// 3-way: wear / incorrect / normal.
    pub mask: f64,
    /// 2-way: male / female.
    pub gender: f64,
    /// 3-way: <30 / 30–59 / ≥60 (with the configured cut-offs).
    pub age: f64,
}

/// Per-task macro F1 (sklearn semantics within each task).
pub fn task_f1(y_true: &[u32], y_pred: &[u32]) -> TaskF1 {
    let project = |ys: &[u32], f: fn((u32, u32, u32)) -> u32| -> Vec<u32> { ys.iter().map(|&c| f(class_digits(c))).collect() };
    TaskF1 {
        mask: macro_f1(&project(y_true, |t| t.0), &project(y_pred, |t| t.0)),
        gender: macro_f1(&project(y_true, |t| t.1), &project(y_pred, |t| t.1)),
        age: macro_f1(&project(y_true, |t| t.2), &project(y_pred, |t| t.2)),
    }
}

/// Everything an evaluation report needs, in one serialisable value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub n: usize,
    pub macro_f1: f64,
    pub accuracy: f64,
    pub per_task: TaskF1,
    pub per_class: Vec<ClassScores>,
    pub confusion: Vec<Vec<u64>>,
}

/// Computes the full [`Report`].
pub fn report(y_true: &[u32], y_pred: &[u32]) -> Report {
    Report {
        n: y_true.len().min(y_pred.len()),
        macro_f1: macro_f1(y_true, y_pred),
        accuracy: accuracy(y_true, y_pred),
        per_task: task_f1(y_true, y_pred),
        per_class: per_class(y_true, y_pred),
        confusion: confusion_matrix(y_true, y_pred).iter().map(|r| r.to_vec()).collect(),
    }
}

/// Index of the largest value (first one on ties; NaN never wins).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

/// Per-label true-positive / false-positive / false-negative counts.
struct LabelStats {
    /// Sorted union of labels seen in either slice.
    labels: Vec<u32>,
    counts: std::collections::BTreeMap<u32, [u64; 3]>,
}

impl LabelStats {
    fn new(y_true: &[u32], y_pred: &[u32]) -> Self {
        let mut counts = std::collections::BTreeMap::<u32, [u64; 3]>::new();
        for (&t, &p) in y_true.iter().zip(y_pred) {
            if t == p {
                counts.entry(t).or_default()[0] += 1;
            } else {
                counts.entry(p).or_default()[1] += 1;
                counts.entry(t).or_default()[2] += 1;
            }
        }
        LabelStats { labels: counts.keys().copied().collect(), counts }
    }
    fn get(&self, l: u32, i: usize) -> u64 {
        self.counts.get(&l).map_or(0, |c| c[i])
    }
    fn tp(&self, l: u32) -> u64 {
        self.get(l, 0)
    }
    fn fp(&self, l: u32) -> u64 {
        self.get(l, 1)
    }
    fn fn_(&self, l: u32) -> u64 {
        self.get(l, 2)
    }
    /// F1 = 2tp / (2tp + fp + fn); 0 when the denominator is 0.
    fn f1(&self, l: u32) -> f64 {
        let tp = self.tp(l);
        ratio(2 * tp, 2 * tp + self.fp(l) + self.fn_(l))
    }
}
