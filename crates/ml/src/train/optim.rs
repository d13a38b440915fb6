//! Optimisers (SGD, Adam, AdamW) behind one enum, and learning-rate schedules computed from the
//! global step.
//!
//! The constraint this module keeps: the learning rate is a pure function of the step (no
//! scheduler state), so a resumed run gets exactly the rates an uninterrupted one would; and the
//! optimiser state round-trips through a checkpoint file so resumed updates are bit-identical.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{Adam, AdamConfig, AdamW, AdamWConfig, GradientsParams, Optimizer, Sgd, SgdConfig};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};

/// Which optimiser, with its own hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimizerKind {
    /// SGD with optional momentum (dampening 0, as in PyTorch) and Nesterov.
    Sgd { momentum: f64, nesterov: bool },
    /// Adam with L2 weight decay added to the gradient.
    Adam { beta1: f32, beta2: f32, eps: f32 },
    /// AdamW with decoupled weight decay.
    AdamW { beta1: f32, beta2: f32, eps: f32 },
}

/// Optimiser settings shared by all kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub weight_decay: f64,
    /// Clip the global gradient L2 norm to this value (over all parameters together, as
    /// PyTorch's `clip_grad_norm_`; burn's own clipping works per tensor).
    pub grad_clip_norm: Option<f64>,
}

impl Default for OptimizerConfig {
    /// AdamW with PyTorch's defaults (eps 1e-8, weight decay 0.01), no clipping.
    fn default() -> Self {
        OptimizerConfig { kind: OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.01, grad_clip_norm: None }
    }
}

impl OptimizerConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            bail!("optimizer: weight decay must be ≥ 0");
        }
        if let Some(c) = self.grad_clip_norm
            && !(c > 0.0 && c.is_finite())
        {
            bail!("optimizer: gradient clipping norm must be > 0");
        }
        if let OptimizerKind::Sgd { momentum, .. } = self.kind
            && !(0.0..1.0).contains(&momentum)
        {
            bail!("optimizer: SGD momentum must be in [0, 1)");
        }
        Ok(())
    }

    /// Builds the optimiser for module type `M`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> AnyOptimizer<B, M> {
        let decay = (self.weight_decay > 0.0).then_some(WeightDecayConfig { penalty: self.weight_decay as f32 });
        let optimizer = match self.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                let momentum =
                    (momentum > 0.0).then(|| MomentumConfig::new().with_momentum(momentum).with_dampening(0.0).with_nesterov(nesterov));
                Kind::Sgd(SgdConfig::new().with_momentum(momentum).with_weight_decay(decay).init())
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                Kind::Adam(AdamConfig::new().with_beta_1(beta1).with_beta_2(beta2).with_epsilon(eps).with_weight_decay(decay).init())
            }
            OptimizerKind::AdamW { beta1, beta2, eps } => Kind::AdamW(
                AdamWConfig::new()
                    .with_beta_1(beta1)
                    .with_beta_2(beta2)
                    .with_epsilon(eps)
                    .with_weight_decay(self.weight_decay as f32)
                    .init(),
            ),
        };
        AnyOptimizer { optimizer, clip_norm: self.grad_clip_norm }
    }
}

/// One of the supported optimisers for module `M`, with global gradient-norm clipping.
pub struct AnyOptimizer<B: AutodiffBackend, M: AutodiffModule<B>> {
    optimizer: Kind<B, M>,
    clip_norm: Option<f64>,
}

enum Kind<B: AutodiffBackend, M: AutodiffModule<B>> {
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
    Adam(OptimizerAdaptor<Adam, M, B>),
    AdamW(OptimizerAdaptor<AdamW, M, B>),
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> AnyOptimizer<B, M> {
    pub fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        let grads = match self.clip_norm {
            Some(max) => clip_global_norm::<B, M>(&module, grads, max),
            None => grads,
        };
        match &mut self.optimizer {
            Kind::Sgd(o) => o.step(lr, module, grads),
            Kind::Adam(o) => o.step(lr, module, grads),
            Kind::AdamW(o) => o.step(lr, module, grads),
        }
    }

