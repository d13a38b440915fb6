//! Step implementations: each turns its dependencies' records into outputs in the cache.
//! The ML libraries do the work; this layer only converts IR to library parameters and
//! moves data between the libraries and the cache.

mod data_steps;
mod model_steps;
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
        self.record(role)?
            .outputs
            .get(name)
            .with_context(|| format!("the `{role}` record has no output `{name}`; rerun with --force {role}"))
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
        "train" => {
            let bar = progress_bar(&step.name);
            let result = model_steps::train(cache, plan, step, &inputs, &mut |p| show_progress(&bar, p));
            bar.finish_and_clear();
            result
        }
        "evaluate" => model_steps::evaluate(cache, plan, step, &inputs),
        "predict" => model_steps::predict(cache, plan, step, &inputs),
        "ensemble" => model_steps::ensemble(cache, plan, step, &inputs),
        other => bail!("the `{other}` step is not available in this build yet"),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal, so logs and tests see
/// only the step lines on stdout).
fn progress_bar(step: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(step.to_string());
    bar
}

fn show_progress(bar: &indicatif::ProgressBar, p: crate::train::Progress) {
    use crate::train::Progress;
    match p {
        Progress::Step { epoch, epochs, step, steps, loss, lr, running_f1 } => {
            let total = (epochs * steps) as u64;
            if bar.length() != Some(total) {
                bar.set_length(total);
            }
            bar.set_position((epoch * steps + step + 1) as u64);
            bar.set_message(format!("epoch {}/{epochs} loss {loss:.4} f1 {running_f1:.3} lr {lr:.2e}", epoch + 1));
        }
        Progress::EpochEnd(e) => {
            bar.println(format!(
                "  epoch {}: train loss {:.4}, val macro-F1 {:.4}, accuracy {:.4}{}",
                e.epoch + 1,
                e.train_loss,
                e.val_f1,
                e.val_accuracy,
                if e.is_best { " (best)" } else { "" }
            ));
        }
        Progress::Resumed { epochs_done } => bar.println(format!("  resuming after epoch {epochs_done}")),
    }
}
