//! Losses on log-probabilities with soft targets.
//!
//! The constraint this module keeps: every loss takes `log_probs` (`[N, K]`, the output of
//! `log_softmax`) and soft `targets` (`[N, K]`, rows summing to 1, as CutMix/MixUp produce)
//! and returns a scalar averaged over the batch. Multi-task heads get their targets as
//! marginals of the 18-class targets (`class = mask * 6 + gender * 3 + age`).

use anyhow::{Result, bail};
use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::data::labels::{AGE_CLASSES, GENDER_CLASSES, MASK_CLASSES, NUM_CLASSES, TASK_CLASSES, class_digits};
use crate::model::Output;

/// Per-class weights (cross-entropy) or alphas (focal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeights {
    /// All classes weigh 1.
    #[default]
    None,
    /// One weight per class of the loss it is used in (18 for a `Single` head).
    Given(Vec<f32>),
    /// sklearn's "balanced" weights `n / (k · count_c)` from 18-class training counts
    /// (k = classes with a non-zero count; absent classes weigh 0). Task heads use the
    /// counts marginalised to the task.
    InverseFrequency(Vec<u64>),
}

impl ClassWeights {
    /// The weight vector for a loss over `k` classes, where `task` says which marginal
    /// (`None` = the 18 classes, `Some(0|1|2)` = mask/gender/age).
    pub fn resolve(&self, k: usize, task: Option<usize>) -> Result<Option<Vec<f32>>> {
        match self {
            ClassWeights::None => Ok(None),
            ClassWeights::Given(w) => {
                if w.len() != k {
                    bail!("class weights: expected {k} values, got {}", w.len());
                }
                if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
                    bail!("class weights must be finite and non-negative");
                }
                Ok(Some(w.clone()))
            }
            ClassWeights::InverseFrequency(counts) => {
                if counts.len() != NUM_CLASSES {
                    bail!("inverse-frequency weights need {NUM_CLASSES} class counts, got {}", counts.len());
                }
                let counts = match task {
                    None => counts.clone(),
                    Some(t) => marginal_counts(counts, t),
                };
                Ok(Some(inverse_frequency(&counts)))
            }
        }
    }
}

/// sklearn's `compute_class_weight("balanced")` over the classes present; absent ones get 0.
pub fn inverse_frequency(counts: &[u64]) -> Vec<f32> {
    let total: u64 = counts.iter().sum();
    let present = counts.iter().filter(|c| **c > 0).count();
    counts.iter().map(|&c| if c == 0 { 0.0 } else { (total as f64 / (present as f64 * c as f64)) as f32 }).collect()
}

fn marginal_counts(counts: &[u64], task: usize) -> Vec<u64> {
    let mut out = vec![0u64; TASK_CLASSES[task]];
    for (class, &c) in counts.iter().enumerate() {
        let (m, g, a) = class_digits(class as u32);
        let idx = [m, g, a][task] as usize;
        out[idx] += c;
    }
    out
}

/// One loss function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LossKind {
    /// `-Σ_c w_c t'_c log p_c` with `t' = (1 - ε) t + ε / K` (PyTorch's soft-target formula).
    CrossEntropy {
        smoothing: f64,
        #[serde(default)]
        weights: ClassWeights,
    },
    /// `-Σ_c α_c (1 - p_c)^γ t_c log p_c`.
    Focal {
        gamma: f64,
        #[serde(default)]
        alpha: ClassWeights,
    },
    /// `1 - mean_c F1_c` with soft counts `tp = Σ p t`, `fp = Σ p (1 - t)`, `fn = Σ (1 - p) t`
    /// over the batch.
    SoftF1,
}

/// A weighted term of the total loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossTerm {
    pub loss: LossKind,
    pub weight: f64,
}

/// The training objective: a weighted sum of terms, applied to the 18-class output of a
/// `Single` head or to each task of a multi-task head (weighted by `head_weights`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub terms: Vec<LossTerm>,
    /// Weights of the mask, gender and age losses for `Multi`/`Separate` heads.
    pub head_weights: [f64; 3],
}

impl Default for LossConfig {
    /// Plain cross-entropy, no smoothing, equal heads.
    fn default() -> Self {
        LossConfig {
            terms: vec![LossTerm { loss: LossKind::CrossEntropy { smoothing: 0.0, weights: ClassWeights::None }, weight: 1.0 }],
            head_weights: [1.0, 1.0, 1.0],
        }
    }
}

impl LossConfig {
    /// Rejects configurations that could only fail later (wrong weight lengths, bad ranges).
    pub fn validate(&self, multi_task: bool) -> Result<()> {
        if self.terms.is_empty() {
            bail!("loss: at least one term is needed");
        }
        for term in &self.terms {
            if !term.weight.is_finite() {
                bail!("loss: term weight must be finite");
            }
            match &term.loss {
                LossKind::CrossEntropy { smoothing, weights } => {
                    if !(0.0..1.0).contains(smoothing) {
                        bail!("loss: label smoothing must be in [0, 1), got {smoothing}");
                    }
                    self.check_weights(weights, multi_task)?;
                }
                LossKind::Focal { gamma, alpha } => {
                    if !(*gamma >= 0.0 && gamma.is_finite()) {
                        bail!("loss: focal gamma must be ≥ 0, got {gamma}");
                    }
                    self.check_weights(alpha, multi_task)?;
                }
                LossKind::SoftF1 => {}
            }
        }
        Ok(())
    }

