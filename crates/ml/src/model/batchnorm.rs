//! BatchNorm2d with burn-nn's record layout and fused kernels.
//!
//! The constraint this module keeps: the struct and field names are burn-nn's (`BatchNorm`,
//! `gamma`, `beta`, `running_mean`, `running_var`, `momentum`, `epsilon`), so records and
//! burn-store's PyTorch adapter (which matches `Struct:BatchNorm` to turn `weight`/`bias` into
//! `gamma`/`beta`) keep working. Only the arithmetic differs: flex 0.21 broadcasts a
//! `[1, C, 1, 1]` operand about 14× slower than a `[N, C, 1, 1]` one, and a BatchNorm built from
//! tensor ops costs a dozen passes each way, so the arithmetic is the fused kernels of
//! [`crate::model::fused`] (which also fold in the SiLU that follows). Train vs eval is decided by the
//! backend, as in burn-nn: batch statistics on an autodiff backend, running ones otherwise.
//! As in PyTorch (and unlike burn-nn), the running variance tracks the unbiased batch variance.

use burn::module::{Initializer, Module, Param, RunningState};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

use super::fused::ModelBackend;

/// Batch normalisation over `[N, C, H, W]` inputs (PyTorch's `BatchNorm2d`).
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    /// The learnable scale (PyTorch `weight`).
    pub gamma: Param<Tensor<B, 1>>,
    /// The learnable shift (PyTorch `bias`).
    pub beta: Param<Tensor<B, 1>>,
    pub running_mean: RunningState<Tensor<B, 1>>,
    pub running_var: RunningState<Tensor<B, 1>>,
    pub momentum: f64,
    pub epsilon: f64,
}

impl<B: Backend> BatchNorm<B> {
    /// PyTorch defaults: eps 1e-5, momentum 0.1, gamma 1, beta 0, running stats (0, 1).
    pub fn new(channels: usize, device: &B::Device) -> Self {
        BatchNorm {
            gamma: Initializer::Ones.init([channels], device),
            beta: Initializer::Zeros.init([channels], device),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        self.forward_then(x, false)
    }

    /// BatchNorm followed by SiLU when `silu`, as one fused op (see [`crate::model::fused`]).
    pub fn forward_then(&self, x: Tensor<B, 4>, silu: bool) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        if B::ad_enabled(&x.device()) { self.forward_train(x, silu) } else { self.forward_eval(x, silu) }
    }

    fn forward_eval(&self, x: Tensor<B, 4>, silu: bool) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        let (scale, shift) = self.eval_scale_shift(&x.device());
        let out = B::fused_channel_affine(primitive(x), primitive(scale), primitive(shift), silu);
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    /// Eval mode as one scale and one shift per channel (`x * s + t`: the four ops folded),
    /// for kernels that apply it themselves.
    pub fn eval_scale_shift(&self, device: &B::Device) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let mean = self.running_mean.value().to_device(device);
        let var = self.running_var.value().to_device(device);
        let scale = self.gamma.val() / var.add_scalar(self.epsilon).sqrt();
        let shift = self.beta.val() - mean * scale.clone();
        (scale, shift)
    }

    fn forward_train(&self, x: Tensor<B, 4>, silu: bool) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        let device = x.device();
        let [n, c, h, w] = x.dims();
        let flat = n * h * w;
        let [y, mean, var] =
            B::fused_batch_norm_train(primitive(x), primitive(self.gamma.val()), primitive(self.beta.val()), self.epsilon, silu);
        let mean = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(mean));
        let var = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(var));

        let momentum = self.momentum;
        let running_mean = self.running_mean.value_sync().to_device(&device);
        let running_var = self.running_var.value_sync().to_device(&device);
        self.running_mean.update((running_mean.mul_scalar(1.0 - momentum) + mean.detach().reshape([c]).mul_scalar(momentum)).detach());
        // PyTorch tracks the unbiased variance (burn-nn the biased one); timm parity wins.
        let unbiased = flat as f64 / (flat.max(2) - 1) as f64;
        self.running_var
            .update((running_var.mul_scalar(1.0 - momentum) + var.detach().reshape([c]).mul_scalar(momentum * unbiased)).detach());
        Tensor::from_primitive(TensorPrimitive::Float(y))
    }
}

fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}
