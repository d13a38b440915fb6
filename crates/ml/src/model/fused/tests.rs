//! The flex kernels against the tensor-op reference, forward and backward, and the autodiff
//! node against autodiff through the reference composition.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor, TensorData, TensorMetadata, TensorPrimitive, backend::Backend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ModelBackend, PointwiseEval, reference};

type Ad = Autodiff<Flex>;

fn random<B: Backend, const D: usize>(rng: &mut ChaCha8Rng, shape: [usize; D], centre: f32, spread: f32) -> Tensor<B, D> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| centre + spread * (rng.random::<f32>() * 2.0 - 1.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Largest `|a − b| / (1 + |b|)`.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f32::max)
}

/// The output of [`ModelBackend::fused_batch_norm_train`] on tensors.
fn fused_train<B: ModelBackend>(x: Tensor<B, 4>, gamma: Tensor<B, 1>, beta: Tensor<B, 1>, silu: bool) -> Tensor<B, 4> {
    let [y, _, _] =
        B::fused_batch_norm_train(x.into_primitive().tensor(), gamma.into_primitive().tensor(), beta.into_primitive().tensor(), 1e-5, silu);
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// Shapes with rows that are not a multiple of the 16 lanes, a 1×1 spatial size (the SE and
/// head layers at small inputs), and one large enough to split into several rayon tasks.
const SHAPES: [[usize; 4]; 4] = [[2, 3, 5, 7], [4, 8, 1, 1], [3, 5, 16, 16], [2, 6, 40, 37]];

#[test]
fn flex_forward_matches_the_reference_including_an_offset_mean() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for shape in SHAPES {
        for silu in [false, true] {
            // An offset of 100 with spread 1: a naive E[x²] − E[x]² in f32 would lose the variance.
            for centre in [0.0, 100.0] {
                let x = random::<Flex, 4>(&mut rng, shape, centre, 1.0);
                let gamma = random::<Flex, 1>(&mut rng, [shape[1]], 1.0, 0.5);
                let beta = random::<Flex, 1>(&mut rng, [shape[1]], 0.0, 0.5);
                let [y, mean, var] = Flex::fused_batch_norm_train(
                    x.clone().into_primitive().tensor(),
                    gamma.clone().into_primitive().tensor(),
                    beta.clone().into_primitive().tensor(),
                    1e-5,
                    silu,
                );
                let (y_ref, mean_ref, var_ref) = reference::batch_norm_train(x, gamma, beta, 1e-5, silu);
                let f = |t| values::<Flex, 1>(Tensor::from_primitive(TensorPrimitive::Float(t)));
                assert!(max_rel_diff(&f(mean), &values(mean_ref)) < 1e-6, "mean, {shape:?} silu {silu} centre {centre}");
                assert!(max_rel_diff(&f(var), &values(var_ref)) < 1e-4, "var, {shape:?} silu {silu} centre {centre}");
                let y = values::<Flex, 4>(Tensor::from_primitive(TensorPrimitive::Float(y)));
                let d = max_rel_diff(&y, &values(y_ref));
                assert!(d < 2e-4, "output differs by {d}, {shape:?} silu {silu} centre {centre}");
            }
        }
    }
}

#[test]
fn flex_backward_matches_the_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for shape in SHAPES {
        for silu in [false, true] {
            let x = random::<Flex, 4>(&mut rng, shape, 0.5, 2.0);
            let gamma = random::<Flex, 1>(&mut rng, [shape[1]], 1.0, 0.5);
            let beta = random::<Flex, 1>(&mut rng, [shape[1]], 0.0, 0.5);
            let grad = random::<Flex, 4>(&mut rng, shape, 0.0, 1.0);
            let (_, mean, var) = reference::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5, silu);
            let p = |t: Tensor<Flex, 1>| t.into_primitive().tensor();
            let [dx, dgamma, dbeta] = Flex::fused_batch_norm_train_backward(
                x.clone().into_primitive().tensor(),
                p(gamma.clone()),
                p(beta.clone()),
                p(mean.clone()),
                p(var.clone()),
                1e-5,
                silu,
                grad.clone().into_primitive().tensor(),
            );
            let (dx_ref, dgamma_ref, dbeta_ref) = reference::batch_norm_train_backward(x, gamma, beta, mean, var, 1e-5, silu, grad);
            let dx = values::<Flex, 4>(Tensor::from_primitive(TensorPrimitive::Float(dx)));
            let f = |t| values::<Flex, 1>(Tensor::from_primitive(TensorPrimitive::Float(t)));
            // Channel sums of up to 20k terms in a different order: compare relative to their scale.
            assert!(max_rel_diff(&f(dbeta), &values(dbeta_ref)) < 1e-4, "dbeta, {shape:?} silu {silu}");
            assert!(max_rel_diff(&f(dgamma), &values(dgamma_ref)) < 1e-4, "dgamma, {shape:?} silu {silu}");
            let d = max_rel_diff(&dx, &values(dx_ref));
            assert!(d < 1e-4, "dx differs by {d}, {shape:?} silu {silu}");
        }
    }
}

