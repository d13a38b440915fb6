//! Canonical JSON and its digest: how a key object becomes a step key.
//!
//! Canonical means object keys sorted at every level, no whitespace, and serde_json's
//! shortest round-trip floats, so that two equal values always give the same text. It lives
//! below both `plan` (which hashes key objects into keys) and `cache` (which re-hashes a
//! record's key text to check it), so neither depends on the other for it. What goes *into*
//! a key object is `plan::key`'s business.

use crate::digest::Digest;
use serde_json::Value;

/// Writes `value` as canonical JSON: object keys sorted, no whitespace.
pub fn json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The digest of a value's canonical JSON: a step key is this digest of its key object.
pub fn digest(value: &Value) -> Digest {
    Digest::of(json(value).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": 0.5}});
        assert_eq!(json(&a), r#"{"a":{"c":0.5,"z":[1,{"x":3,"y":2}]},"b":1}"#);
    }

    #[test]
    fn equal_objects_hash_equal_whatever_the_insertion_order() {
        let a = json!({"kind": "split", "params": {"seed": 42, "val": 0.2}});
        let mut b = serde_json::Map::new();
        b.insert("params".into(), json!({"val": 0.2, "seed": 42}));
        b.insert("kind".into(), json!("split"));
        assert_eq!(digest(&a), digest(&Value::Object(b)));
        assert_ne!(digest(&a), digest(&json!({"kind": "split", "params": {"seed": 7, "val": 0.2}})));
    }
}
