//! `maskflow ablate A B`: which of the changes between two pipelines made the difference.
//!
//! The IR differences are grouped into *changes* a person would name, and pipelines between
//! A and B are built by applying some of them to A. Each is an ordinary variant of one plan,
//! so it shares every unchanged step with the ends through the cache and runs through the
//! same scheduler as `run`.
//!
//! | rule | one change is |
//! |---|---|
//! | default | one changed IR parameter (`train.epochs 1 → 3`) |
//! | a tagged value changed its tag (`kind`, `op`) | the whole value: a loss kind with its own parameters |
//! | an op list (`augment.train`, `augment.eval`, `oversample`) | the whole list |
//! | a value present on one side only, or a list whose length changed | the whole value or list |
//! | `--group P,Q` | every change under P or Q, merged by hand |
//!
//! | arms | which |
//! |---|---|
//! | ends | A, B |
//! | add-one | A with one change applied, for each change |
//! | leave-one-out | B with one change reverted, for each change |
//! | `--full` | every subset (2^k, k ≤ 6); interactions between pairs are reported too |
//! | `--seeds N` | every arm with N training seeds (B's seed, +1, …); effects pool them |
//!
//! An effect is always F1 *with* the change minus F1 *without* it, with a paired bootstrap
//! interval over val persons (seeds pooled: a person under seed j is its own unit).

use super::metrics::{self, Prediction, Verdict};
use crate::cache::Cache;
use crate::ir::{Pipeline, Variant};
use crate::lang::Loaded;
use crate::plan::{Plan, StepKind};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The most changes `--full` takes (2^6 = 64 arms per seed).
pub const MAX_FULL: usize = 6;

/// One change from A to B: the IR values at `roots` (B's replace A's).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// In the user's terms: `train.epochs 1 → 3`.
    pub label: String,
    /// The dotted path shown (`train.epochs`), used in variant names.
    pub name: String,
    pub roots: Vec<String>,
}

/// One pipeline to run: which changes are applied to A, and with which seed.
#[derive(Debug, Clone)]
pub struct Arm {
    pub name: String,
    /// `applied[c]`: change `c` is applied (A has none, B all).
    pub applied: Vec<bool>,
    pub seed: usize,
    pub pipeline: Pipeline,
}

// ------------------------------------------------------------------ JSON paths

use crate::plan::spelling::segments;

fn join(segs: &[String]) -> String {
    let mut s = String::new();
    for seg in segs {
        if !s.is_empty() && !seg.starts_with('[') {
            s.push('.');
        }
        s.push_str(seg);
    }
    s
}

fn get<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    segments(path).iter().try_fold(v, |v, seg| match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(i) => v.as_array()?.get(i.parse::<usize>().ok()?),
        None => v.as_object()?.get(seg),
    })
}

/// Sets (or, with `None`, removes) the value at `path`; its parent must exist.
fn set(v: &mut Value, path: &str, new: Option<Value>) -> Result<()> {
    let segs = segments(path);
    let (last, parents) = segs.split_last().context("empty path")?;
    let mut cur = v;
    for seg in parents {
        cur = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(i) => cur.as_array_mut().and_then(|a| a.get_mut(i.parse::<usize>().ok()?)),
            None => cur.as_object_mut().and_then(|o| o.get_mut(seg)),
        }
        .with_context(|| format!("internal: no `{seg}` on the way to `{path}`"))?;
    }
    let map = cur.as_object_mut().with_context(|| format!("internal: `{path}` is not in an object"))?;
    match new {
        Some(x) => map.insert(last.clone(), x),
        None => map.remove(last),
    };
    Ok(())
}

// ------------------------------------------------------------------ changes

/// Lists whose order matters and that a person edits as one thing.
const OP_LISTS: &[&str] = &["augment.train", "augment.eval", "oversample"];

