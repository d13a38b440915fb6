//! maskflow: a declarative pipeline language and build system for image classifiers.
//!
//! Layers, from the user's file inwards:
//! - `lang`: `.mf` text → AST (with spans) → checked, normalised [`ir`];
//! - `plan`: IR → a graph of steps, each with a blake3 key and an explanation;
//! - `cache`: the content-addressed store that holds step outputs;
//! - `exec`: runs the steps whose key missed, and writes `saved/`;
//! - `report`: diff, runs, lockfiles and verify over plans and records, and the comparison page;
//! - `charts`: the SVG charts those pages and `saved/` show (plotters); `tensorboard`: event
//!   files of a training history;
//! - `hub`: pretrained weights by name, from the Hugging Face hub into its own cache;
//! - `cli`: the only module that prints.
//!
//! The ML libraries (`data`, `model`, `train`, `metrics`, `batch`, `rng`) are the `maskflow-ml`
//! crate (`crates/ml`), re-exported here; they know nothing of the language.

pub use maskflow_ml::{BURN_VERSION, alloc, batch, data, fsutil, metrics, model, rng, train};

pub mod cache;
pub mod canonical;
pub mod charts;
pub mod cli;
pub mod config;
pub mod digest;
pub mod exec;
pub mod gc;
pub mod hub;
pub mod ir;
pub mod lang;
pub mod plan;
pub mod project;
pub mod remote;
pub mod report;
pub mod tensorboard;
