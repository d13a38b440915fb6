//! BatchNorm with per-channel operands expanded to the batch size before each op.
//!
//! The constraint this module keeps: the struct and field names are burn-nn's (`BatchNorm`,
//! `gamma`, `beta`, `running_mean`, `running_var`, `momentum`, `epsilon`), so records and
//! burn-store's PyTorch adapter (which matches `Struct:BatchNorm` to turn `weight`/`bias` into
//! `gamma`/`beta`) keep working. Only the arithmetic differs: flex 0.21 broadcasts a
//! `[1, C, 1, 1]` operand about 14× slower than a `[N, C, 1, 1]` one, so each channel tensor is
//! `repeat_dim`-ed to the batch first (see shared/notes/burn.md). Train vs eval is decided by the
//! backend, as in burn-nn: batch statistics on an autodiff backend, running ones otherwise.
//! As in PyTorch (and unlike burn-nn), the running variance tracks the unbiased batch variance.

use burn::module::{Initializer, Module, Param, RunningState};
use burn::tensor::{Tensor, backend::Backend};

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

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        if B::ad_enabled(&x.device()) { self.forward_train(x) } else { self.forward_eval(x) }
    }

    fn forward_eval(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let device = x.device();
        let [n, c, _, _] = x.dims();
        let mean = self.running_mean.value().to_device(&device);
        let var = self.running_var.value().to_device(&device);
        // Fold the four ops into one scale and one shift: x * s + t.
        let scale = self.gamma.val() / var.add_scalar(self.epsilon).sqrt();
        let shift = self.beta.val() - mean * scale.clone();
        let expand = |t: Tensor<B, 1>| t.reshape([1, c, 1, 1]).repeat_dim(0, n);
        x * expand(scale) + expand(shift)
    }

    fn forward_train(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let device = x.device();
        let [n, c, h, w] = x.dims();
        let flat = n * h * w;
        // Reduce over the contiguous last axis first ([N, C, H·W] → [N, C, 1]), then over the
        // batch: burn-nn's swap_dims(0, 1) makes flex copy the activation through a strided
        // iterator, which dominated training profiles.
        let per_channel_mean = |t: Tensor<B, 4>| t.reshape([n, c, h * w]).mean_dim(2).mean_dim(0).reshape([1, c, 1, 1]);
        let mean = per_channel_mean(x.clone());
        let centred = x - mean.clone().repeat_dim(0, n);
        let var = per_channel_mean(centred.clone().square());

        let momentum = self.momentum;
        let running_mean = self.running_mean.value_sync().to_device(&device);
        let running_var = self.running_var.value_sync().to_device(&device);
        self.running_mean.update((running_mean.mul_scalar(1.0 - momentum) + mean.detach().reshape([c]).mul_scalar(momentum)).detach());
        // PyTorch tracks the unbiased variance (burn-nn the biased one); timm parity wins.
        let unbiased = flat as f64 / (flat.max(2) - 1) as f64;
        self.running_var
            .update((running_var.mul_scalar(1.0 - momentum) + var.clone().detach().reshape([c]).mul_scalar(momentum * unbiased)).detach());

        let std = var.add_scalar(self.epsilon).sqrt().repeat_dim(0, n);
        let gamma = self.gamma.val().reshape([1, c, 1, 1]).repeat_dim(0, n);
        let beta = self.beta.val().reshape([1, c, 1, 1]).repeat_dim(0, n);
        centred / std * gamma + beta
    }
}