/// The autodiff node gives the gradients autodiff computes through the reference's tensor ops.
#[test]
fn autodiff_gradients_match_autodiff_through_the_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for silu in [false, true] {
        let shape = [3, 4, 6, 5];
        let x = random::<Ad, 4>(&mut rng, shape, 0.3, 1.5);
        let gamma = random::<Ad, 1>(&mut rng, [4], 1.0, 0.5);
        let beta = random::<Ad, 1>(&mut rng, [4], 0.0, 0.5);
        let weights = random::<Ad, 4>(&mut rng, shape, 0.0, 1.0);
        let grads_of = |fused: bool| {
            let (x, gamma, beta) = (x.clone().require_grad(), gamma.clone().require_grad(), beta.clone().require_grad());
            let y = if fused {
                fused_train(x.clone(), gamma.clone(), beta.clone(), silu)
            } else {
                reference::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5, silu).0
            };
            let grads = (y * weights.clone()).sum().backward();
            [x.grad(&grads).unwrap().into_data(), gamma.grad(&grads).unwrap().into_data(), beta.grad(&grads).unwrap().into_data()]
                .map(|d| d.to_vec::<f32>().unwrap())
        };
        let (fused, composed) = (grads_of(true), grads_of(false));
        for (name, (a, b)) in ["x", "gamma", "beta"].iter().zip(fused.iter().zip(&composed)) {
            let d = max_rel_diff(a, b);
            assert!(d < 1e-4, "d{name} differs by {d} (silu {silu})");
        }
    }
}

#[test]
fn flex_channel_affine_matches_the_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for shape in SHAPES {
        for silu in [false, true] {
            let x = random::<Flex, 4>(&mut rng, shape, 0.0, 4.0);
            let scale = random::<Flex, 1>(&mut rng, [shape[1]], 1.0, 0.5);
            let shift = random::<Flex, 1>(&mut rng, [shape[1]], 0.0, 0.5);
            let y = Flex::fused_channel_affine(
                x.clone().into_primitive().tensor(),
                scale.clone().into_primitive().tensor(),
                shift.clone().into_primitive().tensor(),
                silu,
            );
            let y = values::<Flex, 4>(Tensor::from_primitive(TensorPrimitive::Float(y)));
            let d = max_rel_diff(&y, &values(reference::channel_affine(x, scale, shift, silu)));
            assert!(d < 1e-6, "{shape:?} silu {silu}: {d}");
        }
    }
}

