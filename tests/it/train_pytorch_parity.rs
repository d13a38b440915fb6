//! maskflow's training step against PyTorch's: one SGD and one AdamW step of timm's B0 from
//! the committed weights on a fixed batch, BatchNorm in training mode (issue 18). The
//! reference is `scripts/make_grad_fixture.py`'s output: the loss, the gradients of a sample
//! of parameters across the network, and that sample (running statistics too) after each step.
//! Everything within 1e-4 relative (per tensor: `max |ours − torch| / max |torch|`).
//!
//! The fused CPU kernels (BatchNorm + SiLU, depthwise, 1×1 as matmuls) have hand-written
//! backward passes; elsewhere they are checked against burn's autodiff, here against PyTorch.

use std::path::{Path, PathBuf};

use maskflow::model::timm::read_timm_tensors;
use maskflow::train::one_step::{NamedTensor, relative_differences};
use maskflow::train::{self, OptimizerConfig, OptimizerKind};

use crate::common;

const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm").join(name)
}

/// The loss PyTorch computed before the step (the file's metadata).
fn reference_loss(path: &Path) -> f64 {
    let bytes = std::fs::read(path).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let loss = metadata.metadata().as_ref().and_then(|m| m.get("loss").cloned()).expect("the fixture records the loss");
    loss.parse().unwrap()
}

/// Asserts that every tensor of `reference` is within the tolerance in `ours`; returns the
/// largest difference for the log.
fn assert_close(what: &str, ours: &[NamedTensor], reference: &[NamedTensor]) -> f64 {
    let diffs = relative_differences(ours, reference).unwrap();
    let (worst, name) = diffs.first().cloned().expect("a non-empty sample");
    eprintln!("{what}: {} tensors, largest relative difference {worst:.3e} ({name})", diffs.len());
    let over: Vec<String> = diffs.iter().filter(|(d, _)| d.is_nan() || *d > TOLERANCE).map(|(d, n)| format!("{n}: {d:.3e}")).collect();
    assert!(over.is_empty(), "{what}: over {TOLERANCE:e} relative: {}", over.join(", "));
    worst
}

fn check_step(optimizer: OptimizerConfig, lr: f64, after_file: &str) {
    let weights = fixture("efficientnet_b0_18.safetensors");
    let batch = common::timm_fixture_batch();
    let ours = train::one_step_on("cpu", "efficientnet_b0", &weights, &batch, &optimizer, lr).unwrap();
    let after = fixture(after_file);
    let torch_loss = reference_loss(&after);
    eprintln!("loss: maskflow {} torch {torch_loss}", ours.loss);
    assert!(((ours.loss as f64 - torch_loss) / torch_loss).abs() < 1e-5, "loss {} against torch's {torch_loss}", ours.loss);

    let grads = read_timm_tensors("efficientnet_b0", 18, &fixture("efficientnet_b0_18_grads.safetensors")).unwrap();
    assert_close("gradients", &ours.gradients, &grads);

    let reference = read_timm_tensors("efficientnet_b0", 18, &after).unwrap();
    // The comparison can fail: the step moved the sample by more than the tolerance.
    let before = read_timm_tensors("efficientnet_b0", 18, &weights).unwrap();
    let moved = relative_differences(&before, &reference).unwrap()[0].clone();
    eprintln!("the step moved the sample by up to {:.3e} ({})", moved.0, moved.1);
    assert!(moved.0 > 10.0 * TOLERANCE, "the reference step moved the weights by only {:e}", moved.0);
    assert_close(&format!("after one {after_file} step"), &ours.tensors, &reference);
}

/// SGD's update is the gradient (plus weight decay) times the learning rate, and the running
/// statistics move by the batch's: this checks the backward pass of every fused kernel and
/// BatchNorm's training-mode statistics against PyTorch's.
#[test]
fn one_sgd_step_matches_pytorch() {
    let _rng = common::burn_rng_lock();
    let sgd = OptimizerConfig { kind: OptimizerKind::Sgd { momentum: 0.9, nesterov: false }, weight_decay: 1e-4, grad_clip_norm: None };
    check_step(sgd, 1e-2, "efficientnet_b0_18_sgd.safetensors");
}

/// AdamW with eps 1e-5 (the script says why not 1e-8): bias correction, decoupled weight decay.
#[test]
fn one_adamw_step_matches_pytorch() {
    let _rng = common::burn_rng_lock();
    let adamw =
        OptimizerConfig { kind: OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-5 }, weight_decay: 0.01, grad_clip_norm: None };
    check_step(adamw, 1e-4, "efficientnet_b0_18_adamw.safetensors");
}
