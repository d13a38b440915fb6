//! The trained-weights file that goes into the cache: safetensors with fixed metadata, so
//! the same weights always give the same bytes. burn's `.mpk` records carry random ids and
//! differ between processes, which would defeat `maskflow verify` and content addressing.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, SafetensorsStore};

use crate::model::{Classifier, ModelSpec};

/// Converts a checkpoint written by [`train`](super::train) into deterministic safetensors.
/// Runs on the CPU backend whatever backend trained it: the file holds plain f32 data.
pub fn export_weights(spec: &ModelSpec, checkpoint: &Path, out: &Path) -> Result<()> {
    let device = Default::default();
    let model = super::load_model::<Flex>(spec, checkpoint, &device)?;
    let mut store = SafetensorsStore::from_file(out).clear_metadata().metadata("format", "pt").overwrite(true);
    model.save_into(&mut store).map_err(|e| anyhow!("{}: cannot write weights: {e}", out.display()))
}

/// Whether `path` starts like a safetensors file (u64 header length, then a JSON object).
pub fn is_safetensors(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path).map(|b| b.into_iter().take(9).collect::<Vec<u8>>()) else { return false };
    bytes.len() == 9 && bytes[8] == b'{'
}

/// Loads weights written by [`export_weights`].
pub fn load_weights<B: Backend>(spec: &ModelSpec, path: &Path, device: &B::Device) -> Result<Classifier<B>> {
    if !is_safetensors(path) {
        bail!("{}: not a safetensors file", path.display());
    }
    let mut model = spec.build::<B>(device)?;
    let mut store = SafetensorsStore::from_file(path);
    let result = model.load_from(&mut store).map_err(|e| anyhow!("{}: cannot load weights: {e}", path.display()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        bail!(
            "{}: weights do not fit `{}` ({} errors, {} missing tensors)",
            path.display(),
            spec.arch,
            result.errors.len(),
            result.missing.len()
        );
    }
    Ok(crate::model::to_device_float(model, device))
}
