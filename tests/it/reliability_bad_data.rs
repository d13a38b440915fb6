//! Bad data through the CLI: each case breaks one thing in an otherwise good dataset, weights
//! file or configuration, runs the real binary, and pins the exit status (1: an error, never
//! a panic) and the first line of the message. The library-level cases (missing column,
//! non-numeric age, duplicate id, …) live in `tests/it/data_layout.rs`; these are the ones that
//! only show up end to end.

use crate::common;
use common::{Ran, Space, table_row};

/// A dataset in the competition layout under `d/` and a pipeline reading it.
fn dataset_space() -> Space {
    let s = Space::new();
    common::synth(&s, "d", 12, 3);
    s.write(
        "p.mf",
        "\
data { root = \"d\" }
split by person { val = 0.25; stratify = [gender]; seed = 1 }
prepare { size = 24x32 }
model tiny_cnn {}
train { epochs = 1; batch = 8 }
",
    );
    s
}

/// The first line of stderr, after checking the run failed with status 1 (not a panic).
#[track_caller]
fn first_error_line(run: &Ran) -> String {
    let stderr = run.fails();
    assert_eq!(run.status, 1, "{stderr}");
    let first = stderr.lines().next().unwrap_or_default().to_string();
    table_row("bad_data", &[&run.status.to_string(), &format!("`` {} ``", first.replace('|', "\\|"))]);
    first
}

/// Prints one row for the table in docs/reliability.md (collected by scripts/reliability.sh).
/// The first image of the first person folder, relative to the space.
fn first_image(s: &Space) -> String {
    let mut persons: Vec<_> = std::fs::read_dir(s.path("d/train/images")).unwrap().flatten().map(|e| e.path()).collect();
    persons.sort();
    let mut images: Vec<_> = std::fs::read_dir(&persons[0])
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    images.sort();
    images[0].strip_prefix(s.dir.path()).unwrap().display().to_string()
}

#[test]
fn a_zero_byte_image_names_the_file() {
    let s = dataset_space();
    let image = first_image(&s);
    std::fs::write(s.path(&image), b"").unwrap();
    let run = s.run(&["run", "p.mf", "--until", "prepare"]);
    assert_eq!(first_error_line(&run), format!("error: step `prepare` failed: `{image}`: empty file (0 bytes)"));
}

#[test]
fn a_symlink_loop_under_the_data_root_is_an_error_not_a_hang() {
    let s = dataset_space();
    std::os::unix::fs::symlink(s.path("d/train"), s.path("d/train/images/loop")).unwrap();
    let run = s.run(&["run", "p.mf", "--until", "source"]);
    assert_eq!(first_error_line(&run), "error: d/train/images/loop: symlink loop");
}

#[test]
fn an_eval_info_csv_naming_missing_files_names_the_row() {
    let s = dataset_space();
    let info = s.read("d/eval/info.csv");
    s.write("d/eval/info.csv", &format!("{info}ghost.jpg,\n"));
    let line = info.lines().count() + 1;
    let run = s.run(&["run", "p.mf", "--until", "source"]);
    assert_eq!(
        first_error_line(&run),
        format!("error: step `source` failed: d/eval/info.csv:{line}: image `ghost.jpg` not found in d/eval/images")
    );
}

const B0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/timm/efficientnet_b0_18.safetensors");
const B0_IO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/timm/efficientnet_b0_18_io.safetensors");

#[test]
fn check_weights_rejects_a_file_that_is_not_safetensors() {
    let s = Space::new();
    s.write("w.safetensors", "this is a text file, not weights\n");
    let run = s.run(&["model", "check-weights", "--model", "efficientnet_b0", "--weights", "w.safetensors", "--io", B0_IO]);
    assert_eq!(first_error_line(&run), "error: w.safetensors: not a safetensors file (bad header)");
}

#[test]
fn check_weights_rejects_weights_of_the_wrong_shape() {
    // An 18-class checkpoint checked as a 10-class model: the classifier does not fit.
    let s = Space::new();
    let run = s.run(&["model", "check-weights", "--model", "efficientnet_b0", "--classes", "10", "--weights", B0, "--io", B0_IO]);
    assert_eq!(
        first_error_line(&run),
        format!(
            "error: {B0}: 2 tensor(s) do not fit the model (wrong architecture or class count?): \
             Shape mismatch for 'classifier.weight': expected Shape {{ dims: [1280, 10] }}, found Shape {{ dims: [1280, 18] }}; \
             Shape mismatch for 'classifier.bias': expected Shape {{ dims: [10] }}, found Shape {{ dims: [18] }}"
        )
    );
}

