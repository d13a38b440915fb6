//! The contract between the data pipeline (`data`) and the trainer (`train`): batches of
//! normalised CHW float images with soft 18-class targets
//! ([`NUM_CLASSES`](crate::data::labels::NUM_CLASSES)).
//!
//! Targets are soft so that CutMix and MixUp (which mix two samples' labels) reach the
//! losses unchanged; a plain sample's target is one-hot. Per-task targets (mask, gender,
//! age) are marginals of the 18-class distribution, so multi-head losses need nothing more.

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `n * 3 * height * width` values, sample-major, then channel, row, column.
    pub images: Vec<f32>,
    pub n: usize,
    pub height: usize,
    pub width: usize,
    /// `n * NUM_CLASSES` probabilities per sample, each row summing to 1.
    pub targets: Vec<f32>,
    /// The class of each sample before any mixing (for metrics).
    pub labels: Vec<u32>,
    /// The index of each sample in the source's sample list.
    pub samples: Vec<usize>,
}

/// Something that yields batches for an epoch. Implementations must be pure functions of
/// `(epoch, index)` so that training is reproducible and resumable mid-run.
pub trait BatchSource: Sync {
    /// Number of batches in `epoch`.
    fn num_batches(&self, epoch: usize) -> usize;
    /// Batch `index` of `epoch`.
    fn batch(&self, epoch: usize, index: usize) -> Batch;
    /// Number of samples in one pass (after oversampling, for a train source).
    fn num_samples(&self) -> usize;
}
