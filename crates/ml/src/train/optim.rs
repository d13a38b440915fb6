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
use burn::optim::{
    Adam, AdamConfig, AdamWState, AdaptiveMomentumState, GradientsParams, LearningRate, Optimizer, Sgd, SgdConfig, SimpleOptimizer,
};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};
use serde::{Deserialize, Serialize};

use crate::model::fused::{AdamWStep, ModelBackend, TrainBackend};

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
    pub fn init<B: TrainBackend, M: AutodiffModule<B>>(&self) -> AnyOptimizer<B, M> {
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
            OptimizerKind::AdamW { beta1, beta2, eps } => Kind::AdamW(OptimizerAdaptor::from(FusedAdamW {
                beta_1: beta1,
                beta_2: beta2,
                epsilon: eps,
                weight_decay: self.weight_decay as f32,
            })),
        };
        AnyOptimizer { optimizer, clip_norm: self.grad_clip_norm }
    }
}

/// burn-optim 0.21's `AdamW` (no AMSGrad, no cautious weight decay), run as one
/// [`ModelBackend::fused_adamw`] per parameter instead of about fifteen tensor ops. Its state
/// is burn's [`AdamWState`], so optimiser checkpoints read and write as before; its updates
/// have burn's bits (a test steps both side by side).
#[derive(Clone)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl<B: ModelBackend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let prim = |t: Tensor<B, D>| t.into_primitive().tensor();
        let (time, moments) = match state {
            Some(s) => (s.momentum.time + 1, Some([prim(s.momentum.moment_1), prim(s.momentum.moment_2)])),
            None => (1, None),
        };
        let t = time as i32;
        let step = AdamWStep {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            correction_1: 1f32 - self.beta_1.powi(t),
            correction_2: 1f32 - self.beta_2.powi(t),
            lr,
            decay_rate: lr * self.weight_decay as f64,
        };
        let [param, moment_1, moment_2] = B::fused_adamw(prim(tensor), prim(grad), moments, &step);
        let float = |t| Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t));
        let momentum = AdaptiveMomentumState { time, moment_1: float(moment_1), moment_2: float(moment_2), max_moment_2: None };
        (float(param), Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &burn::tensor::Device<B>) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// One of the supported optimisers for module `M`, with global gradient-norm clipping.
pub struct AnyOptimizer<B: TrainBackend, M: AutodiffModule<B>> {
    optimizer: Kind<B, M>,
    clip_norm: Option<f64>,
}

enum Kind<B: TrainBackend, M: AutodiffModule<B>> {
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
    Adam(OptimizerAdaptor<Adam, M, B>),
    AdamW(OptimizerAdaptor<FusedAdamW, M, B>),
}

impl<B: TrainBackend, M: AutodiffModule<B>> AnyOptimizer<B, M> {
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

    /// The fused AdamW gives burn-optim's `AdamW` bits, step after step (the first step has
    /// no moments yet), with and without weight decay, over a parameter split into several
    /// tasks; and it continues bit for bit from the state burn saved to a checkpoint file.
    #[test]
    fn fused_adamw_gives_burns_adamw_bits() {
        use burn::nn::{Linear, LinearConfig};
        use burn::tensor::TensorData;

        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let mut rng = crate::rng::SplitMix64::new(5);
        let mut input = |rows: usize, cols: usize| {
            let values: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
            Tensor::<B, 2>::from_data(TensorData::new(values, [rows, cols]), &device)
        };
        let bits = |m: &Linear<B>| {
            let mut all: Vec<u32> = m.weight.val().into_data().to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
            all.extend(m.bias.as_ref().unwrap().val().into_data().to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()));
            all
        };
        for weight_decay in [0.0, 0.05] {
            let (beta1, beta2, eps) = (0.9, 0.999, 1e-8);
            let config = OptimizerConfig { kind: OptimizerKind::AdamW { beta1, beta2, eps }, weight_decay, grad_clip_norm: None };
            let mut ours = config.init::<B, Linear<B>>();
            let burns = || {
                burn::optim::AdamWConfig::new()
                    .with_beta_1(beta1)
                    .with_beta_2(beta2)
                    .with_epsilon(eps)
                    .with_weight_decay(weight_decay as f32)
                    .init::<B, Linear<B>>()
            };
            let mut theirs = burns();
            // 300 × 250 weights: more than one task of the flex kernel.
            let start: Linear<B> = LinearConfig::new(300, 250).init(&device);
            let initial = bits(&start);
            let (mut a, mut b) = (start.clone(), start);
            for step in 0..5 {
                let x = input(8, 300);
                let grads = |m: &Linear<B>| GradientsParams::from_grads(m.forward(x.clone()).powi_scalar(2).sum().backward(), m);
                let (ga, gb) = (grads(&a), grads(&b));
                let lr = 1e-3 * (step + 1) as f64;
                a = theirs.step(lr, a, ga);
                b = ours.step(lr, b, gb);
                assert!(bits(&a) == bits(&b), "weight decay {weight_decay}, step {step}: the parameters differ");
                if step == 2 {
                    // A checkpoint burn wrote, read back into a fresh fused optimiser.
                    let path = dir.path().join(format!("adamw-{weight_decay}"));
                    NamedMpkFileRecorder::<FullPrecisionSettings>::new().record(theirs.to_record(), path.clone()).unwrap();
                    ours = config.init::<B, Linear<B>>().load(&path, &device).unwrap();
                    theirs = burns().load_record(NamedMpkFileRecorder::<FullPrecisionSettings>::new().load(path, &device).unwrap());
                }
            }
            assert!(bits(&a) != initial, "weight decay {weight_decay}: the steps left the parameters as they were");
        }
    }

    #[test]
    fn step_decay() {
        let s = Schedule { lr: 0.1, warmup_steps: 0, kind: ScheduleKind::Step { every_epochs: 2, gamma: 0.5 } };
        assert_eq!(s.lr_at(0, 1, 10), 0.1);
        assert_eq!(s.lr_at(5, 2, 10), 0.05);
        assert_eq!(s.lr_at(9, 5, 10), 0.025);
    }
}
