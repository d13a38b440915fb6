//! [`ModelBackend`] on burn-flex: the BatchNorm kernels here, the depthwise ones in
//! `depthwise.rs`, the dense convolution's column matrices in `dense.rs`, the eval-mode 1×1
//! convolution with its epilogue in `pointwise.rs`, and the 1×1 weight gradient as one product
//! over the batch.
//!
//! Layout: `x` is `[N, C, H, W]`, read as `N·C` rows of `H·W` values; row `r` belongs to
//! channel `r % C`. Channel statistics run one rayon task per channel, each summing its rows
//! in order (so the sums do not depend on the thread count); elementwise passes split the rows
//! into tasks. Each row kernel is compiled twice, with AVX2 and for the baseline, and picked at
//! run time; both give the same bits (see `vmath`).
//!
//! Non-f32 tensors fall back to [`reference`](mod@reference), as do the ops flex already runs well (the
//! training-mode 1×1 forward, a matmul).

use std::mem::MaybeUninit;

use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::dense::SharedOut;
use super::{AdamWStep, ModelBackend, PointwiseEval, dense, depthwise, float, pointwise, reference, vmath};

/// Lanes per kernel step: two AVX registers, so the loop body has two independent chains.
const LANES: usize = 16;
/// Fewest elements worth a rayon task of their own.
const MIN_TASK_ELEMS: usize = 1 << 14;

