//! Choosing the burn backend at run time by name.
//!
//! The constraint this module keeps: generic code is instantiated once per backend in one
//! `match`. `"cuda"` and `"wgpu"` exist only with the crate's features of the same names and
//! are probed first, because burn's CubeCL runtimes panic (on a device thread for CUDA, on
//! the caller's for wgpu) when no driver or adapter is present: the probe turns that into an
//! error message.
//!
//! | name   | burn backend                                          | feature | fused ops              |
//! |--------|-------------------------------------------------------|---------|------------------------|
//! | `cpu`  | `Autodiff<Flex>`                                      | always  | flex kernels           |
//! | `cuda` | `Autodiff<Cuda>` (`Fusion<CubeBackend<CudaRuntime>>`) | `cuda`  | reference compositions |
//! | `wgpu` | `Autodiff<Wgpu>` (`Fusion<CubeBackend<WgpuRuntime>>`) | `wgpu`  | reference compositions |
//!
//! "Reference compositions" are [`crate::model::fused::reference`]: BatchNorm (+ SiLU), the
//! depthwise convolution and the 1×1 convolution written as burn tensor ops, which burn's
//! fusion then compiles into CubeCL kernels.
//!
//! **Precision.** burn 0.21 has no autocast: what it offers is a per-device default float
//! type, fixed once per process before the first tensor. [`Precision::F16`] and
//! [`Precision::Bf16`] set it, so *every* float tensor of the run is half-width: weights,
//! activations, gradients, BatchNorm statistics and optimiser moments (no f32 master
//! weights, no loss scaling). The device must support the type for general arithmetic
//! (`Backend::supports_dtype`); flex's kernels are f32 only, so the CPU refuses both.

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
    match (cfg!(feature = "cuda"), cfg!(feature = "wgpu")) {
        (true, true) => &["cpu", "cuda", "wgpu"],
        (true, false) => &["cpu", "cuda"],
        (false, true) => &["cpu", "wgpu"],
        (false, false) => &["cpu"],
    }
}

/// The float type a model's tensors have on the device (`train { precision = … }`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// The precision spelled `name` (`f32`, `f16`, `bf16`).
    pub fn from_name(name: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    fn dtype(self) -> burn::tensor::FloatDType {
        use burn::tensor::FloatDType;
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }
}

/// Makes `precision` the default float type of `device` for this process, or says why it
/// cannot be: the device lacks the type, or an earlier step of this process fixed another.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn set_precision<B: TrainBackend>(backend: &str, device: &B::Device, precision: Precision) -> Result<()> {
    use burn::tensor::{DType, Element, get_device_settings, set_default_dtypes};
    let dtype = precision.dtype();
    if !B::supports_dtype(device, DType::from(dtype)) {
        bail!(
            "`precision = {}`: this {backend} device has no general {} arithmetic{}; use `precision = f32`",
            precision.name(),
            precision.name(),
            adapter_note(backend)
        );
    }
    // The integer type stays the backend's own default.
    if set_default_dtypes::<B>(device, dtype, <B::IntElem as Element>::dtype()).is_err() {
        // Already fixed for this process (burn allows it once, before the first tensor).
        let current = get_device_settings::<B>(device).float_dtype;
        if current != dtype {
            bail!(
                "`precision = {}`: an earlier step in this process already computed on this {backend} device in {current:?}, \
                 and burn fixes a device's float type once per process; run the steps in separate processes (`--jobs 2`)",
                precision.name()
            );
        }
    }
    Ok(())
}

/// `" (adapter: …)"` on wgpu, where the adapter decides what is supported.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn adapter_note(backend: &str) -> String {
    match (backend, adapter_description()) {
        ("wgpu", Some(a)) => format!(" (adapter: {a})"),
        _ => String::new(),
    }
}

/// [`dispatch_with`] in f32.
pub fn dispatch<T: BackendTask>(name: &str, task: T) -> Result<T::Output> {
    dispatch_with(name, Precision::F32, task)
}

