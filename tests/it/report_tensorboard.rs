//! TensorBoard's own reader on the event files of a run: `tensorboard` from PyPI (the venv of
//! `scripts/py-venv.sh`, which `.ci/run` makes) loads `saved/p/latest/tb/<variant>/` through
//! `EventAccumulator`, and every scalar equals the run's `history.json` (as float32) and, at the
//! best epoch, `metrics.json`; every record's CRCs are checked with TensorFlow's masked CRC-32C.
//! A second, all-hit run republishes the files from the cache.
//!
//! `MASKFLOW_SKIP_TENSORBOARD=1` skips this test explicitly, as the browser test is skipped.

use crate::common::{Space, TINY};
use std::path::{Path, PathBuf};

const READ: &str = r#"
import json, struct, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
out = {}
for d in sys.argv[1:]:
    acc = EventAccumulator(d, size_guidance={"scalars": 0})
    acc.Reload()
    out[d] = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    # Every record's two CRCs, as TensorFlow's reader checks them.
    import glob
    for f in glob.glob(d + "/events.out.tfevents.*"):
        data = open(f, "rb").read()
        i = 0
        while i < len(data):
            header = data[i:i + 8]
            (n,) = struct.unpack("<Q", header)
            (hcrc,) = struct.unpack("<I", data[i + 8:i + 12])
            body = data[i + 12:i + 12 + n]
            (bcrc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
            assert masked_crc32c(header) == hcrc, f"{f}: bad length CRC at {i}"
            assert masked_crc32c(body) == bcrc, f"{f}: bad data CRC at {i}"
            i += 16 + n
print(json.dumps(out))
"#;

fn python() -> Option<PathBuf> {
    if std::env::var_os("MASKFLOW_SKIP_TENSORBOARD").is_some() {
        eprintln!("MASKFLOW_SKIP_TENSORBOARD set: TensorBoard's reading of the event files not checked");
        return None;
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-venv/bin/python");
    assert!(python.exists(), "{}: missing; run scripts/py-venv.sh (or set MASKFLOW_SKIP_TENSORBOARD=1)", python.display());
    Some(python)
}

fn read_events(python: &Path, dirs: &[PathBuf]) -> serde_json::Value {
    let out = std::process::Command::new(python).arg("-c").arg(READ).args(dirs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tensorboard_reads_every_scalar_of_every_variant() {
    let Some(python) = python() else { return };
    let s = Space::new();
    let pipeline =
        TINY.replace("train { epochs = 1; batch = 8 }", "train { epochs = 3; batch = 8; optimizer = adamw(lr = sweep[1e-3, 3e-3]) }");
    assert_ne!(pipeline, TINY);
    s.write("p.mf", &pipeline);
    s.run(&["run", "p.mf"]).ok();
    let tb = s.path("saved/p/latest/tb");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&tb).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    let names: Vec<String> = dirs.iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["train.optimizer.lr=1e-3", "train.optimizer.lr=3e-3"]);
    let seen = read_events(&python, &dirs);
    for (dir, name) in dirs.iter().zip(&names) {
        let scalars = &seen[dir.to_str().unwrap()];
        // The evaluation of this variant: its history and metrics in saved/.
        let step_dir = s.path(&format!("saved/p/latest/evaluate[{name}]"));
        let history: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(step_dir.join("history.json")).unwrap()).unwrap();
        let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(step_dir.join("metrics.json")).unwrap()).unwrap();
        assert_eq!(history.len(), 3);
        let fields = [
            ("loss/train", "/train_loss"),
            ("loss/val", "/val_loss"),
            ("f1/val_macro", "/val_f1"),
            ("f1/val_mask", "/val_task_f1/mask"),
            ("f1/val_gender", "/val_task_f1/gender"),
            ("f1/val_age", "/val_task_f1/age"),
            ("f1/train_macro", "/train_f1"),
            ("accuracy/val", "/val_accuracy"),
            ("lr", "/lr"),
        ];
        let tags: Vec<&str> = scalars.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(tags.len(), fields.len(), "{tags:?}");
        for (tag, pointer) in fields {
            let events = scalars[tag].as_array().unwrap_or_else(|| panic!("{name}: no scalar {tag}"));
            assert_eq!(events.len(), 3, "{name} {tag}");
            for (epoch, (event, record)) in events.iter().zip(&history).enumerate() {
                let (step, value) = (event[0].as_i64().unwrap(), event[1].as_f64().unwrap());
                let want = record.pointer(pointer).unwrap().as_f64().unwrap();
                assert_eq!(step, epoch as i64 + 1, "{name} {tag}");
                assert_eq!(value as f32, want as f32, "{name} {tag} epoch {}", epoch + 1);
            }
        }
        // The best epoch is the last one that improved on all before it.
        let best = history.iter().rposition(|r| r["is_best"] == true).unwrap();
        let at_best = |tag: &str| scalars[tag][best][1].as_f64().unwrap() as f32;
        assert_eq!(at_best("f1/val_macro"), metrics["macro_f1"].as_f64().unwrap() as f32, "{name}");
        for task in ["mask", "gender", "age"] {
            assert_eq!(at_best(&format!("f1/val_{task}")), metrics["per_task"][task].as_f64().unwrap() as f32, "{name} {task}");
        }
    }

    // All hits: the files are published again, from the cache.
    let second = s.run(&["run", "p.mf"]);
    assert!(second.step_lines().iter().all(|l| l.starts_with("hit ")), "{}", second.stdout);
    let again: Vec<PathBuf> = names.iter().map(|n| s.path(&format!("saved/p/latest/tb/{n}"))).collect();
    let reread = read_events(&python, &again);
    for (old, new) in dirs.iter().zip(&again) {
        assert_eq!(seen[old.to_str().unwrap()], reread[new.to_str().unwrap()]);
    }
}