impl ModelBackend for Flex {
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        silu: bool,
    ) -> [FloatTensor<Self>; 3] {
        let (Some(x), Some(gamma), Some(beta)) = (f32_contiguous(&x), f32_contiguous(&gamma), f32_contiguous(&beta)) else {
            return reference::on_primitives::batch_norm_train::<Flex>(x, gamma, beta, epsilon, silu);
        };
        let rows = Rows::of(&x);
        let xs = slice(&x);
        let (gamma, beta) = (slice(&gamma), slice(&beta));
        let stats: Vec<(f64, f64)> = (0..rows.channels)
            .into_par_iter()
            .with_min_len(rows.channels_per_task())
            .map(|c| {
                // Shift by a value of the channel so the one-pass variance does not cancel.
                let shift = xs.get(c * rows.len).copied().unwrap_or(0.0);
                let (s1, s2) = rows.of_channel(c).fold((0.0f64, 0.0f64), |(a, b), r| {
                    let (ra, rb) = row_shifted_sums(&xs[r], shift);
                    (a + ra as f64, b + rb as f64)
                });
                let count = rows.count_per_channel() as f64;
                let mean_shifted = s1 / count;
                (shift as f64 + mean_shifted, (s2 / count - mean_shifted * mean_shifted).max(0.0))
            })
            .collect();
        let (scale, offset): (Vec<f32>, Vec<f32>) = stats
            .iter()
            .enumerate()
            .map(|(c, &(mean, var))| {
                let a = gamma[c] as f64 / (var + epsilon).sqrt();
                (a as f32, (beta[c] as f64 - mean * a) as f32)
            })
            .unzip();
        let y = rows.map_rows(|r, c, out| row_affine(&xs[r], scale[c], offset[c], silu, out));
        let mean = stats.iter().map(|s| s.0 as f32).collect();
        let var = stats.iter().map(|s| s.1 as f32).collect();
        [tensor(y, x.shape()), tensor(mean, [rows.channels]), tensor(var, [rows.channels])]
    }

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
        let all = [&x, &gamma, &beta, &mean, &var, &grad].map(f32_contiguous);
        let [Some(x), Some(gamma), Some(beta), Some(mean), Some(var), Some(grad)] = all else {
            return reference::on_primitives::batch_norm_train_backward::<Flex>(x, gamma, beta, mean, var, epsilon, silu, grad);
        };
        let rows = Rows::of(&x);
        let (xs, gs) = (slice(&x), slice(&grad));
        let (gamma, beta, mean, var) = (slice(&gamma), slice(&beta), slice(&mean), slice(&var));
        // The forward's per-channel affine, recomputed the same way so `z` matches it.
        let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + epsilon).sqrt()).collect();
        let scale: Vec<f32> = (0..rows.channels).map(|c| (gamma[c] as f64 * inv_std[c]) as f32).collect();
        let offset: Vec<f32> = (0..rows.channels).map(|c| (beta[c] as f64 - mean[c] as f64 * scale[c] as f64) as f32).collect();
        // Σ g_z and Σ g_z·(x − mean) per channel, where g_z is the gradient at the BatchNorm
        // output. After a SiLU, g_z (a sigmoid and a division per value) is also kept, in the
        // buffer that becomes dx, so the second pass does not compute it again.
        let total = rows.batch * rows.channels * rows.len;
        let mut dx: Vec<f32> = Vec::with_capacity(if silu { total } else { 0 });
        let kept = SharedOut(dx.as_mut_ptr());
        let sums: Vec<(f64, f64)> = (0..rows.channels)
            .into_par_iter()
            .with_min_len(rows.channels_per_task())
            .map(|c| {
                rows.of_channel(c).fold((0.0f64, 0.0f64), |(a, b), r| {
                    let (ra, rb) = if silu {
                        // SAFETY: `r` is a row of channel `c`, inside `dx`'s capacity (the shape
                        // of `x`), and only this channel's task touches it.
                        let gz = unsafe { kept.uninit_segment(r.start, r.len()) };
                        row_grad_sums_keeping(&xs[r.clone()], &gs[r], scale[c], offset[c], mean[c], gz)
                    } else {
                        row_grad_sums(&xs[r.clone()], &gs[r], scale[c], offset[c], mean[c], false)
                    };
                    (a + ra as f64, b + rb as f64)
                })
            })
            .collect();
        let count = rows.count_per_channel() as f64;
        let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        let dgamma: Vec<f32> = sums.iter().zip(&inv_std).map(|(s, i)| (s.1 * i) as f32).collect();
        // dx = γ/σ · (g_z − Σg_z/M − x̂ · Σ(g_z·x̂)/M), expanded to dx = A·g_z + B·x + C.
        let coefficients: Vec<[f32; 3]> = (0..rows.channels)
            .map(|c| {
                let a = gamma[c] as f64 * inv_std[c];
                let b = -a * inv_std[c] * (sums[c].1 * inv_std[c]) / count;
                let k = -a * sums[c].0 / count - b * mean[c] as f64;
                [a as f32, b as f32, k as f32]
            })
            .collect();
        if silu {
            // SAFETY: the first pass wrote every row of every channel.
            unsafe { dx.set_len(total) };
            rows.update_rows(&mut dx, |r, c, row| row_input_grad_from_kept(&xs[r], coefficients[c], row));
        } else {
            dx = rows.map_rows(|r, c, out| row_input_grad(&xs[r.clone()], &gs[r], scale[c], offset[c], false, coefficients[c], out));
        }
        [tensor(dx, x.shape()), tensor(dgamma, [rows.channels]), tensor(dbeta, [rows.channels])]
    }

    fn fused_channel_affine(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, silu: bool) -> FloatTensor<Self> {
        let (Some(x), Some(scale), Some(shift)) = (f32_contiguous(&x), f32_contiguous(&scale), f32_contiguous(&shift)) else {
            return reference::on_primitives::channel_affine::<Flex>(x, scale, shift, silu);
        };
        let rows = Rows::of(&x);
        let (xs, scale, shift) = (slice(&x), slice(&scale), slice(&shift));
        let y = rows.map_rows(|r, c, out| row_affine(&xs[r], scale[c], shift[c], silu, out));
        tensor(y, x.shape())
    }

    fn fused_pointwise_conv_affine(x: FloatTensor<Self>, weight: FloatTensor<Self>, around: PointwiseEval<Self>) -> FloatTensor<Self> {
        let all = [&x, &weight, &around.scale, &around.shift].map(f32_contiguous);
        let [gate_f32, residual_f32] = [&around.gate, &around.residual].map(|t| t.as_ref().map(f32_contiguous));
        let ([Some(xc), Some(weight), Some(scale), Some(shift)], None | Some(Some(_)), None | Some(Some(_))) =
            (all, &gate_f32, &residual_f32)
        else {
            return super::pointwise_conv_affine_apart::<Flex>(x, weight, around);
        };
        let silu = around.silu;
        let [n, cin, h, w] = xc.shape().dims::<4>();
        let cout = weight.shape()[0];
        let (scale, shift) = (slice(&scale), slice(&shift));
        let (gate, residual) = (gate_f32.flatten(), residual_f32.flatten());
        let weights = match &gate {
            Some(gate) => pointwise::Weights::Gated { weight: slice(&weight), gate: slice(gate) },
            None => pointwise::Weights::Shared(slice(&weight)),
        };
        let residual = residual.as_ref().map(slice);
        let y = pointwise::forward_then(slice(&xc), [n, cin, h * w], weights, cout, |image, c, columns, row| {
            let shortcut = residual.map(|r| &r[(image * cout + c) * h * w..][columns]);
            row_affine_in_place(row, scale[c], shift[c], silu, shortcut);
        });
        tensor(y, [n, cout, h, w])
    }

    fn fused_pointwise_conv_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> [FloatTensor<Self>; 2] {
        let (Some(xc), Some(gc)) = (f32_contiguous(&x), f32_contiguous(&grad)) else {
            return reference::on_primitives::pointwise_conv_backward::<Flex>(x, weight, grad);
        };
        let (xs, ws) = (xc.shape(), weight.shape());
        let ([n, cin, h, w], cout) = ([xs[0], xs[1], xs[2], xs[3]], ws[0]);
        if !reference::weight_grad_as_one_product(n, cout, cin, h * w) {
            return reference::on_primitives::pointwise_conv_backward::<Flex>(xc, weight, gc);
        }
        // One product over N·H·W: flex would move the batch axis through a per-element strided
        // iterator; rows of H·W stay contiguous, so copy them whole.
        let grad_rows: Tensor<Flex, 2> = float(tensor(swap_outer_axes(slice(&gc), n, cout, h * w), [cout, n * h * w]));
        let x_rows: Tensor<Flex, 2> = float(tensor(swap_outer_axes(slice(&xc), n, cin, h * w), [cin, n * h * w]));
        let dw = grad_rows.matmul(x_rows.transpose()).reshape([cout, cin, 1, 1]);
        let dx = reference::pointwise_input_grad::<Flex>(float(weight), float::<Flex, 4>(gc).reshape([n, cout, h * w]));
        [dx.reshape([n, cin, h, w]).into_primitive().tensor(), dw.into_primitive().tensor()]
    }

    fn fused_dense_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize) -> FloatTensor<Self> {
        let [y, _] = Self::fused_dense_conv_saving(x, weight, stride);
        y
    }

    /// Saves the column matrix (`[C·k·k, N·P]`, rank 2) for the backward, or `x` (rank 4)
    /// where the tensors are not f32 and the reference runs.
    fn fused_dense_conv_saving(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize) -> [FloatTensor<Self>; 2] {
        let (Some(x), Some(weight)) = (f32_contiguous(&x), f32_contiguous(&weight)) else {
            return [reference::on_primitives::dense_conv::<Flex>(x.clone(), weight, stride), x];
        };
        let (g, cout) = dense_geometry(x.shape().dims(), &weight, stride);
        let cols = column_matrix(&g, slice(&x));
        // [C_out, N·P], one product for the whole batch, then back to [N, C_out, P].
        let y = float::<Flex, 4>(weight).reshape([cout, dense::col_rows(&g)]).matmul(cols.clone());
        let y = f32_contiguous(&y.into_primitive().tensor()).expect("a matmul of f32 tensors is f32");
        let y = tensor(swap_outer_axes(slice(&y), cout, g.batch, g.out_plane()), [g.batch, cout, g.out_height, g.out_width]);
        [y, cols.into_primitive().tensor()]
    }

    fn fused_dense_conv_backward(
        saved: FloatTensor<Self>,
        x_shape: [usize; 4],
        weight: FloatTensor<Self>,
        stride: usize,
        grad: FloatTensor<Self>,
        input_grad: bool,
    ) -> (Option<FloatTensor<Self>>, FloatTensor<Self>) {
        let (Some(saved), Some(weight), Some(grad)) = (f32_contiguous(&saved), f32_contiguous(&weight), f32_contiguous(&grad)) else {
            return reference::on_primitives::dense_conv_backward::<Flex>(saved, weight, stride, grad, input_grad);
        };
        let (g, cout) = dense_geometry(x_shape, &weight, stride);
        // The forward saved the columns; `x` itself only where it ran the reference, and then
        // (f32 here) the columns are built now.
        let cols: Tensor<Flex, 2> = if saved.shape().num_dims() == 2 { float(saved) } else { column_matrix(&g, slice(&saved)) };
        let weight_shape = weight.shape();
        let grad_rows: Tensor<Flex, 2> =
            float(tensor(swap_outer_axes(slice(&grad), g.batch, cout, g.out_plane()), [cout, g.batch * g.out_plane()]));
        let weight = float::<Flex, 4>(weight).reshape([cout, dense::col_rows(&g)]);
        let (dx, dw) = rayon::join(
            || {
                input_grad.then(|| {
                    let dcols = weight.transpose().matmul(grad_rows.clone()).into_primitive().tensor();
                    let dcols = f32_contiguous(&dcols).expect("a matmul of f32 tensors is f32");
                    tensor(dense::col2im(&g, slice(&dcols)), x_shape)
                })
            },
            || dense_weight_grad(grad_rows.clone(), cols),
        );
        let dw: Tensor<Flex, 4> = dw.reshape(weight_shape);
        (dx, dw.into_primitive().tensor())
    }

    fn fused_plane_means(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(x) = f32_contiguous(&x) else {
            return reference::on_primitives::plane_means::<Flex>(x);
        };
        let rows = Rows::of(&x);
        let xs = slice(&x);
        let means: Vec<f32> = (0..rows.batch * rows.channels)
            .into_par_iter()
            .with_min_len(MIN_TASK_ELEMS.div_ceil(rows.len.max(1)))
            // Σ(x − 0) is Σx, value for value: the statistics kernel's first sum.
            .map(|r| row_shifted_sums(&xs[r * rows.len..][..rows.len], 0.0).0 / rows.len as f32)
            .collect();
        tensor(means, [rows.batch, rows.channels])
    }

    fn fused_plane_means_backward(x_shape: [usize; 4], grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(grad) = f32_contiguous(&grad) else {
            return reference::on_primitives::plane_means_backward::<Flex>(x_shape, grad);
        };
        let [batch, channels, h, w] = x_shape;
        let rows = Rows { batch, channels, len: h * w };
        let gs = slice(&grad);
        let dx = rows.map_rows(|r, _, out| {
            let g = gs[r.start / rows.len] / rows.len as f32;
            out.fill(MaybeUninit::new(g));
        });
        tensor(dx, x_shape)
    }

    fn fused_depthwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize) -> FloatTensor<Self> {
        let (Some(x), Some(weight)) = (f32_contiguous(&x), f32_contiguous(&weight)) else {
            return reference::on_primitives::depthwise_conv::<Flex>(x, weight, stride);
        };
        let g = depthwise_geometry(&x, &weight, stride);
        let y = depthwise::forward(&g, slice(&x), slice(&weight));
        tensor(y, [g.batch, g.channels, g.out_height, g.out_width])
    }

    fn fused_depthwise_conv_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        silu: bool,
    ) -> FloatTensor<Self> {
        let all = [&x, &weight, &scale, &shift].map(f32_contiguous);
        let [Some(x), Some(weight), Some(scale), Some(shift)] = all else {
            return reference::on_primitives::channel_affine::<Flex>(Self::fused_depthwise_conv(x, weight, stride), scale, shift, silu);
        };
        let g = depthwise_geometry(&x, &weight, stride);
        let (scale, shift) = (slice(&scale), slice(&shift));
        let y = depthwise::forward_then(&g, slice(&x), slice(&weight), |p, plane, out| {
            let c = p % g.channels;
            row_affine(plane, scale[c], shift[c], silu, out);
        });
        tensor(y, [g.batch, g.channels, g.out_height, g.out_width])
    }

    fn fused_depthwise_conv_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        let (Some(x), Some(weight), Some(grad)) = (f32_contiguous(&x), f32_contiguous(&weight), f32_contiguous(&grad)) else {
            return reference::on_primitives::depthwise_conv_backward::<Flex>(x, weight, stride, grad);
        };
        let g = depthwise_geometry(&x, &weight, stride);
        let (xs, ws, gs) = (slice(&x), slice(&weight), slice(&grad));
        let (dx, dw) = rayon::join(|| depthwise::input_grad(&g, gs, ws), || depthwise::weight_grad(&g, xs, gs));
        [tensor(dx, x.shape()), tensor(dw, weight.shape())]
    }

    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moments: Option<[FloatTensor<Self>; 2]>,
        step: &AdamWStep,
    ) -> [FloatTensor<Self>; 3] {
        let all_f32 = [Some(&param), Some(&grad), moments.as_ref().map(|m| &m[0]), moments.as_ref().map(|m| &m[1])]
            .into_iter()
            .flatten()
            .all(|t| t.dtype() == DType::F32);
        if !all_f32 {
            return reference::on_primitives::adamw::<Flex>(param, grad, moments, step);
        }
        let n = param.shape().num_elements();
        let grad = grad.to_contiguous();
        // Updated in place: the parameter and moments are usually this step's only holders
        // (`storage_mut` copies them first when not).
        let (mut param, first) = (owned_contiguous(param), moments.is_none());
        let [mut moment_1, mut moment_2] = match moments {
            Some([m1, m2]) => [owned_contiguous(m1), owned_contiguous(m2)],
            None => [tensor(vec![0.0; n], param.shape()), tensor(vec![0.0; n], param.shape())],
        };
        let k = AdamWScalars::of(step);
        let g = &slice(&grad)[..n];
        let (p, m1, m2) =
            (&mut param.storage_mut::<f32>()[..n], &mut moment_1.storage_mut::<f32>()[..n], &mut moment_2.storage_mut::<f32>()[..n]);
        let task = 4 * MIN_TASK_ELEMS;
        p.par_chunks_mut(task).zip(m1.par_chunks_mut(task)).zip(m2.par_chunks_mut(task)).zip(g.par_chunks(task)).for_each(
            |(((p, m1), m2), g)| {
                if first {
                    adamw_first(p, m1, m2, g, &k);
                } else {
                    adamw_next(p, m1, m2, g, &k);
                }
            },
        );
        [param, moment_1, moment_2]
    }
}

