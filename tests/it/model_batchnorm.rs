//! The expanded BatchNorm against PyTorch's `BatchNorm2d` semantics, by hand:
//! x is [2, 2, 1, 2]; channel 0 holds 1, 2 | 3, 4 and channel 1 holds 0, 0 | 2, 2.
//! Channel 0: mean 2.5, biased var 1.25, unbiased 5/3; channel 1: mean 1, var 1, unbiased 4/3.
//! After one training step with momentum 0.1: running_mean = [0.25, 0.1],
//! running_var = 0.9 + 0.1 × unbiased = [1.0666667, 1.0333333].

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData};
use maskflow::model::batchnorm::BatchNorm;

fn input<B: burn::tensor::backend::Backend>() -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(vec![1.0f32, 2.0, 0.0, 0.0, 3.0, 4.0, 2.0, 2.0], [2, 2, 1, 2]), &Default::default())
}

fn values<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn assert_all_close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-5, "got {got:?}, want {want:?}");
    }
}

#[test]
fn train_step_normalises_with_batch_stats_and_tracks_unbiased_variance() {
    let _rng = crate::common::burn_rng_lock();
    type A = Autodiff<Flex>;
    let bn = BatchNorm::<A>::new(2, &Default::default());
    let out = values(bn.forward(input::<A>()));
    let s0 = (1.25f64 + 1e-5).sqrt();
    let s1 = (1.0f64 + 1e-5).sqrt();
    let want = [-1.5 / s0, -0.5 / s0, -1.0 / s1, -1.0 / s1, 0.5 / s0, 1.5 / s0, 1.0 / s1, 1.0 / s1];
    assert_all_close(&out, &want);
    assert_all_close(&values(bn.running_mean.value_sync()), &[0.25, 0.1]);
    assert_all_close(&values(bn.running_var.value_sync()), &[0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 4.0 / 3.0]);

    // Eval mode (inner backend) uses the running statistics.
    let eval = bn.valid();
    let out = values(eval.forward(input::<Flex>()));
    let (m0, m1) = (0.25f64, 0.1f64);
    let (v0, v1) = (0.9 + 0.1 * 5.0 / 3.0 + 1e-5f64, 0.9 + 0.1 * 4.0 / 3.0 + 1e-5f64);
    let x = [1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 2.0, 2.0];
    let want: Vec<f64> =
        x.iter().enumerate().map(|(i, v)| if (i / 2) % 2 == 0 { (v - m0) / v0.sqrt() } else { (v - m1) / v1.sqrt() }).collect();
    assert_all_close(&out, &want);
}
