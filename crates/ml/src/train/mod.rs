//! The training loop: epochs over a [`BatchSource`], validation macro-F1 after each epoch,
//! best-checkpoint selection, early stopping, and crash-safe resumable checkpoints.
//!
//! The constraints this module keeps:
//! - **Determinism.** The backend is seeded from `(seed)` before the model is built and from
//!   `(seed, epoch)` at the start of every epoch; learning rates are a pure function of the
//!   step; sources are pure functions of `(epoch, index)`. So an epoch's result depends only on
//!   the weights and optimiser state it starts from, and a run resumed from the checkpoint of
//!   epoch k ends with the same bits as one that was never interrupted.
//! - **Crash safety.** Each epoch writes `epoch-NNNN/{model,optim}.mpk` (and `best-NNNN/` when
//!   it is the best so far), then atomically replaces `state.json`, which names them; only
//!   then are older directories removed. A run killed at any point resumes from the last
//!   completed epoch.
//! - A non-finite loss stops the run with an error naming the epoch and step; the checkpoints
//!   of the last completed epoch stay in place.

pub mod backend;
pub mod loss;
pub mod one_step;
pub mod optim;
pub mod predict;
pub mod throughput;
pub mod toy;
pub mod weights;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::{AutodiffModule, Module};
use burn::optim::GradientsParams;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::ElementConversion;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::batch::BatchSource;
use crate::data::labels::NUM_CLASSES;
use crate::fsutil;
use crate::metrics;
use crate::model::{self, Classifier, ModelBackend, ModelSpec, TrainBackend, digest};
use crate::rng::splitmix64;
pub use backend::{
    BackendTask, Precision, backend_names, check_weights_on, dispatch, dispatch_with, measure_on, one_step_on, predict_on, train_on,
};
pub use loss::{ClassWeights, LossConfig, LossKind, LossTerm};
pub use optim::{OptimizerConfig, OptimizerKind, Schedule, ScheduleKind};
pub use predict::predict;
pub use weights::{export_weights, load_weights};

/// Bumped whenever a change alters training arithmetic (e.g. the BatchNorm implementation),
/// so that fingerprints — and step keys built from them — change with it.
pub const TRAINING_IMPL_VERSION: &str =
    "maskflow-train-4/fused-bn-silu-depthwise/pointwise-matmul/visit-order-init/dense-im2col/eval-pointwise-gate-folded/plane-means";

/// Everything that determines a training run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelSpec,
    /// timm `efficientnet_b*` safetensors to start from (classifier kept fresh when its class
    /// count differs). Only for EfficientNet architectures.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    pub epochs: usize,
    pub seed: u64,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    pub loss: LossConfig,
    /// Stop when validation macro-F1 has not improved for this many epochs.
    #[serde(default)]
    pub early_stopping_patience: Option<usize>,
    /// The float type of every tensor on the device ([`Precision`]); `F32` on the CPU.
    #[serde(default)]
    pub precision: Precision,
    /// Leave the run (as a kill would) after this many completed epochs in total; a later
    /// call resumes. Not part of the run's identity.
    #[serde(default, skip_serializing)]
    pub stop_after_epochs: Option<usize>,
}

impl TrainConfig {
    /// A small, sensible default: AdamW 1e-3, warm-up then cosine, plain cross-entropy.
    pub fn new(model: ModelSpec, epochs: usize, seed: u64) -> Self {
        TrainConfig {
            model,
            pretrained: None,
            epochs,
            seed,
            optimizer: OptimizerConfig::default(),
            schedule: Schedule { lr: 1e-3, warmup_steps: 0, kind: ScheduleKind::Cosine { min_lr: 1e-5 } },
            loss: LossConfig::default(),
            early_stopping_patience: None,
            precision: Precision::F32,
            stop_after_epochs: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("train: epochs must be at least 1");
        }
        self.optimizer.validate()?;
        self.schedule.validate()?;
        self.loss.validate(self.model.head != model::HeadKind::Single)?;
        if self.early_stopping_patience == Some(0) {
            bail!("train: early-stopping patience must be at least 1");
        }
        Ok(())
    }