/// `t` contiguous from offset 0 and no longer shared with the caller's copy, so that updating
/// it in place does not copy it (unless something else still holds it).
fn owned_contiguous(t: FlexTensor) -> FlexTensor {
    let contiguous = t.to_contiguous(); // `t` itself when already contiguous: a second handle
    drop(t);
    contiguous
}

/// [`AdamWStep`] as the `f32` scalars burn's tensor ops apply (each scalar is rounded to the
/// tensor's `f32` by the op).
struct AdamWScalars {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    /// `1 - lr · weight_decay`, `None` when that product is 0 (burn then skips the multiply).
    keep: Option<f32>,
    lr: f32,
}

impl AdamWScalars {
    fn of(s: &AdamWStep) -> Self {
        AdamWScalars {
            beta_1: s.beta_1,
            beta_2: s.beta_2,
            factor_1: 1.0 - s.beta_1,
            factor_2: 1.0 - s.beta_2,
            correction_1: s.correction_1,
            correction_2: s.correction_2,
            epsilon: s.epsilon,
            keep: (s.decay_rate != 0.0).then_some((1.0 - s.decay_rate) as f32),
            lr: s.lr as f32,
        }
    }
}

dispatch!(fn adamw_first(p: &mut [f32], m1: &mut [f32], m2: &mut [f32], g: &[f32], k: &AdamWScalars) -> () => adamw_update_first);
dispatch!(fn adamw_next(p: &mut [f32], m1: &mut [f32], m2: &mut [f32], g: &[f32], k: &AdamWScalars) -> () => adamw_update_next);