    /// Saves the optimiser state to `path` (burn adds `.mpk`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let r = match &self.optimizer {
            Kind::Sgd(o) => rec.record(o.to_record(), path.to_path_buf()),
            Kind::Adam(o) => rec.record(o.to_record(), path.to_path_buf()),
            Kind::AdamW(o) => rec.record(o.to_record(), path.to_path_buf()),
        };
        r.map_err(|e| anyhow!("{}: saving optimizer state: {e:?}", path.display()))
    }

    /// Loads the state saved by [`AnyOptimizer::save`] (same kind) from `path`.
    pub fn load(self, path: &Path, device: &B::Device) -> Result<Self> {
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let err = |e| anyhow!("{}: loading optimizer state: {e:?}", path.display());
        let clip_norm = self.clip_norm;
        let optimizer = match self.optimizer {
            Kind::Sgd(o) => Kind::Sgd(o.load_record(rec.load(path.to_path_buf(), device).map_err(err)?)),
            Kind::Adam(o) => Kind::Adam(o.load_record(rec.load(path.to_path_buf(), device).map_err(err)?)),
            Kind::AdamW(o) => Kind::AdamW(o.load_record(rec.load(path.to_path_buf(), device).map_err(err)?)),
        };
        Ok(AnyOptimizer { optimizer, clip_norm })
    }
}

/// Scales all gradients by `min(1, max / ‖g‖)`, ‖g‖ the L2 norm over every parameter's
/// gradient together (PyTorch's `clip_grad_norm_`).
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, mut grads: GradientsParams, max: f64) -> GradientsParams {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                self.total += g.square().sum().into_scalar().elem::<f64>();
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut sum = SumSquares { grads: &grads, total: 0.0 };
    module.visit(&mut sum);
    let norm = sum.total.sqrt();
    if norm.is_finite() && norm > max {
        let mut scale = Scale { grads: &mut grads, factor: max / (norm + 1e-6) };
        module.visit(&mut scale);
    }
    grads
}

/// How the learning rate evolves after warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ScheduleKind {
    Constant,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        every_epochs: usize,
        gamma: f64,
    },
    /// Half-cosine from the base rate down to `min_lr` at the last step.
    Cosine {
        min_lr: f64,
    },
}

/// Base rate, linear warm-up over `warmup_steps`, then `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub lr: f64,
    pub warmup_steps: usize,
    pub kind: ScheduleKind,
}

impl Schedule {
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("schedule: learning rate must be > 0, got {}", self.lr);
        }
        match self.kind {
            ScheduleKind::Step { every_epochs, gamma } if every_epochs == 0 || gamma.is_nan() || gamma <= 0.0 => {
                bail!("schedule: step needs every_epochs ≥ 1 and gamma > 0")
            }
            ScheduleKind::Cosine { min_lr } if !(min_lr >= 0.0 && min_lr <= self.lr) => {
                bail!("schedule: cosine min_lr must be in [0, lr]")
            }
            _ => Ok(()),
        }
    }

    /// The rate at global step `step` (0-based) of `total` steps, during epoch `epoch`.
    pub fn lr_at(&self, step: usize, epoch: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            ScheduleKind::Constant => self.lr,
            ScheduleKind::Step { every_epochs, gamma } => self.lr * gamma.powi((epoch / every_epochs.max(1)) as i32),
            ScheduleKind::Cosine { min_lr } => {
                let span = total.saturating_sub(self.warmup_steps).max(1);
                let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = Schedule { lr: 1e-3, warmup_steps: 4, kind: ScheduleKind::Cosine { min_lr: 1e-5 } };
        assert!((s.lr_at(0, 0, 104) - 2.5e-4).abs() < 1e-12);
        assert!((s.lr_at(3, 0, 104) - 1e-3).abs() < 1e-12);
        assert!((s.lr_at(4, 0, 104) - 1e-3).abs() < 1e-12);
        let mid = s.lr_at(54, 0, 104);
        assert!((mid - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-12);
        assert!((s.lr_at(104, 0, 104) - 1e-5).abs() < 1e-12);
    }

    #[test]
    fn step_decay() {
        let s = Schedule { lr: 0.1, warmup_steps: 0, kind: ScheduleKind::Step { every_epochs: 2, gamma: 0.5 } };
        assert_eq!(s.lr_at(0, 1, 10), 0.1);
        assert_eq!(s.lr_at(5, 2, 10), 0.05);
        assert_eq!(s.lr_at(9, 5, 10), 0.025);
    }
}