/// Runs `task` on `"cpu"` (`Autodiff<Flex>`) or, with the `cuda` feature, `"cuda"`
/// (`Autodiff<Cuda>` on device 0), or with the `wgpu` feature, `"wgpu"` (`Autodiff<Wgpu>` on
/// the default adapter), each after a probe, with `precision` as the device's float type.
pub fn dispatch_with<T: BackendTask>(name: &str, precision: Precision, task: T) -> Result<T::Output> {
    match name {
        "cpu" | "flex" => {
            if precision != Precision::F32 {
                bail!("`precision = {}` needs a GPU backend (cuda or wgpu): the CPU backend's kernels compute in f32", precision.name());
            }
            task.run::<Autodiff<Flex>>(Default::default())
        }
        #[cfg(feature = "cuda")]
        "cuda" => {
            use burn::backend::{Cuda, cuda::CudaDevice};
            if let Err(msg) = cuda_probe(0) {
                bail!("the cuda backend is unavailable: {msg}");
            }
            let device = CudaDevice::new(0);
            set_precision::<Autodiff<Cuda>>(name, &device, precision)?;
            task.run::<Autodiff<Cuda>>(device)
        }
        #[cfg(not(feature = "cuda"))]
        "cuda" => bail!("this build has no cuda backend; rebuild with `--features cuda`"),
        #[cfg(feature = "wgpu")]
        "wgpu" => {
            let adapter = wgpu_adapter()?;
            set_precision::<Autodiff<burn::backend::Wgpu>>(name, &adapter.device, precision)?;
            task.run::<Autodiff<burn::backend::Wgpu>>(adapter.device.clone())
        }
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => bail!("this build has no wgpu backend (built with `--no-default-features`); rebuild with `--features wgpu`"),
        other => bail!("unknown backend {other:?}; known: {}", backend_names().join(", ")),
    }
}

/// The wgpu adapter maskflow computes on: what it is (for step keys and messages) and the
/// device handle burn uses.
#[cfg(feature = "wgpu")]
#[derive(Clone, Debug)]
pub struct WgpuAdapter {
    /// The driver's name for the adapter, e.g. `llvmpipe (LLVM 19.1.7, 256 bits)`.
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub kind: String,
    /// The graphics API wgpu chose: `Vulkan`, `Metal`, `Dx12` or `Gl`.
    pub api: String,
    /// The driver and its version, as the driver reports them (e.g. `llvmpipe`, `Mesa 25.0.7`).
    pub driver: String,
    pub device: burn::backend::wgpu::WgpuDevice,
}

/// Probes the default wgpu adapter once per process. No adapter (no Vulkan loader, no ICD,
/// no GPU) is an error that says what to install, not a panic.
#[cfg(feature = "wgpu")]
pub fn wgpu_adapter() -> Result<WgpuAdapter> {
    use burn::backend::wgpu::{RuntimeOptions, WgpuDevice, graphics::AutoGraphicsApi, init_setup};
    static ADAPTER: std::sync::OnceLock<std::result::Result<WgpuAdapter, String>> = std::sync::OnceLock::new();
    let probed = ADAPTER.get_or_init(|| {
        let device = WgpuDevice::DefaultDevice;
        let setup = catch_panic_message(|| init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default()))?;
        let info = setup.adapter.get_info();
        let driver =
            [info.driver.as_str(), info.driver_info.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
        Ok(WgpuAdapter {
            name: info.name.clone(),
            kind: format!("{:?}", info.device_type),
            api: format!("{:?}", info.backend),
            driver,
            device,
        })
    });
    probed.clone().map_err(|msg| {
        anyhow::anyhow!(
            "the wgpu backend found no usable adapter ({msg}); install a Vulkan driver \
             (on Debian: `apt-get install libvulkan1 mesa-vulkan-drivers`, whose lavapipe runs on the CPU) \
             or run on the CPU with `--set train.backend=cpu`"
        )
    })
}

/// What the step keys record of the wgpu adapter: `name (kind, api, driver)`, or `None` when
/// this build has no wgpu backend or the machine no adapter.
pub fn adapter_description() -> Option<String> {
    #[cfg(feature = "wgpu")]
    if let Ok(a) = wgpu_adapter() {
        return Some(format!("{} ({}, {}, {})", a.name, a.kind, a.api, a.driver));
    }
    None
}

