//! Classifiers for the 18 competition classes, built from a plain [`ModelSpec`].
//!
//! The constraint this module keeps: every head produces 18-class log-probabilities in the
//! order `class = mask * 6 + gender * 3 + age`. `Single` predicts them directly; `Multi` and
//! `Separate` predict the three tasks and combine them as
//! `log p(class) = log p(mask) + log p(gender) + log p(age)` (tasks assumed independent).
//! Backbones are timm-compatible EfficientNets (`efficientnet.rs`) or small test models.

pub mod batchnorm;
pub mod digest;
pub mod dtype;
pub mod efficientnet;
pub mod fused;
pub mod timm;
pub mod tiny;

use anyhow::{Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::data::labels::{AGE_CLASSES, GENDER_CLASSES, MASK_CLASSES, NUM_CLASSES, TASK_CLASSES};
pub use digest::weights_digest;
pub use dtype::to_device_float;
pub use efficientnet::{EfficientNet, EfficientNetConfig};
pub use fused::{ModelBackend, TrainBackend};
pub use timm::{CheckReport, LoadReport, check_weights, check_weights_with, load_pretrained, load_timm_weights};
pub use tiny::TinyCnn;

/// Every architecture name [`ModelSpec::arch`] accepts.
pub const ARCHS: [&str; 10] = [
    "tiny_cnn",
    "efficientnet_nano",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
];

/// How the 18 classes are predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// One 18-way classifier.
    Single,
    /// One backbone with three task heads (3 + 2 + 3 logits).
    Multi,
    /// Three backbones, one per task.
    Separate,
}

/// What to build: an architecture from [`ARCHS`], a head, and regularisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: String,
    pub head: HeadKind,
    /// Classifier dropout; `None` takes the architecture's timm default.
    pub dropout: Option<f64>,
    /// Maximum drop-path (stochastic depth) rate; timm scales it linearly over the blocks.
    pub drop_path: f64,
}

impl ModelSpec {
    pub fn new(arch: &str, head: HeadKind) -> Self {
        ModelSpec { arch: arch.to_string(), head, dropout: None, drop_path: 0.0 }
    }

    /// Builds the classifier with freshly initialised weights (seed the backend first).
    pub fn build<B: Backend>(&self, device: &B::Device) -> Result<Classifier<B>> {
        if let Some(p) = self.dropout
            && !(0.0..1.0).contains(&p)
        {
            bail!("dropout must be in [0, 1), got {p}");
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            bail!("drop_path must be in [0, 1), got {}", self.drop_path);
        }
        let net = |classes| build_backbone::<B>(&self.arch, classes, self.dropout, self.drop_path, device);
        Ok(match self.head {
            HeadKind::Single => Classifier::Single(net(NUM_CLASSES)?),
            HeadKind::Multi => Classifier::Multi(net(TASK_CLASSES.iter().sum())?),
            HeadKind::Separate => {
                Classifier::Separate(SeparateNets { mask: net(MASK_CLASSES)?, gender: net(GENDER_CLASSES)?, age: net(AGE_CLASSES)? })
            }
        })
    }
}

/// A backbone with its own linear classifier.
// Models are built a handful of times per run; the variant size difference is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone<B: Backend> {
    EfficientNet(EfficientNet<B>),
    Tiny(TinyCnn<B>),
}

impl<B: ModelBackend> Backbone<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Backbone::EfficientNet(m) => m.forward(x),
            Backbone::Tiny(m) => m.forward(x),
        }
    }
}

/// Builds one backbone; `dropout` `None` takes the architecture's default.
pub fn build_backbone<B: Backend>(
    arch: &str,
    classes: usize,
    dropout: Option<f64>,
    drop_path: f64,
    device: &B::Device,
) -> Result<Backbone<B>> {
    if arch == "tiny_cnn" {
        return Ok(Backbone::Tiny(TinyCnn::new(classes, dropout.unwrap_or(0.0), device)));
    }
    let Some(cfg) = EfficientNetConfig::by_name(arch) else {
        bail!("unknown architecture {arch:?}; known: {}", ARCHS.join(", "));
    };
    Ok(Backbone::EfficientNet(cfg.init(classes, dropout.unwrap_or(cfg.dropout), drop_path, device)))
}

#[derive(Module, Debug)]
pub struct SeparateNets<B: Backend> {
    pub mask: Backbone<B>,
    pub gender: Backbone<B>,
    pub age: Backbone<B>,
}

/// The trainable model: one of the three head layouts.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Classifier<B: Backend> {
    Single(Backbone<B>),
    Multi(Backbone<B>),
    Separate(SeparateNets<B>),
}

