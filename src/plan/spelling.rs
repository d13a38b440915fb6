//! Key-object paths in the user's spelling, for rerun reasons, `explain` and lock mismatches.
//!
//! A key object holds the normalised IR (`params.loss.terms[0].kind.gamma`); the user wrote
//! `loss focal { gamma = 2 }` and overrides it with `--set loss.gamma=1.5`. A reason should read
//! `loss.gamma 2.0 → 1.5`: the `--set` path where there is one, the block and op names where
//! there is not (`augment train: hflip 0.5 → 0.3`). Only the words change; which reasons there
//! are still comes from [`super::key::diff`] of the key objects, so a reason can never name
//! something that did not change the key.

use super::key::show;
use serde_json::Value;

/// One reason line for a change at `path` (a key-object path under `params` or `env`) of a
/// step of `kind`: `<user path> <old> → <new>`. `key` is the new key object, to name list
/// entries (an op, a loss term).
pub fn reason(kind: &str, path: &str, old: &Option<Value>, new: &Option<Value>, key: &Value) -> String {
    let rest = path.strip_prefix("params.").unwrap_or("");
    if rest == "augment" {
        // Ops added or removed: the op lists.
        let block = if kind == "train" { "augment train" } else { "augment eval" };
        let ops = |v: &Option<Value>| match v {
            Some(Value::Array(items)) => {
                format!("[{}]", items.iter().map(|o| o["op"].as_str().unwrap_or("?")).collect::<Vec<_>>().join(", "))
            }
            other => show(other),
        };
        return format!("{block} {} → {}", ops(old), ops(new));
    }
    format!("{} {} → {}", label(kind, path, key), show(old), show(new))
}

/// The user's name for the key-object leaf at `path` (under `params` or `env`) of a step of
/// `kind`: `loss.gamma`, `train.optimizer.lr`, `augment train: hflip`. `key` names list
/// entries (an op, a loss term).
pub fn label(kind: &str, path: &str, key: &Value) -> String {
    let (section, rest) = path.split_once('.').unwrap_or((path, ""));
    if section == "env" {
        return if rest == "backend" { "train.backend".to_string() } else { format!("env.{rest}") };
    }
    let params = &key["params"];
    let segs = segments(rest);
    let head = segs.first().map(String::as_str).unwrap_or("");
    match (kind, head) {
        (_, "augment") => augment(kind, &segs[1..], params),
        ("train", "loss") => loss(&segs[1..], params),
        _ => user_path(kind, &segs),
    }
}

/// `a.b[2].c` → `["a", "b", "[2]", "c"]`.
pub(crate) fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        match part.find('[') {
            Some(i) => {
                if i > 0 {
                    out.push(part[..i].to_string());
                }
                out.extend(part[i..].split_inclusive(']').map(str::to_string));
            }
            None => out.push(part.to_string()),
        }
    }
    out
}