#[inline(always)]
fn adamw_update_first(p: &mut [f32], m1: &mut [f32], m2: &mut [f32], g: &[f32], k: &AdamWScalars) {
    adamw_update::<true>(p, m1, m2, g, k);
}

#[inline(always)]
fn adamw_update_next(p: &mut [f32], m1: &mut [f32], m2: &mut [f32], g: &[f32], k: &AdamWScalars) {
    adamw_update::<false>(p, m1, m2, g, k);
}

/// The AdamW update of `p` and its moments, value by value, with the operations (each rounded
/// to `f32`) in the order of burn's tensor ops ([`reference::adamw`]); on
/// the `FIRST` step the moments start from the gradient alone.
#[inline(always)]
fn adamw_update<const FIRST: bool>(p: &mut [f32], m1: &mut [f32], m2: &mut [f32], g: &[f32], k: &AdamWScalars) {
    for (((p, m1), m2), &g) in p.iter_mut().zip(m1.iter_mut()).zip(m2.iter_mut()).zip(g) {
        let (new_1, new_2) = if FIRST {
            (g * k.factor_1, (g * g) * k.factor_2)
        } else {
            (*m1 * k.beta_1 + g * k.factor_1, *m2 * k.beta_2 + (g * g) * k.factor_2)
        };
        *m1 = new_1;
        *m2 = new_2;
        let delta = (new_1 / k.correction_1) / ((new_2 / k.correction_2).sqrt() + k.epsilon);
        let decayed = match k.keep {
            Some(keep) => *p * keep,
            None => *p,
        };
        *p = decayed - delta * k.lr;
    }
}

fn depthwise_geometry(x: &FlexTensor, weight: &FlexTensor, stride: usize) -> depthwise::Geometry {
    let (xs, ws) = (x.shape(), weight.shape());
    assert!(
        xs.len() == 4 && ws.len() == 4 && ws[0] == xs[1] && ws[1] == 1 && ws[2] == ws[3],
        "depthwise conv takes x [N, C, H, W] and weight [C, 1, k, k], got {:?} and {:?}",
        &xs[..],
        &ws[..]
    );
    depthwise::Geometry::new([xs[0], xs[1], xs[2], xs[3]], ws[2], stride)
}