    /// blake3 over the canonical JSON of the config (without `stop_after_epochs`), the
    /// backend type and [`TRAINING_IMPL_VERSION`].
    pub fn fingerprint<B: Backend>(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(serde_json::to_string(self).unwrap_or_default().as_bytes());
        h.update(std::any::type_name::<B>().as_bytes());
        h.update(TRAINING_IMPL_VERSION.as_bytes());
        h.finalize().to_hex().to_string()
    }
}

/// What the loop reports while it runs (`epoch` and `step` are 0-based).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// After each optimiser step.
    Step {
        epoch: usize,
        epochs: usize,
        step: usize,
        steps: usize,
        loss: f64,
        lr: f64,
        /// Macro-F1 of the training predictions so far in this epoch.
        running_f1: f64,
    },
    /// After each epoch's validation and checkpoint.
    EpochEnd(EpochRecord),
    /// Training resumed from a checkpoint after `epochs_done` completed epochs.
    Resumed { epochs_done: usize },
    /// A fresh run started from pretrained weights.
    Pretrained(model::LoadReport),
}

/// One completed epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_f1: f64,
    pub val_f1: f64,
    pub val_accuracy: f64,
    /// Mean cross-entropy of the true class under the model's 18-class probabilities on the
    /// validation set (the configured training loss may add smoothing or focusing; this is
    /// the plain one, comparable across losses). 0 in histories written before it existed.
    #[serde(default)]
    pub val_loss: f64,
    /// Macro-F1 of each task (mask, gender, age) on the validation set.
    #[serde(default)]
    pub val_task_f1: metrics::TaskF1,
    pub lr: f64,
    pub is_best: bool,
}

/// The result of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// Completed epochs (including those of earlier, resumed runs).
    pub epochs_done: usize,
    /// True when the run has ended (all epochs, or early stopping); false after
    /// `stop_after_epochs` cut it short.
    pub finished: bool,
    pub stopped_early: bool,
    /// 0-based epoch of the best validation macro-F1.
    pub best_epoch: usize,
    pub best_val_f1: f64,
    pub history: Vec<EpochRecord>,
    /// The best model's record (burn NamedMpk, full precision).
    pub best_model: PathBuf,
    /// The last completed epoch's model record.
    pub last_model: PathBuf,
    /// Hex [`weights_digest`](crate::model::weights_digest) of the best and last models.
    pub best_digest: String,
    pub last_digest: String,
    /// Set when this call continued an interrupted run.
    pub resumed_from: Option<usize>,
}

/// The checkpoint directory's index, replaced atomically after each epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    fingerprint: String,
    /// How the random state is restored: reseeded from (seed, epoch) at each epoch start.
    rng: String,
    epochs_done: usize,
    last_dir: String,
    best_dir: String,
    best_epoch: usize,
    best_val_f1: f64,
    best_digest: String,
    last_digest: String,
    epochs_since_best: usize,
    finished: bool,
    stopped_early: bool,
    history: Vec<EpochRecord>,
}

impl RunState {
    /// The state of a run that has not completed an epoch yet.
    fn fresh(fingerprint: String) -> Self {
        RunState {
            fingerprint,
            rng: "backend reseeded from (seed, epoch) at each epoch start".into(),
            epochs_done: 0,
            last_dir: String::new(),
            best_dir: String::new(),
            best_epoch: 0,
            best_val_f1: f64::NEG_INFINITY,
            best_digest: String::new(),
            last_digest: String::new(),
            epochs_since_best: 0,
            finished: false,
            stopped_early: false,
            history: Vec::new(),
        }
    }
}

const STATE_FILE: &str = "state.json";

