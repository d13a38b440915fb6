//! The data library. Knows nothing of the `.mf` language.
//!
//! - Reading: `layout` (the competition layout), `labels` (the 18-class label space),
//!   `relabel` (label fixes), `split` (person-level splits), `stats`, and `synth` (a
//!   synthetic stand-in dataset in the same layout).
//! - Loading: `prepare` decodes and resizes once (cached per image), `shard` stores the
//!   result, `augment` and `mix` are the per-sample and per-batch random transforms, and
//!   `loader` implements [`crate::batch::BatchSource`] on top of them.

pub mod augment;
pub mod labels;
pub mod layout;
pub mod loader;
pub mod mix;
pub mod prepare;
pub mod relabel;
pub(crate) mod resample;
pub mod shard;
pub mod split;
pub mod stats;
pub mod synth;

pub use layout::DataError;
