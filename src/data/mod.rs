//! The data pipeline: image files → prepared uint8 shards → augmented, mixed batches.
//!
//! `prepare` decodes and resizes once (cached per image), `shard` stores the result,
//! `augment` and `mix` are the per-sample and per-batch random transforms, and `loader`
//! implements [`crate::batch::BatchSource`] on top of them.

pub mod augment;
pub mod loader;
pub mod mix;
pub mod prepare;
pub mod shard;