/// Trains `cfg.model` on `train`, validating on `val` after every epoch, with checkpoints in
/// `ckpt_dir` (created if needed). If `ckpt_dir` holds an unfinished run of the same
/// configuration, it resumes; a finished one is returned as is; a different configuration is
/// an error.
pub fn train<B: TrainBackend>(
    cfg: &TrainConfig,
    train: &dyn BatchSource,
    val: &dyn BatchSource,
    ckpt_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<TrainOutcome> {
    cfg.validate()?;
    if val.num_samples() == 0 {
        bail!("train: the validation source is empty");
    }
    let session = Session::<B> { cfg, train, val, ckpt_dir, device: Default::default(), rec: NamedMpkFileRecorder::new() };
    std::fs::create_dir_all(ckpt_dir).with_context(|| format!("creating checkpoint directory {}", ckpt_dir.display()))?;
    let (mut model, mut optim, mut state) = match session.start_or_resume(progress)? {
        Start::Finished(outcome) => return Ok(outcome),
        Start::Run { model, optim, state } => (model, optim, state),
    };
    let resumed_from = (state.epochs_done > 0).then_some(state.epochs_done);
    let mut steps = Steps {
        done: (0..state.epochs_done).map(|e| train.num_batches(e)).sum(),
        total: (0..cfg.epochs).map(|e| train.num_batches(e)).sum(),
    };
    for epoch in state.epochs_done..cfg.epochs {
        if cfg.stop_after_epochs.is_some_and(|n| state.epochs_done >= n) {
            break;
        }
        if preemption_flag().load(std::sync::atomic::Ordering::Relaxed) && state.epochs_done > 0 {
            // The last epoch's checkpoint is complete (end_epoch wrote it and then state.json).
            return Err(Preempted { epochs_done: state.epochs_done }.into());
        }
        B::seed(&session.device, epoch_seed(cfg.seed, epoch));
        let trained;
        (model, trained) = session.train_epoch(model, &mut optim, &state, epoch, &mut steps, progress)?;
        session.end_epoch(&model, &optim, &mut state, epoch, trained, progress)?;
        if state.finished {
            break;
        }
    }
    Ok(outcome(ckpt_dir, &state, resumed_from))
}

/// Set when the process is about to be preempted (Slurm's `--signal=B:USR2@90`, which the
/// application wires to this flag): training stops at the next epoch boundary, with that
/// epoch's checkpoint complete, and returns [`Preempted`]; a later call resumes from it.
pub fn preemption_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    static FLAG: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(Default::default).clone()
}

/// Training stopped on a preemption warning after `epochs_done` checkpointed epochs.
#[derive(Debug, thiserror::Error)]
#[error("preempted: training stopped after epoch {epochs_done}, whose checkpoint is complete; a rerun resumes from it")]
pub struct Preempted {
    pub epochs_done: usize,
}

type Optimizer<B> = optim::AnyOptimizer<B, Classifier<B>>;

/// What stays fixed during one call of [`train`].
struct Session<'a, B: TrainBackend> {
    cfg: &'a TrainConfig,
    train: &'a dyn BatchSource,
    val: &'a dyn BatchSource,
    ckpt_dir: &'a Path,
    device: B::Device,
    rec: NamedMpkFileRecorder<FullPrecisionSettings>,
}

/// Where [`Session::start_or_resume`] leaves a call: nothing to do, or epochs to run.
/// One value per training call, moved once: boxing the model would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Start<B: TrainBackend> {
    Finished(TrainOutcome),
    Run { model: Classifier<B>, optim: Optimizer<B>, state: RunState },
}

/// Optimiser steps over the whole run (the learning rate is a function of them).
struct Steps {
    done: usize,
    total: usize,
}

/// What one epoch's optimiser steps leave for its record.
struct EpochTrain {
    /// Mean over the epoch's samples.
    loss: f64,
    /// Macro-F1 of the training predictions.
    f1: f64,
    /// The learning rate of the last step.
    lr: f64,
}

