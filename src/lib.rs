//! maskflow: a declarative pipeline language and build system for image classifiers.
//!
//! Layers, from the user's file inwards:
//! - `lang`: `.mf` text → AST (with spans) → checked, normalised [`ir`];
//! - `plan`: IR → a graph of steps, each with a blake3 key and an explanation;
//! - `cache`: the content-addressed store that holds step outputs;
//! - `exec`: runs the steps whose key missed, and writes `saved/`;
//! - the ML libraries (`data`, `batch`): know nothing of the language.

pub mod alloc;
pub mod batch;
pub mod cache;
pub mod cli;
pub mod data;
pub mod digest;
pub mod draw;
pub mod exec;
pub mod fsutil;
pub mod gc;
pub mod ir;
pub mod lang;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod plots;
pub mod report;
pub mod train;
pub mod verify;

/// The burn version that training and inference steps are built with (part of their keys).
pub const BURN_VERSION: &str = "0.21.0";
