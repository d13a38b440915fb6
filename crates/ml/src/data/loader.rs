//! [`BatchSource`]s over a memory-mapped [`Shard`]: a shuffled, augmented, mixed train
//! source and a fixed-order eval source.
//!
//! Constraints kept here:
//! - `batch(epoch, index)` is a pure function of its arguments and the source's settings:
//!   the epoch's order comes from `(seed, epoch)`, each sample's augmentation from
//!   `(seed, epoch, sample index)`, the mix from `(seed, epoch, batch index)`; batches are
//!   assembled in parallel on the current rayon pool and are byte-identical for any pool size;
//! - everything that could fail per sample (shard indices, labels, op lists, output sizes) is
//!   checked once in the constructor, so `batch` itself cannot fail.

use std::sync::Arc;

use rayon::prelude::*;

use super::augment::{AugError, AugOp, augment_into_uninit, output_size, validate_ops};
use super::labels::{AGE_CLASSES, GENDER_CLASSES, MASK_CLASSES, NUM_CLASSES, class_number};
use super::mix::{MixParams, mix_batch};
use super::shard::Shard;
use crate::batch::{Batch, BatchSource};
use crate::rng::{SplitMix64, hash_seed, sample_seed};

/// The labels of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleLabel {
    /// 0 wear, 1 incorrect, 2 normal.
    pub mask: u8,
    /// 0 male, 1 female.
    pub gender: u8,
    /// Age class after binning: 0, 1, 2.
    pub age: u8,
    /// Raw age in years.
    pub years: u32,
}

impl SampleLabel {
    /// `mask * 6 + gender * 3 + age`.
    pub fn class(&self) -> u32 {
        class_number(self.mask.into(), self.gender.into(), self.age.into())
    }

    fn is_valid(&self) -> bool {
        usize::from(self.mask) < MASK_CLASSES && usize::from(self.gender) < GENDER_CLASSES && usize::from(self.age) < AGE_CLASSES
    }
}

/// One entry of a source's sample list.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRef {
    /// Row in the shard.
    pub shard_index: usize,
    pub label: SampleLabel,
    /// Ops applied before the source's own pipeline (an oversampled copy's transforms).
    pub extra: Vec<AugOp>,
    /// 0 for an original sample, `i + 1` for its `i`-th oversampled copy.
    pub copy: u32,
}

impl SampleRef {
    pub fn new(shard_index: usize, label: SampleLabel) -> Self {
        SampleRef { shard_index, label, extra: Vec::new(), copy: 0 }
    }
}

/// Appends `copies` extra copies of every original sample matching `predicate`; copy `i`
/// (0-based) applies `with[i % with.len()]` (nothing when `with` is empty).
///
/// Pass **train samples only**: copies of validation samples would bias the metrics, and
/// this function cannot tell the two apart. Existing copies (`copy > 0`) are never copied
/// again, so several rules can be applied one after the other without compounding.
/// Copies follow all existing samples, in sample order.
pub fn oversample(samples: &[SampleRef], predicate: impl Fn(&SampleLabel) -> bool, copies: u32, with: &[Vec<AugOp>]) -> Vec<SampleRef> {
    let mut out = samples.to_vec();
    for sample in samples.iter().filter(|s| s.copy == 0 && predicate(&s.label)) {
        for i in 0..copies {
            let mut extra = sample.extra.clone();
            if !with.is_empty() {
                extra.extend(with[i as usize % with.len()].iter().cloned());
            }
            out.push(SampleRef { extra, copy: i + 1, ..sample.clone() });
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("batch size must be at least 1")]
    BatchSize,
    #[error("shard `{path}` has {channels} channels, the loader needs 3")]
    Channels { path: String, channels: usize },
    #[error("sample {sample}: shard index {shard_index} is out of range (shard has {len} images)")]
    ShardIndex { sample: usize, shard_index: usize, len: usize },
    #[error("sample {sample}: invalid label {label:?}")]
    Label { sample: usize, label: SampleLabel },
    #[error("sample {sample}: {source}")]
    Ops {
        sample: usize,
        #[source]
        source: AugError,
    },
    #[error("sample {sample}: its ops produce {}x{}, other samples {}x{}", found.0, found.1, expected.0, expected.1)]
    OutputSize { sample: usize, expected: (usize, usize), found: (usize, usize) },
    #[error("mix probabilities must be in [0, 1] (cutmix {cutmix}, mixup {mixup})")]
    Mix { cutmix: f64, mixup: f64 },
}

/// Settings of a train source.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub seed: u64,
    /// The per-sample pipeline (after each sample's own `extra` ops).
    pub ops: Vec<AugOp>,
    pub mix: MixParams,
    /// Drop the last, incomplete batch (keeps BatchNorm away from tiny batches).
    pub drop_last: bool,
}

/// What both sources share: the shard, the samples and the per-sample pipeline.
struct Samples {
    shard: Arc<Shard>,
    samples: Vec<SampleRef>,
    ops: Vec<AugOp>,
    out: (usize, usize),
}

impl Samples {
    fn new(shard: Arc<Shard>, samples: Vec<SampleRef>, ops: Vec<AugOp>) -> Result<Self, LoaderError> {
        if shard.channels() != 3 {
            return Err(LoaderError::Channels { path: shard.path().display().to_string(), channels: shard.channels() });
        }
        let (sw, sh) = (shard.width(), shard.height());
        validate_ops(&ops).map_err(|source| LoaderError::Ops { sample: 0, source })?;
        let out = output_size(&ops, sw, sh);
        for (i, s) in samples.iter().enumerate() {
            if s.shard_index >= shard.len() {
                return Err(LoaderError::ShardIndex { sample: i, shard_index: s.shard_index, len: shard.len() });
            }
            if !s.label.is_valid() {
                return Err(LoaderError::Label { sample: i, label: s.label });
            }
            if !s.extra.is_empty() {
                validate_ops(s.extra.iter().chain(&ops)).map_err(|source| LoaderError::Ops { sample: i, source })?;
                let found = output_size(s.extra.iter().chain(&ops), sw, sh);
                if found != out {
                    return Err(LoaderError::OutputSize { sample: i, expected: out, found });
                }
            }
        }
        Ok(Samples { shard, samples, ops, out })
    }