impl<B: TrainBackend> Session<'_, B> {
    /// Builds the model (the backend seeded from `cfg.seed` first) and its optimiser, then
    /// loads both from the last checkpoint of an unfinished run in `ckpt_dir`, or starts a
    /// fresh run (from pretrained weights when the configuration names them).
    fn start_or_resume(&self, progress: &mut dyn FnMut(Progress)) -> Result<Start<B>> {
        let (cfg, ckpt_dir, device) = (self.cfg, self.ckpt_dir, &self.device);
        let fingerprint = cfg.fingerprint::<B>();
        let mut model: Classifier<B> = build_seeded(&cfg.model, cfg.seed, device)?;
        let mut optim = cfg.optimizer.init::<B, Classifier<B>>();
        let state = match read_state(ckpt_dir)? {
            Some(state) => {
                if state.fingerprint != fingerprint {
                    bail!("{}: holds a run with a different configuration or backend; use a fresh directory", ckpt_dir.display());
                }
                if state.finished {
                    return Ok(Start::Finished(outcome(ckpt_dir, &state, None)));
                }
                let dir = ckpt_dir.join(&state.last_dir);
                model = model
                    .load_file(dir.join("model"), &self.rec, device)
                    .map_err(|e| anyhow!("{}: loading model checkpoint: {e:?}", dir.display()))?;
                optim = optim.load(&dir.join("optim"), device)?;
                progress(Progress::Resumed { epochs_done: state.epochs_done });
                state
            }
            None => {
                if let Some(path) = &cfg.pretrained {
                    let report = model::load_pretrained(&mut model, &cfg.model.arch, path)?;
                    progress(Progress::Pretrained(report));
                }
                RunState::fresh(fingerprint)
            }
        };
        // Applied snapshots, checkpoints and pretrained weights keep their f32 (`model::dtype`).
        Ok(Start::Run { model: model::to_device_float(model, device), optim, state })
    }

    /// The optimiser steps of `epoch` (the backend already seeded for it): the model after
    /// them, and what the epoch's record needs. A non-finite loss stops the run.
    fn train_epoch(
        &self,
        mut model: Classifier<B>,
        optim: &mut Optimizer<B>,
        state: &RunState,
        epoch: usize,
        steps: &mut Steps,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Classifier<B>, EpochTrain)> {
        let (cfg, device) = (self.cfg, &self.device);
        let batches = self.train.num_batches(epoch);
        let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
        let (mut y_true, mut y_pred) = (Vec::new(), Vec::new());
        let mut lr = cfg.schedule.lr;
        for step in 0..batches {
            let batch = self.train.batch(epoch, step);
            if batch.n == 0 {
                continue;
            }
            check_batch(&batch, epoch, step)?;
            let x = predict::images_tensor::<B>(&batch, device);
            let t = predict::targets_tensor::<B>(&batch, device);
            let out = model.forward(x);
            let loss = cfg.loss.compute(&out, t)?;
            let value: f64 = loss.clone().into_scalar().elem::<f64>();
            if !value.is_finite() {
                let kept = if state.epochs_done == 0 {
                    "no epoch completed, so no checkpoint".to_string()
                } else {
                    format!("the checkpoint of epoch {} is kept in {}", state.epochs_done, self.ckpt_dir.join(&state.last_dir).display())
                };
                bail!("non-finite training loss ({value}) at epoch {}, step {} of {batches}; {kept}", epoch + 1, step + 1);
            }
            for row in predict::rows(out.log_probs.detach()) {
                y_pred.push(metrics::argmax(&row));
            }
            y_true.extend_from_slice(&batch.labels);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            lr = cfg.schedule.lr_at(steps.done, epoch, steps.total);
            model = optim.step(lr, model, grads);
            steps.done += 1;
            loss_sum += value * batch.n as f64;
            loss_n += batch.n;
            progress(Progress::Step {
                epoch,
                epochs: cfg.epochs,
                step,
                steps: batches,
                loss: value,
                lr,
                running_f1: metrics::macro_f1(&y_true, &y_pred),
            });
        }
        let loss = if loss_n == 0 { 0.0 } else { loss_sum / loss_n as f64 };
        Ok((model, EpochTrain { loss, f1: metrics::macro_f1(&y_true, &y_pred), lr }))
    }

    /// Validates the epoch's model, checkpoints it (as the best too, when it is), decides
    /// early stopping and the end of the run, and commits the new state.
    fn end_epoch(
        &self,
        model: &Classifier<B>,
        optim: &Optimizer<B>,
        state: &mut RunState,
        epoch: usize,
        trained: EpochTrain,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let val = evaluate(&model.valid(), self.val);
        let (val_f1, val_accuracy) = (val.macro_f1, val.accuracy);
        let is_best = val_f1 > state.best_val_f1;
        let record = EpochRecord {
            epoch,
            train_loss: trained.loss,
            train_f1: trained.f1,
            val_f1,
            val_accuracy,
            val_loss: val.loss,
            val_task_f1: val.task_f1,
            lr: trained.lr,
            is_best,
        };
        let superseded = save_epoch(self.ckpt_dir, &self.rec, model, optim, epoch, is_best, state)?;
        if is_best {
            state.best_epoch = epoch;
            state.best_val_f1 = val_f1;
            state.epochs_since_best = 0;
        } else {
            state.epochs_since_best += 1;
        }
        state.epochs_done = epoch + 1;
        state.history.push(record.clone());
        if let Some(patience) = self.cfg.early_stopping_patience
            && state.epochs_since_best >= patience
            && state.epochs_done < self.cfg.epochs
        {
            state.stopped_early = true;
        }
        state.finished = state.stopped_early || state.epochs_done >= self.cfg.epochs;
        commit_state(self.ckpt_dir, state, superseded)?;
        progress(Progress::EpochEnd(record));
        Ok(())
    }
}

