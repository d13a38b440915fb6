//! Loading timm `efficientnet_b*` safetensors checkpoints, and checking them against timm's
//! own output.
//!
//! The constraint this module keeps: a timm state_dict maps onto [`EfficientNet`] key-for-key
//! through regex remaps (applied in order to each key, stage-aware because stage 0 blocks have
//! no expansion), burn-store's PyTorch adapter turns `weight`/`bias` of BatchNorm into
//! `gamma`/`beta` and transposes Linear weights, and any missing tensor or shape mismatch is an
//! error naming the file. burn-store 0.21 lists applied BatchNorm weights as `unused`, so
//! `unused` is not checked; timm's `num_batches_tracked` scalars are simply never applied.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use serde::Serialize;

use super::efficientnet::{EfficientNet, EfficientNetConfig, stage_layout};
use super::{Backbone, Classifier, ModelBackend};

/// The ordered `(regex, replacement)` remaps from timm keys to ours for `config`.
pub fn timm_key_remaps(config: &EfficientNetConfig) -> Vec<(String, String)> {
    let mut remaps: Vec<(String, String)> = [
        (r"^conv_stem\.", "stem.conv."),
        (r"^bn1\.", "stem.bn."),
        (r"^conv_head\.", "head.conv."),
        (r"^bn2\.", "head.bn."),
        // Stage 0: DepthwiseSeparableConv (conv_dw, bn1, se, conv_pw, bn2).
        (r"^blocks\.0\.(\d+)\.conv_dw\.", "blocks.0.$1.dw.conv."),
        (r"^blocks\.0\.(\d+)\.bn1\.", "blocks.0.$1.dw.bn."),
        (r"^blocks\.0\.(\d+)\.conv_pw\.", "blocks.0.$1.project.conv."),
        (r"^blocks\.0\.(\d+)\.bn2\.", "blocks.0.$1.project.bn."),
        // Later stages: InvertedResidual (conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3).
        (r"^blocks\.([1-9])\.(\d+)\.conv_pw\.", "blocks.$1.$2.expand.conv."),
        (r"^blocks\.([1-9])\.(\d+)\.bn1\.", "blocks.$1.$2.expand.bn."),
        (r"^blocks\.([1-9])\.(\d+)\.conv_dw\.", "blocks.$1.$2.dw.conv."),
        (r"^blocks\.([1-9])\.(\d+)\.bn2\.", "blocks.$1.$2.dw.bn."),
        (r"^blocks\.([1-9])\.(\d+)\.conv_pwl\.", "blocks.$1.$2.project.conv."),
        (r"^blocks\.([1-9])\.(\d+)\.bn3\.", "blocks.$1.$2.project.bn."),
        (r"\.se\.conv_reduce\.", ".se.reduce."),
        (r"\.se\.conv_expand\.", ".se.expand."),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    // Last: flatten `blocks.{stage}.{index}.` to `blocks.{k}.`. A flattened key is followed by
    // a field name, never a digit, so no later pattern can match it again.
    for (k, (s, i)) in stage_layout(config).into_iter().enumerate() {
        remaps.push((format!(r"^blocks\.{s}\.{i}\."), format!("blocks.{k}.")));
    }
    remaps
}

/// What loading a checkpoint did, in tensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// Tensors of the checkpoint copied into the model.
    pub loaded: usize,
    /// Tensors of the checkpoint left out (timm's classifier, when its class count differs).
    pub skipped: usize,
    /// Tensors of the model that keep their fresh initialisation (maskflow's heads).
    pub initialised: usize,
}

impl std::ops::AddAssign for LoadReport {
    fn add_assign(&mut self, o: LoadReport) {
        self.loaded += o.loaded;
        self.skipped += o.skipped;
        self.initialised += o.initialised;
    }
}

