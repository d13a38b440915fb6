//! Step keys: what goes into them, what is left out, and why a step reruns.
//!
//! A step key is blake3 over the canonical JSON (keys sorted, no whitespace, shortest
//! round-trip floats) of a *key object*:
//!
//! | field      | contents                                                                  |
//! |------------|---------------------------------------------------------------------------|
//! | `kind`     | the step kind (`source`, `relabel`, `split`, `prepare`, `train`, …)        |
//! | `version`  | the implementation version of that kind ([`step_version`]); bumped when   |
//! |            | the code that computes the step changes what it produces                  |
//! | `params`   | only the IR fields the step reads, taken from the normalised IR           |
//! | `deps`     | the keys of the steps it depends on, by dependency name                   |
//! | `files`    | content digests of the files it reads directly: the data manifest, the    |
//! |            | relabel CSV, pretrained weights (a local file or one from the hub cache)   |
//! | `env`      | what the result depends on beyond the inputs: backend, precision (the     |
//! |            | device's float type), burn version and the compute feature set, for       |
//! |            | training and inference steps only; on wgpu also the adapter (name, kind,  |
//! |            | API, driver: llvmpipe and a GPU round differently)                        |
//!
//! Deliberately left out:
//! - source text, spans, comments, key order and spellings: keys come from the IR, so an edit
//!   that does not change meaning changes no key;
//! - paths and mtimes of inputs: a dataset moved to another folder, or a fresh clone, keeps its
//!   keys because only content digests enter (`data.root` is not a param of any step);
//! - how weights are named: `timm("efficientnet_b0")`, its `hf://` spelling and the same bytes
//!   as a local file are one key; the hub commit is pinned in the lockfile, not in the key;
//! - the pipeline's file name and the variant's name: two pipelines that describe the same step
//!   share its cache entry;
//! - the maskflow version: only step `version`s matter, so a release that does not change a
//!   step's output keeps the cache warm;
//! - thread counts: every step is written to give the same bytes whatever the parallelism;
//! - output locations (`saved/`, `predict.output`): where results are copied is not what they are.
//!
//! The same key object feeds the hash ([`crate::canonical::digest`], over [`crate::canonical::json`])
//! and the explanation of a rerun
//! ([`explain`]), which diffs the old key object against the new one, so the reason printed
//! for a rerun can never disagree with the cache decision.

use super::StepKind;
use serde_json::Value;

/// Implementation versions of each step kind. Bump one when its output changes for the same inputs.
pub fn step_version(kind: StepKind) -> u32 {
    match kind {
        // The synthetic generator has its own version in the source params.
        StepKind::Source => 1,
        StepKind::Relabel => 1,
        StepKind::Split => 1,
        // 2: shards are written as parts (`train.shard.0000`, ...) instead of one file.
        StepKind::Prepare => 2,
        // 2: BatchNorm + SiLU and depthwise convolutions run as fused kernels (model::fused),
        // with a polynomial `exp`, and 1×1 convolutions as matmuls; weights, and the
        // probabilities computed from them, differ in the last bits.
        // 3: history.json records the validation loss and per-task F1 of each epoch.
        // 4: initial weights are drawn in module visit order from the seed on every backend
        // (train::build_seeded), not lazily at the first forward pass.
        // 5: dense k×k convolutions (stems, tiny_cnn) run as im2col matrix products
        // (model::fused::dense); weights differ in the last bits.
        // 6: global and squeeze-excite pools are row sums (model::fused::plane_means), and
        // validation runs eval mode's fused 1×1 convolutions (model::fused::pointwise: the
        // squeeze-excite gate folded into the weights); weights and per-epoch losses differ in
        // the last bits.
        StepKind::Train => 6,
        // 3: the charts are SVG (plotters) with labels in words, not hand-drawn PNGs.
        // 4: the model's dense convolutions run as im2col products (probabilities move in the
        // last bits).
        // 5: eval mode's 1×1 convolutions fold the squeeze-excite gate into their weights
        // (model::fused::pointwise), and pools are row sums; probabilities move in the last
        // bits.
        StepKind::Evaluate => 5,
        // 3: as evaluate 4. 4: as evaluate 5.
        StepKind::Predict => 4,
        StepKind::Ensemble => 1,
    }
}

