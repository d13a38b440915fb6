//! The normalised pipeline IR: what a `.mf` file *means*, with every default filled in,
//! every unit normalised and no trace of the source text.
//!
//! The front end (`lang`) produces it; the planner (`plan`) keys steps from it; the
//! executor hands parts of it to the ML libraries. Invariants that the rest of maskflow
//! relies on:
//! - No spans, comments or spellings: `0.5` and `5e-1` lower to the same `f64`, `15deg`
//!   and `0.2618rad` to degrees, `imagenet` to its mean and std numbers.
//! - Every field has a value (defaults are filled in here, not at use sites), so a key
//!   computed from the IR changes when a default changes.
//! - Collections whose order carries no meaning are sorted (`BTreeMap`, sorted `Vec`s);
//!   those whose order does (augmentation ops, loss terms) keep the order written.
//! - Serialisation is deterministic: serde_json over these types with sorted map keys.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One fully expanded experiment (one sweep variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub data: Data,
    pub relabel: Relabel,
    pub split: Split,
    pub prepare: Prepare,
    pub augment: Augment,
    pub oversample: Vec<Oversample>,
    pub model: Model,
    pub loss: Loss,
    pub train: Train,
    pub evaluate: Evaluate,
    pub predict: Option<Predict>,
    pub ensemble: Option<Ensemble>,
}

// ---------------------------------------------------------------- data

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    pub source: Source,
    /// Age bin lower bounds: `[30, 60]` means <30 → 0, 30..60 → 1, ≥60 → 2.
    pub age_bins: [u32; 2],
    pub on_bad_image: BadImagePolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A directory in the competition layout: `<root>/train/train.csv`, `<root>/train/images/`,
    /// and `<eval>` (default `<root>/eval`) with `info.csv` and `images/`.
    Dir { root: String, eval: Option<String> },
    /// maskflow's synthetic generator, materialised in the cache as a step of its own.
    Synthetic {
        persons: u32,
        eval_persons: u32,
        seed: u64,
        /// Image size (W, H); the competition's is 384×512.
        size: [u32; 2],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    Error,
    Skip,
}

// ---------------------------------------------------------------- relabel

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relabel {
    /// Per-person fixes, keyed by the person id as written in train.csv (`001498-1`).
    pub fixes: BTreeMap<String, PersonFix>,
    /// An optional CSV of fixes (`id,field,value`); its content digest enters the key.
    pub csv: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonFix {
    pub gender: Option<Gender>,
    pub age: Option<u32>,
    /// The person's `incorrect_mask` and `normal` photos are swapped.
    pub swap_incorrect_normal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Male,
    Female,
}

// ---------------------------------------------------------------- split

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub scheme: SplitScheme,
    /// Person attributes to stratify on, sorted and deduplicated.
    pub stratify: Vec<StratifyKey>,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitScheme {
    /// One train/val split; `val` is the fraction of persons in val, in (0, 1).
    Holdout { val: f64 },
    /// K folds; every fold is trained and evaluated as its own variant.
    Kfold { k: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StratifyKey {
    Gender,
    Age,
}

// ---------------------------------------------------------------- prepare

/// Decoding and resizing done once, cached as a uint8 shard at the working resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prepare {
    /// Working resolution (W, H).
    pub size: [u32; 2],
    pub crop: Crop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Crop {
    None,
    /// A centred (W, H) crop of the source image before resizing.
    Center {
        size: [u32; 2],
    },
    /// A crop around the expected face region (upper-centre of the frame).
    Face,
}

// ---------------------------------------------------------------- augment

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Ops applied to training samples, in order.
    pub train: Vec<Op>,
    /// Ops applied to val/eval samples, in order.
    pub eval: Vec<Op>,
}

/// A per-sample augmentation op. Angles are degrees; probabilities are in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Resize {
        size: [u32; 2],
    },
    RandomResizedCrop {
        size: [u32; 2],
        scale: [f64; 2],
        ratio: [f64; 2],
    },
    CenterCrop {
        size: [u32; 2],
    },
    Hflip {
        p: f64,
    },
    /// Rotation by a uniform angle in [-degrees, degrees] (a fixed angle when `random` is false).
    Rotate {
        degrees: f64,
        random: bool,
    },
    Jitter {
        brightness: f64,
        contrast: f64,
        saturation: f64,
    },
    Normalize {
        mean: [f64; 3],
        std: [f64; 3],
    },
    RandomErasing {
        p: f64,
        scale: [f64; 2],
        ratio: [f64; 2],
    },
}

