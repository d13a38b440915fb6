//! Fused BatchNorm (+ SiLU) and depthwise-convolution kernels: the backend extension the
//! models are written against.
//!
//! Why it exists: on burn 0.21 a training-mode `BatchNorm → SiLU` built from tensor ops costs
//! about twenty full passes over the activation between forward and backward (mean, centre,
//! square, mean, divide, scale, shift, sigmoid, multiply, and the backward of each, plus
//! `repeat_dim` copies), and flex evaluates `exp` with scalar libm: in a profile of the B0
//! training step, `expf` alone was 12% and the elementwise ops around it about 20% more.
//! Fused, the forward is two passes (channel statistics, then normalise + SiLU) and the
//! backward two (channel sums of the gradient, then the input gradient), with a vectorised
//! `exp`. Depthwise convolutions are the other hot spot: flex runs their backward as a generic
//! transposed convolution and a weight convolution over strided copies; here each direction is
//! one register-blocked pass per image plane. A 1×1 convolution is a matmul; its node sums the
//! weight gradient over the batch inside one product instead of materialising one `[C_out,
//! C_in]` product per image, as burn's broadcast matmul backward does. A dense `k × k`
//! convolution (the stem, every layer of `tiny_cnn`) is three products over the whole batch
//! on an im2col matrix (`dense.rs`), where flex would take strided copies again.
//!
//! The constraint this module keeps: every backend gets the same maths. [`ModelBackend`]'s
//! default methods are the tensor-op compositions in [`reference`](mod@reference), so CUDA (and any other
//! backend) runs them unchanged; `Flex` overrides them with the kernels in `flex.rs`,
//! `depthwise.rs` and `dense.rs`; `Autodiff<B>` wraps `B`'s forward and backward as one graph node. Tests
//! check the flex kernels and the autodiff gradients against [`reference`](mod@reference).
//!
//! Arithmetic is not bit-identical to the composition: the batch variance comes from shifted
//! sums and `exp` is a Cephes-style polynomial (within 2 ulp of libm's). Both are deterministic:
//! every sum runs in a fixed order whatever the thread count, and the kernels use no FMA, so the
//! AVX2 and portable builds give the same bits.

/// Defines `fn $name` that runs `$imp` through an AVX2 build when the CPU has it, else the
/// baseline build. `$imp` is `#[inline(always)]`, so both builds inline the same code.
macro_rules! dispatch {
    (fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $imp:ident) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $imp($($arg),*)
                }
                // SAFETY: the CPU supports AVX2 (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            $imp($($arg),*)
        }
    };
}

mod dense;
mod depthwise;
mod flex;
mod pointwise;
pub mod reference;
pub(crate) mod vmath;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};

