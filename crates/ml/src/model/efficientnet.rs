//! EfficientNet B0–B7 laid out exactly as timm's `efficientnet_b*` (not `tf_efficientnet_*`).
//!
//! The constraint this module keeps: same layer shapes, order and arithmetic as timm, so timm
//! checkpoints load key-for-key (see `timm.rs`) and parameter counts match timm's exactly.
//! That means: channels rounded with timm's `round_channels` (divisor 8, round limit 0.9),
//! repeats scaled with `ceil`, symmetric padding `k / 2`, SiLU everywhere, BatchNorm eps 1e-5,
//! squeeze-excite width `round(block input channels × 0.25)`, linear drop-path schedule
//! `rate × block_index / block_count`, and a residual only where stride is 1 and channels match.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::{Distribution, Tensor, TensorPrimitive, backend::Backend};

use super::batchnorm::BatchNorm;
use super::fused::{ModelBackend, PointwiseEval, plane_means};

/// One stage of the architecture before scaling: (block kind, repeats, kernel, stride,
/// expansion, output channels). timm's `ds_r1_k3_s1_e1_c16_se0.25`, `ir_r2_k3_s2_e6_c24_se0.25`, …
const STAGES: [(BlockKind, usize, usize, usize, usize, usize); 7] = [
    (BlockKind::DepthwiseSeparable, 1, 3, 1, 1, 16),
    (BlockKind::InvertedResidual, 2, 3, 2, 6, 24),
    (BlockKind::InvertedResidual, 2, 5, 2, 6, 40),
    (BlockKind::InvertedResidual, 3, 3, 2, 6, 80),
    (BlockKind::InvertedResidual, 3, 5, 1, 6, 112),
    (BlockKind::InvertedResidual, 4, 5, 2, 6, 192),
    (BlockKind::InvertedResidual, 1, 3, 1, 6, 320),
];

const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;
const SE_RATIO: f64 = 0.25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    /// Stage 0: depthwise conv → SE → pointwise projection (no expansion).
    DepthwiseSeparable,
    /// MBConv: pointwise expansion → depthwise → SE → pointwise projection.
    InvertedResidual,
}

/// Width/depth scaling of one EfficientNet variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficientNetConfig {
    pub channel_multiplier: f64,
    pub depth_multiplier: f64,
    /// timm's default classifier dropout for the variant.
    pub dropout: f64,
    /// timm's default input size (square) for the variant.
    pub input_size: usize,
}

impl EfficientNetConfig {
    /// `efficientnet_b0` … `efficientnet_b7`, and `efficientnet_nano` (ours: ¼ width, one block
    /// per stage, for tests and quick starts).
    pub fn by_name(name: &str) -> Option<Self> {
        let (c, d, r, p) = match name {
            "efficientnet_b0" => (1.0, 1.0, 224, 0.2),
            "efficientnet_b1" => (1.0, 1.1, 240, 0.2),
            "efficientnet_b2" => (1.1, 1.2, 256, 0.3),
            "efficientnet_b3" => (1.2, 1.4, 288, 0.3),
            "efficientnet_b4" => (1.4, 1.8, 320, 0.4),
            "efficientnet_b5" => (1.6, 2.2, 448, 0.4),
            "efficientnet_b6" => (1.8, 2.6, 528, 0.5),
            "efficientnet_b7" => (2.0, 3.1, 600, 0.5),
            "efficientnet_nano" => (0.25, 0.25, 96, 0.1),
            _ => return None,
        };
        Some(EfficientNetConfig { channel_multiplier: c, depth_multiplier: d, dropout: p, input_size: r })
    }

    fn round_channels(&self, channels: usize) -> usize {
        make_divisible(channels as f64 * self.channel_multiplier, 8)
    }

    /// The block list after scaling, in forward order.
    fn blocks(&self) -> Vec<BlockPlan> {
        let mut plans = Vec::new();
        let mut in_ch = self.round_channels(STEM_CHANNELS);
        for (kind, repeats, kernel, stride, expansion, out) in STAGES {
            let out = self.round_channels(out);
            let repeats = (repeats as f64 * self.depth_multiplier).ceil() as usize;
            for i in 0..repeats {
                plans.push(BlockPlan { kind, in_ch, out_ch: out, kernel, stride: if i == 0 { stride } else { 1 }, expansion });
                in_ch = out;
            }
        }
        plans
    }