/// Same bits with one thread or three: channel sums run in a fixed order.
#[test]
fn kernels_give_the_same_bits_whatever_the_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shape = [4, 6, 48, 50];
    let x = random::<Flex, 4>(&mut rng, shape, 0.2, 3.0);
    let gamma = random::<Flex, 1>(&mut rng, [6], 1.0, 0.5);
    let beta = random::<Flex, 1>(&mut rng, [6], 0.0, 0.5);
    let grad = random::<Flex, 4>(&mut rng, shape, 0.0, 1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let p1 = |t: &Tensor<Flex, 1>| t.clone().into_primitive().tensor();
            let [y, mean, var] = Flex::fused_batch_norm_train(x.clone().into_primitive().tensor(), p1(&gamma), p1(&beta), 1e-5, true);
            let [dx, dgamma, dbeta] = Flex::fused_batch_norm_train_backward(
                x.clone().into_primitive().tensor(),
                p1(&gamma),
                p1(&beta),
                mean.clone(),
                var.clone(),
                1e-5,
                true,
                grad.clone().into_primitive().tensor(),
            );
            [y, mean, var, dx, dgamma, dbeta].map(|t| t.into_data().to_vec::<f32>().unwrap())
        })
    };
    let (one, three) = (run(1), run(3));
    for (a, b) in one.iter().zip(&three) {
        assert!(a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}

#[test]
fn batch_norm_layer_trains_to_the_batch_statistics_and_tracks_running_ones() {
    use crate::model::batchnorm::BatchNorm;
    let device = Default::default();
    let bn = BatchNorm::<Ad>::new(3, &device);
    let x = Tensor::<Ad, 4>::random([4, 3, 5, 5], Distribution::Normal(2.0, 3.0), &device);
    let y = values(bn.forward(x.clone()));
    // γ = 1, β = 0: each channel of the output has mean 0 and variance 1 (biased, + eps).
    for c in 0..3 {
        let ch: Vec<f32> = (0..4).flat_map(|n| y[(n * 3 + c) * 25..(n * 3 + c + 1) * 25].to_vec()).collect();
        let mean = ch.iter().sum::<f32>() / 100.0;
        let var = ch.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 100.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "channel {c}: mean {mean}, var {var}");
    }
    // Running mean moves 10% of the way from 0 to the batch mean.
    let xs = values(x);
    let running = values(bn.running_mean.value_sync());
    for c in 0..3 {
        let mean = (0..4).flat_map(|n| xs[(n * 3 + c) * 25..(n * 3 + c + 1) * 25].to_vec()).sum::<f32>() / 100.0;
        assert!((running[c] - 0.1 * mean).abs() < 1e-5, "channel {c}: {} vs {}", running[c], 0.1 * mean);
    }
}

#[test]
fn row_kernels_give_the_same_bits_in_the_avx2_and_portable_builds() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let x: Vec<f32> = (0..1000).map(|_| rng.random::<f32>() * 20.0 - 10.0).collect();
    let g: Vec<f32> = (0..1000).map(|_| rng.random::<f32>() - 0.5).collect();
    for silu in [false, true] {
        let (a, b) = super::flex::kernel_builds_agree(&x, &g, silu);
        assert!(a, "forward row kernel, silu {silu}");
        assert!(b, "backward row kernel, silu {silu}");
    }
}

#[test]
fn row_kernels_give_short_rows_and_tails_the_bits_of_the_formulas() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    // 1..=15 are all tail (a 4×3 plane is 12 values); 16..=40 a block or two and a tail.
    for len in 1..=40 {
        let x: Vec<f32> = (0..len).map(|_| rng.random::<f32>() * 20.0 - 10.0).collect();
        let g: Vec<f32> = (0..len).map(|_| rng.random::<f32>() - 0.5).collect();
        for silu in [false, true] {
            let kernels = super::flex::row_kernels_match_the_scalar_formulas(&x, &g, silu);
            let names = ["affine", "affine in place", "affine + residual", "input gradient", "gradient sums", "kept g_z"];
            for (ok, name) in kernels.iter().zip(names) {
                assert!(ok, "{name}, length {len}, silu {silu}");
            }
        }
    }
}

/// Depthwise geometries of EfficientNet (k 3 and 5, stride 1 and 2), with odd sizes.
/// The last three have kernels wider than the image, as B0's last stages at small inputs.
const DEPTHWISE: [([usize; 4], usize, usize); 8] = [
    ([2, 3, 9, 7], 3, 1),
    ([2, 3, 9, 7], 3, 2),
    ([2, 4, 11, 12], 5, 1),
    ([3, 2, 11, 12], 5, 2),
    ([2, 2, 1, 1], 3, 1),
    ([2, 2, 1, 1], 5, 1),
    ([2, 2, 2, 1], 5, 2),
    ([2, 2, 1, 3], 5, 1),
];

#[test]
fn flex_depthwise_conv_matches_burns_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for (shape, k, stride) in DEPTHWISE {
        let x = random::<Flex, 4>(&mut rng, shape, 0.0, 2.0);
        let weight = random::<Flex, 4>(&mut rng, [shape[1], 1, k, k], 0.0, 0.5);
        let y = Flex::fused_depthwise_conv(x.clone().into_primitive().tensor(), weight.clone().into_primitive().tensor(), stride);
        let y: Tensor<Flex, 4> = Tensor::from_primitive(TensorPrimitive::Float(y));
        let want = reference::depthwise_conv(x, weight, stride);
        assert_eq!(y.dims(), want.dims(), "{shape:?} k{k} s{stride}");
        let d = max_rel_diff(&values(y), &values(want));
        assert!(d < 1e-5, "{shape:?} k{k} s{stride}: {d}");
    }
}