    fn check_weights(&self, w: &ClassWeights, multi_task: bool) -> Result<()> {
        if multi_task {
            if let ClassWeights::Given(_) = w {
                bail!("loss: given per-class weights need a single head; use inverse_frequency");
            }
            for (t, k) in TASK_CLASSES.iter().enumerate() {
                w.resolve(*k, Some(t))?;
            }
        } else {
            w.resolve(NUM_CLASSES, None)?;
        }
        Ok(())
    }

    /// The scalar loss of a forward pass against `[N, 18]` soft targets.
    pub fn compute<B: Backend>(&self, out: &Output<B>, targets: Tensor<B, 2>) -> Result<Tensor<B, 1>> {
        match &out.tasks {
            None => self.sum_terms(out.log_probs.clone(), targets, None),
            Some(tasks) => {
                let [tm, tg, ta] = task_targets(targets);
                let mut total = self.sum_terms(tasks.mask.clone(), tm, Some(0))?.mul_scalar(self.head_weights[0]);
                total = total + self.sum_terms(tasks.gender.clone(), tg, Some(1))?.mul_scalar(self.head_weights[1]);
                total = total + self.sum_terms(tasks.age.clone(), ta, Some(2))?.mul_scalar(self.head_weights[2]);
                Ok(total)
            }
        }
    }

    fn sum_terms<B: Backend>(&self, log_probs: Tensor<B, 2>, targets: Tensor<B, 2>, task: Option<usize>) -> Result<Tensor<B, 1>> {
        let k = log_probs.dims()[1];
        let device = log_probs.device();
        let to_tensor = |w: Option<Vec<f32>>| w.map(|w| Tensor::<B, 1>::from_floats(w.as_slice(), &device));
        let mut total: Option<Tensor<B, 1>> = None;
        for term in &self.terms {
            let value = match &term.loss {
                LossKind::CrossEntropy { smoothing, weights } => {
                    soft_cross_entropy(log_probs.clone(), targets.clone(), *smoothing, to_tensor(weights.resolve(k, task)?))
                }
                LossKind::Focal { gamma, alpha } => focal(log_probs.clone(), targets.clone(), *gamma, to_tensor(alpha.resolve(k, task)?)),
                LossKind::SoftF1 => soft_f1(log_probs.clone(), targets.clone()),
            }
            .mul_scalar(term.weight);
            total = Some(match total {
                None => value,
                Some(t) => t + value,
            });
        }
        total.ok_or_else(|| anyhow::anyhow!("loss: no terms"))
    }
}

/// Mask, gender and age targets as marginals of `[N, 18]` targets.
pub fn task_targets<B: Backend>(targets: Tensor<B, 2>) -> [Tensor<B, 2>; 3] {
    let n = targets.dims()[0];
    let t = targets.reshape([n, MASK_CLASSES, GENDER_CLASSES, AGE_CLASSES]);
    [
        t.clone().sum_dim(3).sum_dim(2).reshape([n, MASK_CLASSES]),
        t.clone().sum_dim(3).sum_dim(1).reshape([n, GENDER_CLASSES]),
        t.sum_dim(2).sum_dim(1).reshape([n, AGE_CLASSES]),
    ]
}

/// Soft-target cross-entropy with label smoothing and optional per-class weights, mean over N.
pub fn soft_cross_entropy<B: Backend>(
    log_probs: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    smoothing: f64,
    weights: Option<Tensor<B, 1>>,
) -> Tensor<B, 1> {
    let [n, k] = log_probs.dims();
    let targets = if smoothing > 0.0 { targets.mul_scalar(1.0 - smoothing).add_scalar(smoothing / k as f64) } else { targets };
    let mut per_class = targets * log_probs;
    if let Some(w) = weights {
        per_class = per_class * w.reshape([1, k]).repeat_dim(0, n);
    }
    per_class.sum_dim(1).mean().neg()
}

/// Focal loss `-Σ_c α_c (1 - p_c)^γ t_c log p_c`, mean over N.
pub fn focal<B: Backend>(log_probs: Tensor<B, 2>, targets: Tensor<B, 2>, gamma: f64, alpha: Option<Tensor<B, 1>>) -> Tensor<B, 1> {
    let [n, k] = log_probs.dims();
    let one_minus_p = log_probs.clone().exp().neg().add_scalar(1.0);
    // clamp: (1 - p) can round to a tiny negative, and a fractional power of it is NaN.
    let modulator = one_minus_p.clamp_min(0.0).powf_scalar(gamma as f32);
    let mut per_class = modulator * targets * log_probs;
    if let Some(a) = alpha {
        per_class = per_class * a.reshape([1, k]).repeat_dim(0, n);
    }
    per_class.sum_dim(1).mean().neg()
}

/// Soft macro-F1 loss `1 - mean_c 2tp / (2tp + fp + fn + ε)` over the batch.
pub fn soft_f1<B: Backend>(log_probs: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
    const EPS: f64 = 1e-7;
    let p = log_probs.exp();
    let tp = (p.clone() * targets.clone()).sum_dim(0);
    let fp = (p.clone() * targets.clone().neg().add_scalar(1.0)).sum_dim(0);
    let fn_ = (p.neg().add_scalar(1.0) * targets).sum_dim(0);
    let two_tp = tp.mul_scalar(2.0);
    let f1 = two_tp.clone() / (two_tp + fp + fn_).add_scalar(EPS);
    f1.mean().neg().add_scalar(1.0)
}
