//! `FILE.lock`: what a successful `maskflow run FILE` computed, for `run --locked` in CI.
//!
//! Constraint kept: the file is stable and diff-friendly. It is pretty JSON with every object's
//! keys sorted (it is written through `serde_json::Value`, whose maps are sorted), holds no
//! timings or dates, and records per step its key, key object, output digests and, for
//! evaluate steps, the headline metrics; and, for hub weights, the commit they resolved to and
//! the file's blake3 (the planner resolves through that pin, see `hub`). The key object is kept so that a mismatch can be
//! explained (pipeline IR, data manifest or code version) from the same object that hashes
//! to the key.

use crate::cache::Record;
use crate::exec::StepReport;
use crate::plan::{Plan, StepKind, key};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lockfile {
    pub maskflow_version: String,
    /// Implementation version of each step kind (`plan::key::step_version`).
    pub step_versions: BTreeMap<String, u32>,
    pub steps: BTreeMap<String, LockedStep>,
    /// Hub weights by `hf://` reference: the commit they resolved to and the file's blake3.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, LockedWeights>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedWeights {
    pub commit: String,
    pub blake3: String,
}

/// The commits `path`'s lock pins hub weights to (none when there is no readable lock): the
/// planner resolves a reference through its pin, so every machine reads the same file.
pub fn weight_pins(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return BTreeMap::new() };
    let Ok(lock) = serde_json::from_str::<Lockfile>(&text) else { return BTreeMap::new() };
    lock.weights.into_iter().map(|(r, w)| (r, w.commit)).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedStep {
    pub kind: String,
    pub key: String,
    pub key_object: Value,
    /// Output name → digest.
    pub outputs: BTreeMap<String, String>,
    /// For evaluate steps: `macro_f1` and `accuracy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<BTreeMap<String, f64>>,
}

/// `pipelines/x.mf` → `pipelines/x.mf.lock`.
pub fn path_for(pipeline: &Path) -> PathBuf {
    let mut s = pipeline.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// The lock of the steps a run reported (hit or run), from their records (by step name).
pub fn build(plan: &Plan, reports: &[StepReport], records: &BTreeMap<String, Record>) -> Result<Lockfile> {
    let mut steps = BTreeMap::new();
    for r in reports {
        let Some(step) = plan.step(&r.step) else { continue };
        let record = records.get(&step.name).with_context(|| format!("step `{}` has no record after the run", step.name))?;
        let metrics =
            record.metrics.as_ref().filter(|_| step.kind == StepKind::Evaluate).map(|m| {
                ["macro_f1", "accuracy"].iter().filter_map(|k| Some((k.to_string(), m[*k].as_f64()?))).collect::<BTreeMap<_, _>>()
            });
        steps.insert(
            step.name.clone(),
            LockedStep {
                kind: step.kind.to_string(),
                key: step.key.hex(),
                key_object: step.key_object.clone(),
                outputs: record.outputs.iter().map(|(n, o)| (n.clone(), o.digest.hex())).collect(),
                metrics,
            },
        );
    }
    Ok(Lockfile {
        maskflow_version: env!("CARGO_PKG_VERSION").to_string(),
        step_versions: StepKind::ALL.iter().map(|k| (k.to_string(), key::step_version(*k))).collect(),
        steps,
        weights: plan
            .weights
            .iter()
            .map(|(r, w)| (r.clone(), LockedWeights { commit: w.commit.clone(), blake3: w.digest.hex() }))
            .collect(),
    })
}

/// The stable text of a lock: pretty JSON, keys sorted, newline-terminated.
pub fn to_text(lock: &Lockfile) -> String {
    let value = serde_json::to_value(lock).expect("locks serialise");
    let mut text = serde_json::to_string_pretty(&value).expect("locks serialise");
    text.push('\n');
    text
}

/// Writes `FILE.lock` for a finished run (only when its text changed).
pub fn write(plan: &Plan, reports: &[StepReport], records: &BTreeMap<String, Record>, pipeline: &Path) -> Result<()> {
    let text = to_text(&build(plan, reports, records)?);
    let path = path_for(pipeline);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    crate::fsutil::write_atomic(&path, text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))
}