/// A backend the models run on: burn's [`Backend`] plus the fused BatchNorm (+ SiLU), 1×1,
/// dense and depthwise convolution ops.
pub trait ModelBackend: Backend {
    /// Training-mode BatchNorm of `x` (`[N, C, H, W]`) with batch statistics and affine
    /// `gamma`, `beta` (`[C]`), followed by SiLU when `silu`. Returns the output, the batch
    /// mean and the biased batch variance (`[C]` each; the last two carry no gradient).
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        silu: bool,
    ) -> [FloatTensor<Self>; 3] {
        reference::on_primitives::batch_norm_train::<Self>(x, gamma, beta, epsilon, silu)
    }

    /// Gradients of [`fused_batch_norm_train`](Self::fused_batch_norm_train) with respect to
    /// `x`, `gamma` and `beta`, given the forward's inputs, its batch `mean` and `var`, and the
    /// output gradient `grad`.
    #[allow(clippy::too_many_arguments)]
    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        silu: bool,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        reference::on_primitives::batch_norm_train_backward::<Self>(x, gamma, beta, mean, var, epsilon, silu, grad)
    }

    /// `x * scale + shift` per channel (`x` `[N, C, H, W]`, `scale` and `shift` `[C]`), then
    /// SiLU when `silu`: eval-mode BatchNorm with its four ops folded into two.
    fn fused_channel_affine(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, silu: bool) -> FloatTensor<Self> {
        reference::on_primitives::channel_affine::<Self>(x, scale, shift, silu)
    }

    /// 1×1 convolution, stride 1, no bias: `x` `[N, C_in, H, W]`, `weight` `[C_out, C_in, 1, 1]`.
    fn fused_pointwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::on_primitives::pointwise_conv::<Self>(x, weight)
    }

    /// Eval mode's 1×1 convolution with what surrounds it ([`PointwiseEval`]): the gate on
    /// its input, its BatchNorm and SiLU, the residual add. By default the ops in turn; flex
    /// applies the gate inside each output block, where the early layers fold it into the
    /// image's weights (`W · (g ⊙ x) = (W ⊙ g) · x`, within rounding of the ops in turn), and the
    /// rest to the block while it is in cache: no pass over `x` or the output in memory.
    fn fused_pointwise_conv_affine(x: FloatTensor<Self>, weight: FloatTensor<Self>, around: PointwiseEval<Self>) -> FloatTensor<Self> {
        pointwise_conv_affine_apart::<Self>(x, weight, around)
    }

    /// Gradients of [`fused_pointwise_conv`](Self::fused_pointwise_conv) with respect to `x`
    /// and `weight`, given the output gradient `grad`.
    fn fused_pointwise_conv_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> [FloatTensor<Self>; 2] {
        reference::on_primitives::pointwise_conv_backward::<Self>(x, weight, grad)
    }

    /// Dense (ungrouped) convolution: `x` `[N, C_in, H, W]`, `weight` `[C_out, C_in, k, k]`,
    /// the given stride, zero padding `k / 2` on every side, no bias (the stem, and `tiny_cnn`).
    fn fused_dense_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize) -> FloatTensor<Self> {
        reference::on_primitives::dense_conv::<Self>(x, weight, stride)
    }

    /// [`fused_dense_conv`](Self::fused_dense_conv) for training: also returns what
    /// [`fused_dense_conv_backward`](Self::fused_dense_conv_backward) needs of the input,
    /// in the backend's own form: `x` itself by default; on flex, its column matrix, so the
    /// backward does not build it a second time.
    fn fused_dense_conv_saving(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize) -> [FloatTensor<Self>; 2] {
        [Self::fused_dense_conv(x.clone(), weight, stride), x]
    }

    /// Gradients of [`fused_dense_conv`](Self::fused_dense_conv) with respect to `x` (only
    /// when `input_grad`: a first layer's input needs none) and `weight`, given what the
    /// forward `saved`, the input's shape `[N, C_in, H, W]` and the output gradient `grad`.
    fn fused_dense_conv_backward(
        saved: FloatTensor<Self>,
        x_shape: [usize; 4],
        weight: FloatTensor<Self>,
        stride: usize,
        grad: FloatTensor<Self>,
        input_grad: bool,
    ) -> (Option<FloatTensor<Self>>, FloatTensor<Self>) {
        debug_assert_eq!(saved.shape().dims::<4>(), x_shape, "the default forward saves x itself");
        reference::on_primitives::dense_conv_backward::<Self>(saved, weight, stride, grad, input_grad)
    }

    /// Depthwise convolution: `x` `[N, C, H, W]`, `weight` `[C, 1, k, k]`, the given stride,
    /// zero padding `k / 2` on every side, no bias (EfficientNet's depthwise layers).
    fn fused_depthwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize) -> FloatTensor<Self> {
        reference::on_primitives::depthwise_conv::<Self>(x, weight, stride)
    }

    /// Eval mode's depthwise convolution → BatchNorm (as `x * scale + shift` per channel) →
    /// SiLU when `silu`: [`fused_depthwise_conv`](Self::fused_depthwise_conv) then
    /// [`fused_channel_affine`](Self::fused_channel_affine), with the same bits; flex applies
    /// the affine to each output plane while it is in cache instead of in a second pass.
    fn fused_depthwise_conv_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        silu: bool,
    ) -> FloatTensor<Self> {
        Self::fused_channel_affine(Self::fused_depthwise_conv(x, weight, stride), scale, shift, silu)
    }

    /// The mean of each `H × W` plane: `x` `[N, C, H, W]` → `[N, C]` (squeeze-excite's
    /// squeeze, the global pool before a classifier). burn-flex's adaptive pooling adds one
    /// value at a time through a function pointer; flex sums rows in vector lanes here.
    fn fused_plane_means(x: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::on_primitives::plane_means::<Self>(x)
    }

    /// Gradient of [`fused_plane_means`](Self::fused_plane_means) with respect to `x`
    /// (`[N, C, H, W]`, `x_shape`), given the output gradient `grad` (`[N, C]`): each plane
    /// holds its gradient over `H·W`.
    fn fused_plane_means_backward(x_shape: [usize; 4], grad: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::on_primitives::plane_means_backward::<Self>(x_shape, grad)
    }

    /// One AdamW update of a parameter with its gradient: the new parameter and first and
    /// second moments, from the previous moments (`None` on the first step). The bits are
    /// those of burn-optim's `AdamW` ([`reference::adamw`]), which runs it
    /// as about fifteen tensor ops, each a pass over the parameter; flex does one.
    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moments: Option<[FloatTensor<Self>; 2]>,
        step: &AdamWStep,
    ) -> [FloatTensor<Self>; 3] {
        reference::on_primitives::adamw::<Self>(param, grad, moments, step)
    }

    /// Gradients of [`fused_depthwise_conv`](Self::fused_depthwise_conv) with respect to `x`
    /// and `weight`, given the output gradient `grad`.
    fn fused_depthwise_conv_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        reference::on_primitives::depthwise_conv_backward::<Self>(x, weight, stride, grad)
    }
}

