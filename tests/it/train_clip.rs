//! Global gradient-norm clipping (PyTorch's `clip_grad_norm_`): every gradient is scaled by
//! the same factor so that the norm over all parameters together becomes `max`.

use burn::backend::{Autodiff, Flex};
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use maskflow::train::optim::clip_global_norm;

type A = Autodiff<Flex>;

fn grad_values(lin: &Linear<A>, grads: &GradientsParams) -> (Vec<f32>, Vec<f32>) {
    let w = grads.get::<Flex, 2>(lin.weight.id).unwrap();
    let b = grads.get::<Flex, 1>(lin.bias.as_ref().unwrap().id).unwrap();
    (w.into_data().to_vec::<f32>().unwrap(), b.into_data().to_vec::<f32>().unwrap())
}

fn norm(v: &(Vec<f32>, Vec<f32>)) -> f64 {
    v.0.iter().chain(&v.1).map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn clips_the_norm_over_all_parameters() {
    let _rng = crate::common::burn_rng_lock();
    let d = Default::default();
    let lin: Linear<A> = LinearConfig::new(3, 1).init(&d);
    let x = Tensor::<A, 2>::from_data(TensorData::new(vec![1.0f32, -2.0, 3.0], [1, 3]), &d);
    // d(loss)/dW = 10 x, d(loss)/db = 10: global norm = 10 × sqrt(1 + 4 + 9 + 1) ≈ 38.73.
    let loss = lin.forward(x).sum().mul_scalar(10.0);
    let grads = GradientsParams::from_grads(loss.backward(), &lin);
    let before = grad_values(&lin, &grads);
    assert!((norm(&before) - 10.0 * 15f64.sqrt()).abs() < 1e-3);

    let clipped = clip_global_norm::<A, _>(&lin, grads, 1.0);
    let after = grad_values(&lin, &clipped);
    assert!((norm(&after) - 1.0).abs() < 1e-4, "norm {}", norm(&after));
    // One common factor, not per-tensor clipping (which would give the bias norm 1 alone).
    let factor = after.1[0] / before.1[0];
    for (a, b) in after.0.iter().zip(&before.0) {
        assert!((a / b - factor).abs() < 1e-6);
    }
    // Under the limit nothing changes.
    let loss = lin.forward(Tensor::<A, 2>::from_data(TensorData::new(vec![0.01f32, 0.0, 0.0], [1, 3]), &d)).sum();
    let small = GradientsParams::from_grads(loss.backward(), &lin);
    let before = grad_values(&lin, &small);
    let after = grad_values(&lin, &clip_global_norm::<A, _>(&lin, small, 2.0));
    assert_eq!(before, after);
}