/// Per-task log-probabilities (`[N, 3]`, `[N, 2]`, `[N, 3]`).
#[derive(Debug, Clone)]
pub struct TaskLogProbs<B: Backend> {
    pub mask: Tensor<B, 2>,
    pub gender: Tensor<B, 2>,
    pub age: Tensor<B, 2>,
}

/// A forward pass: 18-class log-probabilities, plus the task ones for multi-task heads.
#[derive(Debug, Clone)]
pub struct Output<B: Backend> {
    pub log_probs: Tensor<B, 2>,
    pub tasks: Option<TaskLogProbs<B>>,
}

impl<B: Backend> Classifier<B> {
    pub fn head_kind(&self) -> HeadKind {
        match self {
            Classifier::Single(_) => HeadKind::Single,
            Classifier::Multi(_) => HeadKind::Multi,
            Classifier::Separate(_) => HeadKind::Separate,
        }
    }

    /// `[N, 3, H, W]` normalised images → log-probabilities.
    pub fn forward(&self, x: Tensor<B, 4>) -> Output<B>
    where
        B: ModelBackend,
    {
        match self {
            Classifier::Single(net) => Output { log_probs: log_softmax(net.forward(x), 1), tasks: None },
            Classifier::Multi(net) => {
                let logits = net.forward(x);
                let (m, g) = (MASK_CLASSES, GENDER_CLASSES);
                let tasks = TaskLogProbs {
                    mask: log_softmax(logits.clone().narrow(1, 0, m), 1),
                    gender: log_softmax(logits.clone().narrow(1, m, g), 1),
                    age: log_softmax(logits.narrow(1, m + g, AGE_CLASSES), 1),
                };
                Output { log_probs: combine_tasks(&tasks), tasks: Some(tasks) }
            }
            Classifier::Separate(nets) => {
                let tasks = TaskLogProbs {
                    mask: log_softmax(nets.mask.forward(x.clone()), 1),
                    gender: log_softmax(nets.gender.forward(x.clone()), 1),
                    age: log_softmax(nets.age.forward(x), 1),
                };
                Output { log_probs: combine_tasks(&tasks), tasks: Some(tasks) }
            }
        }
    }
}

/// `log p(class) = log p(mask) + log p(gender) + log p(age)`, laid out as
/// `class = mask * 6 + gender * 3 + age` (row-major over (mask, gender, age)).
pub fn combine_tasks<B: Backend>(t: &TaskLogProbs<B>) -> Tensor<B, 2> {
    let n = t.mask.dims()[0];
    let m = t.mask.clone().reshape([n, MASK_CLASSES, 1, 1]);
    let g = t.gender.clone().reshape([n, 1, GENDER_CLASSES, 1]);
    let a = t.age.clone().reshape([n, 1, 1, AGE_CLASSES]);
    (m + g + a).reshape([n, NUM_CLASSES])
}

/// Size facts about an architecture, for `maskflow model info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub arch: String,
    pub classes: usize,
    /// Trainable parameters (BatchNorm running statistics excluded), as timm counts them.
    pub params: usize,
    /// The architecture's default square input size.
    pub default_input: usize,
    /// The architecture's default classifier dropout.
    pub default_dropout: f64,
}

/// Parameter count and defaults of `arch` with a `classes`-way classifier, computed without
/// allocating the weights.
pub fn info(arch: &str, classes: usize) -> Result<ModelInfo> {
    if classes == 0 {
        bail!("classes must be at least 1");
    }
    let (params, default_input, default_dropout) = if arch == "tiny_cnn" {
        (tiny::count_params(classes), 64, 0.0)
    } else if let Some(cfg) = EfficientNetConfig::by_name(arch) {
        (cfg.count_params(classes), cfg.input_size, cfg.dropout)
    } else {
        bail!("unknown architecture {arch:?}; known: {}", ARCHS.join(", "));
    };
    Ok(ModelInfo { arch: arch.to_string(), classes, params, default_input, default_dropout })
}

/// Counts a module's trainable parameters: every float tensor except BatchNorm running stats.
pub fn count_trainable<B: Backend, M: Module<B>>(module: &M) -> usize {
    struct Counter {
        path: Vec<String>,
        total: usize,
    }
    impl<B: Backend> ModuleVisitor<B> for Counter {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let running = self.path.last().is_some_and(|n| n == "running_mean" || n == "running_var");
            if !running {
                self.total += param.lazy_shape().num_elements();
            }
        }
    }
    let mut counter = Counter { path: Vec::new(), total: 0 };
    module.visit(&mut counter);
    counter.total
}