/// What eval mode applies around a 1×1 convolution
/// ([`ModelBackend::fused_pointwise_conv_affine`]), in this order: `gate` scales the input's
/// channels per image (`[N, C_in]`, a squeeze-excite gate); the BatchNorm as `y * scale +
/// shift` per output channel (`[C_out]` each); SiLU when `silu`; `+ residual` (`[N, C_out,
/// H, W]`, a projection's shortcut).
pub struct PointwiseEval<B: Backend> {
    pub gate: Option<FloatTensor<B>>,
    pub scale: FloatTensor<B>,
    pub shift: FloatTensor<B>,
    pub silu: bool,
    pub residual: Option<FloatTensor<B>>,
}

/// [`ModelBackend::fused_pointwise_conv_affine`] as its ops in turn: the default, and flex's
/// fall-back for tensors its kernel does not take.
fn pointwise_conv_affine_apart<B: ModelBackend>(x: FloatTensor<B>, weight: FloatTensor<B>, around: PointwiseEval<B>) -> FloatTensor<B> {
    let PointwiseEval { gate, scale, shift, silu, residual } = around;
    let x = match gate {
        Some(gate) => {
            let (x, gate) = (float::<B, 4>(x), float::<B, 2>(gate));
            let [n, c] = gate.dims();
            // `[N, C, 1, 1]`: the fast broadcast shape on flex.
            (x * gate.reshape([n, c, 1, 1])).into_primitive().tensor()
        }
        None => x,
    };
    let y = B::fused_channel_affine(B::fused_pointwise_conv(x, weight), scale, shift, silu);
    match residual {
        Some(r) => B::float_add(y, r),
        None => y,
    }
}

/// The scalars of one AdamW update (burn-optim 0.21's `AdamW`, whose state records the
/// optimiser keeps): see [`ModelBackend::fused_adamw`].
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// `1 - beta_1^t` and `1 - beta_2^t` for the step number `t` (from 1), in `f32`.
    pub correction_1: f32,
    pub correction_2: f32,
    /// The learning rate.
    pub lr: f64,
    /// `lr * weight_decay`: the parameter is multiplied by `1 - decay_rate` (not at all when 0).
    pub decay_rate: f64,
}

/// An autodiff backend whose eval-mode backend is a [`ModelBackend`] too: what training needs.
pub trait TrainBackend: AutodiffBackend<InnerBackend: ModelBackend> + ModelBackend {}

impl<B> TrainBackend for B
where
    B: AutodiffBackend + ModelBackend,
    B::InnerBackend: ModelBackend,
{
}

/// [`ModelBackend::fused_plane_means`] on tensors: `[N, C, H, W]` → `[N, C]`.
pub fn plane_means<B: ModelBackend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    float(B::fused_plane_means(x.into_primitive().tensor()))
}

fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

