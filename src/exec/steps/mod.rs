//! Step implementations: each turns its dependencies' records into outputs in the cache.
//! The ML libraries do the work; this layer only converts IR to library parameters and
//! moves data between the libraries and the cache.

mod data_steps;
mod model_steps;
mod prepare;

pub use prepare::params as prepare_params;

use crate::cache::{Cache, Output, Record};
use crate::plan::{Plan, Role, Step, StepKind};
use anyhow::{Context, Result};
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
pub fn human_outputs(kind: StepKind) -> &'static [&'static str] {
    match kind {
        StepKind::Relabel => &["relabel_report.json"],
        StepKind::Split => &["split.json"],
        StepKind::Evaluate => &["metrics.json", "val_predictions.csv", "confusion.svg", "curves.svg", "history.json"],
        StepKind::Predict | StepKind::Ensemble => &["submission.csv"],
        StepKind::Source | StepKind::Prepare | StepKind::Train => &[],
    }
}

/// The inputs of a running step: its dependencies' records, by role.
pub struct Inputs<'a> {
    pub records: &'a BTreeMap<Role, &'a Record>,
}

impl Inputs<'_> {
    pub fn record(&self, role: Role) -> Result<&Record> {
        self.records.get(&role).copied().with_context(|| format!("internal: missing dependency `{role}`"))
    }

    pub fn output(&self, role: Role, name: &str) -> Result<&Output> {
        self.record(role)?
            .outputs
            .get(name)
            .with_context(|| format!("the `{role}` record has no output `{name}`; rerun with --force {role}"))
    }

    /// Reads and parses a JSON output of a dependency (verified against its digest).
    pub fn json<T: DeserializeOwned>(&self, cache: &mut Cache, role: Role, name: &str) -> Result<T> {
        let out = self.output(role, name)?.clone();
        let bytes = cache.read_blob(&out.digest)?;
        serde_json::from_slice(&bytes).with_context(|| format!("output `{name}` of step `{role}` does not parse"))
    }
}

/// The data library's policy for an image that does not decode.
pub fn bad_image_policy(p: crate::ir::BadImagePolicy) -> crate::data::layout::BadImagePolicy {
    use crate::data::layout::BadImagePolicy;
    match p {
        crate::ir::BadImagePolicy::Error => BadImagePolicy::Error,
        crate::ir::BadImagePolicy::Skip => BadImagePolicy::Skip,
    }
}

/// Stores a value as a JSON output.
pub fn put_json<T: serde::Serialize>(cache: &mut Cache, out: &mut StepOutput, name: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    let o = cache.put_bytes(&bytes)?;
    out.outputs.insert(name.to_string(), o);
    Ok(())
}

/// Computes one step from its dependencies' records. Training reports its progress to
/// `progress`; nothing here prints.
pub fn run_step(
    cache: &mut Cache,
    plan: &Plan,
    step: &Step,
    records: &BTreeMap<Role, &Record>,
    progress: &mut dyn FnMut(crate::train::Progress),
) -> Result<StepOutput> {
    let inputs = Inputs { records };
    match step.kind {
        StepKind::Source => data_steps::source(cache, plan, step),
        StepKind::Relabel => data_steps::relabel(cache, plan, step, &inputs),
        StepKind::Split => data_steps::split(cache, plan, step, &inputs),
        StepKind::Prepare => prepare::run(cache, plan, step, &inputs),
        StepKind::Train => model_steps::train(cache, plan, step, &inputs, progress),
        StepKind::Evaluate => model_steps::evaluate(cache, plan, step, &inputs),
        StepKind::Predict => model_steps::predict(cache, plan, step, &inputs),
        StepKind::Ensemble => model_steps::ensemble(cache, plan, step, &inputs),
    }
}
