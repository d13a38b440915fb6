//! Per-sample augmentation: an ordered list of [`AugOp`]s turns one HWC `u8` image into
//! one CHW `f32` tensor.
//!
//! Constraints kept here:
//! - every random draw comes from a [`SplitMix64`] seeded by the caller (the loader derives
//!   it from `(seed, epoch, sample)` with [`sample_seed`]), and ops draw in list order, so a
//!   sample's tensor never depends on thread count or on which other samples ran;
//! - semantics follow torchvision (`RandomResizedCrop`, `ColorJitter` with a random order of
//!   its three factors and clamping to [0, 1], `Normalize`, `RandomErasing` with value 0);
//! - work is lazy: consecutive resizes and crops (resize → random-resized-crop, resize →
//!   centre-crop) collapse into one crop box and one SIMD resampling of the `u8` pixels; a
//!   flip is remembered rather than copied; jitter and normalise wait as pointwise ops.
//!   Pending work is only materialised when a later op needs it (e.g. a resize after a flip
//!   or after jitter, whose contrast mean depends on the whole image);
//! - the common end, `u8` pixels with a pending flip and pointwise ops, goes through
//!   `fused`: one pass that writes each output value once (two with a contrast), bit-identical
//!   to the general path (planes, then one pass per op), which the `f32` case still takes;
//! - the output may be uninitialised memory ([`augment_into_uninit`]): batches are not zeroed
//!   first.
//!
//! Values: a `u8` image stands for `v / 255`; jitter works on that [0, 1] scale, so it must
//! come before `Normalize` ([`Augmenter::new`] rejects the other order).
//!
//! Where things are: `ops` (the op list and its checks), `engine` (the lazy engine and the
//! entry points), `pixels` (working images and CHW buffers), `geometry` (boxes, resampling,
//! crops, mirroring), `rotate`, `point` (pointwise arithmetic and the general path) and
//! `fused` (the one-pass emitter).
//!
//! [`SplitMix64`]: crate::rng::SplitMix64
//! [`sample_seed`]: crate::rng::sample_seed

mod engine;
mod fused;
mod geometry;
mod ops;
mod pixels;
mod point;
mod rotate;

pub use engine::{Augmenter, augment_into, augment_into_uninit};
pub use ops::{AugError, AugOp, output_size, validate_ops};
