//! Step implementations: each turns its dependencies' records into outputs in the cache.
//! The ML libraries do the work; this layer only moves data between them and the cache.

use crate::cache::{Cache, Output, Record};
use crate::plan::{Plan, Step};
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// What a step produced.
pub struct StepOutput {
    pub outputs: BTreeMap<String, Output>,
    pub metrics: Option<serde_json::Value>,
    /// A short human summary (`2,700 persons, 18,900 images`).
    pub summary: Option<String>,
}

/// Output names that are human-facing and get copied to `saved/<pipeline>/<run>/`.
pub fn human_outputs(kind: &str) -> &'static [&'static str] {
    match kind {
        "split" => &["split.json"],
        "evaluate" => &["metrics.json", "val_predictions.csv", "confusion.png", "curves.png"],
        "predict" => &["submission.csv"],
        "ensemble" => &["submission.csv"],
        _ => &[],
    }
}

pub fn run_step(cache: &mut Cache, plan: &Plan, step: &Step, inputs: &BTreeMap<&'static str, &Record>) -> Result<StepOutput> {
    let _ = (cache, plan, inputs);
    bail!("the `{}` step is not available in this build yet", step.kind)
}
