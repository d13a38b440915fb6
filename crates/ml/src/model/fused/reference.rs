//! The fused kernels' maths as burn tensor ops: what every backend without its own kernels
//! runs, and what the flex kernels are tested against.
//!
//! Per-channel operands are `repeat_dim`-ed to the batch before each op because flex 0.21
//! broadcasts a `[1, C, 1, 1]` operand about 14× slower than a `[N, C, 1, 1]` one.

use burn::tensor::activation::{sigmoid, silu as silu_op};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

/// `[C]` → `[N, C, 1, 1]`.
fn per_channel<B: Backend>(t: Tensor<B, 1>, n: usize) -> Tensor<B, 4> {
    let c = t.dims()[0];
    t.reshape([1, c, 1, 1]).repeat_dim(0, n)
}

/// Mean over N, H and W of `[N, C, H, W]` → `[C]`, reducing the contiguous last axis first
/// (burn-nn's `swap_dims(0, 1)` makes flex copy through a strided iterator).
fn channel_mean<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, c, h, w] = t.dims();
    t.reshape([n, c, h * w]).mean_dim(2).mean_dim(0).reshape([c])
}

/// Sum over N, H and W of `[N, C, H, W]` → `[C]`.
fn channel_sum<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, c, h, w] = t.dims();
    t.reshape([n, c, h * w]).sum_dim(2).sum_dim(0).reshape([c])
}

/// See [`ModelBackend::fused_batch_norm_train`](super::ModelBackend::fused_batch_norm_train):
/// `[output, batch mean, biased batch variance]`.
pub fn batch_norm_train<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
    silu: bool,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let n = x.dims()[0];
    let mean = channel_mean(x.clone());
    let centred = x - per_channel(mean.clone(), n);
    let var = channel_mean(centred.clone().square());
    let std = per_channel(var.clone().add_scalar(epsilon).sqrt(), n);
    let y = centred / std * per_channel(gamma, n) + per_channel(beta, n);
    let y = if silu { silu_op(y) } else { y };
    (y, mean.detach(), var.detach())
}

/// See [`ModelBackend::fused_batch_norm_train_backward`](super::ModelBackend::fused_batch_norm_train_backward):
/// `[dx, dgamma, dbeta]`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    mean: Tensor<B, 1>,
    var: Tensor<B, 1>,
    epsilon: f64,
    silu: bool,
    grad: Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let [n, _, h, w] = x.dims();
    let count = (n * h * w) as f64;
    let inv_std = var.add_scalar(epsilon).sqrt().recip();
    let x_hat = (x - per_channel(mean, n)) * per_channel(inv_std.clone(), n);
    // Gradient at the BatchNorm output: through SiLU, d/dz z·σ(z) = σ(z)·(1 + z·(1 − σ(z))).
    let grad = if silu {
        let z = x_hat.clone() * per_channel(gamma.clone(), n) + per_channel(beta, n);
        let s = sigmoid(z.clone());
        grad * s.clone() * (z * (s.neg().add_scalar(1.0))).add_scalar(1.0)
    } else {
        grad
    };
    let dbeta = channel_sum(grad.clone());
    let dgamma = channel_sum(grad.clone() * x_hat.clone());
    // dx = γ/σ · (g − mean(g) − x̂ · mean(g · x̂))
    let dx = (grad - per_channel(dbeta.clone().div_scalar(count), n) - x_hat * per_channel(dgamma.clone().div_scalar(count), n))
        * per_channel(gamma * inv_std, n);
    (dx, dgamma, dbeta)
}

/// See [`ModelBackend::fused_channel_affine`](super::ModelBackend::fused_channel_affine).
pub fn channel_affine<B: Backend>(x: Tensor<B, 4>, scale: Tensor<B, 1>, shift: Tensor<B, 1>, silu: bool) -> Tensor<B, 4> {
    let n = x.dims()[0];
    let y = x * per_channel(scale, n) + per_channel(shift, n);
    if silu { silu_op(y) } else { y }
}

/// A square convolution with zero padding `kernel / 2` and dilation 1.
fn square_conv_options(groups: usize, kernel: usize, stride: usize) -> ConvOptions<2> {
    let pad = kernel / 2;
    ConvOptions::new([stride, stride], [pad, pad], [1, 1], groups)
}

/// See [`ModelBackend::fused_depthwise_conv`](super::ModelBackend::fused_depthwise_conv).
pub fn depthwise_conv<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, stride: usize) -> Tensor<B, 4> {
    let [channels, _, kernel, _] = weight.dims();
    burn::tensor::module::conv2d(x, weight, None, square_conv_options(channels, kernel, stride))
}

/// See [`ModelBackend::fused_depthwise_conv_backward`](super::ModelBackend::fused_depthwise_conv_backward):
/// `(dx, dweight)`, by the backend's own convolution backward ops.
pub fn depthwise_conv_backward<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    stride: usize,
    grad: Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let [channels, _, kernel, _] = weight.dims();
    let options = square_conv_options(channels, kernel, stride);
    let (x, weight, grad) = (x.into_primitive().tensor(), weight.into_primitive().tensor(), grad.into_primitive().tensor());
    let dx = B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
    let dweight = B::conv2d_weight_backward(x, weight, grad, options);
    let float = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
    (float(dx), float(dweight))
}