    /// Number of trainable parameters (BatchNorm running statistics excluded) for `classes`
    /// outputs, computed from the plan without building the model.
    pub fn count_params(&self, classes: usize) -> usize {
        let conv = |cin: usize, cout: usize, k: usize, groups: usize| cin / groups * cout * k * k;
        let bn = |c: usize| 2 * c;
        let stem = self.round_channels(STEM_CHANNELS);
        let head = self.round_channels(HEAD_CHANNELS);
        let mut total = conv(3, stem, 3, 1) + bn(stem);
        let plans = self.blocks();
        for p in &plans {
            let mid = p.mid_channels();
            let se = p.se_channels();
            if p.kind == BlockKind::InvertedResidual {
                total += conv(p.in_ch, mid, 1, 1) + bn(mid);
            }
            total += conv(mid, mid, p.kernel, mid) + bn(mid);
            total += conv(mid, se, 1, 1) + se + conv(se, mid, 1, 1) + mid;
            total += conv(mid, p.out_ch, 1, 1) + bn(p.out_ch);
        }
        let last = plans.last().map_or(stem, |p| p.out_ch);
        total + conv(last, head, 1, 1) + bn(head) + head * classes + classes
    }

    /// Builds the network with a `classes`-way linear classifier.
    pub fn init<B: Backend>(&self, classes: usize, dropout: f64, drop_path: f64, device: &B::Device) -> EfficientNet<B> {
        let stem_ch = self.round_channels(STEM_CHANNELS);
        let head_ch = self.round_channels(HEAD_CHANNELS);
        let plans = self.blocks();
        let count = plans.len();
        let blocks = plans.iter().enumerate().map(|(i, p)| p.init(drop_path * i as f64 / count as f64, device)).collect();
        let last = plans.last().map_or(stem_ch, |p| p.out_ch);
        EfficientNet {
            stem: ConvBnAct::new(3, stem_ch, 3, 2, 1, true, device),
            blocks,
            head: ConvBnAct::new(last, head_ch, 1, 1, 1, true, device),
            dropout: DropoutConfig::new(dropout).init(),
            classifier: LinearConfig::new(head_ch, classes).init(device),
        }
    }
}

/// timm's `make_divisible(v, divisor, round_limit=0.9)`.
fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let rounded = (((v + d / 2.0).floor() / d).floor() * d).max(d);
    let rounded = if rounded < 0.9 * v { rounded + d } else { rounded };
    rounded as usize
}

/// Python's `round()` (ties to even), which timm uses for the SE width.
fn round_half_even(v: f64) -> usize {
    let r = v.round();
    let r = if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - v.signum() } else { r };
    r as usize
}

#[derive(Debug, Clone, Copy)]
struct BlockPlan {
    kind: BlockKind,
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    expansion: usize,
}

impl BlockPlan {
    fn mid_channels(&self) -> usize {
        match self.kind {
            BlockKind::DepthwiseSeparable => self.in_ch,
            BlockKind::InvertedResidual => make_divisible((self.in_ch * self.expansion) as f64, 8),
        }
    }

    /// timm divides the SE ratio by the expansion and applies it to the mid width, which is
    /// the block input width × 0.25 up to rounding.
    fn se_channels(&self) -> usize {
        let ratio = SE_RATIO / self.expansion as f64;
        round_half_even(self.mid_channels() as f64 * ratio).max(1)
    }

    fn init<B: Backend>(&self, drop_path: f64, device: &B::Device) -> MbConv<B> {
        let mid = self.mid_channels();
        let expand = (self.kind == BlockKind::InvertedResidual).then(|| ConvBnAct::new(self.in_ch, mid, 1, 1, 1, true, device));
        MbConv {
            expand,
            dw: ConvBnAct::new(mid, mid, self.kernel, self.stride, mid, true, device),
            se: SqueezeExcite::new(mid, self.se_channels(), device),
            project: ConvBnAct::new(mid, self.out_ch, 1, 1, 1, false, device),
            residual: self.stride == 1 && self.in_ch == self.out_ch,
            drop_path: DropPath { prob: drop_path },
        }
    }
}

/// Convolution (no bias, symmetric padding `k / 2`) → BatchNorm → optional SiLU.
#[derive(Module, Debug)]
pub struct ConvBnAct<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
    pub act: bool,
}