#[test]
fn flex_depthwise_backward_matches_burns_convolution_backward() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for (shape, k, stride) in DEPTHWISE {
        let x = random::<Flex, 4>(&mut rng, shape, 0.0, 2.0);
        let weight = random::<Flex, 4>(&mut rng, [shape[1], 1, k, k], 0.0, 0.5);
        let out_dims = reference::depthwise_conv(x.clone(), weight.clone(), stride).dims();
        let grad = random::<Flex, 4>(&mut rng, out_dims, 0.0, 1.0);
        let [dx, dw] = Flex::fused_depthwise_conv_backward(
            x.clone().into_primitive().tensor(),
            weight.clone().into_primitive().tensor(),
            stride,
            grad.clone().into_primitive().tensor(),
        );
        let (dx_ref, dw_ref) = reference::depthwise_conv_backward(x, weight, stride, grad);
        let f = |t| values::<Flex, 4>(Tensor::from_primitive(TensorPrimitive::Float(t)));
        let (dx, dw) = (f(dx), f(dw));
        assert!(max_rel_diff(&dx, &values(dx_ref)) < 1e-5, "dx, {shape:?} k{k} s{stride}");
        assert!(max_rel_diff(&dw, &values(dw_ref)) < 1e-5, "dweight, {shape:?} k{k} s{stride}");
    }
}

#[test]
fn depthwise_autodiff_gradients_match_autodiff_through_burns_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let (shape, k, stride) = ([2, 3, 10, 9], 5, 2);
    let x = random::<Ad, 4>(&mut rng, shape, 0.0, 1.0);
    let weight = random::<Ad, 4>(&mut rng, [3, 1, k, k], 0.0, 0.5);
    let grads_of = |fused: bool| {
        let (x, weight) = (x.clone().require_grad(), weight.clone().require_grad());
        let y = if fused {
            let y = Ad::fused_depthwise_conv(x.clone().into_primitive().tensor(), weight.clone().into_primitive().tensor(), stride);
            Tensor::<Ad, 4>::from_primitive(TensorPrimitive::Float(y))
        } else {
            reference::depthwise_conv(x.clone(), weight.clone(), stride)
        };
        let grads = (y.clone() * y).sum().backward();
        [x.grad(&grads).unwrap().into_data(), weight.grad(&grads).unwrap().into_data()].map(|d| d.to_vec::<f32>().unwrap())
    };
    let (fused, composed) = (grads_of(true), grads_of(false));
    assert!(max_rel_diff(&fused[0], &composed[0]) < 1e-5, "dx");
    assert!(max_rel_diff(&fused[1], &composed[1]) < 1e-5, "dweight");
}

/// Both ways of summing the weight gradient (per-image products, and one product over the
/// batch) against autodiff through burn's own convolution.
#[test]
fn pointwise_conv_gradients_match_autodiff_through_burns_convolution() {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    // [N, C_in, H, W], C_out: many pixels (batched products), then few pixels and many channels.
    for (shape, cout) in [([3, 4, 9, 7], 5), ([4, 24, 2, 3], 40)] {
        let x = random::<Ad, 4>(&mut rng, shape, 0.0, 1.0);
        let weight = random::<Ad, 4>(&mut rng, [cout, shape[1], 1, 1], 0.0, 0.5);
        let outputs_and_grads = |fused: bool| {
            let (x, weight) = (x.clone().require_grad(), weight.clone().require_grad());
            let y = if fused {
                let y = Ad::fused_pointwise_conv(x.clone().into_primitive().tensor(), weight.clone().into_primitive().tensor());
                Tensor::<Ad, 4>::from_primitive(TensorPrimitive::Float(y))
            } else {
                conv2d(x.clone(), weight.clone(), None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
            };
            let grads = (y.clone() * y.clone()).sum().backward();
            [y.into_data(), x.grad(&grads).unwrap().into_data(), weight.grad(&grads).unwrap().into_data()]
                .map(|d| d.to_vec::<f32>().unwrap())
        };
        let (fused, composed) = (outputs_and_grads(true), outputs_and_grads(false));
        for (name, (a, b)) in ["output", "dx", "dweight"].iter().zip(fused.iter().zip(&composed)) {
            let d = max_rel_diff(a, b);
            assert!(d < 1e-5, "{name} differs by {d}, {shape:?} → {cout}");
        }
    }
}

/// The reference (what CUDA runs) and flex's override agree on both weight-gradient layouts.
#[test]
fn pointwise_backward_reference_and_flex_agree() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for (shape, cout) in [([3, 4, 9, 7], 5), ([4, 24, 2, 3], 40)] {
        let x = random::<Flex, 4>(&mut rng, shape, 0.0, 1.0);
        let weight = random::<Flex, 4>(&mut rng, [cout, shape[1], 1, 1], 0.0, 0.5);
        let grad = random::<Flex, 4>(&mut rng, [shape[0], cout, shape[2], shape[3]], 0.0, 1.0);
        let [dx, dw] = Flex::fused_pointwise_conv_backward(
            x.clone().into_primitive().tensor(),
            weight.clone().into_primitive().tensor(),
            grad.clone().into_primitive().tensor(),
        );
        let (dx_ref, dw_ref) = reference::pointwise_conv_backward(x, weight, grad);
        let f = |t| values::<Flex, 4>(Tensor::from_primitive(TensorPrimitive::Float(t)));
        assert!(max_rel_diff(&f(dx), &values(dx_ref)) < 1e-5, "dx, {shape:?} → {cout}");
        assert!(max_rel_diff(&f(dw), &values(dw_ref)) < 1e-5, "dweight, {shape:?} → {cout}");
    }
}

