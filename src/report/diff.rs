//! `maskflow diff`: two pipeline versions compared on their plans, never on their text.
//!
//! Constraint kept: a change is reported from the same key objects that decide caching
//! (`plan::key`), so `diff` can never say "shared" for a step that `run` would rerun. Only
//! what a step itself reads is listed as a change (`params`, `env`, `files`, `version`); a
//! change of a dependency's key is reported as the reason, not as a parameter.

use super::metrics::{self, Bootstrap, MetricDelta};
use crate::cache::Cache;
use crate::plan::key::{self, Change};
use crate::plan::{Plan, Step};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Same key in both versions: computed once, cached for both.
    Shared,
    /// In both versions with different keys: the new version reruns it.
    Rerun,
    /// Only in the new version.
    Added,
    /// Only in the old version.
    Removed,
}

impl StepState {
    pub fn word(self) -> &'static str {
        match self {
            StepState::Shared => "shared",
            StepState::Rerun => "rerun",
            StepState::Added => "added",
            StepState::Removed => "removed",
        }
    }
}

/// One changed leaf of a step's own inputs. `path` is relative to `params` (`loss.gamma`);
/// other sections keep their name (`env.backend`, `files.manifest`, `version`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    /// The change in the user's spelling (`loss.gamma 2.0 → 1.5`; see `plan::spelling`).
    pub text: String,
}

impl ParamChange {
    pub fn text(&self) -> String {
        self.text.clone()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepDiff {
    pub step: String,
    pub kind: crate::plan::StepKind,
    pub state: StepState,
    pub changes: Vec<ParamChange>,
    /// Dependencies (by role) whose keys changed.
    pub changed_deps: Vec<String>,
    /// With `--all`: the step's unchanged parameters, as `(path, value)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unchanged: Vec<(String, Value)>,
}

/// Two evaluations of the same step name, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsComparison {
    pub step: String,
    pub headline: Vec<MetricDelta>,
    pub per_class: Vec<MetricDelta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
    /// Why there is no bootstrap, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_bootstrap: Option<String>,
}

/// Mean ± std of macro-F1 over the evaluations of one version (several folds or seeds).
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub evaluations: usize,
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineDiff {
    pub old: String,
    pub new: String,
    pub steps: Vec<StepDiff>,
    /// Distinct parameter changes over all steps.
    pub changed_parameters: Vec<ParamChange>,
    pub metrics: Vec<MetricsComparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<(Spread, Spread)>,
}

fn own_change(c: Change, step: &Step) -> Option<ParamChange> {
    let (section, rest) = c.path.split_once('.').unwrap_or((c.path.as_str(), ""));
    let (path, text) = match section {
        "deps" | "kind" => return None,
        "params" | "env" => {
            let text = crate::plan::spelling::reason(&step.kind.to_string(), &c.path, &c.old, &c.new, &step.key_object);
            (if section == "params" { rest.to_string() } else { c.path.clone() }, text)
        }
        _ => (c.path.clone(), format!("{} {} → {}", c.path, key::show(&c.old), key::show(&c.new))),
    };
    Some(ParamChange { path, old: c.old, new: c.new, text })
}

fn changed_deps(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in key::diff(&old["deps"], &new["deps"]) {
        let dep = c.path.split(['.', '[']).next().unwrap_or("").to_string();
        if !out.contains(&dep) {
            out.push(dep);
        }
    }
    out
}

/// Every leaf of a JSON value as `(dotted path, value)`; scalar lists are one leaf.
pub fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| leaves(&join(k), x, out)),
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            a.iter().enumerate().for_each(|(i, x)| leaves(&format!("{prefix}[{i}]"), x, out))
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// Compares two plans step by step (matched by step name, in the new plan's order, then the
/// steps only the old plan has).
pub fn diff_plans(old: &Plan, new: &Plan, all: bool) -> PipelineDiff {
    let mut steps = Vec::new();
    let describe = |step: &Step, state: StepState, changes: Vec<ParamChange>, deps: Vec<String>| {
        let mut unchanged = Vec::new();
        if all {
            leaves("", &step.key_object["params"], &mut unchanged);
            unchanged.retain(|(p, _)| !changes.iter().any(|c| &c.path == p));
        }
        StepDiff { step: step.name.clone(), kind: step.kind, state, changes, changed_deps: deps, unchanged }
    };
    for s in &new.steps {
        let d = match old.step(&s.name) {
            Some(o) if o.key == s.key => describe(s, StepState::Shared, vec![], vec![]),
            Some(o) => {
                let changes = key::diff(&o.key_object, &s.key_object).into_iter().filter_map(|c| own_change(c, s)).collect();
                describe(s, StepState::Rerun, changes, changed_deps(&o.key_object, &s.key_object))
            }
            None => describe(s, StepState::Added, vec![], vec![]),
        };
        steps.push(d);
    }
    for o in old.steps.iter().filter(|o| new.step(&o.name).is_none()) {
        steps.push(describe(o, StepState::Removed, vec![], vec![]));
    }
    let mut changed_parameters: Vec<ParamChange> = Vec::new();
    for c in steps.iter().flat_map(|s| &s.changes) {
        if !changed_parameters.contains(c) {
            changed_parameters.push(c.clone());
        }
    }
    PipelineDiff { old: old.pipeline.clone(), new: new.pipeline.clone(), steps, changed_parameters, metrics: Vec::new(), spread: None }
}

