//! maskflow: a declarative pipeline language and build system for image classifiers.
//!
//! Layers, from the user's file inwards:
//! - `lang`: `.mf` text → AST (with spans) → checked, normalised [`ir`];
//! - `plan`: IR → a graph of steps, each with a blake3 key and an explanation;
//! - `cache`: the content-addressed store that holds step outputs;
//! - `exec`: runs the steps whose key missed;
//! - the ML libraries (`data`, `batch`): know nothing of the language.

pub mod batch;
pub mod ir;
pub mod cli;
pub mod metrics;
pub mod model;
pub mod train;