/// Dense geometries: the stem and `tiny_cnn` (k 3, stride 2), stride 1, a 5×5 kernel, odd
/// sizes, an image smaller than the kernel, and a 1×1 stride-2 convolution (no padding).
const DENSE: [([usize; 4], usize, usize, usize); 6] = [
    ([2, 3, 9, 8], 16, 3, 2),
    ([3, 5, 7, 7], 4, 3, 1),
    ([2, 4, 11, 6], 6, 5, 2),
    ([2, 8, 2, 1], 8, 3, 2),
    ([2, 6, 5, 5], 3, 1, 2),
    ([4, 16, 6, 8], 32, 3, 2),
];

#[test]
fn flex_dense_conv_and_its_backward_match_burns_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    for (shape, cout, k, stride) in DENSE {
        let x = random::<Flex, 4>(&mut rng, shape, 0.0, 2.0);
        let weight = random::<Flex, 4>(&mut rng, [cout, shape[1], k, k], 0.0, 0.5);
        let p = |t: &Tensor<Flex, 4>| t.clone().into_primitive().tensor();
        let f = |t| values::<Flex, 4>(Tensor::from_primitive(TensorPrimitive::Float(t)));
        let y = f(Flex::fused_dense_conv(p(&x), p(&weight), stride));
        let want = reference::dense_conv(x.clone(), weight.clone(), stride);
        let d = max_rel_diff(&y, &values(want.clone()));
        assert!(d < 1e-5, "output, {shape:?} → {cout} k{k} s{stride}: {d}");

        let grad = random::<Flex, 4>(&mut rng, want.dims(), 0.0, 1.0);
        let [_, saved] = Flex::fused_dense_conv_saving(p(&x), p(&weight), stride);
        assert_eq!(saved.shape().num_dims(), 2, "flex saves the column matrix");
        let (dx, dw) = Flex::fused_dense_conv_backward(saved.clone(), shape, p(&weight), stride, p(&grad), true);
        let (dx_ref, dw_ref) = reference::dense_conv_backward(x.clone(), weight.clone(), stride, grad.clone(), true);
        let d = max_rel_diff(&f(dx.expect("asked for dx")), &values(dx_ref.expect("asked for dx")));
        assert!(d < 1e-5, "dx, {shape:?} → {cout} k{k} s{stride}: {d}");
        let (dw, dw_ref) = (f(dw), values(dw_ref));
        let d = max_rel_diff(&dw, &dw_ref);
        assert!(d < 1e-5, "dweight, {shape:?} → {cout} k{k} s{stride}: {d}");

        // Without the input gradient: none is computed. From `x` instead of the columns (what
        // a non-f32 forward saves): the same bits.
        let (none, dw_alone) = Flex::fused_dense_conv_backward(saved, shape, p(&weight), stride, p(&grad), false);
        assert!(none.is_none());
        assert!(f(dw_alone).iter().zip(&dw).all(|(a, b)| a.to_bits() == b.to_bits()));
        let (_, dw_from_x) = Flex::fused_dense_conv_backward(p(&x), shape, p(&weight), stride, p(&grad), false);
        assert!(f(dw_from_x).iter().zip(&dw).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

/// The autodiff node against autodiff through burn's convolution, for a layer inside the
/// network and for a first layer (an input that needs no gradient).
#[test]
fn dense_autodiff_gradients_match_autodiff_through_burns_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let (shape, cout, k, stride) = ([3, 4, 10, 9], 6, 3, 2);
    let x = random::<Ad, 4>(&mut rng, shape, 0.0, 1.0);
    let weight = random::<Ad, 4>(&mut rng, [cout, shape[1], k, k], 0.0, 0.5);
    for x_needs_grad in [true, false] {
        let grads_of = |fused: bool| {
            let x = if x_needs_grad { x.clone().require_grad() } else { x.clone() };
            let weight = weight.clone().require_grad();
            let y = if fused {
                let y = Ad::fused_dense_conv(x.clone().into_primitive().tensor(), weight.clone().into_primitive().tensor(), stride);
                Tensor::<Ad, 4>::from_primitive(TensorPrimitive::Float(y))
            } else {
                reference::dense_conv(x.clone(), weight.clone(), stride)
            };
            let grads = (y.clone() * y).sum().backward();
            let dx = x.grad(&grads).map(|t| t.into_data().to_vec::<f32>().unwrap());
            (dx, weight.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap())
        };
        let (fused, composed) = (grads_of(true), grads_of(false));
        assert_eq!(fused.0.is_some(), x_needs_grad);
        if let (Some(a), Some(b)) = (&fused.0, &composed.0) {
            assert!(max_rel_diff(a, b) < 1e-5, "dx");
        }
        assert!(max_rel_diff(&fused.1, &composed.1) < 1e-5, "dweight, x needs grad: {x_needs_grad}");
    }
}

/// Same bits with one thread or three: the column passes write disjoint memory and `col2im`
/// adds in a fixed order.
#[test]
fn dense_conv_gives_the_same_bits_whatever_the_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let (shape, cout, k, stride) = ([8, 16, 24, 32], 32, 3, 2);
    let x = random::<Flex, 4>(&mut rng, shape, 0.0, 1.0);
    let weight = random::<Flex, 4>(&mut rng, [cout, shape[1], k, k], 0.0, 0.5);
    let grad = random::<Flex, 4>(&mut rng, [shape[0], cout, 12, 16], 0.0, 1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let p = |t: &Tensor<Flex, 4>| t.clone().into_primitive().tensor();
            let [y, saved] = Flex::fused_dense_conv_saving(p(&x), p(&weight), stride);
            let (dx, dw) = Flex::fused_dense_conv_backward(saved, shape, p(&weight), stride, p(&grad), true);
            [y, dx.unwrap(), dw].map(|t| t.into_data().to_vec::<f32>().unwrap())
        })
    };
    let (one, three) = (run(1), run(3));
    for (a, b) in one.iter().zip(&three) {
        assert!(a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}

/// Eval mode's depthwise convolution with the BatchNorm (+ SiLU) applied per plane gives the
/// same bits as the two ops in turn, so evaluate and predict outputs do not move with it.
#[test]
fn depthwise_with_affine_gives_the_bits_of_the_two_ops_in_turn() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for (shape, k, stride) in DEPTHWISE {
        let x = random::<Flex, 4>(&mut rng, shape, 0.0, 2.0);
        let weight = random::<Flex, 4>(&mut rng, [shape[1], 1, k, k], 0.0, 0.5);
        let scale = random::<Flex, 1>(&mut rng, [shape[1]], 1.0, 0.5);
        let shift = random::<Flex, 1>(&mut rng, [shape[1]], 0.0, 0.5);
        let p4 = |t: &Tensor<Flex, 4>| t.clone().into_primitive().tensor();
        let p1 = |t: &Tensor<Flex, 1>| t.clone().into_primitive().tensor();
        for silu in [false, true] {
            let fused = Flex::fused_depthwise_conv_affine(p4(&x), p4(&weight), stride, p1(&scale), p1(&shift), silu);
            let apart = Flex::fused_channel_affine(Flex::fused_depthwise_conv(p4(&x), p4(&weight), stride), p1(&scale), p1(&shift), silu);
            let (fused, apart) = (fused.into_data().to_vec::<f32>().unwrap(), apart.into_data().to_vec::<f32>().unwrap());
            assert_eq!(fused.len(), apart.len());
            assert!(fused.iter().zip(&apart).all(|(a, b)| a.to_bits() == b.to_bits()), "{shape:?} k{k} s{stride} silu {silu}");
        }
    }
}