/// A change between two key objects, found by [`diff`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Dotted path inside the key object (`params.loss.terms[0].gamma`).
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Every leaf that differs between two key objects, in path order.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    diff_into(String::new(), Some(old), Some(new), &mut changes);
    changes
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

fn diff_into(path: String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff_into(join(&path, k), a.get(k), b.get(k), out);
            }
        }
        // A list of scalars (a size, a mean) changes as one value: `size [48, 64] → [24, 32]`.
        (Some(Value::Array(a)), Some(Value::Array(b))) if a != b && a.iter().chain(b).all(|v| !v.is_object() && !v.is_array()) => {
            out.push(Change { path, old: old.cloned(), new: new.cloned() })
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (a, b) if a != b => out.push(Change { path, old: a.cloned(), new: b.cloned() }),
        _ => {}
    }
}

/// Renders a value for a one-line reason: numbers and bools bare, strings quoted, and
/// digests shortened.
pub fn show(value: &Option<Value>) -> String {
    match value {
        None => "(none)".into(),
        Some(Value::String(s)) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => s[..12].to_string(),
        Some(Value::Number(n)) => {
            // Integral floats keep their `.0` so `2.0 → 1.5` reads as the user wrote it.
            if let (true, Some(f)) = (n.is_f64(), n.as_f64()) {
                if f.fract() == 0.0 && f.abs() < 1e15 { format!("{f:.1}") } else { n.to_string() }
            } else {
                n.to_string()
            }
        }
        Some(Value::Null) => "none".into(),
        Some(Value::Array(items)) => format!("[{}]", items.iter().map(|v| show(&Some(v.clone()))).collect::<Vec<_>>().join(", ")),
        Some(v) => v.to_string(),
    }
}

/// Explains, one reason per line, why `new` differs from `old`. `describe_file` turns a
/// change of a file digest into words (e.g. `3 files changed`) when it can.
pub fn explain(old: &Value, new: &Value, describe_file: &mut dyn FnMut(&str, &Value, &Value) -> Option<String>) -> Vec<String> {
    let mut reasons = Vec::new();
    let mut changed_deps = Vec::new();
    for change in diff(old, new) {
        let (section, rest) = change.path.split_once('.').unwrap_or((change.path.as_str(), ""));
        match section {
            "deps" => {
                let dep = rest.split(['.', '[']).next().unwrap_or(rest).to_string();
                if !changed_deps.contains(&dep) {
                    changed_deps.push(dep);
                }
            }
            "files" => {
                let words = match (&change.old, &change.new) {
                    (Some(a), Some(b)) => describe_file(rest, a, b),
                    _ => None,
                };
                reasons.push(words.unwrap_or_else(|| format!("{rest} {} → {}", show(&change.old), show(&change.new))));
            }
            "version" => reasons.push(format!("implementation version {} → {}", show(&change.old), show(&change.new))),
            "params" | "env" => {
                let kind = new["kind"].as_str().unwrap_or("");
                reasons.push(super::spelling::reason(kind, &change.path, &change.old, &change.new, new))
            }
            _ => reasons.push(format!("{} {} → {}", change.path, show(&change.old), show(&change.new))),
        }
    }
    if !changed_deps.is_empty() {
        reasons.push(format!("{} changed", changed_deps.join(", ")));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn explain_names_params_deps_and_files() {
        let old = json!({"kind": "train", "version": 1, "params": {"loss": {"gamma": 2.0}, "epochs": 3},
                         "deps": {"split": "a", "prepare": "b"}, "files": {"weights": "w1"}});
        let new = json!({"kind": "train", "version": 1, "params": {"loss": {"gamma": 1.5}, "epochs": 3},
                         "deps": {"split": "c", "prepare": "b"}, "files": {"weights": "w2"}});
        let reasons = explain(&old, &new, &mut |name, _, _| Some(format!("{name} changed")));
        assert_eq!(reasons, ["weights changed", "loss.gamma 2.0 → 1.5", "split changed"]);
    }
}