/// The root of the change a differing leaf belongs to (see the module doc).
fn root_of(a: &Value, b: &Value, leaf: &str) -> String {
    if let Some(list) = OP_LISTS.iter().find(|l| leaf == **l || leaf.starts_with(&format!("{l}.")) || leaf.starts_with(&format!("{l}["))) {
        return list.to_string();
    }
    let segs = segments(leaf);
    // A tagged value whose tag changed: the whole value.
    for n in (0..segs.len()).rev() {
        let p = join(&segs[..n]);
        for tag in ["kind", "op"] {
            let t = if p.is_empty() { tag.to_string() } else { format!("{p}.{tag}") };
            if let (Some(x), Some(y)) = (get(a, &t), get(b, &t))
                && x != y
                && !p.is_empty()
            {
                return p;
            }
        }
    }
    // Present on one side only, or an element of a list whose length changed: the shallowest
    // such value (or its list).
    for n in 1..=segs.len() {
        let p = join(&segs[..n]);
        match (get(a, &p), get(b, &p)) {
            (Some(x), Some(y)) if (x.is_object() && y.is_object()) || (x.is_array() && y.is_array()) => continue,
            (Some(_), Some(_)) => break,
            _ => {
                let is_index = segs[n - 1].starts_with('[');
                return if is_index { join(&segs[..n - 1]) } else { p };
            }
        }
    }
    leaf.to_string()
}

/// A path as a person would say it: a single loss term's `terms[0].kind.` left out, and a
/// tagged value's `kind.` segment too.
fn spoken(path: &str) -> String {
    path.replace(".terms[0].kind.", ".").replace(".terms[0].kind", "").replace(".kind.", ".")
}

fn show(v: Option<&Value>) -> String {
    let text = match v {
        Some(Value::Object(m)) if m.get("kind").and_then(Value::as_str).is_some() => {
            let kind = m["kind"].as_str().unwrap_or_default();
            let args: Vec<String> =
                m.iter().filter(|(k, _)| *k != "kind").map(|(k, x)| format!("{k}={}", crate::plan::key::show(&Some(x.clone())))).collect();
            format!("{kind}({})", args.join(", "))
        }
        Some(Value::Array(a)) if a.is_empty() => "[]".to_string(),
        other => crate::plan::key::show(&other.cloned()),
    };
    if text.chars().count() > 48 { format!("{}…", text.chars().take(47).collect::<String>()) } else { text }
}