pub fn read(path: &Path) -> Result<Lockfile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: no lockfile; run without --locked once to create it", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a maskflow lockfile", path.display()))
}

/// What no longer matches, one line per cause, for the steps `run --until` would consider.
/// Empty when the plan matches the lock.
pub fn mismatches(plan: &Plan, lock: &Lockfile, until: Option<&str>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (reference, w) in &plan.weights {
        match lock.weights.get(reference) {
            Some(locked) if locked.commit == w.commit && locked.blake3 != w.digest.hex() => lines.push(format!(
                "pretrained weights {reference}: the file at commit {} changed on the hub: the lock has blake3 {}, the file now has {}",
                locked.commit,
                &locked.blake3[..locked.blake3.len().min(12)],
                &w.digest.hex()[..12]
            )),
            Some(locked) if locked.commit != w.commit => {
                lines.push(format!("pretrained weights {reference}: commit {} → {}", locked.commit, w.commit))
            }
            Some(_) => {}
            None => lines.push(format!("pretrained weights {reference}: not in the lock")),
        }
    }
    let mut downstream = Vec::new();
    for i in crate::exec::selected_steps(plan, until, None)? {
        let step = &plan.steps[i];
        let Some(locked) = lock.steps.get(&step.name) else {
            lines.push(format!("{}: not in the lock (a new step)", step.name));
            continue;
        };
        if locked.key == step.key.hex() {
            continue;
        }
        let mut causes = Vec::new();
        for c in key::diff(&locked.key_object, &step.key_object) {
            let (section, rest) = c.path.split_once('.').unwrap_or((c.path.as_str(), ""));
            let cause = match section {
                "deps" => continue,
                "params" => format!(
                    "pipeline changed: {}",
                    crate::plan::spelling::reason(&step.kind.to_string(), &c.path, &c.old, &c.new, &step.key_object)
                ),
                "files" if rest == "manifest" => "data manifest changed".to_string(),
                "files" => format!("input file `{rest}` changed"),
                "version" => format!("code version changed: {} implementation {} → {}", step.kind, key::show(&c.old), key::show(&c.new)),
                "env" => format!("environment changed: {rest} {} → {}", key::show(&c.old), key::show(&c.new)),
                _ => format!("{} {} → {}", c.path, key::show(&c.old), key::show(&c.new)),
            };
            if !causes.contains(&cause) {
                causes.push(cause);
            }
        }
        if causes.is_empty() {
            downstream.push(step.name.clone());
        } else {
            lines.extend(causes.into_iter().map(|c| format!("{}: {c}", step.name)));
        }
    }
    if !downstream.is_empty() && !lines.is_empty() {
        lines.push(format!("downstream steps affected: {}", downstream.join(", ")));
    } else if !downstream.is_empty() {
        lines.push(format!("dependency keys changed for: {}", downstream.join(", ")));
    }
    if !lines.is_empty() && lock.maskflow_version != env!("CARGO_PKG_VERSION") {
        lines.push(format!("the lock was written by maskflow {}; this is {}", lock.maskflow_version, env!("CARGO_PKG_VERSION")));
    }
    Ok(lines)
}

/// `run --locked`: fails, naming what changed, when the plan no longer matches `FILE.lock`.
pub fn check(plan: &Plan, until: Option<&str>, pipeline: &Path) -> Result<()> {
    let path = path_for(pipeline);
    let lock = read(&path)?;
    let lines = mismatches(plan, &lock, until)?;
    if lines.is_empty() {
        return Ok(());
    }
    let mut msg = format!("{} does not match {} (--locked):", path.display(), pipeline.display());
    for l in &lines {
        msg.push_str("\n  ");
        msg.push_str(l);
    }
    msg.push_str("\nrun without --locked to update the lock");
    bail!(msg)
}