/// Loads a model saved by [`train`] (`best_model` / `last_model`) for inference.
pub fn load_model<B: Backend>(spec: &ModelSpec, path: &Path, device: &B::Device) -> Result<Classifier<B>> {
    let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let model = spec
        .build::<B>(device)?
        .load_file(path.to_path_buf(), &rec, device)
        .map_err(|e| anyhow!("{}: loading model: {e:?}", path.display()))?;
    Ok(model::to_device_float(model, device))
}

/// What [`evaluate`] measures on a validation set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValScores {
    pub macro_f1: f64,
    pub accuracy: f64,
    /// Mean −ln p(true class), probabilities floored at 1e-7.
    pub loss: f64,
    pub task_f1: metrics::TaskF1,
}

/// Validation scores of an eval-mode model.
pub fn evaluate<B: ModelBackend>(model: &Classifier<B>, source: &dyn BatchSource) -> ValScores {
    let device = predict::default_device::<B>();
    let (mut y_true, mut y_pred) = (Vec::new(), Vec::new());
    let mut nll = 0.0f64;
    for index in 0..source.num_batches(0) {
        let batch = source.batch(0, index);
        if batch.n == 0 {
            continue;
        }
        for (row, &label) in predict::predict_batch(model, &batch, false, &device).iter().zip(&batch.labels) {
            y_pred.push(metrics::argmax(row));
            nll -= (row[label as usize] as f64).max(1e-7).ln();
        }
        y_true.extend_from_slice(&batch.labels);
    }
    ValScores {
        macro_f1: metrics::macro_f1(&y_true, &y_pred),
        accuracy: metrics::accuracy(&y_true, &y_pred),
        loss: if y_true.is_empty() { 0.0 } else { nll / y_true.len() as f64 },
        task_f1: metrics::task_f1(&y_true, &y_pred),
    }
}

/// Builds `spec` with fresh weights drawn from `seed`, the same on every backend.
///
/// burn initialises a parameter lazily, when it is first read, from its backend's own random
/// generator. Left alone, a CPU run would draw its weights in forward order at the first
/// training step (after the epoch-0 reseed, interleaved with dropout masks), and a GPU run
/// from another generator altogether. So the weights are always drawn here, on the CPU
/// backend, in module visit order from `seed` (collecting the record reads every parameter),
/// and applied to the model on `B`: a run starts from the same bits wherever it runs.
fn build_seeded<B: TrainBackend>(spec: &ModelSpec, seed: u64, device: &B::Device) -> Result<Classifier<B>> {
    use burn::backend::Flex;
    use burn_store::ModuleSnapshot;
    let cpu = Default::default();
    <Flex as Backend>::seed(&cpu, seed);
    let drawn: Classifier<Flex> = spec.build(&cpu)?;
    let mut model: Classifier<B> = spec.build(device)?;
    let applied = model.apply(drawn.collect(None, None, false), None, None, false);
    if !applied.errors.is_empty() || !applied.missing.is_empty() {
        bail!(
            "copying the initial weights to the {} backend failed: {} errors, {} missing",
            B::name(device),
            applied.errors.len(),
            applied.missing.len()
        );
    }
    Ok(model)
}