/// See [`ModelBackend::fused_dense_conv`](super::ModelBackend::fused_dense_conv).
pub fn dense_conv<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, stride: usize) -> Tensor<B, 4> {
    let kernel = weight.dims()[2];
    burn::tensor::module::conv2d(x, weight, None, square_conv_options(1, kernel, stride))
}

/// See [`ModelBackend::fused_dense_conv_backward`](super::ModelBackend::fused_dense_conv_backward):
/// `(dx, dweight)` by the backend's own convolution backward ops, `dx` only when `input_grad`.
pub fn dense_conv_backward<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    stride: usize,
    grad: Tensor<B, 4>,
    input_grad: bool,
) -> (Option<Tensor<B, 4>>, Tensor<B, 4>) {
    let options = square_conv_options(1, weight.dims()[2], stride);
    let (x, weight, grad) = (x.into_primitive().tensor(), weight.into_primitive().tensor(), grad.into_primitive().tensor());
    let dx = input_grad.then(|| B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone()));
    let dweight = B::conv2d_weight_backward(x, weight, grad, options);
    let float = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
    (dx.map(float), float(dweight))
}

/// See [`ModelBackend::fused_pointwise_conv`](super::ModelBackend::fused_pointwise_conv):
/// `W [1, C_out, C_in] · x [N, C_in, H·W]`, one batched matmul.
pub fn pointwise_conv<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, cin, h, w] = x.dims();
    let cout = weight.dims()[0];
    weight.reshape([1, cout, cin]).matmul(x.reshape([n, cin, h * w])).reshape([n, cout, h, w])
}

/// See [`ModelBackend::fused_pointwise_conv_backward`](super::ModelBackend::fused_pointwise_conv_backward):
/// `(dx, dweight)`.
///
/// `dweight = Σₙ gₙ · xₙᵀ`. Where the per-image products would be larger than the activations
/// (late layers: many channels, few pixels), it is one product over `N·H·W`, after moving the
/// batch axis next to the pixels; otherwise a batched product summed over the batch.
pub fn pointwise_conv_backward<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, grad: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let [n, cin, h, w] = x.dims();
    let cout = weight.dims()[0];
    let hw = h * w;
    let (x, grad) = (x.reshape([n, cin, hw]), grad.reshape([n, cout, hw]));
    let dx = pointwise_input_grad(weight.clone(), grad.clone());
    let dweight = if weight_grad_as_one_product(n, cout, cin, hw) {
        let grad = grad.swap_dims(0, 1).reshape([cout, n * hw]);
        let x = x.swap_dims(0, 1).reshape([cin, n * hw]);
        grad.matmul(x.transpose())
    } else {
        grad.matmul(x.swap_dims(1, 2)).sum_dim(0).reshape([cout, cin])
    };
    (dx.reshape([n, cin, h, w]), dweight.reshape([cout, cin, 1, 1]))
}

/// `Wᵀ · gₙ` for every image: `weight` `[C_out, C_in, 1, 1]`, `grad` `[N, C_out, H·W]` →
/// `[N, C_in, H·W]`.
pub(super) fn pointwise_input_grad<B: Backend>(weight: Tensor<B, 4>, grad: Tensor<B, 3>) -> Tensor<B, 3> {
    let [cout, cin, ..] = weight.dims();
    weight.reshape([cout, cin]).transpose().reshape([1, cin, cout]).matmul(grad)
}

/// Whether the per-image weight-gradient products (`N·C_out·C_in` values) would outweigh
/// moving the activations (`N·(C_out + C_in)·H·W`) to make it one product.
pub(super) fn weight_grad_as_one_product(n: usize, cout: usize, cin: usize, hw: usize) -> bool {
    n > 1 && n * cout * cin > n * (cout + cin) * hw
}

/// See [`ModelBackend::fused_plane_means`](super::ModelBackend::fused_plane_means).
pub fn plane_means<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
}

/// See [`ModelBackend::fused_plane_means_backward`](super::ModelBackend::fused_plane_means_backward).
pub fn plane_means_backward<B: Backend>([n, c, h, w]: [usize; 4], grad: Tensor<B, 2>) -> Tensor<B, 4> {
    grad.div_scalar((h * w) as f64).reshape([n, c, 1, 1]).expand([n, c, h, w])
}

