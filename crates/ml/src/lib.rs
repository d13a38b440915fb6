//! maskflow's ML libraries: everything that touches pixels, tensors or labels, and nothing
//! that knows of the `.mf` language, the plan or the cache.
//!
//! - `data`: the competition layout, labels and relabelling, person-level splits, the
//!   synthetic generator, prepared shards, augmentation and loaders;
//! - `batch`: the contract between the loaders and the trainer;
//! - `model`: EfficientNet B0–B7 (timm-exact) and small models, with fused kernels;
//! - `train`: losses, optimisers, the resumable training loop, the backend chosen at run time;
//! - `metrics`: sklearn-exact macro-F1 and friends;
//! - `rng`: SplitMix64 and the seed derivations behind every reproducible draw;
//! - `fsutil`: crash-safe writes, shared with the application's cache.
//!
//! This crate is where burn's generic code is instantiated, once per backend (see
//! `train::backend`): the application calls non-generic entry points, so an edit there never
//! recompiles the models, and a second backend is a feature of this crate alone.

pub mod alloc;
pub mod batch;
pub mod data;
pub mod fsutil;
pub mod metrics;
pub mod model;
pub mod rng;
pub mod train;

/// The burn version that training and inference steps are built with (part of their keys).
pub const BURN_VERSION: &str = "0.21.0";