/// Loads timm weights from a safetensors file into `net`. With `skip_classifier`, the
/// classifier keeps its fresh initialisation (for fine-tuning a 1000-class checkpoint).
pub fn load_timm_weights<B: Backend>(
    net: &mut EfficientNet<B>,
    config: &EfficientNetConfig,
    path: &Path,
    skip_classifier: bool,
) -> Result<LoadReport> {
    check_is_safetensors(path)?;
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        // Errors and missing tensors are reported below, with the file named.
        .validate(false)
        .allow_partial(true);
    for (from, to) in timm_key_remaps(config) {
        store = store.with_key_remapping(from, to);
    }
    if skip_classifier {
        store = store.with_predicate(|path, _| !path.starts_with("classifier."));
    }
    let result = net.load_from(&mut store).map_err(|e| anyhow!("{}: cannot load timm weights: {e}", path.display()))?;
    if !result.errors.is_empty() {
        let listed: Vec<String> = result.errors.iter().take(5).map(|e| e.to_string()).collect();
        bail!(
            "{}: {} tensor(s) do not fit the model (wrong architecture or class count?): {}",
            path.display(),
            result.errors.len(),
            listed.join("; ")
        );
    }
    let missing: Vec<&str> =
        result.missing.iter().map(|(p, _)| p.as_str()).filter(|p| !(skip_classifier && p.starts_with("classifier."))).collect();
    if !missing.is_empty() {
        bail!(
            "{}: {} tensor(s) missing from the checkpoint, e.g. {}",
            path.display(),
            missing.len(),
            missing.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        );
    }
    // The filtered classifier tensors are both the checkpoint's skipped ones and the model's
    // freshly initialised ones.
    let initialised = result.skipped.len() + result.missing.len();
    Ok(LoadReport { loaded: result.applied.len(), skipped: result.skipped.len(), initialised })
}