/// One AdamW update of a parameter: burn-optim 0.21's `AdamW` (no AMSGrad, no cautious
/// decay), tensor op for tensor op in the same order, so the bits are its own. Returns the new
/// parameter and first and second moments; `moments` are the previous ones (`None` on the
/// first step).
pub fn adamw<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    s: &super::AdamWStep,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    let (factor_1, factor_2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
    let (moment_1, moment_2) = match moments {
        Some((m1, m2)) => (
            m1.mul_scalar(s.beta_1).add(grad.clone().mul_scalar(factor_1)),
            m2.mul_scalar(s.beta_2).add(grad.square().mul_scalar(factor_2)),
        ),
        None => (grad.clone().mul_scalar(factor_1), grad.square().mul_scalar(factor_2)),
    };
    let corrected_1 = moment_1.clone().div_scalar(s.correction_1);
    let corrected_2 = moment_2.clone().div_scalar(s.correction_2);
    let delta = corrected_1.div(corrected_2.sqrt().add_scalar(s.epsilon));
    let decayed = if s.decay_rate == 0.0 { param } else { param.mul_scalar(1.0 - s.decay_rate) };
    (decayed - delta.mul_scalar(s.lr), moment_1, moment_2)
}

/// The same functions on backend primitives: the trait's default methods, and the flex
/// kernels' fall-back for tensors they do not take.
pub(super) mod on_primitives {
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};

    fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(t))
    }

    fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
        t.into_primitive().tensor()
    }

    pub fn batch_norm_train<B: Backend>(
        x: FloatTensor<B>,
        gamma: FloatTensor<B>,
        beta: FloatTensor<B>,
        epsilon: f64,
        silu: bool,
    ) -> [FloatTensor<B>; 3] {
        let (y, mean, var) = super::batch_norm_train::<B>(float(x), float(gamma), float(beta), epsilon, silu);
        [prim(y), prim(mean), prim(var)]
    }

    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_train_backward<B: Backend>(
        x: FloatTensor<B>,
        gamma: FloatTensor<B>,
        beta: FloatTensor<B>,
        mean: FloatTensor<B>,
        var: FloatTensor<B>,
        epsilon: f64,
        silu: bool,
        grad: FloatTensor<B>,
    ) -> [FloatTensor<B>; 3] {
        let (dx, dgamma, dbeta) =
            super::batch_norm_train_backward::<B>(float(x), float(gamma), float(beta), float(mean), float(var), epsilon, silu, float(grad));
        [prim(dx), prim(dgamma), prim(dbeta)]
    }

    /// [`adamw`](super::adamw) on primitives of any shape (flattened: every op is elementwise).
    pub fn adamw<B: Backend>(
        param: FloatTensor<B>,
        grad: FloatTensor<B>,
        moments: Option<[FloatTensor<B>; 2]>,
        step: &super::super::AdamWStep,
    ) -> [FloatTensor<B>; 3] {
        let shape = param.shape();
        let flat = |t: FloatTensor<B>| -> Tensor<B, 1> { float::<B, 1>(B::float_reshape(t, [shape.num_elements()].into())) };
        let back = |t: Tensor<B, 1>| B::float_reshape(prim(t), shape.clone());
        let moments = moments.map(|[m1, m2]| (flat(m1), flat(m2)));
        let (p, m1, m2) = super::adamw(flat(param), flat(grad), moments, step);
        [back(p), back(m1), back(m2)]
    }

    pub fn channel_affine<B: Backend>(x: FloatTensor<B>, scale: FloatTensor<B>, shift: FloatTensor<B>, silu: bool) -> FloatTensor<B> {
        prim(super::channel_affine::<B>(float(x), float(scale), float(shift), silu))
    }

    pub fn plane_means<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        prim(super::plane_means::<B>(float(x)))
    }

    pub fn plane_means_backward<B: Backend>(x_shape: [usize; 4], grad: FloatTensor<B>) -> FloatTensor<B> {
        prim(super::plane_means_backward::<B>(x_shape, float(grad)))
    }

    pub fn pointwise_conv<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>) -> FloatTensor<B> {
        prim(super::pointwise_conv::<B>(float(x), float(weight)))
    }

    pub fn pointwise_conv_backward<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, grad: FloatTensor<B>) -> [FloatTensor<B>; 2] {
        let (dx, dw) = super::pointwise_conv_backward::<B>(float(x), float(weight), float(grad));
        [prim(dx), prim(dw)]
    }

    pub fn dense_conv<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, stride: usize) -> FloatTensor<B> {
        prim(super::dense_conv::<B>(float(x), float(weight), stride))
    }

    pub fn dense_conv_backward<B: Backend>(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        stride: usize,
        grad: FloatTensor<B>,
        input_grad: bool,
    ) -> (Option<FloatTensor<B>>, FloatTensor<B>) {
        let (dx, dw) = super::dense_conv_backward::<B>(float(x), float(weight), stride, float(grad), input_grad);
        (dx.map(prim), prim(dw))
    }

    pub fn depthwise_conv<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, stride: usize) -> FloatTensor<B> {
        prim(super::depthwise_conv::<B>(float(x), float(weight), stride))
    }

    pub fn depthwise_conv_backward<B: Backend>(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        stride: usize,
        grad: FloatTensor<B>,
    ) -> [FloatTensor<B>; 2] {
        let (dx, dw) = super::depthwise_conv_backward::<B>(float(x), float(weight), stride, float(grad));
        [prim(dx), prim(dw)]
    }
}