/// Eval mode's 1×1 convolution with the BatchNorm, SiLU and residual applied per output block
/// gives the same bits as the ops in turn (burn's matmul, the affine, the add), with one thread
/// or three, on B0's shapes: wide planes split into several blocks, `C_in` past gemm's
/// 512-deep inner block, a 1×1 plane, and sizes that are no multiple of 16.
#[test]
fn pointwise_with_affine_gives_the_bits_of_the_ops_in_turn() {
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let cases: [([usize; 4], usize); 7] = [
        ([2, 16, 112, 112], 96),
        ([2, 96, 56, 56], 24),
        ([3, 144, 28, 28], 24),
        ([2, 1152, 7, 7], 192),
        ([2, 320, 7, 7], 1280),
        ([3, 5, 9, 11], 7),
        ([4, 40, 1, 1], 8),
    ];
    for (shape, cout) in cases {
        let [n, cin, h, w] = shape;
        let x = random::<Flex, 4>(&mut rng, shape, 0.0, 2.0);
        let weight = random::<Flex, 4>(&mut rng, [cout, cin, 1, 1], 0.0, 0.5);
        let scale = random::<Flex, 1>(&mut rng, [cout], 1.0, 0.5);
        let shift = random::<Flex, 1>(&mut rng, [cout], 0.0, 0.5);
        let residual = random::<Flex, 4>(&mut rng, [n, cout, h, w], 0.0, 1.0);
        let p4 = |t: &Tensor<Flex, 4>| t.clone().into_primitive().tensor();
        let p1 = |t: &Tensor<Flex, 1>| t.clone().into_primitive().tensor();
        for silu in [false, true] {
            for add in [false, true] {
                let affine = Flex::fused_channel_affine(Flex::fused_pointwise_conv(p4(&x), p4(&weight)), p1(&scale), p1(&shift), silu);
                let apart: Tensor<Flex, 4> = Tensor::from_primitive(TensorPrimitive::Float(affine));
                let apart = values(if add { apart + residual.clone() } else { apart });
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let fused = pool.install(|| {
                        let r = add.then(|| p4(&residual));
                        let around = PointwiseEval { gate: None, scale: p1(&scale), shift: p1(&shift), silu, residual: r };
                        Flex::fused_pointwise_conv_affine(p4(&x), p4(&weight), around)
                    });
                    let fused = fused.into_data().to_vec::<f32>().unwrap();
                    assert_eq!(fused.len(), apart.len());
                    let same = fused.iter().zip(&apart).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{shape:?} → {cout}, silu {silu}, residual {add}, {threads} threads");
                }
            }
        }
    }
}