/// The tensors of a timm safetensors file that holds only some of `arch`'s (with `classes`
/// outputs), read through the same key remapping and layout adapter as [`load_timm_weights`]:
/// named and laid out as maskflow's model has them (`stem.conv.weight`, a linear weight as
/// `[in, out]`). Sorted by name; a tensor that fits no part of the model is an error.
pub fn read_timm_tensors(arch: &str, classes: usize, path: &Path) -> Result<Vec<crate::train::one_step::NamedTensor>> {
    use burn::backend::Flex;
    use burn_store::ModuleSnapshot;
    check_is_safetensors(path)?;
    let config = EfficientNetConfig::by_name(arch).ok_or_else(|| anyhow!("{arch:?} is not an EfficientNet"))?;
    let mut net: EfficientNet<Flex> = config.init(classes, 0.0, 0.0, &Default::default());
    let mut store = SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter).validate(false).allow_partial(true);
    // The layout adapter renames a BatchNorm's `weight`/`bias` to `gamma`/`beta` only where
    // the file also holds that BatchNorm's running statistics; a file of gradients has none.
    let bn_affine = [(r"\.bn\.weight$", ".bn.gamma"), (r"\.bn\.bias$", ".bn.beta")].map(|(a, b)| (a.to_string(), b.to_string()));
    for (from, to) in timm_key_remaps(&config).into_iter().chain(bn_affine) {
        store = store.with_key_remapping(from, to);
    }
    let result = net.load_from(&mut store).map_err(|e| anyhow!("{}: cannot read timm tensors: {e}", path.display()))?;
    // PyTorch's BatchNorm step counters have no counterpart in the model.
    let unused: Vec<&String> = result.unused.iter().filter(|name| !name.ends_with(".num_batches_tracked")).collect();
    if !result.errors.is_empty() || !unused.is_empty() {
        bail!(
            "{}: {} tensor(s) do not fit {arch}: {}",
            path.display(),
            result.errors.len() + unused.len(),
            result.errors.iter().map(|e| e.to_string()).chain(unused.iter().map(|s| s.to_string())).take(5).collect::<Vec<_>>().join("; ")
        );
    }
    let mut out = Vec::new();
    for snapshot in net.collect(None, None, false) {
        let name = snapshot.full_path();
        if !result.applied.contains(&name) {
            continue;
        }
        let data = snapshot.to_data().map_err(|e| anyhow!("{}: reading {name}: {e:?}", path.display()))?;
        let values = data.convert::<f32>().to_vec::<f32>().map_err(|e| anyhow!("{}: reading {name}: {e:?}", path.display()))?;
        out.push(crate::train::one_step::NamedTensor { name, shape: snapshot.shape.to_vec(), values });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The outcome of [`check_weights`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub arch: String,
    pub classes: usize,
    /// Largest |ours − timm's| over all logits.
    pub max_abs_diff: f64,
    pub tol: f64,
    pub passed: bool,
}

/// Loads timm weights `weights` into `arch` with `classes` outputs, runs `io`'s `input` tensor
/// (`[N, 3, H, W]`, f32) through it in eval mode on the CPU, and compares with `io`'s `logits`.
pub fn check_weights(arch: &str, classes: usize, weights: &Path, io: &Path, tol: f64) -> Result<CheckReport> {
    check_weights_with::<Flex>(&Default::default(), arch, classes, weights, io, tol)
}

/// [`check_weights`] on backend `B` (eval mode): the same check for every backend.
pub fn check_weights_with<B: ModelBackend>(
    device: &B::Device,
    arch: &str,
    classes: usize,
    weights: &Path,
    io: &Path,
    tol: f64,
) -> Result<CheckReport> {
    let config = EfficientNetConfig::by_name(arch).ok_or_else(|| anyhow!("{arch:?} is not a timm EfficientNet (efficientnet_b0..b7)"))?;
    let mut net = config.init::<B>(classes, 0.0, 0.0, device);
    load_timm_weights(&mut net, &config, weights, false)?;

    let bytes = std::fs::read(io).with_context(|| format!("reading {}", io.display()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{}: not a safetensors file: {e}", io.display()))?;
    let (input, input_shape) = read_f32(&tensors, "input", io)?;
    let (expected, expected_shape) = read_f32(&tensors, "logits", io)?;
    let [n, c, h, w] = input_shape[..] else {
        bail!("{}: `input` must be [N, 3, H, W], got {input_shape:?}", io.display());
    };
    if c != 3 || expected_shape != [n, classes] {
        bail!("{}: expected input [N, 3, H, W] and logits [N, {classes}], got {input_shape:?} and {expected_shape:?}", io.display());
    }
    let x = Tensor::<B, 4>::from_data(TensorData::new(input, [n, c, h, w]), device);
    let logits = net.forward(x).into_data();
    let ours = logits.to_vec::<f32>().map_err(|e| anyhow!("reading logits: {e:?}"))?;
    let max_abs_diff = ours.iter().zip(&expected).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
    Ok(CheckReport { arch: arch.to_string(), classes, max_abs_diff, tol, passed: max_abs_diff <= tol && max_abs_diff.is_finite() })
}

fn read_f32(tensors: &safetensors::SafeTensors<'_>, name: &str, path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let view = tensors.tensor(name).map_err(|_| anyhow!("{}: no tensor named {name:?}", path.display()))?;
    if view.dtype() != safetensors::Dtype::F32 {
        bail!("{}: tensor {name:?} must be F32, is {:?}", path.display(), view.dtype());
    }
    let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok((values, view.shape().to_vec()))
}

/// Reads just the header so that a non-safetensors file gets a clear error (burn-store's own
/// message for a garbage file is a bare deserialisation error).
fn check_is_safetensors(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    let header_ok = file.read_exact(&mut len).is_ok() && {
        let n = u64::from_le_bytes(len);
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut first = [0u8; 1];
        n > 1 && n + 8 <= size && file.read_exact(&mut first).is_ok() && first[0] == b'{'
    };
    if !header_ok {
        bail!("{}: not a safetensors file (bad header)", path.display());
    }
    Ok(())
}

/// Loads timm `efficientnet_b*` weights into every backbone of `model` (one for
/// `Single`/`Multi`, three for `Separate`). A classifier whose class count differs from the
/// checkpoint's keeps its fresh initialisation.
pub fn load_pretrained<B: Backend>(model: &mut Classifier<B>, arch: &str, path: &Path) -> Result<LoadReport> {
    let config = EfficientNetConfig::by_name(arch).ok_or_else(|| anyhow!("pretrained weights need an EfficientNet, not {arch:?}"))?;
    let classes_in_file = timm_classifier_classes(path)?;
    let load = |net: &mut Backbone<B>| -> Result<LoadReport> {
        let Backbone::EfficientNet(net) = net else {
            bail!("pretrained weights need an EfficientNet backbone");
        };
        let classes = net.classifier.weight.dims()[1];
        load_timm_weights(net, &config, path, classes_in_file != Some(classes))
    };
    match model {
        Classifier::Single(net) | Classifier::Multi(net) => load(net),
        Classifier::Separate(nets) => {
            let mut report = load(&mut nets.mask)?;
            report += load(&mut nets.gender)?;
            report += load(&mut nets.age)?;
            Ok(report)
        }
    }
}

/// The output count of a timm checkpoint's `classifier.weight`, read from the header only.
fn timm_classifier_classes(path: &Path) -> Result<Option<usize>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| anyhow!("{}: not a safetensors file", path.display()))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        bail!("{}: not a safetensors file (header length {n})", path.display());
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|_| anyhow!("{}: not a safetensors file (short header)", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| anyhow!("{}: not a safetensors file (bad header)", path.display()))?;
    Ok(json["classifier.weight"]["shape"][0].as_u64().map(|v| v as usize))
}