impl<B: Backend> ConvBnAct<B> {
    pub fn new(cin: usize, cout: usize, kernel: usize, stride: usize, groups: usize, act: bool, device: &B::Device) -> Self {
        let p = kernel / 2;
        let conv = Conv2dConfig::new([cin, cout], [kernel, kernel])
            .with_stride([stride, stride])
            .with_groups(groups)
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            .init(device);
        ConvBnAct { conv, bn: BatchNorm::new(cout, device), act }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        let device = x.device();
        let x = if self.is_pointwise() {
            if !B::ad_enabled(&device) {
                return self.pointwise_eval(x, None, None);
            }
            self.pointwise(x)
        } else if self.is_depthwise() {
            let (x, weight, stride) = (x.into_primitive().tensor(), self.conv.weight.val().into_primitive().tensor(), self.conv.stride[0]);
            if !B::ad_enabled(&device) {
                // Eval: the BatchNorm (+ SiLU) runs on each output plane as it is made.
                let (scale, shift) = self.bn.eval_scale_shift(&device);
                let (scale, shift) = (scale.into_primitive().tensor(), shift.into_primitive().tensor());
                return Tensor::from_primitive(TensorPrimitive::Float(B::fused_depthwise_conv_affine(
                    x, weight, stride, scale, shift, self.act,
                )));
            }
            Tensor::from_primitive(TensorPrimitive::Float(B::fused_depthwise_conv(x, weight, stride)))
        } else if self.is_dense() {
            let out =
                B::fused_dense_conv(x.into_primitive().tensor(), self.conv.weight.val().into_primitive().tensor(), self.conv.stride[0]);
            Tensor::from_primitive(TensorPrimitive::Float(out))
        } else {
            self.conv.forward(x)
        };
        self.bn.forward_then(x, self.act)
    }

    /// `forward(x · gate) (+ residual)`, `gate` `[N, C_in, 1, 1]`: a projection after
    /// squeeze-excite. In eval mode a 1×1 convolution applies the gate, its BatchNorm, SiLU
    /// and the residual inside each output block while it is in cache
    /// ([`ModelBackend::fused_pointwise_conv_affine`]).
    pub fn forward_gated(&self, x: Tensor<B, 4>, gate: Tensor<B, 4>, residual: Option<Tensor<B, 4>>) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        if self.is_pointwise() && !B::ad_enabled(&x.device()) {
            let [n, c, ..] = gate.dims();
            return self.pointwise_eval(x, Some(gate.reshape([n, c])), residual);
        }
        let y = self.forward(x * gate);
        match residual {
            Some(r) => y + r,
            None => y,
        }
    }

    /// Eval mode's (gate →) 1×1 convolution → BatchNorm → optional SiLU (→ `+ residual`) as
    /// one op ([`ModelBackend::fused_pointwise_conv_affine`]).
    fn pointwise_eval(&self, x: Tensor<B, 4>, gate: Option<Tensor<B, 2>>, residual: Option<Tensor<B, 4>>) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        let (scale, shift) = self.bn.eval_scale_shift(&x.device());
        let around = PointwiseEval {
            gate: gate.map(|g| g.into_primitive().tensor()),
            scale: scale.into_primitive().tensor(),
            shift: shift.into_primitive().tensor(),
            silu: self.act,
            residual: residual.map(|r| r.into_primitive().tensor()),
        };
        let out = B::fused_pointwise_conv_affine(x.into_primitive().tensor(), self.conv.weight.val().into_primitive().tensor(), around);
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    /// A 1×1, stride-1, ungrouped convolution: most of EfficientNet's arithmetic.
    fn is_pointwise(&self) -> bool {
        let c = &self.conv;
        c.kernel_size == [1, 1] && c.stride == [1, 1] && c.groups == 1 && c.bias.is_none()
    }

    /// One filter per channel, square kernel, padding `k / 2`, no bias: what
    /// [`ModelBackend::fused_depthwise_conv`] computes.
    fn is_depthwise(&self) -> bool {
        let [cout, per_group, ..] = self.conv.weight.dims();
        self.conv.groups == cout && per_group == 1 && self.is_square_padded()
    }

    /// Ungrouped, square kernel, padding `k / 2`, no bias: what
    /// [`ModelBackend::fused_dense_conv`] computes.
    fn is_dense(&self) -> bool {
        self.conv.groups == 1 && self.is_square_padded()
    }

    /// Square kernel, one stride for both axes, padding `k / 2` on every side, dilation 1, no bias.
    fn is_square_padded(&self) -> bool {
        let c = &self.conv;
        let [_, _, k, k2] = c.weight.dims();
        let pad = k / 2;
        k == k2
            && c.stride[0] == c.stride[1]
            && c.dilation == [1, 1]
            && c.bias.is_none()
            && matches!(c.padding, PaddingConfig2d::Explicit(a, b, c, d) if [a, b, c, d] == [pad; 4])
    }

    /// The 1×1 convolution as a matmul ([`ModelBackend::fused_pointwise_conv`]). Same result
    /// as `conv.forward` (a 1×1 kernel has no padding), but burn-flex 0.21's conv backward
    /// takes the weight gradient through strided copies and a generic convolution.
    fn pointwise(&self, x: Tensor<B, 4>) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        let out = B::fused_pointwise_conv(x.into_primitive().tensor(), self.conv.weight.val().into_primitive().tensor());
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