/// Runs `f`, turning a panic (on this thread or a runtime thread it waits on) into its message.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn catch_panic_message<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    use std::sync::{Arc, Mutex};
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = messages.clone();
    let previous = std::panic::take_hook();
    // The hook sees panics of every thread, including cubecl's device threads.
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        if let Ok(mut m) = sink.lock() {
            m.push(msg);
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    result.map_err(|_| messages.lock().ok().and_then(|m| m.first().cloned()).unwrap_or_else(|| "unknown failure".to_string()))
}

/// Runs a one-element computation on CUDA device `index`, catching the panic burn raises when
/// no driver is present and returning its message.
#[cfg(feature = "cuda")]
pub fn cuda_probe(index: usize) -> std::result::Result<(), String> {
    use burn::backend::{Cuda, cuda::CudaDevice};
    use burn::tensor::{ElementConversion, Tensor};
    catch_panic_message(|| Tensor::<Cuda, 1>::from_floats([1.0, 2.0], &CudaDevice::new(index)).sum().into_scalar().elem::<f32>())
        .map(|_| ())
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
    dispatch_with(backend, cfg.precision, Task { cfg, train, val, ckpt_dir, progress })
}

/// Loads a model saved by [`train`](super::train) and predicts `source` on the backend named
/// `backend` in `precision` (eval mode), optionally with horizontal-flip TTA.
pub fn predict_on(
    backend: &str,
    precision: Precision,
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
    dispatch_with(backend, precision, Task { spec, model_path, source, hflip_tta })
}

/// [`crate::model::check_weights`] on the backend named `backend` (eval mode).
pub fn check_weights_on(
    backend: &str,
    arch: &str,
    classes: usize,
    weights: &std::path::Path,
    io: &std::path::Path,
    tol: f64,
) -> Result<crate::model::CheckReport> {
    struct Task<'a> {
        arch: &'a str,
        classes: usize,
        weights: &'a std::path::Path,
        io: &'a std::path::Path,
        tol: f64,
    }
    impl BackendTask for Task<'_> {
        type Output = crate::model::CheckReport;
        fn run<B: TrainBackend>(self, device: B::Device) -> Result<Self::Output> {
            crate::model::check_weights_with::<B::InnerBackend>(&device, self.arch, self.classes, self.weights, self.io, self.tol)
        }
    }
    dispatch(backend, Task { arch, classes, weights, io, tol })
}

/// [`one_step`](super::one_step::one_step) on the backend named `backend`.
pub fn one_step_on(
    backend: &str,
    arch: &str,
    weights: &std::path::Path,
    batch: &crate::batch::Batch,
    optimizer: &super::OptimizerConfig,
    lr: f64,
) -> Result<super::one_step::StepResult> {
    struct Task<'a> {
        arch: &'a str,
        weights: &'a std::path::Path,
        batch: &'a crate::batch::Batch,
        optimizer: &'a super::OptimizerConfig,
        lr: f64,
    }
    impl BackendTask for Task<'_> {
        type Output = super::one_step::StepResult;
        fn run<B: TrainBackend>(self, device: B::Device) -> Result<Self::Output> {
            super::one_step::one_step::<B>(&device, self.arch, self.weights, self.batch, self.optimizer, self.lr)
        }
    }
    dispatch(backend, Task { arch, weights, batch, optimizer, lr })
}

/// [`throughput::measure`](super::throughput::measure) on the backend named `backend`.
pub fn measure_on(
    backend: &str,
    precision: Precision,
    arch: &str,
    batch: usize,
    height: usize,
    width: usize,
    steps: usize,
) -> Result<super::throughput::Throughput> {
    struct Task<'a> {
        arch: &'a str,
        shape: [usize; 4],
    }
    impl BackendTask for Task<'_> {
        type Output = super::throughput::Throughput;
        fn run<B: TrainBackend>(self, device: B::Device) -> Result<Self::Output> {
            let [batch, height, width, steps] = self.shape;
            super::throughput::measure::<B>(&device, self.arch, batch, height, width, steps)
        }
    }
    dispatch_with(backend, precision, Task { arch, shape: [batch, height, width, steps] })
}
