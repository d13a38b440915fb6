//! Training and inference throughput of one architecture on one backend: what
//! `cargo bench --bench train_step` prints for the CPU and `maskflow model bench` for any
//! backend in the build (the GPU smoke test carries only the binary, no toolchain).
//!
//! Random inputs, the plain cross-entropy loss and AdamW, as a training step costs whatever
//! the data; the first step of each kind is a warm-up (allocation, and on CubeCL backends
//! autotuning and kernel compilation) and is reported apart.

use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, ElementConversion, Tensor, TensorData};
use serde::Serialize;

use super::{LossConfig, OptimizerConfig};
use crate::data::labels::NUM_CLASSES;
use crate::model::{HeadKind, ModelSpec, TrainBackend};

/// Seconds and images per second of the measured steps.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub arch: String,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub steps: usize,
    /// The first training step: warm-up, not in the means.
    pub warmup_seconds: f64,
    /// Mean seconds of the forward pass, backward pass and optimiser step.
    pub forward_seconds: f64,
    pub backward_seconds: f64,
    pub optimizer_seconds: f64,
    pub train_images_per_second: f64,
    pub infer_images_per_second: f64,
}

/// Measures `steps` training steps (after one warm-up) and `steps` eval forward passes.
pub fn measure<B: TrainBackend>(
    device: &B::Device,
    arch: &str,
    batch: usize,
    height: usize,
    width: usize,
    steps: usize,
) -> Result<Throughput> {
    let steps = steps.max(1);
    B::seed(device, 1);
    let mut model = ModelSpec::new(arch, HeadKind::Single).build::<B>(device)?;
    let mut optim = OptimizerConfig::default().init::<B, _>();
    let loss_cfg = LossConfig::default();
    let x = Tensor::<B, 4>::random([batch, 3, height, width], Distribution::Normal(0.0, 1.0), device);
    let mut t = vec![0.0f32; batch * NUM_CLASSES];
    for i in 0..batch {
        t[i * NUM_CLASSES + i % NUM_CLASSES] = 1.0;
    }
    let targets = Tensor::<B, 2>::from_data(TensorData::new(t, [batch, NUM_CLASSES]), device);

    let (mut fwd, mut bwd, mut opt, mut warmup) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for step in 0..=steps {
        let t0 = Instant::now();
        let out = model.forward(x.clone());
        let loss = loss_cfg.compute(&out, targets.clone())?;
        let _: f32 = loss.clone().into_scalar().elem(); // waits for the forward pass
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t2 = Instant::now();
        model = optim.step(1e-3, model, grads);
        // Asynchronous backends (CubeCL) queue the update; wait for it.
        B::sync(device).map_err(|e| anyhow::anyhow!("the {} backend failed: {e:?}", B::name(device)))?;
        let t3 = Instant::now();
        if step == 0 {
            warmup = (t3 - t0).as_secs_f64();
        } else {
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            opt += (t3 - t2).as_secs_f64();
        }
    }
    let n = steps as f64;
    let train_step = (fwd + bwd + opt) / n;

    let eval = model.valid();
    let xe = Tensor::<B::InnerBackend, 4>::random([batch, 3, height, width], Distribution::Normal(0.0, 1.0), device);
    let _: f32 = eval.forward(xe.clone()).log_probs.sum().into_scalar().elem();
    let t0 = Instant::now();
    // Each pass reads its result back, so the time includes waiting for the device.
    for _ in 0..steps {
        let _: f32 = eval.forward(xe.clone()).log_probs.sum().into_scalar().elem();
    }
    let infer = t0.elapsed().as_secs_f64() / n;
    Ok(Throughput {
        arch: arch.to_string(),
        batch,
        height,
        width,
        steps,
        warmup_seconds: warmup,
        forward_seconds: fwd / n,
        backward_seconds: bwd / n,
        optimizer_seconds: opt / n,
        train_images_per_second: batch as f64 / train_step,
        infer_images_per_second: batch as f64 / infer,
    })
}