#[cfg(feature = "cuda")]
impl ModelBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl ModelBackend for burn::backend::Wgpu {}

#[cfg(feature = "ndarray")]
impl ModelBackend for burn_ndarray::NdArray<f32> {}

/// The training graph sees one node per fused op: its backward calls the inner backend's
/// matching `*_backward` method.
impl<B: ModelBackend, C: CheckpointStrategy> ModelBackend for Autodiff<B, C> {
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        silu: bool,
    ) -> [FloatTensor<Self>; 3] {
        #[derive(Debug)]
        struct FusedBatchNorm;

        /// Inputs `x`, `gamma`, `beta`; batch `mean`, `var`; `epsilon`; `silu`.
        type State<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64, bool);

        impl<B: ModelBackend> Backward<B, 3> for FusedBatchNorm {
            type State = State<B>;

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, gamma, beta, mean, var, epsilon, silu) = ops.state;
                let [dx, dgamma, dbeta] = B::fused_batch_norm_train_backward(x, gamma, beta, mean, var, epsilon, silu, grad);
                for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let [y, mean, var] = B::fused_batch_norm_train(x.primitive.clone(), gamma.primitive.clone(), beta.primitive.clone(), epsilon, silu);
        let y = match FusedBatchNorm.prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                prep.finish((x.primitive, gamma.primitive, beta.primitive, mean.clone(), var.clone(), epsilon, silu), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        [y, Self::from_inner(mean), Self::from_inner(var)]
    }

    fn fused_pointwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FusedPointwiseConv;

        impl<B: ModelBackend> Backward<B, 2> for FusedPointwiseConv {
            /// Inputs `x` and `weight`.
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight) = ops.state;
                let [dx, dweight] = B::fused_pointwise_conv_backward(x, weight, grad);
                for (node, grad) in [(node_x, dx), (node_weight, dweight)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let y = B::fused_pointwise_conv(x.primitive.clone(), weight.primitive.clone());
        match FusedPointwiseConv.prepare::<C>([x.node.clone(), weight.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, weight.primitive), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_dense_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FusedDenseConv;

        impl<B: ModelBackend> Backward<B, 2> for FusedDenseConv {
            /// What the forward saved of `x`, and `x`'s shape; `weight`; the stride.
            type State = (FloatTensor<B>, [usize; 4], FloatTensor<B>, usize);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (saved, x_shape, weight, stride) = ops.state;
                let (dx, dweight) = B::fused_dense_conv_backward(saved, x_shape, weight, stride, grad, node_x.is_some());
                if let (Some(node), Some(dx)) = (node_x, dx) {
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_weight {
                    grads.register::<B>(node.id, dweight);
                }
            }
        }

        match FusedDenseConv.prepare::<C>([x.node.clone(), weight.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x_shape = x.primitive.shape().dims::<4>();
                let [y, saved] = B::fused_dense_conv_saving(x.primitive, weight.primitive.clone(), stride);
                prep.finish((saved, x_shape, weight.primitive, stride), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_dense_conv(x.primitive, weight.primitive, stride)),
        }
    }

    fn fused_plane_means(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FusedPlaneMeans;

        impl<B: ModelBackend> Backward<B, 1> for FusedPlaneMeans {
            /// The input's shape.
            type State = [usize; 4];

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [node_x] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::fused_plane_means_backward(ops.state, grad));
                }
            }
        }

        let x_shape = x.primitive.shape().dims::<4>();
        let y = B::fused_plane_means(x.primitive);
        match FusedPlaneMeans.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x_shape, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_depthwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FusedDepthwiseConv;

        impl<B: ModelBackend> Backward<B, 2> for FusedDepthwiseConv {
            /// Inputs `x` and `weight`; the stride.
            type State = (FloatTensor<B>, FloatTensor<B>, usize);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight, stride) = ops.state;
                let [dx, dweight] = B::fused_depthwise_conv_backward(x, weight, stride, grad);
                for (node, grad) in [(node_x, dx), (node_weight, dweight)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let y = B::fused_depthwise_conv(x.primitive.clone(), weight.primitive.clone(), stride);
        match FusedDepthwiseConv.prepare::<C>([x.node.clone(), weight.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, weight.primitive, stride), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests;