/// A squeeze-excite gate on a 1×1 convolution's input: folded into the weights (where there
/// are no more output channels than block columns) it stays within rounding of gating the
/// input first (the trait's default, the ops in turn); applied to the input block, it gives
/// the same bits.
#[test]
fn pointwise_with_a_gate_matches_gating_the_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    for (shape, cout, folded) in [([3, 144, 28, 28], 24, true), ([2, 1152, 7, 7], 192, false), ([3, 5, 9, 11], 7, true)] {
        let [n, cin, h, w] = shape;
        let x = random::<Flex, 4>(&mut rng, shape, 0.0, 2.0);
        let weight = random::<Flex, 4>(&mut rng, [cout, cin, 1, 1], 0.0, 0.5);
        let gate = random::<Flex, 2>(&mut rng, [n, cin], 0.5, 0.5);
        let scale = random::<Flex, 1>(&mut rng, [cout], 1.0, 0.5);
        let shift = random::<Flex, 1>(&mut rng, [cout], 0.0, 0.5);
        let residual = random::<Flex, 4>(&mut rng, [n, cout, h, w], 0.0, 1.0);
        let p = |t: Tensor<Flex, 4>| t.into_primitive().tensor();
        let q = |t: &Tensor<Flex, 1>| t.clone().into_primitive().tensor();
        let around = |gate: Option<Tensor<Flex, 2>>| PointwiseEval {
            gate: gate.map(|g| g.into_primitive().tensor()),
            scale: q(&scale),
            shift: q(&shift),
            silu: true,
            residual: Some(p(residual.clone())),
        };
        let fused = Flex::fused_pointwise_conv_affine(p(x.clone()), p(weight.clone()), around(Some(gate.clone())));
        let gated = x * gate.reshape([n, cin, 1, 1]);
        let apart = Flex::fused_pointwise_conv_affine(p(gated), p(weight), around(None));
        let (fused, apart) = (fused.into_data().to_vec::<f32>().unwrap(), apart.into_data().to_vec::<f32>().unwrap());
        let d = max_rel_diff(&fused, &apart);
        if folded {
            // Zero would mean the fold did not run.
            assert!(d > 0.0 && d < 1e-5, "{shape:?} → {cout}: {d}");
        } else {
            assert!(fused.iter().zip(&apart).all(|(a, b)| a.to_bits() == b.to_bits()), "{shape:?} → {cout}: {d}");
        }
    }
}