/// The changes from A to B. `groups` merges changes by hand: each entry is a list of path
/// prefixes (`--group loss,train.optimizer`).
pub fn changes(a: &Pipeline, b: &Pipeline, groups: &[Vec<String>]) -> Result<Vec<Change>> {
    let (va, vb) = (serde_json::to_value(a)?, serde_json::to_value(b)?);
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    super::diff::leaves("", &va, &mut la);
    super::diff::leaves("", &vb, &mut lb);
    let (ma, mb): (BTreeMap<_, _>, BTreeMap<_, _>) = (la.iter().cloned().collect(), lb.iter().cloned().collect());
    let mut roots: Vec<String> = Vec::new();
    for (path, _) in la.iter().chain(lb.iter()) {
        if ma.get(path) == mb.get(path) {
            continue;
        }
        let root = root_of(&va, &vb, path);
        if !roots.iter().any(|r| *r == root || root.starts_with(&format!("{r}.")) || root.starts_with(&format!("{r}["))) {
            roots.retain(|r| !(r.starts_with(&format!("{root}.")) || r.starts_with(&format!("{root}["))));
            roots.push(root);
        }
    }
    let mut out: Vec<Change> = roots
        .into_iter()
        .map(|r| {
            let name = spoken(&r);
            Change { label: format!("{name} {} → {}", show(get(&va, &r)), show(get(&vb, &r))), name, roots: vec![r] }
        })
        .collect();
    for group in groups {
        let under = |c: &Change| {
            c.roots.iter().any(|r| group.iter().any(|p| r == p || r.starts_with(&format!("{p}.")) || r.starts_with(&format!("{p}["))))
        };
        let (members, rest): (Vec<Change>, Vec<Change>) = out.into_iter().partition(under);
        if members.is_empty() {
            bail!(
                "--group {}: no change under these paths (changes: {})",
                group.join(","),
                rest.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        out = rest;
        out.push(Change {
            label: members.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(" + "),
            name: members.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join("+"),
            roots: members.into_iter().flat_map(|c| c.roots).collect(),
        });
    }
    Ok(out)
}

/// A with the changes `applied` (by index) taken from B.
fn apply(a: &Pipeline, b: &Pipeline, changes: &[Change], applied: &[bool]) -> Result<Pipeline> {
    let (mut v, vb) = (serde_json::to_value(a)?, serde_json::to_value(b)?);
    for (c, on) in changes.iter().zip(applied) {
        if *on {
            for root in &c.roots {
                set(&mut v, root, get(&vb, root).cloned())?;
            }
        }
    }
    serde_json::from_value(v).map_err(|e| {
        let on: Vec<&str> = changes.iter().zip(applied).filter(|(_, on)| **on).map(|(c, _)| c.name.as_str()).collect();
        anyhow::anyhow!(
            "A with {} applied is not a valid pipeline ({e}); merge the changes that belong together with --group",
            on.join(", ")
        )
    })
}

/// The arms to run: the ends, add-one and leave-one-out (or, with `full`, every subset),
/// each with `seeds` training seeds starting at B's.
pub fn arms(a: &Pipeline, b: &Pipeline, changes: &[Change], full: bool, seeds: usize) -> Result<Vec<Arm>> {
    let k = changes.len();
    if k == 0 {
        bail!("the two pipelines compute the same thing: nothing to ablate");
    }
    if full && k > MAX_FULL {
        bail!("--full runs 2^k arms; {k} changes is more than {MAX_FULL} (merge some with --group)");
    }
    if seeds > 1 && changes.iter().any(|c| c.roots.iter().any(|r| r == "train.seed")) {
        bail!("--seeds sets train.seed, which is one of the changes");
    }
    let mut masks: Vec<Vec<bool>> = Vec::new();
    if full {
        masks.extend((0..1usize << k).map(|m| (0..k).map(|c| m >> c & 1 == 1).collect()));
    } else {
        masks.push(vec![false; k]);
        masks.push(vec![true; k]);
        for c in 0..k {
            masks.push((0..k).map(|i| i == c).collect());
            masks.push((0..k).map(|i| i != c).collect());
        }
    }
    masks.dedup();
    let mut unique: Vec<Vec<bool>> = Vec::new();
    for m in masks {
        if !unique.contains(&m) {
            unique.push(m);
        }
    }
    let mut out = Vec::new();
    for seed in 0..seeds.max(1) {
        for m in &unique {
            let mut pipeline = apply(a, b, changes, m)?;
            if seeds > 1 {
                pipeline.train.seed = b.train.seed + seed as u64;
            }
            let mut name = arm_name(changes, m);
            if seeds > 1 {
                name.push_str(&format!(",seed={}", pipeline.train.seed));
            }
            out.push(Arm { name, applied: m.clone(), seed, pipeline });
        }
    }
    Ok(out)
}

/// `A`, `B`, `A+train.epochs`, `B-model.dropout`, or (full) `A+x+y`.
fn arm_name(changes: &[Change], applied: &[bool]) -> String {
    let on = applied.iter().filter(|x| **x).count();
    if on == 0 {
        return "A".into();
    }
    if on == applied.len() {
        return "B".into();
    }
    if on == applied.len() - 1 && applied.len() > 2 {
        let off = applied.iter().position(|x| !x).expect("one is off");
        return format!("B-{}", changes[off].name);
    }
    let mut s = "A".to_string();
    for (c, x) in changes.iter().zip(applied) {
        if *x {
            s.push('+');
            s.push_str(&c.name);
        }
    }
    s
}

/// What a dispatched job needs to plan the same arms: the arms file (`maskflow step
/// ARMS.json STEP`), written beside the run's results.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ArmsFile {
    pub name: String,
    pub label: String,
    pub variants: Vec<Variant>,
}

/// Reads an arms file back as a loaded pipeline, named `label` in plans.
pub fn read_arms(path: &std::path::Path) -> Result<(String, Loaded)> {
    let file: ArmsFile = serde_json::from_slice(&std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?)
        .with_context(|| format!("{}: not an ablation arms file", path.display()))?;
    let loaded = Loaded {
        path: path.to_path_buf(),
        name: file.name,
        variants: file.variants,
        files: vec![path.to_path_buf()],
        members: BTreeMap::new(),
    };
    Ok((file.label, loaded))
}

/// The arms as one loaded pipeline with a variant each, to plan together.
pub fn loaded(name: &str, path: &std::path::Path, arms: &[Arm]) -> Loaded {
    Loaded {
        path: path.to_path_buf(),
        name: name.to_string(),
        variants: arms
            .iter()
            .map(|a| Variant { name: a.name.clone(), assignments: BTreeMap::new(), pipeline: a.pipeline.clone() })
            .collect(),
        files: vec![path.to_path_buf()],
        members: BTreeMap::new(),
    }
}

// ------------------------------------------------------------------ the report

/// One effect: F1 with the change minus F1 without it.
#[derive(Debug, Clone, Serialize)]
pub struct Effect {
    pub delta: f64,
    pub low: f64,
    pub high: f64,
    pub verdict: Verdict,
    /// Per-task F1 deltas (mean over seeds).
    pub per_task: BTreeMap<String, f64>,
    pub persons: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeEffect {
    pub change: String,
    pub add_one: Effect,
    pub leave_one_out: Effect,
    /// helps / hurts / within noise.
    pub verdict: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interaction {
    pub changes: [String; 2],
    /// Mean over the other changes' settings of F(both) − F(first) − F(second) + F(neither).
    pub effect: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ablation {
    pub a: String,
    pub b: String,
    pub arms: usize,
    pub seeds: usize,
    pub macro_f1_a: f64,
    pub macro_f1_b: f64,
    /// Sorted by effect, most helpful first.
    pub changes: Vec<ChangeEffect>,
    pub interactions: Vec<Interaction>,
}

/// One arm's evaluation: its metrics and val predictions.
struct Evaluated {
    macro_f1: f64,
    per_task: BTreeMap<String, f64>,
    predictions: Vec<Prediction>,
}

fn evaluated(cache: &mut Cache, plan: &Plan, arm: usize) -> Result<Evaluated> {
    // A step two arms share is planned once, under the first arm that needs it: the arm's
    // own evaluation is found by planning the arm alone (its steps' keys are the same).
    let variant = plan.variants[arm].clone();
    let alone = Loaded { path: PathBuf::new(), name: plan.name.clone(), variants: vec![variant], files: vec![], members: BTreeMap::new() };
    let own = crate::plan::build(&plan.pipeline, &alone, cache, crate::plan::MissingInputs::Fail)?;
    let step =
        own.steps.iter().find(|s| s.kind == StepKind::Evaluate && s.fold.is_none()).with_context(|| {
            format!("arm `{}` has no evaluate step (ablate needs `evaluate {{}}` and no folds)", plan.variants[arm].name)
        })?;
    let record = cache.read_record(&step.key)?.with_context(|| format!("`{}` has no result in the cache", step.name))?;
    let m = record.metrics.clone().unwrap_or_default();
    let out = record.outputs.get("val_predictions.csv").context("no val_predictions.csv in the evaluation")?;
    let predictions = metrics::read_predictions(&cache.read_blob(&out.digest)?, "val_predictions.csv")?;
    let per_task = ["mask", "gender", "age"].iter().filter_map(|t| Some((t.to_string(), m["per_task"][*t].as_f64()?))).collect();
    Ok(Evaluated { macro_f1: m["macro_f1"].as_f64().unwrap_or(f64::NAN), per_task, predictions })
}

/// The effect between pairs of arms (with, without), pooled over seeds.
fn effect(evals: &[Evaluated], pairs: &[(usize, usize)], seed: u64) -> Result<Effect> {
    let pool = |side: fn(&(usize, usize)) -> usize| -> Vec<Prediction> {
        pairs
            .iter()
            .enumerate()
            .flat_map(|(j, p)| {
                evals[side(p)].predictions.iter().map(move |x| Prediction { person: format!("{j}:{}", x.person), ..x.clone() })
            })
            .collect()
    };
    let (with, without) = (pool(|p| p.0), pool(|p| p.1));
    let bs = metrics::paired_bootstrap(&without, &with, 1000, seed)?;
    let mut per_task = BTreeMap::new();
    for t in ["mask", "gender", "age"] {
        let d: Vec<f64> = pairs.iter().filter_map(|(w, o)| Some(evals[*w].per_task.get(t)? - evals[*o].per_task.get(t)?)).collect();
        if !d.is_empty() {
            per_task.insert(t.to_string(), d.iter().sum::<f64>() / d.len() as f64);
        }
    }
    Ok(Effect { delta: bs.delta, low: bs.low, high: bs.high, verdict: bs.verdict, per_task, persons: bs.persons })
}

/// Reads every arm's evaluation from the cache and computes each change's effects.
pub fn report(cache: &mut Cache, plan: &Plan, arms: &[Arm], changes: &[Change], full: bool, a: &str, b: &str) -> Result<Ablation> {
    let evals: Vec<Evaluated> = (0..arms.len()).map(|i| evaluated(cache, plan, i)).collect::<Result<_>>()?;
    let find = |applied: &[bool], seed: usize| arms.iter().position(|x| x.applied == applied && x.seed == seed);
    let seeds = arms.iter().map(|x| x.seed).max().unwrap_or(0) + 1;
    let k = changes.len();
    let (none, all) = (vec![false; k], vec![true; k]);
    let mut out = Vec::new();
    for (c, change) in changes.iter().enumerate() {
        let one: Vec<bool> = (0..k).map(|i| i == c).collect();
        let but: Vec<bool> = (0..k).map(|i| i != c).collect();
        let pairs = |with: &[bool], without: &[bool]| -> Vec<(usize, usize)> {
            (0..seeds).filter_map(|s| Some((find(with, s)?, find(without, s)?))).collect()
        };
        let add_one = effect(&evals, &pairs(&one, &none), 17 + c as u64)?;
        let leave_one_out = effect(&evals, &pairs(&all, &but), 1017 + c as u64)?;
        let verdict = combined(add_one.verdict, leave_one_out.verdict);
        out.push(ChangeEffect { change: change.label.clone(), add_one, leave_one_out, verdict });
    }
    out.sort_by(|x, y| {
        let mean = |e: &ChangeEffect| (e.add_one.delta + e.leave_one_out.delta) / 2.0;
        mean(y).total_cmp(&mean(x))
    });
    let mut interactions = Vec::new();
    if full && k >= 2 {
        for i in 0..k {
            for j in i + 1..k {
                let mut sum = 0.0;
                let mut n = 0;
                for m in 0..1usize << k {
                    if m >> i & 1 == 1 || m >> j & 1 == 1 {
                        continue;
                    }
                    let mask = |extra: usize| -> Vec<bool> { (0..k).map(|c| (m | extra) >> c & 1 == 1).collect() };
                    for s in 0..seeds {
                        let f = |extra: usize| find(&mask(extra), s).map(|x| evals[x].macro_f1);
                        if let (Some(both), Some(fi), Some(fj), Some(nn)) = (f(1 << i | 1 << j), f(1 << i), f(1 << j), f(0)) {
                            sum += both - fi - fj + nn;
                            n += 1;
                        }
                    }
                }
                interactions
                    .push(Interaction { changes: [changes[i].name.clone(), changes[j].name.clone()], effect: sum / n.max(1) as f64 });
            }
        }
    }
    let mean_f1 = |mask: &[bool]| -> f64 {
        let v: Vec<f64> = (0..seeds).filter_map(|s| find(mask, s)).map(|x| evals[x].macro_f1).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    Ok(Ablation {
        a: a.to_string(),
        b: b.to_string(),
        arms: arms.len(),
        seeds,
        macro_f1_a: mean_f1(&none),
        macro_f1_b: mean_f1(&all),
        changes: out,
        interactions,
    })
}

/// helps when an interval is above zero and none below; hurts the other way round.
fn combined(a: Verdict, b: Verdict) -> &'static str {
    match (a, b) {
        (Verdict::Better, Verdict::Worse) | (Verdict::Worse, Verdict::Better) => "within noise",
        (Verdict::Better, _) | (_, Verdict::Better) => "helps",
        (Verdict::Worse, _) | (_, Verdict::Worse) => "hurts",
        _ => "within noise",
    }
}

fn pm(e: &Effect) -> String {
    format!("{:+.4} [{:+.4}, {:+.4}]", e.delta, e.low, e.high)
}

/// The terminal table, sorted by effect.
pub fn render_text(r: &Ablation) -> String {
    let mut out = format!(
        "{} → {}: macro-F1 {:.4} → {:.4}, {} arms{}\n\n",
        r.a,
        r.b,
        r.macro_f1_a,
        r.macro_f1_b,
        r.arms,
        if r.seeds > 1 { format!(" ({} seeds each)", r.seeds) } else { String::new() }
    );
    let headers = ["change", "add-one (A + change)", "leave-one-out (B − change)", "mask", "gender", "age", "verdict"];
    let rows: Vec<Vec<String>> = r
        .changes
        .iter()
        .map(|c| {
            let task = |t: &str| {
                let (x, y) = (c.add_one.per_task.get(t), c.leave_one_out.per_task.get(t));
                match (x, y) {
                    (Some(x), Some(y)) => format!("{:+.3}/{:+.3}", x, y),
                    _ => "-".into(),
                }
            };
            vec![c.change.clone(), pm(&c.add_one), pm(&c.leave_one_out), task("mask"), task("gender"), task("age"), c.verdict.to_string()]
        })
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    out.push_str(&line(headers.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        out.push_str(&line(row));
    }
    out.push_str(
        "\neffects: macro-F1 with the change minus without it [95% paired bootstrap over val persons]; per task: add-one/leave-one-out\n",
    );
    if !r.interactions.is_empty() {
        out.push_str("\ninteractions (F(both) − F(each) + F(neither), mean over the other changes):\n");
        for i in &r.interactions {
            out.push_str(&format!("  {} × {}: {:+.4}\n", i.changes[0], i.changes[1], i.effect));
        }
    }
    out
}

use crate::charts::escape;

/// A static page: each effect as an interval against zero (SVG), one row per change.
pub fn render_html(r: &Ablation) -> String {
    let span = r
        .changes
        .iter()
        .flat_map(|c| [c.add_one.low, c.add_one.high, c.leave_one_out.low, c.leave_one_out.high])
        .fold(0.01f64, |m, x| m.max(x.abs()))
        * 1.1;
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>maskflow ablate</title>\n<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:left}.helps{color:#1a7f37}.hurts{color:#cf222e}</style></head><body>\n",
    );
    out.push_str(&format!(
        "<h1>{} → {}</h1>\n<p>macro-F1 {:.4} → {:.4}; {} arms. Each bar: F1 with the change minus without it, 95% paired bootstrap interval; the line is zero.</p>\n<table>\n<tr><th>change</th><th>add-one (A + change)</th><th>leave-one-out (B − change)</th><th>verdict</th></tr>\n",
        escape(&r.a),
        escape(&r.b),
        r.macro_f1_a,
        r.macro_f1_b,
        r.arms
    ));
    let bar = |e: &Effect| match crate::charts::compare::effect_svg(e.delta, e.low, e.high, span, e.verdict) {
        Ok(svg) => format!(
            "<figure class=\"interval\" role=\"img\" aria-label=\"{:+.4} from {:+.4} to {:+.4}\">{}</figure>",
            e.delta,
            e.low,
            e.high,
            &svg[svg.find("<svg").unwrap_or(0)..]
        ),
        Err(err) => format!("<p>{}</p>", escape(&err.to_string())),
    };
    for c in &r.changes {
        let class = c.verdict.replace(' ', "-");
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>\n",
            escape(&c.change),
            bar(&c.add_one),
            bar(&c.leave_one_out),
            c.verdict
        ));
    }
    out.push_str("</table>\n");
    if !r.interactions.is_empty() {
        out.push_str("<h2>Interactions</h2>\n<ul>\n");
        for i in &r.interactions {
            out.push_str(&format!("<li>{} × {}: {:+.4}</li>\n", escape(&i.changes[0]), escape(&i.changes[1]), i.effect));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_and_write_through_objects_and_lists() {
        let mut v = json!({"a": {"b": [{"c": 1}, {"c": 2}]}});
        assert_eq!(get(&v, "a.b[1].c"), Some(&json!(2)));
        set(&mut v, "a.b[1].c", Some(json!(5))).unwrap();
        assert_eq!(v["a"]["b"][1]["c"], 5);
        set(&mut v, "a.x", Some(json!(true))).unwrap();
        set(&mut v, "a.b", None).unwrap();
        assert_eq!(v, json!({"a": {"x": true}}));
        assert_eq!(join(&segments("a.b[1].c")), "a.b[1].c");
    }

    #[test]
    fn a_changed_tag_takes_its_parameters_and_op_lists_are_one_change() {
        let a = json!({"loss": {"terms": [{"weight": 1.0, "kind": {"kind": "cross_entropy", "smoothing": 0.0}}]}, "augment": {"train": [{"op": "flip"}]}, "train": {"epochs": 1}});
        let b = json!({"loss": {"terms": [{"weight": 1.0, "kind": {"kind": "focal", "gamma": 2.0}}]}, "augment": {"train": [{"op": "flip"}, {"op": "rotate"}]}, "train": {"epochs": 3}});
        assert_eq!(root_of(&a, &b, "loss.terms[0].kind.gamma"), "loss.terms[0].kind");
        assert_eq!(root_of(&a, &b, "loss.terms[0].kind.smoothing"), "loss.terms[0].kind");
        assert_eq!(root_of(&a, &b, "augment.train[1].op"), "augment.train");
        assert_eq!(root_of(&a, &b, "train.epochs"), "train.epochs");
        assert_eq!(spoken("loss.terms[0].kind"), "loss");
        assert_eq!(spoken("loss.terms[0].kind.gamma"), "loss.gamma");
    }
}
