//! Inference: class probabilities for every sample of a source, optionally with horizontal
//! flip test-time augmentation.
//!
//! The constraint this module keeps: prediction runs on a non-autodiff backend (eval mode:
//! running BatchNorm statistics, no dropout or drop-path), visits batches in the source's
//! order for epoch 0, and returns one probability row per sample in that order.

use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::batch::{Batch, BatchSource};
use crate::data::labels::NUM_CLASSES;
use crate::model::{Classifier, ModelBackend};

/// Probabilities `[f32; 18]` for each sample of `source` (epoch 0 order). With `hflip_tta`,
/// the probabilities of the image and its mirror image are averaged.
pub fn predict<B: ModelBackend>(model: &Classifier<B>, source: &dyn BatchSource, hflip_tta: bool) -> Vec<[f32; NUM_CLASSES]> {
    let device = default_device::<B>();
    let mut out = Vec::with_capacity(source.num_samples());
    for index in 0..source.num_batches(0) {
        let batch = source.batch(0, index);
        if batch.n == 0 {
            continue;
        }
        out.extend(predict_batch(model, &batch, hflip_tta, &device));
    }
    out
}

/// Probabilities for one batch.
pub fn predict_batch<B: ModelBackend>(
    model: &Classifier<B>,
    batch: &Batch,
    hflip_tta: bool,
    device: &B::Device,
) -> Vec<[f32; NUM_CLASSES]> {
    let x = images_tensor::<B>(batch, device);
    let mut probs = model.forward(x.clone()).log_probs.exp();
    if hflip_tta {
        let flipped = model.forward(x.flip([3])).log_probs.exp();
        probs = (probs + flipped).mul_scalar(0.5);
    }
    rows(probs)
}

/// `[N, 3, H, W]` tensor of a batch's images.
pub fn images_tensor<B: Backend>(batch: &Batch, device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(batch.images.clone(), [batch.n, 3, batch.height, batch.width]), device)
}

/// `[N, 18]` tensor of a batch's soft targets.
pub fn targets_tensor<B: Backend>(batch: &Batch, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(batch.targets.clone(), [batch.n, NUM_CLASSES]), device)
}

/// A `[N, 18]` tensor as rows. A backend that cannot hand back f32 data yields NaN rows,
/// which argmax never picks and the NaN checks of the caller report.
pub fn rows<B: Backend>(t: Tensor<B, 2>) -> Vec<[f32; NUM_CLASSES]> {
    let [n, _] = t.dims();
    let values = t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_else(|_| vec![f32::NAN; n * NUM_CLASSES]);
    values
        .chunks_exact(NUM_CLASSES)
        .map(|c| {
            let mut row = [0.0f32; NUM_CLASSES];
            row.copy_from_slice(c);
            row
        })
        .collect()
}

pub(crate) fn default_device<B: Backend>() -> B::Device {
    Default::default()
}