/// Geometry (`channels` the input channels) and output channels of a dense convolution of an
/// input of shape `x`.
fn dense_geometry(x: [usize; 4], weight: &FlexTensor, stride: usize) -> (depthwise::Geometry, usize) {
    let ws = weight.shape();
    assert!(
        ws.len() == 4 && ws[1] == x[1] && ws[2] == ws[3],
        "dense conv takes x [N, C_in, H, W] and weight [C_out, C_in, k, k], got {x:?} and {:?}",
        &ws[..]
    );
    (depthwise::Geometry::new(x, ws[2], stride), ws[0])
}

/// `g · colsᵀ` (`[C_out, N·P]` by `[C·k·k, N·P]`): the dense weight gradient. The product is
/// long and thin (`N·P` terms per output, few outputs), which one gemm call runs on about one
/// core; so it is summed over a fixed number of column chunks in parallel, the partial
/// products added in chunk order. The chunk count depends on the shapes only, never on the
/// thread count, so the bits do not either.
fn dense_weight_grad(grad_rows: Tensor<Flex, 2>, cols: Tensor<Flex, 2>) -> Tensor<Flex, 2> {
    const MIN_CHUNK_COLUMNS: usize = 2048;
    const MAX_CHUNKS: usize = 8;
    let [cout, len] = grad_rows.dims();
    let rows = cols.dims()[0];
    let chunks = (len / MIN_CHUNK_COLUMNS).clamp(1, MAX_CHUNKS);
    let per_chunk = len.div_ceil(chunks);
    let partials: Vec<Tensor<Flex, 2>> = (0..chunks)
        .into_par_iter()
        .map(|i| {
            let range = i * per_chunk..((i + 1) * per_chunk).min(len);
            grad_rows.clone().slice([0..cout, range.clone()]).matmul(cols.clone().slice([0..rows, range]).transpose())
        })
        .collect();
    partials.into_iter().reduce(|sum, p| sum + p).expect("at least one chunk")
}

/// [`dense::im2col`] of `x` as a `[C·k·k, N·P]` tensor.
fn column_matrix(g: &depthwise::Geometry, x: &[f32]) -> Tensor<Flex, 2> {
    float(tensor(dense::im2col(g, x), [dense::col_rows(g), g.batch * g.out_plane()]))
}

/// `[A, B, L]` → `[B, A, L]`: rows of `L` values stay whole, the two outer axes swap. From
/// `[N, C, H·W]` it gives `[C, N·H·W]` (row `c` holds channel `c` of every image in turn), the
/// layout of one product over the batch; from `[C_out, N, P]` it gives the `[N, C_out, P]`
/// activation back.
fn swap_outer_axes(values: &[f32], a: usize, b: usize, len: usize) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(a * b * len);
    if len > 0 {
        out.spare_capacity_mut()[..a * b * len].par_chunks_mut(a * len).enumerate().for_each(|(j, row)| {
            for (i, dst) in row.chunks_mut(len).enumerate() {
                let src = &values[(i * b + j) * len..][..len];
                for (d, &v) in dst.iter_mut().zip(src) {
                    d.write(v);
                }
            }
        });
    }
    // SAFETY: each of the `b` rows of `a·len` values was written above.
    unsafe { out.set_len(a * b * len) };
    out
}

fn f32_contiguous(t: &FlexTensor) -> Option<FlexTensor> {
    (t.dtype() == DType::F32).then(|| t.to_contiguous())
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("f32_contiguous gave a contiguous f32 tensor")
}

fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `[N, C, H, W]` as rows of `H·W`.
#[derive(Clone, Copy)]
struct Rows {
    batch: usize,
    channels: usize,
    len: usize,
}

impl Rows {
    fn of(x: &FlexTensor) -> Rows {
        let shape = x.shape();
        assert_eq!(shape.len(), 4, "fused batch norm takes [N, C, H, W], got {:?}", &shape[..]);
        Rows { batch: shape[0], channels: shape[1], len: shape[2] * shape[3] }
    }

    fn count_per_channel(&self) -> usize {
        self.batch * self.len
    }

    /// The element ranges of channel `c`'s rows, in batch order.
    fn of_channel(&self, c: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        (0..self.batch).map(move |n| {
            let start = (n * self.channels + c) * self.len;
            start..start + self.len
        })
    }

    fn channels_per_task(&self) -> usize {
        MIN_TASK_ELEMS.div_ceil(self.count_per_channel().max(1))
    }

    /// Each row of `values` (`[N, C, H, W]`) rewritten in place by `update(row range,
    /// channel, row)`.
    fn update_rows(&self, values: &mut [f32], update: impl Fn(std::ops::Range<usize>, usize, &mut [f32]) + Sync) {
        if self.len == 0 {
            return;
        }
        let rows_per_task = MIN_TASK_ELEMS.div_ceil(self.len);
        values.par_chunks_mut(rows_per_task * self.len).enumerate().for_each(|(task, chunk)| {
            for (i, row) in chunk.chunks_mut(self.len).enumerate() {
                let r = task * rows_per_task + i;
                update(r * self.len..(r + 1) * self.len, r % self.channels, row);
            }
        });
    }

