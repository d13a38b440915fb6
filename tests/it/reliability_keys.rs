//! A record's key object must hash to the record's name after a trip through JSON, or the
//! record reads back as corrupt and its step reruns forever. Floats are where this can break.

use maskflow::canonical;

fn survives_json(value: serde_json::Value) -> bool {
    let text = serde_json::to_vec_pretty(&value).unwrap();
    let back: serde_json::Value = serde_json::from_slice(&text).unwrap();
    canonical::digest(&back) == canonical::digest(&value)
}

#[test]
fn ordinary_floats_survive_a_json_round_trip() {
    for x in [0.2, 1e-3, 3e-4, 0.05, 0.999, 1e-8, 10.0, 0.1 + 0.2] {
        assert!(survives_json(serde_json::json!({ "lr": x })), "{x}");
    }
}

/// JSON float parsing need not give back every f64 bit for bit (serde_json without
/// `float_roundtrip`), so a record keeps the exact canonical text it was hashed from and
/// verification hashes that text: a record with any float reads back as intact.
#[test]
fn records_with_any_float_read_back_intact() {
    use maskflow::cache::{Cache, RECORD_FORMAT, Record};
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let mut values = vec![1e-30, 3e38, 10.0, 1e-8];
    let mut x = 1e-40f64;
    while x < 1e40 {
        values.extend([1.0, 1.5, 2.2, 3.3, 7.7].map(|m| x * m));
        x *= 10.0;
    }
    for v in values {
        let key_object = serde_json::json!({ "kind": "train", "params": { "eps": v } });
        let record = Record {
            format: RECORD_FORMAT,
            kind: "train".into(),
            key: canonical::digest(&key_object),
            key_text: canonical::json(&key_object),
            key_object,
            outputs: Default::default(),
            metrics: None,
            finished: "2026-11-28T00:00:00Z".into(),
            seconds: 0.0,
            maskflow_version: "0".into(),
        };
        cache.write_record(&record).unwrap();
        let back = cache.read_record(&record.key).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert!(back.is_some(), "{v}");
    }
}
