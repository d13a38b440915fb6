//! Shards in parts: a one-image change rewrites only the part that holds the image, the
//! other parts are reused by recipe, and `verify` still recomputes everything.

use crate::common;

use common::{Space, synth};

/// prepare's outputs (name → digest) from the pipeline's lockfile.
fn prepare_outputs(s: &Space) -> Vec<(String, String)> {
    let lock: serde_json::Value = serde_json::from_str(&s.read("p.mf.lock")).unwrap();
    let outputs = lock["steps"]["prepare"]["outputs"].as_object().expect("prepare outputs in the lock").clone();
    outputs.into_iter().map(|(k, v)| (k, v.as_str().unwrap().to_string())).collect()
}

fn prepare_summary(json: &str) -> String {
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    let steps = report["steps"].as_array().unwrap();
    let prepare = steps.iter().find(|s| s["kind"] == "prepare").expect("a prepare step");
    prepare["summary"].as_str().unwrap_or_default().to_string()
}

#[test]
fn one_changed_image_rewrites_one_part_and_reuses_the_others() {
    let s = Space::new();
    // 150 persons x 7 = 1,050 train images: two parts of 1,024 and 26.
    synth(&s, "data", 150, 2);
    s.write("p.mf", "data { root = \"data\" }\nprepare { size = 12x16 }\nmodel tiny_cnn {}\n");
    let args = ["run", "p.mf", "--until", "prepare", "--json"];
    let first = prepare_summary(s.run(&args).ok());
    assert_eq!(first, "1050 train + 14 eval images at 12x16: 1064 decoded, 0 reused");
    let before = prepare_outputs(&s);
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["eval.shard.0000", "rows.json", "train.shard.0000", "train.shard.0001"]);

    // The last person's `normal` image is in the second part; change its pixels.
    let csv = s.read("data/train/train.csv");
    let last = csv.lines().last().unwrap().rsplit(',').next().unwrap().to_string();
    let dir = s.path(&format!("data/train/images/{last}"));
    let victim = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_stem().is_some_and(|n| n == "normal"))
        .expect("a normal image");
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&victim, &bytes).unwrap();

    let again = prepare_summary(s.run(&args).ok());
    assert_eq!(again, "1050 train + 14 eval images at 12x16: 1 decoded, 1063 reused");
    let after = prepare_outputs(&s);
    let digest = |v: &[(String, String)], name: &str| v.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(digest(&before, "train.shard.0000"), digest(&after, "train.shard.0000"), "the untouched part is reused");
    assert_eq!(digest(&before, "eval.shard.0000"), digest(&after, "eval.shard.0000"));
    assert_ne!(digest(&before, "train.shard.0001"), digest(&after, "train.shard.0001"), "the part with the image changes");

    // verify bypasses the pixel cache and the part memos, and still agrees bit for bit.
    let out = s.run(&["verify", "p.mf", "--steps", "prepare"]);
    assert!(out.ok().contains("prepare: reproducible"), "{}", out.stdout);

    // A memo naming a missing object is ignored: the part is rebuilt, not trusted.
    let memo_dir = s.path("cache/pixels/parts");
    assert!(memo_dir.is_dir());
    let objects = |name: &str| {
        let hex = digest(&after, name);
        s.path(&format!("cache/objects/{}/{}", &hex[..2], &hex[2..]))
    };
    std::fs::remove_file(objects("train.shard.0000")).unwrap();
    let rerun = s.run(&["run", "p.mf", "--until", "prepare", "--force", "prepare", "--json"]);
    assert_eq!(prepare_summary(rerun.ok()), "1050 train + 14 eval images at 12x16: 0 decoded, 1064 reused");
    assert!(objects("train.shard.0000").exists(), "the missing part was rebuilt from the pixel cache");
    assert_eq!(prepare_outputs(&s), after);
}
