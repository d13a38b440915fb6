//! One optimiser step on one fixed batch, from given weights: what the backend-parity checks
//! (flex against wgpu or CUDA) and the PyTorch-parity check compare.
//!
//! It runs the training loop's own pieces — [`ModelSpec::build`], [`load_pretrained`],
//! [`LossConfig::compute`], [`OptimizerConfig`] with its global-norm clipping — on a `Single`
//! head with dropout and drop-path off, so nothing random enters and two backends (or two
//! frameworks) must agree up to rounding. BatchNorm runs in training mode: batch statistics in
//! the forward pass, running statistics updated by the step.

use std::path::Path;

use anyhow::{Result, anyhow};
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::ElementConversion;
use burn_store::ModuleSnapshot;

use super::{LossConfig, OptimizerConfig, predict};
use crate::batch::Batch;
use crate::model::{Classifier, HeadKind, ModelSpec, TrainBackend, load_pretrained};

/// A named tensor after the step, in maskflow's parameter names (`stem.conv.weight`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// What one step gives: the loss before the step, the gradient of every parameter, and every
/// tensor of the model after it (parameters and BatchNorm running statistics), sorted by name.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub loss: f32,
    pub gradients: Vec<NamedTensor>,
    pub tensors: Vec<NamedTensor>,
}

/// One step of `optimizer` at learning rate `lr` for `arch` (18 classes) loaded from timm
/// `weights`, on `batch`, with the plain cross-entropy loss.
pub fn one_step<B: TrainBackend>(
    device: &B::Device,
    arch: &str,
    weights: &Path,
    batch: &Batch,
    optimizer: &OptimizerConfig,
    lr: f64,
) -> Result<StepResult> {
    optimizer.validate()?;
    let spec = ModelSpec { dropout: Some(0.0), ..ModelSpec::new(arch, HeadKind::Single) };
    let mut model: Classifier<B> = spec.build(device)?;
    load_pretrained(&mut model, arch, weights)?;
    let mut optim = optimizer.init::<B, Classifier<B>>();
    let x = predict::images_tensor::<B>(batch, device);
    let t = predict::targets_tensor::<B>(batch, device);
    let loss = LossConfig::default().compute(&model.forward(x), t)?;
    let value: f32 = loss.clone().into_scalar().elem::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut gradients = Vec::new();
    // Enum variants (`Single`, `EfficientNet`) left out of the names, as in timm's.
    for snapshot in model.collect(None, None, true) {
        let Some(data) = snapshot.tensor_id.and_then(|id| gradient::<B::InnerBackend>(&grads, id, snapshot.shape.len())) else {
            continue; // running statistics have no gradient
        };
        let name = snapshot.full_path();
        let values = data.convert::<f32>().to_vec::<f32>().map_err(|e| anyhow!("reading the gradient of {name}: {e:?}"))?;
        gradients.push(NamedTensor { name, shape: snapshot.shape.to_vec(), values });
    }
    gradients.sort_by(|a, b| a.name.cmp(&b.name));
    let model = optim.step(lr, model, grads);
    let mut tensors = Vec::new();
    for snapshot in model.valid().collect(None, None, true) {
        let name = snapshot.full_path();
        let data = snapshot.to_data().map_err(|e| anyhow!("reading {name} after the step: {e:?}"))?;
        let values = data.convert::<f32>().to_vec::<f32>().map_err(|e| anyhow!("reading {name} after the step: {e:?}"))?;
        tensors.push(NamedTensor { name, shape: snapshot.shape.to_vec(), values });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(StepResult { loss: value, gradients, tensors })
}

/// The gradient of parameter `id` (of rank `rank`), if it has one.
fn gradient<B: burn::tensor::backend::Backend>(
    grads: &GradientsParams,
    id: burn::module::ParamId,
    rank: usize,
) -> Option<burn::tensor::TensorData> {
    match rank {
        1 => grads.get::<B, 1>(id).map(|t| t.into_data()),
        2 => grads.get::<B, 2>(id).map(|t| t.into_data()),
        3 => grads.get::<B, 3>(id).map(|t| t.into_data()),
        4 => grads.get::<B, 4>(id).map(|t| t.into_data()),
        _ => None,
    }
}

/// The relative difference of each tensor of `ours` that `reference` also has, by name:
/// `max |a − b| / max |b|`, largest first. For comparing with a reference that holds a
/// sample of the tensors (the PyTorch fixture); a name of `reference` that `ours` lacks is an
/// error.
pub fn relative_differences(ours: &[NamedTensor], reference: &[NamedTensor]) -> Result<Vec<(f64, String)>> {
    let mut out = Vec::new();
    for r in reference {
        let a = ours.iter().find(|t| t.name == r.name).ok_or_else(|| anyhow!("no tensor {} in the step's result", r.name))?;
        if a.values.len() != r.values.len() {
            return Err(anyhow!("{}: {} values against the reference's {}", r.name, a.values.len(), r.values.len()));
        }
        out.push((relative_difference(&a.values, &r.values), r.name.clone()));
    }
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(out)
}

/// `max |a − b| / max |b|` for two tensors of equal length (infinite when a value is not finite).
fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max((*v as f64).abs())).max(f64::MIN_POSITIVE);
    let diff = a.iter().zip(b).fold(0.0f64, |m, (p, q)| m.max((*p as f64 - *q as f64).abs()));
    if diff.is_finite() { diff / scale } else { f64::INFINITY }
}

/// The largest per-tensor relative difference between two step results:
/// `max |a − b| / max |b|` over each tensor, with the tensor it occurs in. Tensors are
/// matched by name; one missing on either side is an error.
pub fn max_relative_difference(a: &StepResult, b: &StepResult) -> Result<(f64, String)> {
    if a.tensors.len() != b.tensors.len() {
        return Err(anyhow!("the two steps have {} and {} tensors", a.tensors.len(), b.tensors.len()));
    }
    let mut worst = (0.0f64, String::new());
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        if x.name != y.name || x.values.len() != y.values.len() {
            return Err(anyhow!("tensor {} ({} values) does not match {} ({} values)", x.name, x.values.len(), y.name, y.values.len()));
        }
        let relative = relative_difference(&x.values, &y.values);
        if relative > worst.0 || relative.is_nan() {
            worst = (relative, x.name.clone());
        }
    }
    Ok(worst)
}