fn index(seg: &str) -> Option<usize> {
    seg.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The `--set` spelling of a param path, by step kind.
fn user_path(kind: &str, segs: &[String]) -> String {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let joined = |prefix: &str, rest: &[&str]| {
        let mut out = prefix.to_string();
        for r in rest {
            if !r.starts_with('[') && !out.is_empty() {
                out.push('.');
            }
            out.push_str(r);
        }
        out
    };
    match (kind, s.as_slice()) {
        (_, ["fold"]) => "split fold".into(),
        ("source", ["synthetic", "kind"]) => "data".into(),
        ("source", ["synthetic", rest @ ..]) => joined("data", rest),
        ("source", ["generator"]) => "synthetic generator version".into(),
        ("source", rest) => joined("data", rest),
        ("relabel", ["age_bins"]) => "data.age_bins".into(),
        ("relabel", ["fixes", rest @ ..]) => joined("relabel", rest),
        ("split", ["scheme", "kind"]) => "split (holdout or folds)".into(),
        ("split", ["scheme", "k"]) => "split.folds".into(),
        ("split", ["scheme", rest @ ..]) => joined("split", rest),
        ("split", rest) => joined("split", rest),
        ("prepare", ["crop", "kind"]) => "prepare.crop".into(),
        ("prepare", rest) => joined("prepare", rest),
        ("train", ["model", "heads", "kind"]) => "model.heads".into(),
        ("train", ["model", "heads", "weights", rest @ ..]) => joined("model.heads", rest),
        ("train", ["train", opt @ ("optimizer" | "schedule"), "kind"]) => format!("train.{opt}"),
        ("train", ["oversample", rest @ ..]) => joined("oversample", rest),
        ("train", rest) => joined("", rest),
        ("predict", ["tta"]) => "predict.tta".into(),
        ("ensemble", rest) => joined("ensemble", rest),
        (_, rest) => joined("", rest),
    }
}

/// `augment train: hflip` (an op with one parameter), `augment train: jitter brightness`.
fn augment(kind: &str, segs: &[String], params: &Value) -> String {
    let block = if kind == "train" { "augment train" } else { "augment eval" };
    let Some(i) = segs.first().and_then(|s| index(s)) else {
        return block.to_string();
    };
    let op = params["augment"][i]["op"].as_str().unwrap_or("op");
    let fields = params["augment"][i].as_object().map_or(0, |m| m.len().saturating_sub(1));
    let field: Vec<&str> = segs[1..].iter().map(String::as_str).collect();
    match field.as_slice() {
        ["op"] => format!("{block}: op {}", i + 1),
        [f] if fields > 1 => format!("{block}: {op} {f}"),
        _ => format!("{block}: {op}"),
    }
}

/// `loss.gamma` for a one-term loss; `loss.focal.gamma`, `loss.focal weight` for a weighted sum.
fn loss(segs: &[String], params: &Value) -> String {
    let terms = params["loss"]["terms"].as_array().map_or(0, Vec::len);
    let plain = || std::iter::once("loss").chain(segs.iter().map(String::as_str)).collect::<Vec<_>>().join(".");
    let [terms_seg, i_seg, rest @ ..] = segs else {
        return plain();
    };
    let Some(i) = index(i_seg).filter(|_| terms_seg == "terms") else {
        return plain();
    };
    let term_kind = params["loss"]["terms"][i]["kind"]["kind"].as_str().unwrap_or("term");
    let prefix = if terms > 1 { format!("loss.{term_kind}") } else { "loss".to_string() };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match rest.as_slice() {
        ["weight"] => format!("loss.{term_kind} weight"),
        ["kind", "kind"] => {
            if terms > 1 {
                format!("loss term {}", i + 1)
            } else {
                "loss.kind".into()
            }
        }
        ["kind", field, "kind"] => format!("{prefix}.{field}"),
        ["kind", field, more @ ..] => format!(
            "{prefix}.{field}{}",
            more.iter().map(|m| if m.starts_with('[') { m.to_string() } else { format!(".{m}") }).collect::<String>()
        ),
        _ => prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn say(kind: &str, path: &str, old: Value, new: Value, params: Value) -> String {
        reason(kind, path, &Some(old), &Some(new), &json!({ "params": params }))
    }

    #[test]
    fn reasons_use_the_set_paths_and_block_names() {
        let focal = json!({"loss": {"terms": [{"kind": {"kind": "focal", "gamma": 1.5, "alpha": {"kind": "none"}}, "weight": 1.0}]}});
        assert_eq!(say("train", "params.loss.terms[0].kind.gamma", json!(2.0), json!(1.5), focal.clone()), "loss.gamma 2.0 → 1.5");
        assert_eq!(
            say("train", "params.loss.terms[0].kind.alpha.kind", json!("none"), json!("auto"), focal),
            "loss.alpha \"none\" → \"auto\""
        );
        let sum = json!({"loss": {"terms": [{"kind": {"kind": "focal", "gamma": 2.0}, "weight": 0.7}, {"kind": {"kind": "soft_f1"}, "weight": 0.3}]}});
        assert_eq!(say("train", "params.loss.terms[1].weight", json!(0.2), json!(0.3), sum.clone()), "loss.soft_f1 weight 0.2 → 0.3");
        assert_eq!(say("train", "params.loss.terms[0].kind.gamma", json!(1.0), json!(2.0), sum), "loss.focal.gamma 1.0 → 2.0");
        assert_eq!(say("train", "params.train.optimizer.lr", json!(0.003), json!(0.001), json!({})), "train.optimizer.lr 0.003 → 0.001");
        assert_eq!(say("train", "params.model.heads.weights.age", json!(1.0), json!(2.0), json!({})), "model.heads.age 1.0 → 2.0");
        assert_eq!(say("split", "params.seed", json!(42), json!(7), json!({})), "split.seed 42 → 7");
        assert_eq!(say("split", "params.scheme.val", json!(0.2), json!(0.1), json!({})), "split.val 0.2 → 0.1");
        assert_eq!(say("prepare", "params.size", json!([48, 64]), json!([24, 32]), json!({})), "prepare.size [48, 64] → [24, 32]");
        assert_eq!(say("source", "params.synthetic.persons", json!(30), json!(40), json!({})), "data.persons 30 → 40");
        let aug = json!({"augment": [{"op": "hflip", "p": 0.3}, {"op": "jitter", "brightness": 0.4, "contrast": 0.0, "saturation": 0.0}]});
        assert_eq!(say("train", "params.augment[0].p", json!(0.5), json!(0.3), aug.clone()), "augment train: hflip 0.5 → 0.3");
        assert_eq!(say("train", "params.augment[1].brightness", json!(0.2), json!(0.4), aug), "augment train: jitter brightness 0.2 → 0.4");
        assert_eq!(
            say("evaluate", "params.augment", json!([{"op": "normalize"}]), json!([{"op": "resize"}, {"op": "normalize"}]), json!({})),
            "augment eval [normalize] → [resize, normalize]"
        );
        assert_eq!(
            reason("train", "env.backend", &Some(json!("cpu")), &Some(json!("cuda")), &json!({})),
            "train.backend \"cpu\" → \"cuda\""
        );
        let aug = json!({"params": {"augment": [{"op": "hflip", "p": 0.5}]}});
        assert_eq!(label("train", "params.augment[0].p", &aug), "augment train: hflip");
        assert_eq!(label("train", "params.train.epochs", &json!({})), "train.epochs");
    }
}