#[test]
fn check_weights_rejects_weights_of_another_architecture() {
    // B0 weights offered to a B1: the same widths, but B1 has more blocks.
    let s = Space::new();
    let run = s.run(&["model", "check-weights", "--model", "efficientnet_b1", "--weights", B0, "--io", B0_IO]);
    assert!(
        first_error_line(&run).starts_with(&format!("error: {B0}: 128 tensor(s) missing from the checkpoint, e.g. blocks.")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_backend_missing_from_the_build_is_a_clear_error() {
    let s = Space::new();
    // The default build has wgpu and not cuda; `--no-default-features` has neither.
    let backends = [
        ("cuda", cfg!(feature = "cuda"), "error: this build has no cuda backend; rebuild with `--features cuda`"),
        (
            "wgpu",
            cfg!(feature = "wgpu"),
            "error: this build has no wgpu backend (built with `--no-default-features`); rebuild with `--features wgpu`",
        ),
    ];
    let mut known = vec!["cpu"];
    for (backend, built, error) in backends {
        if built {
            known.push(backend);
            continue;
        }
        let run = s.run(&["model", "check-weights", "--backend", backend, "--model", "efficientnet_b0", "--weights", B0, "--io", B0_IO]);
        assert_eq!(run.status, 1, "{}", run.stderr);
        assert_eq!(first_error_line(&run), error);
    }
    let run = s.run(&["model", "bench", "--backend", "tpu", "--model", "tiny_cnn"]);
    assert_eq!(first_error_line(&run), format!("error: unknown backend \"tpu\"; known: {}", known.join(", ")));
}

#[test]
fn model_bench_measures_and_rejects_bad_sizes() {
    let s = Space::new();
    let run = s.run(&["model", "bench", "--model", "tiny_cnn", "--size", "32x24", "--batch", "4", "--steps", "1", "--json"]);
    let t: serde_json::Value = serde_json::from_str(run.ok()).unwrap();
    assert_eq!(
        (t["arch"].as_str(), t["batch"].as_u64(), t["height"].as_u64(), t["width"].as_u64()),
        (Some("tiny_cnn"), Some(4), Some(32), Some(24))
    );
    for key in ["train_images_per_second", "infer_images_per_second", "forward_seconds", "backward_seconds"] {
        assert!(t[key].as_f64().is_some_and(|v| v > 0.0 && v.is_finite()), "{key}: {t}");
    }
    for (size, batch) in [("32", "4"), ("0x8", "4"), ("axb", "4"), ("32x24", "0")] {
        let run = s.run(&["model", "bench", "--model", "tiny_cnn", "--size", size, "--batch", batch]);
        assert_eq!(run.status, 1, "{size} {batch}: {}", run.stderr);
        let expected = if batch == "0" {
            "error: --batch must be at least 1".to_string()
        } else {
            format!("error: --size {size:?}: expected HxW, e.g. 224x224")
        };
        assert_eq!(first_error_line(&run), expected);
    }
}

fn pretrained_space(weights: &str) -> Space {
    let s = dataset_space();
    let p = s.read("p.mf").replace("model tiny_cnn {}", &format!("model efficientnet_b0 {{ pretrained = \"{weights}\" }}"));
    s.write("p.mf", &p);
    s
}

#[test]
fn a_pipeline_with_pretrained_weights_that_are_not_safetensors_fails_at_train() {
    let s = pretrained_space("w.safetensors");
    s.write("w.safetensors", "{\"not\": \"weights\"}");
    let run = s.run(&["run", "p.mf", "--until", "train"]);
    assert_eq!(
        first_error_line(&run),
        "error: step `train` failed: w.safetensors: not a safetensors file (header length 2322206441343951483)"
    );
}

#[test]
fn a_pipeline_with_pretrained_weights_of_the_wrong_shape_fails_at_train() {
    // B0 weights in a B2 (wider layers).
    let s = pretrained_space(B0);
    let p = s.read("p.mf").replace("model efficientnet_b0", "model efficientnet_b2");
    s.write("p.mf", &p);
    let run = s.run(&["run", "p.mf", "--until", "train"]);
    let first = first_error_line(&run);
    let expected = format!(
        "error: step `train` failed: {B0}: 239 tensor(s) do not fit the model (wrong architecture or class count?): Shape mismatch for '"
    );
    assert!(first.starts_with(&expected), "{first}");
}

#[test]
fn a_learning_rate_of_1e30_is_refused_before_anything_runs() {
    let s = dataset_space();
    let p = s.read("p.mf").replace("train { epochs = 1; batch = 8 }", "train { epochs = 2; batch = 8; optimizer = sgd(lr = 1e30) }");
    s.write("p.mf", &p);
    let run = s.run(&["run", "p.mf", "--until", "train"]);
    assert_eq!(first_error_line(&run), "error: `lr` must be above 0 and at most 10, found 1e30");
    assert!(run.stderr.contains("p.mf:5:"), "{}", run.stderr);
    assert!(!s.path("cache/records").exists() || walk(&s.path("cache/records")) == 0, "nothing ran");
}

fn walk(dir: &std::path::Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().flatten().filter(|e| e.file_type().is_file()).count()
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_epoch_and_step() {
    // The checker caps the learning rate at 10, which does not diverge on this data; class
    // weights at the top of the f32 range overflow the loss on the first step instead.
    let s = dataset_space();
    let weights = vec!["3e38"; 18].join(", ");
    let p = s.read("p.mf").replace(
        "train { epochs = 1; batch = 8 }",
        &format!("loss cross_entropy {{ class_weights = [{weights}] }}\ntrain {{ epochs = 2; batch = 8 }}"),
    );
    s.write("p.mf", &p);
    let run = s.run(&["run", "p.mf", "--until", "train"]);
    assert_eq!(
        first_error_line(&run),
        "error: step `train` failed: non-finite training loss (inf) at epoch 1, step 1 of 7; no epoch completed, so no checkpoint"
    );
    // The steps before train were kept, and nothing half-done was recorded.
    let again = s.run(&["run", "p.mf", "--until", "prepare"]);
    assert!(again.step_lines().iter().all(|l| l.starts_with("hit ")), "{}", again.stdout);
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
}

#[test]
fn class_weights_beyond_f32_are_an_error_not_a_panic() {
    let s = dataset_space();
    let weights = vec!["1e300"; 18].join(", ");
    let p = s.read("p.mf").replace(
        "train { epochs = 1; batch = 8 }",
        &format!("loss cross_entropy {{ class_weights = [{weights}] }}\ntrain {{ epochs = 2; batch = 8 }}"),
    );
    s.write("p.mf", &p);
    let run = s.run(&["run", "p.mf", "--until", "train"]);
    assert_eq!(first_error_line(&run), "error: step `train` failed: class weights must be finite and non-negative");
}
