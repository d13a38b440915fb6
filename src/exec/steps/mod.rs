//! Step implementations: each turns its dependencies' records into outputs in the cache.
//! The ML libraries do the work; this layer only converts IR to library parameters and
//! moves data between the libraries and the cache.

mod data_steps;
mod prepare;

pub use prepare::params as prepare_params;

use crate::cache::{Cache, Output, Record};
use crate::plan::{Plan, Step};
use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// What a step produced.
#[derive(Default)]
pub struct StepOutput {
    pub outputs: BTreeMap<String, Output>,
    pub metrics: Option<serde_json::Value>,
    /// A short human summary (`2700 persons, 18900 images`).
    pub summary: Option<String>,
}

/// Output names that are human-facing and get copied to `saved/<pipeline>/<run>/`.
pub fn human_outputs(kind: &str) -> &'static [&'static str] {
    match kind {
        "relabel" => &["relabel_report.json"],
        "split" => &["split.json"],
        "evaluate" => &["metrics.json", "val_predictions.csv", "confusion.png", "curves.png"],
        "predict" => &["submission.csv"],
        "ensemble" => &["submission.csv"],
        _ => &[],
    }
}

/// The inputs of a running step: its dependencies' records, by role.
pub struct Inputs<'a> {
    pub records: &'a BTreeMap<&'static str, &'a Record>,
}

impl Inputs<'_> {
    pub fn record(&self, role: &str) -> Result<&Record> {
        self.records.get(role).copied().with_context(|| format!("internal: missing dependency `{role}`"))
    }

    pub fn output(&self, role: &str, name: &str) -> Result<&Output> {
        self.record(role)?.outputs.get(name).with_context(|| format!("the `{role}` record has no output `{name}`; rerun with --force {role}"))
    }

    /// Reads and parses a JSON output of a dependency (verified against its digest).
    pub fn json<T: DeserializeOwned>(&self, cache: &mut Cache, role: &str, name: &str) -> Result<T> {
        let out = self.output(role, name)?.clone();
        let bytes = cache.read_blob(&out.digest)?;
        serde_json::from_slice(&bytes).with_context(|| format!("output `{name}` of step `{role}` does not parse"))
    }
}

/// Stores a value as a JSON output.
pub fn put_json<T: serde::Serialize>(cache: &mut Cache, out: &mut StepOutput, name: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    let o = cache.put_bytes(&bytes)?;
    out.outputs.insert(name.to_string(), o);
    Ok(())
}

pub fn run_step(cache: &mut Cache, plan: &Plan, step: &Step, records: &BTreeMap<&'static str, &Record>) -> Result<StepOutput> {
    let inputs = Inputs { records };
    match step.kind {
        "source" => data_steps::source(cache, plan, step),
        "relabel" => data_steps::relabel(cache, plan, step, &inputs),
        "split" => data_steps::split(cache, plan, step, &inputs),
        "prepare" => prepare::run(cache, plan, step, &inputs),
        other => bail!("the `{other}` step is not available in this build yet"),
    }
}
