//! Throughput of one EfficientNet-B0 training step (forward + backward + AdamW) on burn-flex,
//! batch 16, at 3×128×96 and 3×224×224, with the time split into forward, backward and
//! optimiser step; plus eval-mode inference. With `--features ndarray`, the same on
//! burn-ndarray, in the same run: the measurement behind the choice of flex as the CPU backend.
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench --bench train_step [--features ndarray]`
//! Options (env): `BENCH_STEPS` (timed steps, default 3), `BENCH_SIZES` (e.g. "128x96"),
//! `BENCH_ARCH` (default efficientnet_b0), `BENCH_BATCH` (default 16), `BENCH_GLIBC_DEFAULTS=1`
//! (leave glibc's allocator alone, to see what `maskflow::alloc` saves).

use burn::backend::{Autodiff, Flex};
use maskflow::model::TrainBackend;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bench<B: TrainBackend>(label: &str, arch: &str, batch: usize, h: usize, w: usize, steps: usize) {
    let t = maskflow::train::throughput::measure::<B>(&Default::default(), arch, batch, h, w, steps).expect("known architecture");
    println!(
        "{label:<8} {arch} train  b{batch} {h}x{w}: {:>7.2} img/s  (step {:.2} s = fwd {:.2} + bwd {:.2} + optim {:.2})",
        t.train_images_per_second,
        t.forward_seconds + t.backward_seconds + t.optimizer_seconds,
        t.forward_seconds,
        t.backward_seconds,
        t.optimizer_seconds
    );
    println!("{label:<8} {arch} infer  b{batch} {h}x{w}: {:>7.2} img/s", t.infer_images_per_second);
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