/// Adds metrics side by side for each evaluate step that both versions have results for.
pub fn add_metrics(d: &mut PipelineDiff, cache: &mut Cache, old: &Plan, new: &Plan, seed: u64) {
    let evaluated = |cache: &mut Cache, plan: &Plan| -> Vec<(String, crate::cache::Record)> {
        plan.steps
            .iter()
            .filter(|s| s.kind == crate::plan::StepKind::Evaluate)
            .filter_map(|s| match cache.read_record(&s.key) {
                Ok(Some(r)) if r.metrics.is_some() => Some((s.name.clone(), r)),
                _ => None,
            })
            .collect()
    };
    let (a, b) = (evaluated(cache, old), evaluated(cache, new));
    for (name, ra) in &a {
        let Some((_, rb)) = b.iter().find(|(n, _)| n == name) else { continue };
        let (ma, mb) = (ra.metrics.clone().unwrap_or_default(), rb.metrics.clone().unwrap_or_default());
        let mut cmp = MetricsComparison {
            step: name.clone(),
            headline: metrics::headline_deltas(&ma, &mb),
            per_class: metrics::per_class_deltas(&ma, &mb, age_bins(new, name)),
            bootstrap: None,
            no_bootstrap: None,
        };
        let preds = |cache: &mut Cache, r: &crate::cache::Record| -> anyhow::Result<Vec<metrics::Prediction>> {
            let out = r.outputs.get("val_predictions.csv").ok_or_else(|| anyhow::anyhow!("no val_predictions.csv in the record"))?;
            let bytes = cache.read_blob(&out.digest)?;
            metrics::read_predictions(&bytes, "val_predictions.csv")
        };
        match (preds(cache, ra), preds(cache, rb)) {
            (Ok(pa), Ok(pb)) => match metrics::paired_bootstrap(&pa, &pb, 1000, seed) {
                Ok(bs) => cmp.bootstrap = Some(bs),
                Err(e) => cmp.no_bootstrap = Some(e.to_string()),
            },
            (Err(e), _) | (_, Err(e)) => cmp.no_bootstrap = Some(format!("{e:#}")),
        }
        d.metrics.push(cmp);
    }
    if a.len() > 1 || b.len() > 1 {
        let spread = |v: &[(String, crate::cache::Record)]| {
            let f1s: Vec<f64> = v.iter().filter_map(|(_, r)| r.metrics.as_ref()?["macro_f1"].as_f64()).collect();
            let (mean, std) = metrics::mean_std(&f1s);
            Spread { evaluations: f1s.len(), mean, std }
        };
        d.spread = Some((spread(&a), spread(&b)));
    }
}

/// The comparison page of the first evaluation both versions have results for (see
/// `report::page`); `None` when they have none in common.
pub fn comparison(d: &PipelineDiff, cache: &mut Cache, old: &Plan, new: &Plan) -> Option<super::page::Comparison> {
    let m = d.metrics.first()?;
    let (sa, sb) = (old.step(&m.step)?, new.step(&m.step)?);
    let mut side = |plan: &Plan, step: &Step, label: &str| -> Option<super::page::Side> {
        let record = cache.read_record(&step.key).ok()??;
        let history =
            record.outputs.get("history.json").and_then(|o| cache.read_blob(&o.digest).ok()).and_then(|b| serde_json::from_slice(&b).ok());
        let label = if plan.variants.len() > 1 { format!("{label} {}", step.name) } else { label.to_string() };
        Some(super::page::Side { label, metrics: record.metrics?, history })
    };
    let (a, b) = (side(old, sa, &d.old)?, side(new, sb, &d.new)?);
    Some(super::page::Comparison {
        title: format!("{} vs {}", d.old, d.new),
        changes: d.changed_parameters.iter().map(ParamChange::text).collect(),
        a,
        b,
        bootstrap: m.bootstrap.clone(),
        no_bootstrap: m.no_bootstrap.clone(),
        bins: new.pipeline_ir(sb).data.age_bins,
    })
}