/// Plane means against burn's mean over the plane, forward and backward (through autodiff),
/// including a 1×1 plane and rows that are no multiple of the 16 lanes.
#[test]
fn plane_means_match_burns_mean_forward_and_backward() {
    let mut rng = ChaCha8Rng::seed_from_u64(26);
    for shape in SHAPES {
        let [n, c, h, w] = shape;
        let x = random::<Ad, 4>(&mut rng, shape, 0.3, 2.0).require_grad();
        let weights = random::<Ad, 2>(&mut rng, [n, c], 0.0, 1.0);
        let fused = super::plane_means(x.clone());
        let want = x.clone().reshape([n, c, h * w]).mean_dim(2).reshape([n, c]);
        let d = max_rel_diff(&values(fused.clone()), &values(want.clone()));
        assert!(d < 1e-6, "{shape:?}: means differ by {d}");
        let dx = (fused * weights.clone()).sum().backward();
        let dx_want = (want * weights).sum().backward();
        let (g, g_want) = (x.grad(&dx).unwrap(), x.grad(&dx_want).unwrap());
        let d = max_rel_diff(&values(g), &values(g_want));
        assert!(d < 1e-6, "{shape:?}: gradients differ by {d}");
    }
}

/// Flex's one-pass AdamW gives the bits of the reference's tensor ops (burn-optim's own
/// sequence, which CUDA and wgpu run), on the first step and later ones, with and without
/// weight decay, on a parameter split into several tasks and on a transposed (non-contiguous)
/// one.
#[test]
fn flex_adamw_gives_the_reference_bits() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let prim = |t: Tensor<Flex, 4>| t.into_primitive().tensor();
    for shape in [[2, 3, 5, 7], [8, 32, 16, 20]] {
        for (first, decay_rate) in [(true, 0.0), (false, 0.0), (true, 3e-5), (false, 3e-5)] {
            let [n, c, h, w] = shape;
            let param = if first {
                random::<Flex, 4>(&mut rng, shape, 0.0, 1.0)
            } else {
                random::<Flex, 4>(&mut rng, [n, h, c, w], 0.0, 1.0).swap_dims(1, 2)
            };
            let grad = random::<Flex, 4>(&mut rng, shape, 0.0, 1e-2);
            let moments = (!first).then(|| [random::<Flex, 4>(&mut rng, shape, 0.0, 1e-3), random::<Flex, 4>(&mut rng, shape, 1e-5, 1e-5)]);
            let t = if first { 1 } else { 7 };
            let step = super::AdamWStep {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                correction_1: 1.0 - 0.9f32.powi(t),
                correction_2: 1.0 - 0.999f32.powi(t),
                lr: 3e-3,
                decay_rate,
            };
            let moments_of = |m: &Option<[Tensor<Flex, 4>; 2]>| m.clone().map(|[a, b]| [prim(a), prim(b)]);
            let ours = Flex::fused_adamw(prim(param.clone()), prim(grad.clone()), moments_of(&moments), &step);
            let theirs = reference::on_primitives::adamw::<Flex>(prim(param), prim(grad), moments_of(&moments), &step);
            for (name, (a, b)) in ["parameter", "first moment", "second moment"].iter().zip(ours.into_iter().zip(theirs)) {
                let bits = |t| {
                    values::<Flex, 4>(Tensor::from_primitive(TensorPrimitive::Float(t))).iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                assert!(bits(a) == bits(b), "{shape:?}, first step {first}, decay {decay_rate}: the {name} differs");
            }
        }
    }
}
