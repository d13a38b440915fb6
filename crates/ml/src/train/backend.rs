//! Choosing the burn backend at run time by name.
//!
//! The constraint this module keeps: generic code is instantiated once per backend in one
//! `match`; `"cuda"` exists only with the crate's `cuda` feature and is probed first, because
//! burn's CUDA runtime panics on a device thread (and the process exits 101) when no driver
//! library is present — the probe turns that into an error message.

use crate::model::TrainBackend;
use anyhow::{Result, bail};
use burn::backend::{Autodiff, Flex};

/// Something to run on a backend chosen at run time.
pub trait BackendTask {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Names [`dispatch`] accepts in this build.
pub fn backend_names() -> &'static [&'static str] {
    if cfg!(feature = "cuda") { &["cpu", "cuda"] } else { &["cpu"] }
}

/// Runs `task` on `"cpu"` (`Autodiff<Flex>`) or, with the `cuda` feature, `"cuda"`
/// (`Autodiff<Cuda>` on device 0, after a probe).
pub fn dispatch<T: BackendTask>(name: &str, task: T) -> Result<T::Output> {
    match name {
        "cpu" | "flex" => task.run::<Autodiff<Flex>>(Default::default()),
        #[cfg(feature = "cuda")]
        "cuda" => {
            use burn::backend::{Cuda, cuda::CudaDevice};
            if let Err(msg) = cuda_probe(0) {
                bail!("the cuda backend is unavailable: {msg}");
            }
            task.run::<Autodiff<Cuda>>(CudaDevice::new(0))
        }
        #[cfg(not(feature = "cuda"))]
        "cuda" => bail!("this build has no cuda backend; rebuild with `--features cuda`"),
        other => bail!("unknown backend {other:?}; known: {}", backend_names().join(", ")),
    }
}

/// Runs a one-element computation on CUDA device `index`, catching the panic burn raises when
/// no driver is present and returning its message.
#[cfg(feature = "cuda")]
pub fn cuda_probe(index: usize) -> std::result::Result<(), String> {
    use burn::backend::{Cuda, cuda::CudaDevice};
    use burn::tensor::{ElementConversion, Tensor};
    use std::sync::{Arc, Mutex};

    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = messages.clone();
    let previous = std::panic::take_hook();
    // The hook sees panics of every thread, including cubecl's device thread.
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        if let Ok(mut m) = sink.lock() {
            m.push(msg);
        }
    }));
    let result =
        std::panic::catch_unwind(|| Tensor::<Cuda, 1>::from_floats([1.0, 2.0], &CudaDevice::new(index)).sum().into_scalar().elem::<f32>());
    std::panic::set_hook(previous);
    match result {
        Ok(_) => Ok(()),
        Err(_) => Err(messages.lock().ok().and_then(|m| m.first().cloned()).unwrap_or_else(|| "unknown CUDA failure".to_string())),
    }
}

/// [`train`](super::train) on the backend named `backend`.
pub fn train_on(
    backend: &str,
    cfg: &super::TrainConfig,
    train: &dyn crate::batch::BatchSource,
    val: &dyn crate::batch::BatchSource,
    ckpt_dir: &std::path::Path,
    progress: &mut dyn FnMut(super::Progress),
) -> Result<super::TrainOutcome> {
    struct Task<'a> {
        cfg: &'a super::TrainConfig,
        train: &'a dyn crate::batch::BatchSource,
        val: &'a dyn crate::batch::BatchSource,
        ckpt_dir: &'a std::path::Path,
        progress: &'a mut dyn FnMut(super::Progress),
    }
    impl BackendTask for Task<'_> {
        type Output = super::TrainOutcome;
        fn run<B: TrainBackend>(self, _device: B::Device) -> Result<Self::Output> {
            super::train::<B>(self.cfg, self.train, self.val, self.ckpt_dir, self.progress)
        }
    }
    dispatch(backend, Task { cfg, train, val, ckpt_dir, progress })
}

/// Loads a model saved by [`train`](super::train) and predicts `source` on the backend named
/// `backend` (eval mode), optionally with horizontal-flip TTA.
pub fn predict_on(
    backend: &str,
    spec: &crate::model::ModelSpec,
    model_path: &std::path::Path,
    source: &dyn crate::batch::BatchSource,
    hflip_tta: bool,
) -> Result<Vec<[f32; crate::data::labels::NUM_CLASSES]>> {
    struct Task<'a> {
        spec: &'a crate::model::ModelSpec,
        model_path: &'a std::path::Path,
        source: &'a dyn crate::batch::BatchSource,
        hflip_tta: bool,
    }
    impl BackendTask for Task<'_> {
        type Output = Vec<[f32; crate::data::labels::NUM_CLASSES]>;
        fn run<B: TrainBackend>(self, device: B::Device) -> Result<Self::Output> {
            // Cached weights are safetensors; a training checkpoint (`.mpk`) loads too.
            let model = if super::weights::is_safetensors(self.model_path) {
                super::load_weights::<B::InnerBackend>(self.spec, self.model_path, &device)?
            } else {
                super::load_model::<B::InnerBackend>(self.spec, self.model_path, &device)?
            };
            Ok(super::predict(&model, self.source, self.hflip_tta))
        }
    }
    dispatch(backend, Task { spec, model_path, source, hflip_tta })
}
