//! `maskflow verify`: re-executes cached steps, ignoring the cache, and compares output
//! digests with the records bit for bit (like Nix's `--check`).
//!
//! Constraint kept: verify never writes a record or a ref. Re-computed outputs do land in the
//! object store (it is content-addressed: an object is its digest, so adding one changes no
//! record's meaning). Cached outputs are checked *before* re-executing, because re-executing
//! rewrites a damaged object with the good bytes and would hide the damage.

use crate::cache::{Cache, OutputState, Record};
use crate::exec::steps;
use crate::plan::{Plan, Role, Step};
use anyhow::{Result, anyhow};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Reproducible,
    Differs,
    /// The step has no cached record to compare with.
    NotCached,
    /// Re-executing failed.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub output: String,
    /// Digest in the record, and re-computed (absent when the output is missing on one side).
    pub cached: Option<String>,
    pub recomputed: Option<String>,
    /// A damaged cached copy: the path and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepVerdict {
    pub step: String,
    pub outcome: Outcome,
    pub differences: Vec<Difference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StepVerdict {
    pub fn line(&self) -> String {
        let differences = || -> String {
            let short = |x: &Option<String>| x.as_deref().map_or("(none)".to_string(), |h| h.chars().take(12).collect());
            let parts: Vec<String> = self
                .differences
                .iter()
                .map(|d| match &d.corrupt {
                    Some(why) if d.recomputed.is_some() && d.recomputed == d.cached => {
                        format!("{} cached copy corrupt: {why}; the re-computed output matches the record", d.output)
                    }
                    Some(why) => format!("{} cached copy corrupt: {why}", d.output),
                    None => format!("{} {} → {}", d.output, short(&d.cached), short(&d.recomputed)),
                })
                .collect();
            parts.join("; ")
        };
        match self.outcome {
            Outcome::Reproducible => format!("{}: reproducible", self.step),
            Outcome::NotCached => format!("{}: not cached ({})", self.step, self.error.as_deref().unwrap_or("run it first")),
            Outcome::Failed if !self.differences.is_empty() => {
                format!("{}: differs: {}; re-executing failed: {}", self.step, differences(), self.error.as_deref().unwrap_or(""))
            }
            Outcome::Failed => format!("{}: failed to re-execute: {}", self.step, self.error.as_deref().unwrap_or("")),
            Outcome::Differs => format!("{}: differs: {}", self.step, differences()),
        }
    }
}

/// Verifies the named steps (names or kinds; all when empty), in plan order. Re-executed
/// training reports its progress to `progress`.
pub fn verify(
    cache: &mut Cache,
    plan: &Plan,
    only: &[String],
    progress: &mut dyn FnMut(&Step, crate::train::Progress),
) -> Result<Vec<StepVerdict>> {
    for name in only {
        if !plan.steps.iter().any(|s| s.is_named(name)) {
            let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
            return Err(anyhow!("--steps: no step `{name}` in this pipeline (steps: {})", names.join(", ")));
        }
    }
    let mut verdicts = Vec::new();
    for step in plan.steps.iter().filter(|s| only.is_empty() || only.iter().any(|n| s.is_named(n))) {
        let mut v = StepVerdict { step: step.name.clone(), outcome: Outcome::Reproducible, differences: Vec::new(), error: None };
        let record = match cache.read_record(&step.key) {
            Ok(Some(r)) => r,
            Ok(None) => {
                v.outcome = Outcome::NotCached;
                v.error = Some("no cached result; run it first".into());
                verdicts.push(v);
                continue;
            }
            Err(e) => {
                v.outcome = Outcome::Differs;
                v.error = Some(e.to_string());
                v.differences.push(Difference { output: "(record)".into(), cached: None, recomputed: None, corrupt: Some(e.to_string()) });
                verdicts.push(v);
                continue;
            }
        };
        for (name, out) in &record.outputs {
            let why = match cache.check_output(out) {
                OutputState::Ok => continue,
                OutputState::Missing(p) => format!("{} missing", p.display()),
                OutputState::Corrupt(p, why) => format!("{} ({why})", p.display()),
            };
            v.differences.push(Difference { output: name.clone(), cached: Some(out.digest.hex()), recomputed: None, corrupt: Some(why) });
        }
        let mut deps: BTreeMap<Role, Record> = BTreeMap::new();
        let mut missing_dep = None;
        for (role, d) in &step.deps {
            match cache.read_record(&plan.steps[*d].key) {
                Ok(Some(r)) => {
                    deps.insert(*role, r);
                }
                _ => missing_dep = Some(plan.steps[*d].name.clone()),
            }
        }
        if let Some(dep) = missing_dep {
            v.outcome = Outcome::NotCached;
            v.error = Some(format!("its dependency `{dep}` has no cached result"));
            verdicts.push(v);
            continue;
        }
        let inputs: BTreeMap<Role, &Record> = deps.iter().map(|(k, r)| (*k, r)).collect();
        cache.set_recomputing(true);
        let recomputed = steps::run_step(cache, plan, step, &inputs, &mut |p| progress(step, p));
        cache.set_recomputing(false);
        match recomputed {
            Ok(output) => {
                let names: std::collections::BTreeSet<&String> = record.outputs.keys().chain(output.outputs.keys()).collect();
                for name in names {
                    let (a, b) = (record.outputs.get(name), output.outputs.get(name));
                    if let Some(d) = v.differences.iter_mut().find(|d| &d.output == name) {
                        d.recomputed = b.map(|o| o.digest.hex());
                    } else if a.map(|o| o.digest) != b.map(|o| o.digest) {
                        v.differences.push(Difference {
                            output: name.clone(),
                            cached: a.map(|o| o.digest.hex()),
                            recomputed: b.map(|o| o.digest.hex()),
                            corrupt: None,
                        });
                    }
                }
                if !v.differences.is_empty() {
                    v.outcome = Outcome::Differs;
                }
            }
            Err(e) => {
                v.outcome = Outcome::Failed;
                v.error = Some(format!("{e:#}"));
            }
        }
        verdicts.push(v);
    }
    cache.flush()?;
    Ok(verdicts)
}