    /// A new `[N, C, H, W]` buffer, each row written by `write(row range, channel, out row)`,
    /// which must initialise every value of its row.
    fn map_rows(&self, write: impl Fn(std::ops::Range<usize>, usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
        let total = self.batch * self.channels * self.len;
        let mut out: Vec<f32> = Vec::with_capacity(total);
        if self.len > 0 {
            let rows_per_task = MIN_TASK_ELEMS.div_ceil(self.len);
            out.spare_capacity_mut()[..total].par_chunks_mut(rows_per_task * self.len).enumerate().for_each(|(task, chunk)| {
                for (i, row) in chunk.chunks_mut(self.len).enumerate() {
                    let r = task * rows_per_task + i;
                    write(r * self.len..(r + 1) * self.len, r % self.channels, row);
                }
            });
        }
        // SAFETY: every row of the `total` values was initialised by `write` above.
        unsafe { out.set_len(total) };
        out
    }
}

dispatch!(fn row_shifted_sums(x: &[f32], shift: f32) -> (f32, f32) => shifted_sums);
dispatch!(fn row_affine(x: &[f32], scale: f32, offset: f32, silu: bool, out: &mut [MaybeUninit<f32>]) -> () => affine);
dispatch!(fn row_affine_in_place(row: &mut [f32], scale: f32, offset: f32, silu: bool, residual: Option<&[f32]>) -> () => affine_in_place);
dispatch!(fn row_grad_sums(x: &[f32], g: &[f32], scale: f32, offset: f32, mean: f32, silu: bool) -> (f32, f32) => grad_sums);
dispatch!(fn row_input_grad(x: &[f32], g: &[f32], scale: f32, offset: f32, silu: bool, k: [f32; 3], out: &mut [MaybeUninit<f32>]) -> () => input_grad);
dispatch!(fn row_grad_sums_keeping(x: &[f32], g: &[f32], scale: f32, offset: f32, mean: f32, kept: &mut [MaybeUninit<f32>]) -> (f32, f32) => grad_sums_keeping);
dispatch!(fn row_input_grad_from_kept(x: &[f32], k: [f32; 3], row: &mut [f32]) -> () => input_grad_from_kept);

/// Σ(x − shift) and Σ(x − shift)² over a row, in `LANES` partial sums combined pairwise.
#[inline(always)]
fn shifted_sums(x: &[f32], shift: f32) -> (f32, f32) {
    let (mut s1, mut s2) = ([0.0f32; LANES], [0.0f32; LANES]);
    let mut blocks = x.chunks_exact(LANES);
    for block in &mut blocks {
        for i in 0..LANES {
            let d = block[i] - shift;
            s1[i] += d;
            s2[i] += d * d;
        }
    }
    for (i, &v) in blocks.remainder().iter().enumerate() {
        let d = v - shift;
        s1[i] += d;
        s2[i] += d * d;
    }
    (horizontal_sum(s1), horizontal_sum(s2))
}

#[inline(always)]
fn horizontal_sum(mut lanes: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// `z = x·scale + offset`, then `z·σ(z)` when `SILU`.
#[inline(always)]
fn activate<const SILU: bool>(x: f32, scale: f32, offset: f32) -> f32 {
    let z = x * scale + offset;
    if SILU { z * vmath::sigmoid(z) } else { z }
}

/// The gradient at `z = x·scale + offset` given the gradient `g` after the optional SiLU:
/// d/dz z·σ(z) = σ(z)·(1 + z·(1 − σ(z))).
#[inline(always)]
fn grad_at_z<const SILU: bool>(x: f32, g: f32, scale: f32, offset: f32) -> f32 {
    if SILU {
        let z = x * scale + offset;
        let s = vmath::sigmoid(z);
        g * s * (1.0 + z * (1.0 - s))
    } else {
        g
    }
}

#[inline(always)]
fn affine(x: &[f32], scale: f32, offset: f32, silu: bool, out: &mut [MaybeUninit<f32>]) {
    if silu { affine_with::<true>(x, scale, offset, out) } else { affine_with::<false>(x, scale, offset, out) }
}

#[inline(always)]
fn affine_with<const SILU: bool>(x: &[f32], scale: f32, offset: f32, out: &mut [MaybeUninit<f32>]) {
    let mut xb = x.chunks_exact(LANES);
    let mut ob = out.chunks_exact_mut(LANES);
    for (xs, os) in (&mut xb).zip(&mut ob) {
        let mut t = [0.0f32; LANES];
        for i in 0..LANES {
            t[i] = activate::<SILU>(xs[i], scale, offset);
        }
        for i in 0..LANES {
            os[i].write(t[i]);
        }
    }
    let mut t = padded(xb.remainder());
    for v in &mut t {
        *v = activate::<SILU>(*v, scale, offset);
    }
    for (o, &v) in ob.into_remainder().iter_mut().zip(&t) {
        o.write(v);
    }
}

/// A row's last values (fewer than [`LANES`]) as a full block, zeros after them, so the kernels
/// run their tail through the same vector code as the blocks: the lanes are independent, so
/// each value gets the bits the scalar formula gives it. A 4×3 plane (B0's last stages at
/// 128×96) is all tail, and ran the scalar `exp` and divide before this.
#[inline(always)]
fn padded(tail: &[f32]) -> [f32; LANES] {
    let mut t = [0.0f32; LANES];
    t[..tail.len()].copy_from_slice(tail);
    t
}

/// [`affine`] in place, then `+ residual` when given: the bits of the two ops in turn.
#[inline(always)]
fn affine_in_place(row: &mut [f32], scale: f32, offset: f32, silu: bool, residual: Option<&[f32]>) {
    match (silu, residual) {
        (false, None) => affine_in_place_with::<false>(row, scale, offset),
        (true, None) => affine_in_place_with::<true>(row, scale, offset),
        (false, Some(r)) => affine_add_with::<false>(row, scale, offset, r),
        (true, Some(r)) => affine_add_with::<true>(row, scale, offset, r),
    }
}

#[inline(always)]
fn affine_in_place_with<const SILU: bool>(row: &mut [f32], scale: f32, offset: f32) {
    let mut blocks = row.chunks_exact_mut(LANES);
    for vs in &mut blocks {
        for v in vs.iter_mut() {
            *v = activate::<SILU>(*v, scale, offset);
        }
    }
    let tail = blocks.into_remainder();
    let mut t = padded(tail);
    for v in &mut t {
        *v = activate::<SILU>(*v, scale, offset);
    }
    tail.copy_from_slice(&t[..tail.len()]);
}

#[inline(always)]
fn affine_add_with<const SILU: bool>(row: &mut [f32], scale: f32, offset: f32, residual: &[f32]) {
    assert_eq!(row.len(), residual.len(), "the residual covers the row");
    let mut blocks = row.chunks_exact_mut(LANES);
    let mut rb = residual.chunks_exact(LANES);
    for (vs, rs) in (&mut blocks).zip(&mut rb) {
        for i in 0..LANES {
            vs[i] = activate::<SILU>(vs[i], scale, offset) + rs[i];
        }
    }
    let (tail, r) = (blocks.into_remainder(), padded(rb.remainder()));
    let mut t = padded(tail);
    for i in 0..LANES {
        t[i] = activate::<SILU>(t[i], scale, offset) + r[i];
    }
    tail.copy_from_slice(&t[..tail.len()]);
}

#[inline(always)]
fn grad_sums(x: &[f32], g: &[f32], scale: f32, offset: f32, mean: f32, silu: bool) -> (f32, f32) {
    if silu {
        grad_sums_with::<true, false>(x, g, scale, offset, mean, &mut [])
    } else {
        grad_sums_with::<false, false>(x, g, scale, offset, mean, &mut [])
    }
}

/// [`grad_sums`] after a SiLU, also writing each `g_z` into `kept` (as long as the row).
#[inline(always)]
fn grad_sums_keeping(x: &[f32], g: &[f32], scale: f32, offset: f32, mean: f32, kept: &mut [MaybeUninit<f32>]) -> (f32, f32) {
    assert_eq!(kept.len(), x.len(), "one kept gradient per value");
    grad_sums_with::<true, true>(x, g, scale, offset, mean, kept)
}

#[inline(always)]
fn grad_sums_with<const SILU: bool, const KEEP: bool>(
    x: &[f32],
    g: &[f32],
    scale: f32,
    offset: f32,
    mean: f32,
    kept: &mut [MaybeUninit<f32>],
) -> (f32, f32) {
    let (mut s1, mut s2) = ([0.0f32; LANES], [0.0f32; LANES]);
    let mut xb = x.chunks_exact(LANES);
    let mut gb = g.chunks_exact(LANES);
    for (block, (xs, gs)) in (&mut xb).zip(&mut gb).enumerate() {
        let mut gz = [0.0f32; LANES];
        for i in 0..LANES {
            gz[i] = grad_at_z::<SILU>(xs[i], gs[i], scale, offset);
            s1[i] += gz[i];
            s2[i] += gz[i] * (xs[i] - mean);
        }
        if KEEP {
            for (k, &v) in kept[block * LANES..][..LANES].iter_mut().zip(&gz) {
                k.write(v);
            }
        }
    }
    // The tail's terms as a full block; only its own lanes are added, as before.
    let (xs, gs, n) = (padded(xb.remainder()), padded(gb.remainder()), xb.remainder().len());
    let mut terms = [[0.0f32; LANES]; 2];
    for i in 0..LANES {
        let gz = grad_at_z::<SILU>(xs[i], gs[i], scale, offset);
        terms[0][i] = gz;
        terms[1][i] = gz * (xs[i] - mean);
    }
    for i in 0..n {
        s1[i] += terms[0][i];
        s2[i] += terms[1][i];
    }
    if KEEP {
        for (k, &v) in kept[x.len() - n..].iter_mut().zip(&terms[0]) {
            k.write(v);
        }
    }
    (horizontal_sum(s1), horizontal_sum(s2))
}

/// [`input_grad`] from the `g_z` that [`grad_sums_keeping`] left in `row`, in place: the
/// same formula on the same values, without the sigmoid.
#[inline(always)]
fn input_grad_from_kept(x: &[f32], k: [f32; 3], row: &mut [f32]) {
    let [a, b, c] = k;
    for (d, &xv) in row.iter_mut().zip(x) {
        *d = a * *d + b * xv + c;
    }
}

#[inline(always)]
fn input_grad(x: &[f32], g: &[f32], scale: f32, offset: f32, silu: bool, k: [f32; 3], out: &mut [MaybeUninit<f32>]) {
    if silu { input_grad_with::<true>(x, g, scale, offset, k, out) } else { input_grad_with::<false>(x, g, scale, offset, k, out) }
}

#[inline(always)]
fn input_grad_with<const SILU: bool>(x: &[f32], g: &[f32], scale: f32, offset: f32, k: [f32; 3], out: &mut [MaybeUninit<f32>]) {
    let [a, b, c] = k;
    let dx = |xv: f32, gv: f32| a * grad_at_z::<SILU>(xv, gv, scale, offset) + b * xv + c;
    let (mut xb, mut gb, mut ob) = (x.chunks_exact(LANES), g.chunks_exact(LANES), out.chunks_exact_mut(LANES));
    for ((xs, gs), os) in (&mut xb).zip(&mut gb).zip(&mut ob) {
        let mut t = [0.0f32; LANES];
        for i in 0..LANES {
            t[i] = dx(xs[i], gs[i]);
        }
        for i in 0..LANES {
            os[i].write(t[i]);
        }
    }
    let (mut t, gs) = (padded(xb.remainder()), padded(gb.remainder()));
    for i in 0..LANES {
        t[i] = dx(t[i], gs[i]);
    }
    for (o, &v) in ob.into_remainder().iter_mut().zip(&t) {
        o.write(v);
    }
}

/// Runs each row kernel on `x` and `g` (a row of any length, so with a tail shorter than a
/// block) and says whether every value has the bits of its formula evaluated one value at a
/// time: (affine, affine in place, affine plus residual, input gradient, gradient sums, and
/// after a SiLU the sums keeping `g_z` and the input gradient finished from it).
#[cfg(test)]
pub(super) fn row_kernels_match_the_scalar_formulas(x: &[f32], g: &[f32], silu: bool) -> [bool; 6] {
    use std::hint::black_box;
    let (scale, offset, k, mean) = (1.3, -0.2, [0.9, -0.01, 0.03], 0.1);
    let one = |v: f32| if silu { activate::<true>(black_box(v), scale, offset) } else { activate::<false>(black_box(v), scale, offset) };
    let gz = |v: f32, gv: f32| {
        if silu { grad_at_z::<true>(black_box(v), gv, scale, offset) } else { grad_at_z::<false>(black_box(v), gv, scale, offset) }
    };
    let same = |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
    let want: Vec<f32> = x.iter().map(|&v| one(v)).collect();
    let mut out = vec![MaybeUninit::uninit(); x.len()];
    row_affine(x, scale, offset, silu, &mut out);
    let got: Vec<f32> = out.iter().map(|m| unsafe { m.assume_init() }).collect();
    let mut in_place = x.to_vec();
    row_affine_in_place(&mut in_place, scale, offset, silu, None);
    let mut added = x.to_vec();
    row_affine_in_place(&mut added, scale, offset, silu, Some(g));
    let want_added: Vec<f32> = want.iter().zip(g).map(|(&v, &r)| v + r).collect();
    row_input_grad(x, g, scale, offset, silu, k, &mut out);
    let got_grad: Vec<f32> = out.iter().map(|m| unsafe { m.assume_init() }).collect();
    let want_grad: Vec<f32> = x.iter().zip(g).map(|(&v, &gv)| k[0] * gz(v, gv) + k[1] * v + k[2]).collect();
    let (mut s1, mut s2) = ([0.0f32; LANES], [0.0f32; LANES]);
    for (i, (&v, &gv)) in x.iter().zip(g).enumerate() {
        let t = gz(v, gv);
        s1[i % LANES] += t;
        s2[i % LANES] += t * (v - mean);
    }
    let sums = row_grad_sums(x, g, scale, offset, mean, silu);
    let same_sums = sums.0.to_bits() == horizontal_sum(s1).to_bits() && sums.1.to_bits() == horizontal_sum(s2).to_bits();
    // After a SiLU the backward keeps g_z from the sums' pass and finishes from it.
    let same_kept = !silu || {
        let mut kept = vec![MaybeUninit::new(f32::NAN); x.len()];
        let kept_sums = row_grad_sums_keeping(x, g, scale, offset, mean, &mut kept);
        let mut kept: Vec<f32> = kept.iter().map(|m| unsafe { m.assume_init() }).collect();
        let want_kept: Vec<f32> = x.iter().zip(g).map(|(&v, &gv)| gz(v, gv)).collect();
        let same_kept_sums = kept_sums.0.to_bits() == sums.0.to_bits() && kept_sums.1.to_bits() == sums.1.to_bits();
        let kept_ok = same(&kept, &want_kept);
        row_input_grad_from_kept(x, k, &mut kept);
        same_kept_sums && kept_ok && same(&kept, &want_grad)
    };
    [same(&got, &want), same(&in_place, &want), same(&added, &want_added), same(&got_grad, &want_grad), same_sums, same_kept]
}

/// Runs each row kernel through the dispatcher (AVX2 where the CPU has it) and the portable
/// build, and says whether (forward kernels, backward kernels) gave identical bits.
#[cfg(test)]
pub(super) fn kernel_builds_agree(x: &[f32], g: &[f32], silu: bool) -> (bool, bool) {
    let bits = |v: &[MaybeUninit<f32>]| v.iter().map(|m| unsafe { m.assume_init() }.to_bits()).collect::<Vec<_>>();
    let mut a = vec![MaybeUninit::uninit(); x.len()];
    let mut b = vec![MaybeUninit::uninit(); x.len()];
    row_affine(x, 1.3, -0.2, silu, &mut a);
    affine(x, 1.3, -0.2, silu, &mut b);
    let forward = bits(&a) == bits(&b) && row_shifted_sums(x, 0.7) == shifted_sums(x, 0.7);
    row_input_grad(x, g, 1.3, -0.2, silu, [0.9, -0.01, 0.03], &mut a);
    input_grad(x, g, 1.3, -0.2, silu, [0.9, -0.01, 0.03], &mut b);
    let same_sums = {
        let (p, q) = (row_grad_sums(x, g, 1.3, -0.2, 0.1, silu), grad_sums(x, g, 1.3, -0.2, 0.1, silu));
        p.0.to_bits() == q.0.to_bits() && p.1.to_bits() == q.1.to_bits()
    };
    let same_kept = !silu || {
        let (mut p, mut q) = (vec![MaybeUninit::new(0.0); x.len()], vec![MaybeUninit::new(0.0); x.len()]);
        let (sp, sq) = (row_grad_sums_keeping(x, g, 1.3, -0.2, 0.1, &mut p), grad_sums_keeping(x, g, 1.3, -0.2, 0.1, &mut q));
        let init = |v: &[MaybeUninit<f32>]| v.iter().map(|m| unsafe { m.assume_init() }).collect::<Vec<f32>>();
        let (mut p, mut q) = (init(&p), init(&q));
        row_input_grad_from_kept(x, [0.9, -0.01, 0.03], &mut p);
        input_grad_from_kept(x, [0.9, -0.01, 0.03], &mut q);
        let plain = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        sp.0.to_bits() == sq.0.to_bits() && sp.1.to_bits() == sq.1.to_bits() && plain(&p) == plain(&q)
    };
    (forward, bits(&a) == bits(&b) && same_sums && same_kept)
}