/// Squeeze-excite: global average ([`plane_means`]) → 1×1 conv → SiLU → 1×1 conv → sigmoid gate.
#[derive(Module, Debug)]
pub struct SqueezeExcite<B: Backend> {
    pub reduce: Conv2d<B>,
    pub expand: Conv2d<B>,
}

impl<B: Backend> SqueezeExcite<B> {
    fn new(channels: usize, reduced: usize, device: &B::Device) -> Self {
        SqueezeExcite {
            reduce: Conv2dConfig::new([channels, reduced], [1, 1]).init(device),
            expand: Conv2dConfig::new([reduced, channels], [1, 1]).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        let s = self.gate(x.clone());
        // `s` is [N, C, 1, 1]: the fast broadcast shape on flex.
        x * s
    }

    /// The per-image, per-channel scale `[N, C, 1, 1]` that [`forward`](Self::forward) applies.
    fn gate(&self, x: Tensor<B, 4>) -> Tensor<B, 4>
    where
        B: ModelBackend,
    {
        let [n, c, _, _] = x.dims();
        let squeezed = plane_means(x).reshape([n, c, 1, 1]);
        sigmoid(self.expand.forward(silu(self.reduce.forward(squeezed))))
    }
}

/// Stochastic depth on the residual branch, active only on an autodiff (training) backend,
/// the same rule as burn's `Dropout`.
#[derive(Module, Clone, Debug)]
pub struct DropPath {
    pub prob: f64,
}

impl DropPath {
    pub fn forward<B: Backend>(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        if self.prob == 0.0 || !B::ad_enabled(&x.device()) {
            return x;
        }
        let keep = 1.0 - self.prob;
        let mask = Tensor::<B, 4>::random([x.dims()[0], 1, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask / keep
    }
}

/// One MBConv block (timm's `DepthwiseSeparableConv` when `expand` is `None`, else
/// `InvertedResidual`).
#[derive(Module, Debug)]
pub struct MbConv<B: Backend> {
    pub expand: Option<ConvBnAct<B>>,
    pub dw: ConvBnAct<B>,
    pub se: SqueezeExcite<B>,
    pub project: ConvBnAct<B>,
    pub residual: bool,
    pub drop_path: DropPath,
}

impl<B: ModelBackend> MbConv<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let shortcut = x.clone();
        let x = match &self.expand {
            Some(e) => e.forward(x),
            None => x,
        };
        let x = self.dw.forward(x);
        if !B::ad_enabled(&x.device()) {
            // Eval: drop-path is the identity; the projection applies the gate and adds the
            // shortcut itself.
            let gate = self.se.gate(x.clone());
            return self.project.forward_gated(x, gate, self.residual.then_some(shortcut));
        }
        let x = self.project.forward(self.se.forward(x));
        if self.residual { self.drop_path.forward(x) + shortcut } else { x }
    }
}

/// The whole network: stem → blocks → head conv → global pool ([`plane_means`]) → dropout →
/// linear.
#[derive(Module, Debug)]
pub struct EfficientNet<B: Backend> {
    pub stem: ConvBnAct<B>,
    pub blocks: Vec<MbConv<B>>,
    pub head: ConvBnAct<B>,
    pub dropout: Dropout,
    pub classifier: Linear<B>,
}

impl<B: ModelBackend> EfficientNet<B> {
    /// `[N, 3, H, W]` → logits `[N, classes]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = self.stem.forward(x);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = plane_means(self.head.forward(x));
        self.classifier.forward(self.dropout.forward(x))
    }

    /// Number of blocks (the `blocks.{k}` indices that timm's `blocks.{s}.{i}` flatten to).
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
}

/// `(stage, index within stage)` of each flattened block, for timm key remapping.
pub fn stage_layout(config: &EfficientNetConfig) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (s, (_, repeats, ..)) in STAGES.iter().enumerate() {
        let r = (*repeats as f64 * config.depth_multiplier).ceil() as usize;
        out.extend((0..r).map(|i| (s, i)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_timm() {
        // Values worked through timm's formula by hand.
        assert_eq!(make_divisible(32.0 * 1.1, 8), 32);
        assert_eq!(make_divisible(16.0 * 1.1, 8), 16);
        assert_eq!(make_divisible(40.0 * 1.4, 8), 56);
        assert_eq!(make_divisible(40.0 * 0.25, 8), 16); // 8 < 0.9 × 10 → bumped
        assert_eq!(make_divisible(1280.0 * 1.8, 8), 2304);
    }

    #[test]
    fn round_half_even_is_pythons_round() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(4.0000001), 4);
        assert_eq!(round_half_even(6.4), 6);
    }
}