// ---------------------------------------------------------------- oversample

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oversample {
    /// All clauses must hold (a conjunction).
    pub predicate: Vec<Clause>,
    /// Extra copies of each matching train sample.
    pub copies: u32,
    /// Per-copy transforms: copy `i` applies `with[i % with.len()]` (none when empty).
    pub with: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clause {
    pub field: LabelField,
    pub cmp: Cmp,
    pub value: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelField {
    /// 0 wear, 1 incorrect, 2 normal.
    Mask,
    /// 0 male, 1 female.
    Gender,
    /// The age class after binning (0, 1, 2).
    Age,
    /// The raw age in years.
    Years,
    /// The 18-way class.
    Class,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// One of [`MODEL_NAMES`].
    pub arch: String,
    /// Local timm-named safetensors; its content digest enters the train key.
    pub pretrained: Option<String>,
    pub heads: Heads,
    pub dropout: f64,
    pub drop_path: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Heads {
    /// One 18-way classifier.
    Single,
    /// One backbone, three heads (mask 3, gender 2, age 3) combined into 18 classes.
    Multi { weights: TaskWeights },
    /// Three separate models, one per task, combined at predict time.
    Separate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskWeights {
    pub mask: f64,
    pub gender: f64,
    pub age: f64,
}

// ---------------------------------------------------------------- loss

/// A weighted sum of loss terms (one term with weight 1 for a plain loss).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    pub terms: Vec<LossTerm>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossTerm {
    pub weight: f64,
    pub kind: LossKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossKind {
    CrossEntropy { smoothing: f64, class_weights: ClassWeights },
    Focal { gamma: f64, alpha: ClassWeights },
    SoftF1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "values", rename_all = "snake_case")]
pub enum ClassWeights {
    None,
    /// Inverse class frequency over the train side of the split.
    Auto,
    PerClass(Vec<f64>),
}

// ---------------------------------------------------------------- train

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    pub epochs: u32,
    pub batch: u32,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    /// Gradient-norm clipping; `None` for no clipping.
    pub grad_clip: Option<f64>,
    /// Probability of applying CutMix to a batch.
    pub cutmix: f64,
    /// Probability of applying MixUp to a batch.
    pub mixup: f64,
    /// Stop after this many epochs without a val macro-F1 improvement.
    pub early_stop: Option<u32>,
    pub seed: u64,
    pub backend: Backend,
    /// The float type of the model's tensors on the device; f16 and bf16 only on a GPU backend.
    pub precision: Precision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    Sgd { lr: f64, momentum: f64, nesterov: bool, weight_decay: f64 },
    Adam { lr: f64, betas: [f64; 2], eps: f64, weight_decay: f64 },
    Adamw { lr: f64, betas: [f64; 2], eps: f64, weight_decay: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Warm-up and decay lengths are in epochs.
    Constant {
        warmup: u32,
    },
    Step {
        warmup: u32,
        every: u32,
        gamma: f64,
    },
    Cosine {
        warmup: u32,
        min_lr: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// burn-flex on the CPU.
    Cpu,
    /// burn-cuda; needs a build with `--features cuda`.
    Cuda,
    /// burn-wgpu (Vulkan, Metal, DX12; lavapipe on a machine without a GPU); in the default
    /// build, not in a `--no-default-features` one.
    Wgpu,
}

// ---------------------------------------------------------------- evaluate, predict, ensemble

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    pub tta: Tta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tta {
    None,
    Hflip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predict {
    pub tta: Tta,
    /// File name of the submission under `saved/<pipeline>/<run>/`.
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ensemble {
    /// Member pipelines, as paths relative to the ensembling pipeline's file.
    pub members: Vec<String>,
    pub vote: Vote,
    /// Per-member weights for soft voting (all 1 by default).
    pub weights: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    Soft,
    Hard,
}

// ---------------------------------------------------------------- registries

/// Model architectures maskflow knows: the model library's list, so the checker and the
/// trainer can never disagree. `tiny_cnn` and `efficientnet_nano` are small fast models for
/// tests and the quick-start; the rest match timm's `efficientnet_b*`.
pub const MODEL_NAMES: &[&str] = &crate::model::ARCHS;

pub const LOSS_NAMES: &[&str] = &["cross_entropy", "focal", "soft_f1"];
pub const OPTIMIZER_NAMES: &[&str] = &["sgd", "adam", "adamw"];
pub const SCHEDULE_NAMES: &[&str] = &["constant", "step", "cosine"];
pub const OP_NAMES: &[&str] = &["resize", "random_resized_crop", "center_crop", "hflip", "rotate", "jitter", "normalize", "random_erasing"];

pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// A pipeline after sweep expansion: one entry per variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Empty for a pipeline without sweeps; otherwise a stable label such as
    /// `train.optimizer.lr=0.001,split.seed=7`, built from the swept paths in source order.
    pub name: String,
    /// The swept path → chosen value (rendered in canonical `.mf` spelling).
    pub assignments: BTreeMap<String, String>,
    pub pipeline: Pipeline,
}