    /// Assembles the batch of sample ids `ids` (augmentation seeded per sample).
    fn assemble(&self, ids: &[usize], seed: u64, epoch: u64) -> Batch {
        let (w, h) = self.out;
        let size = 3 * w * h;
        let total = ids.len() * size;
        let mut images: Vec<f32> = Vec::with_capacity(total);
        let (sw, sh) = (self.shard.width(), self.shard.height());
        images.spare_capacity_mut()[..total].par_chunks_mut(size.max(1)).zip(ids.par_iter()).for_each(|(out, &id)| {
            let sample = &self.samples[id];
            let mut rng = SplitMix64::new(sample_seed(seed, epoch, id as u64));
            let src = self.shard.image(sample.shard_index);
            // Written straight into the batch's fresh memory: at 224x224 a batch is 19 MB, and
            // zeroing it first (serially) took an eighth of epoch time.
            augment_into_uninit(&[&sample.extra, &self.ops], src, sw, sh, &mut rng, out)
                .expect("sizes and ops validated when the source was built");
        });
        // SAFETY: the loop above initialised all `total` values: `augment_into_uninit` writes
        // its whole chunk, and the chunks cover `..total`.
        unsafe { images.set_len(total) };
        let mut targets = vec![0.0f32; ids.len() * NUM_CLASSES];
        let labels: Vec<u32> = ids.iter().map(|&id| self.samples[id].label.class()).collect();
        for (row, &class) in targets.chunks_exact_mut(NUM_CLASSES).zip(&labels) {
            row[class as usize] = 1.0;
        }
        Batch { images, n: ids.len(), height: h, width: w, targets, labels, samples: ids.to_vec() }
    }
}

/// Shuffled, augmented, optionally mixed batches for training.
pub struct TrainSource {
    data: Samples,
    config: TrainConfig,
}

impl TrainSource {
    pub fn new(shard: Arc<Shard>, samples: Vec<SampleRef>, config: TrainConfig) -> Result<Self, LoaderError> {
        if config.batch_size == 0 {
            return Err(LoaderError::BatchSize);
        }
        let (cutmix, mixup) = (config.mix.cutmix, config.mix.mixup);
        if !(0.0..=1.0).contains(&cutmix) || !(0.0..=1.0).contains(&mixup) {
            return Err(LoaderError::Mix { cutmix, mixup });
        }
        let data = Samples::new(shard, samples, config.ops.clone())?;
        Ok(TrainSource { data, config })
    }

    /// Output image size `(width, height)`.
    pub fn image_size(&self) -> (usize, usize) {
        self.data.out
    }

    pub fn samples(&self) -> &[SampleRef] {
        &self.data.samples
    }

    /// The order of sample ids in `epoch` (Fisher–Yates seeded by `(seed, epoch)`).
    pub fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.data.samples.len()).collect();
        let mut rng = SplitMix64::new(hash_seed(&[3, self.config.seed, epoch as u64]));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        order
    }
}

impl BatchSource for TrainSource {
    fn num_batches(&self, _epoch: usize) -> usize {
        let (n, bs) = (self.data.samples.len(), self.config.batch_size);
        if self.config.drop_last { n / bs } else { n.div_ceil(bs) }
    }

    fn batch(&self, epoch: usize, index: usize) -> Batch {
        let bs = self.config.batch_size;
        let order = self.epoch_order(epoch);
        let start = (index * bs).min(order.len());
        let end = (start + bs).min(order.len());
        let mut batch = self.data.assemble(&order[start..end], self.config.seed, epoch as u64);
        mix_batch(&mut batch, &self.config.mix, self.config.seed, epoch as u64, index as u64);
        batch
    }

    fn num_samples(&self) -> usize {
        self.data.samples.len()
    }
}

/// Fixed-order batches (no shuffle, no mix) for validation and prediction.
pub struct EvalSource {
    data: Samples,
    batch_size: usize,
    seed: u64,
}

impl EvalSource {
    /// `ops` usually has no random op; if it has, draws use `seed` and epoch 0.
    pub fn new(shard: Arc<Shard>, samples: Vec<SampleRef>, batch_size: usize, ops: Vec<AugOp>, seed: u64) -> Result<Self, LoaderError> {
        if batch_size == 0 {
            return Err(LoaderError::BatchSize);
        }
        let data = Samples::new(shard, samples, ops)?;
        Ok(EvalSource { data, batch_size, seed })
    }

    pub fn image_size(&self) -> (usize, usize) {
        self.data.out
    }
}

impl BatchSource for EvalSource {
    fn num_batches(&self, _epoch: usize) -> usize {
        self.data.samples.len().div_ceil(self.batch_size)
    }

    fn batch(&self, _epoch: usize, index: usize) -> Batch {
        let n = self.data.samples.len();
        let start = (index * self.batch_size).min(n);
        let end = (start + self.batch_size).min(n);
        let ids: Vec<usize> = (start..end).collect();
        self.data.assemble(&ids, self.seed, 0)
    }

    fn num_samples(&self) -> usize {
        self.data.samples.len()
    }
}
