//! Throughput of one EfficientNet-B0 training step (forward + backward + AdamW) on burn-flex,
//! batch 16, at 3×128×96 and 3×224×224, with the time split into forward, backward and
//! optimiser step; plus eval-mode inference. With `--features ndarray`, the same on
//! burn-ndarray, in the same run: the measurement behind the choice of flex as the CPU backend.
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench --bench train_step [--features ndarray]`
//! Options (env): `BENCH_STEPS` (timed steps, default 3), `BENCH_SIZES` (e.g. "128x96"),
//! `BENCH_ARCH` (default efficientnet_b0), `BENCH_BATCH` (default 16), `BENCH_GLIBC_DEFAULTS=1`
//! (leave glibc's allocator alone, to see what `maskflow::alloc` saves).

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;

use burn::tensor::{Distribution, ElementConversion, Tensor};
use maskflow::model::{HeadKind, ModelSpec, TrainBackend};
use maskflow::train::{LossConfig, OptimizerConfig};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bench<B: TrainBackend>(label: &str, arch: &str, batch: usize, h: usize, w: usize, steps: usize) {
    let device: B::Device = Default::default();
    B::seed(&device, 1);
    let mut model = ModelSpec::new(arch, HeadKind::Single).build::<B>(&device).expect("known architecture");
    let mut optim = OptimizerConfig::default().init::<B, _>();
    let loss_cfg = LossConfig::default();
    let x = Tensor::<B, 4>::random([batch, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<usize> = (0..batch).map(|i| i % 18).collect();
    let mut t = vec![0.0f32; batch * 18];
    for (i, l) in labels.iter().enumerate() {
        t[i * 18 + l] = 1.0;
    }
    let targets = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(t, [batch, 18]), &device);

    let (mut fwd, mut bwd, mut opt) = (0.0f64, 0.0f64, 0.0f64);
    for step in 0..=steps {
        let t0 = Instant::now();
        let out = model.forward(x.clone());
        let loss = loss_cfg.compute(&out, targets.clone()).expect("valid loss");
        let _: f32 = loss.clone().into_scalar().elem(); // forces the forward pass
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t2 = Instant::now();
        model = optim.step(1e-3, model, grads);
        let t3 = Instant::now();
        if step > 0 {
            // step 0 is warm-up (allocations, autotune)
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            opt += (t3 - t2).as_secs_f64();
        }
    }
    let n = steps as f64;
    let total = (fwd + bwd + opt) / n;
    println!(
        "{label:<8} {arch} train  b{batch} {h}x{w}: {:>7.2} img/s  (step {:.2} s = fwd {:.2} + bwd {:.2} + optim {:.2})",
        batch as f64 / total,
        total,
        fwd / n,
        bwd / n,
        opt / n
    );

    let eval = model.valid();
    let xe = Tensor::<B::InnerBackend, 4>::random([batch, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
    let _: f32 = eval.forward(xe.clone()).log_probs.sum().into_scalar().elem();
    let t0 = Instant::now();
    for _ in 0..steps {
        let _: f32 = eval.forward(xe.clone()).log_probs.sum().into_scalar().elem();
    }
    let per = t0.elapsed().as_secs_f64() / n;
    println!("{label:<8} {arch} infer  b{batch} {h}x{w}: {:>7.2} img/s", batch as f64 / per);
}

fn main() {
    // cargo bench passes `--bench`; ignore arguments.
    let steps = env_or("BENCH_STEPS", 3usize);
    let batch = env_or("BENCH_BATCH", 16usize);
    let arch = std::env::var("BENCH_ARCH").unwrap_or_else(|_| "efficientnet_b0".into());
    let sizes = std::env::var("BENCH_SIZES").unwrap_or_else(|_| "128x96,224x224".into());
    // As the binary does; BENCH_GLIBC_DEFAULTS=1 leaves glibc's allocator alone, for comparison.
    let tuned = std::env::var_os("BENCH_GLIBC_DEFAULTS").is_none();
    if tuned {
        maskflow::alloc::keep_large_blocks();
    }
    println!("allocator: {}", if tuned { "maskflow::alloc::keep_large_blocks" } else { "glibc defaults" });
    println!("threads: RAYON_NUM_THREADS={}", std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "(unset)".into()));
    for size in sizes.split(',') {
        let Some((h, w)) = size.split_once('x') else {
            eprintln!("bad size {size:?}, expected HxW");
            continue;
        };
        let (Ok(h), Ok(w)) = (h.trim().parse::<usize>(), w.trim().parse::<usize>()) else {
            eprintln!("bad size {size:?}, expected HxW");
            continue;
        };
        bench::<Autodiff<Flex>>("flex", &arch, batch, h, w, steps);
        #[cfg(feature = "ndarray")]
        bench::<Autodiff<burn_ndarray::NdArray<f32>>>("ndarray", &arch, batch, h, w, steps);
    }
}