/// The age cut-offs of the step named `name` of `plan` (the default ones when it has none).
fn age_bins(plan: &Plan, name: &str) -> crate::data::labels::AgeBins {
    plan.step(name).map_or(crate::data::labels::DEFAULT_AGE_BINS, |s| plan.pipeline_ir(s).data.age_bins)
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.4}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:+.4}"))
}

/// The human rendering of a diff.
pub fn render(d: &PipelineDiff, colour: bool) -> String {
    use super::table::{Cell, Style, render as table, styled};
    let mut out = format!("--- {}\n+++ {}\n\n", d.old, d.new);
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for s in &d.steps {
        let style = match s.state {
            StepState::Shared => Style::Good,
            StepState::Rerun | StepState::Added => Style::Warn,
            StepState::Removed => Style::Bad,
        };
        let mut lines: Vec<String> = s.changes.iter().map(ParamChange::text).collect();
        if !s.changed_deps.is_empty() {
            lines.push(format!("({} changed)", s.changed_deps.join(", ")));
        }
        let unchanged: Vec<String> = s.unchanged.iter().map(|(p, v)| format!("{p} = {}", key::show(&Some(v.clone())))).collect();
        let mut first = true;
        for line in lines.iter().map(|l| (l, Style::Plain)).chain(unchanged.iter().map(|l| (l, Style::Dim))) {
            let (name, state) = if first { (s.step.clone(), styled(s.state.word(), style)) } else { (String::new(), Cell::from("")) };
            rows.push(vec![Cell::from(name), state, styled(line.0.clone(), line.1)]);
            first = false;
        }
        if first {
            rows.push(vec![Cell::from(s.step.clone()), styled(s.state.word(), style)]);
        }
    }
    out.push_str(&table(&["step", "status", "changes"], &rows, colour));
    let names = |state: StepState| d.steps.iter().filter(|s| s.state == state).map(|s| s.step.as_str()).collect::<Vec<_>>();
    let n = d.changed_parameters.len();
    out.push_str(&format!("\n{n} parameter{} changed", if n == 1 { "" } else { "s" }));
    for state in [StepState::Rerun, StepState::Added, StepState::Removed, StepState::Shared] {
        let list = names(state);
        if !list.is_empty() {
            out.push_str(&format!("; {}: {}", state.word(), list.join(", ")));
        }
    }
    out.push('\n');
    for m in &d.metrics {
        out.push_str(&format!("\nmetrics of {} (old → new)\n", m.step));
        let row =
            |x: &MetricDelta| vec![Cell::from(x.name.clone()), Cell::from(num(x.old)), Cell::from(num(x.new)), Cell::from(signed(x.delta))];
        let rows: Vec<Vec<Cell>> = m.headline.iter().map(row).collect();
        out.push_str(&table(&["metric", ">old", ">new", ">delta"], &rows, colour));
        if !m.per_class.is_empty() {
            out.push_str("\nper-class F1, largest change first\n");
            let rows: Vec<Vec<Cell>> = m.per_class.iter().map(row).collect();
            out.push_str(&table(&["class", ">old", ">new", ">delta"], &rows, colour));
        }
        match (&m.bootstrap, &m.no_bootstrap) {
            (Some(b), _) => {
                let style = match b.verdict {
                    metrics::Verdict::Better => Style::Good,
                    metrics::Verdict::Worse => Style::Bad,
                    metrics::Verdict::WithinNoise => Style::Plain,
                };
                out.push_str(&format!(
                    "\nmacro-F1 delta {:+.4}, 95% interval [{:+.4}, {:+.4}] (paired bootstrap over {} val persons, {} resamples, seed {}): {}\n",
                    b.delta,
                    b.low,
                    b.high,
                    b.persons,
                    b.resamples,
                    b.seed,
                    super::table::paint(b.verdict.words(), style, colour)
                ));
            }
            (None, Some(why)) => out.push_str(&format!("\nno bootstrap interval: {why}\n")),
            (None, None) => {}
        }
    }
    if let Some((a, b)) = &d.spread {
        out.push_str(&format!(
            "\nmacro-F1 over evaluations: old {:.4} ± {:.4} (n={}), new {:.4} ± {:.4} (n={})\n",
            a.mean, a.std, a.evaluations, b.mean, b.std, b.evaluations
        ));
    }
    out
}