/// The backend's seed at the start of `epoch`.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    splitmix64(seed ^ splitmix64(epoch as u64 + 1))
}

fn check_batch(batch: &crate::batch::Batch, epoch: usize, step: usize) -> Result<()> {
    let pixels = batch.n * 3 * batch.height * batch.width;
    if batch.images.len() != pixels || batch.targets.len() != batch.n * NUM_CLASSES || batch.labels.len() != batch.n {
        bail!(
            "malformed batch at epoch {}, step {}: {} images of {}×{} need {pixels} values, {} targets, {} labels; got {}, {}, {}",
            epoch + 1,
            step + 1,
            batch.n,
            batch.height,
            batch.width,
            batch.n * NUM_CLASSES,
            batch.n,
            batch.images.len(),
            batch.targets.len(),
            batch.labels.len()
        );
    }
    Ok(())
}

fn save_epoch<B: TrainBackend>(
    dir: &Path,
    rec: &NamedMpkFileRecorder<FullPrecisionSettings>,
    model: &Classifier<B>,
    optim: &optim::AnyOptimizer<B, Classifier<B>>,
    epoch: usize,
    is_best: bool,
    state: &mut RunState,
) -> Result<Vec<PathBuf>> {
    let mut superseded = Vec::new();
    let name = format!("epoch-{:04}", epoch + 1);
    let last = dir.join(&name);
    std::fs::create_dir_all(&last).with_context(|| format!("creating {}", last.display()))?;
    model.clone().save_file(last.join("model"), rec).map_err(|e| anyhow!("{}: saving model: {e:?}", last.display()))?;
    optim.save(&last.join("optim"))?;
    // `valid()` syncs BatchNorm running statistics; a plain visit may lag one update behind.
    let digest = digest::hex(&model::weights_digest(&model.valid()));
    let old_last = std::mem::replace(&mut state.last_dir, name.clone());
    state.last_digest = digest.clone();
    if is_best {
        let best_name = format!("best-{:04}", epoch + 1);
        let best = dir.join(&best_name);
        std::fs::create_dir_all(&best).with_context(|| format!("creating {}", best.display()))?;
        std::fs::copy(last.join("model.mpk"), best.join("model.mpk"))
            .with_context(|| format!("copying the best model to {}", best.display()))?;
        let old_best = std::mem::replace(&mut state.best_dir, best_name);
        state.best_digest = digest;
        superseded.push(old_best);
    }
    superseded.push(old_last);
    // The directories this epoch replaces, removed once the new state is committed.
    Ok(superseded.into_iter().filter(|n| !n.is_empty()).map(|n| dir.join(n)).collect())
}

fn commit_state(dir: &Path, state: &RunState, superseded: Vec<PathBuf>) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let text = serde_json::to_string_pretty(state)?;
    fsutil::write_atomic(&path, text.as_bytes()).with_context(|| format!("replacing {}", path.display()))?;
    // Only now are the superseded checkpoints unreferenced; failing to remove them is harmless.
    for old in superseded {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

fn read_state(dir: &Path) -> Result<Option<RunState>> {
    let path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).with_context(|| format!("{}: unreadable training state", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn outcome(dir: &Path, state: &RunState, resumed_from: Option<usize>) -> TrainOutcome {
    TrainOutcome {
        epochs_done: state.epochs_done,
        finished: state.finished,
        stopped_early: state.stopped_early,
        best_epoch: state.best_epoch,
        best_val_f1: state.best_val_f1,
        history: state.history.clone(),
        best_model: dir.join(&state.best_dir).join("model.mpk"),
        last_model: dir.join(&state.last_dir).join("model.mpk"),
        best_digest: state.best_digest.clone(),
        last_digest: state.last_digest.clone(),
        resumed_from,
    }
}
