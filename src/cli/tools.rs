//! The tools around pipelines: `synth`, `data stats`, `model info`, `model check-weights`, `model bench`,
//! `score`.

use crate::data::labels::NUM_CLASSES;
use anyhow::{Context, Result, anyhow};
use std::path::Path;

pub(super) fn synth(persons: usize, eval_persons: usize, seed: u64, size: (u32, u32), out: &Path) -> Result<i32> {
    if out.exists() {
        return Err(anyhow!("{}: already exists; choose a new --out directory", out.display()));
    }
    let started = std::time::Instant::now();
    let params = crate::data::synth::SynthParams { persons, eval_persons, seed, width: size.0, height: size.1 };
    let summary = crate::data::synth::generate(&params, out)?;
    println!(
        "wrote {} ({} train persons, {} eval persons, {} images) in {:.1}s",
        out.display(),
        persons,
        eval_persons,
        summary.train_images + summary.eval_images,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

pub(super) fn data_stats(dir: &Path, age_bins: [u32; 2], svg: &Path) -> Result<i32> {
    let train_dir = if dir.join("train.csv").is_file() { dir.to_path_buf() } else { dir.join("train") };
    let index = crate::data::layout::read_train(&train_dir, crate::data::layout::BadImagePolicy::Error)?;
    let stats = crate::data::stats::stats(&index, age_bins);
    print!("{}", crate::data::stats::render_table(&stats));
    let chart = crate::charts::stats::svg_of(&stats)?;
    crate::fsutil::write_atomic(svg, chart.as_bytes()).with_context(|| format!("{}: cannot write", svg.display()))?;
    println!("chart: {}", svg.display());
    Ok(0)
}

pub(super) fn model_info(name: &str, classes: usize, json: bool) -> Result<i32> {
    let info = crate::model::info(name, classes)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "{}: {} trainable parameters with {} classes (default input {}x{})",
            info.arch, info.params, info.classes, info.default_input, info.default_input
        );
    }
    Ok(0)
}

pub(super) fn model_bench(
    backend: &str,
    precision: crate::train::Precision,
    model: &str,
    size: &str,
    batch: usize,
    steps: usize,
    json: bool,
) -> Result<i32> {
    let parsed = size.split_once('x').and_then(|(h, w)| Some((h.trim().parse::<usize>().ok()?, w.trim().parse::<usize>().ok()?)));
    let Some((height, width)) = parsed.filter(|&(h, w)| h > 0 && w > 0) else {
        anyhow::bail!("--size {size:?}: expected HxW, e.g. 224x224");
    };
    if batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    let t = crate::train::measure_on(backend, precision, model, batch, height, width, steps)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        println!(
            "{model} on {backend} in {}, batch {batch}, {height}x{width}: train {:.2} img/s (step {:.3} s = forward {:.3} + backward {:.3} + optimizer {:.3}), inference {:.2} img/s; warm-up step {:.2} s",
            precision.name(),
            t.train_images_per_second,
            t.forward_seconds + t.backward_seconds + t.optimizer_seconds,
            t.forward_seconds,
            t.backward_seconds,
            t.optimizer_seconds,
            t.infer_images_per_second,
            t.warmup_seconds
        );
    }
    Ok(0)
}

pub(super) fn check_weights(backend: &str, model: &str, classes: usize, weights: &Path, io: &Path, tol: f64) -> Result<i32> {
    let report = crate::train::check_weights_on(backend, model, classes, weights, io, tol)?;
    let verdict = if report.passed { "ok" } else { "FAILED" };
    println!("{}: max |Δlogit| = {:.3e} (tolerance {:.1e}): {verdict}", weights.display(), report.max_abs_diff, report.tol);
    Ok(if report.passed { 0 } else { 1 })
}

/// Reads a two-column CSV (`id,value`) with a header, keyed by id.
fn read_id_csv(path: &Path, value_column: &str) -> Result<Vec<(String, u32)>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: no header", path.display()))?.clone();
    let id_col = headers.iter().position(|h| h == "ImageID").with_context(|| format!("{}: no `ImageID` column", path.display()))?;
    let val_col =
        headers.iter().position(|h| h == value_column).with_context(|| format!("{}: no `{value_column}` column", path.display()))?;
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{}:{line}: malformed row", path.display()))?;
        let value = record.get(val_col).unwrap_or("").trim();
        let class: u32 = value
            .parse()
            .ok()
            .filter(|c| (*c as usize) < NUM_CLASSES)
            .with_context(|| format!("{}:{line}: `{value}` is not a class 0..{}", path.display(), NUM_CLASSES - 1))?;
        rows.push((record.get(id_col).unwrap_or("").to_string(), class));
    }
    Ok(rows)
}

pub(super) fn score(submission: &Path, labels: &Path, json: bool) -> Result<i32> {
    let predicted = read_id_csv(submission, "ans")?;
    let truth: std::collections::HashMap<String, u32> = read_id_csv(labels, "class")?.into_iter().collect();
    let (mut y_true, mut y_pred) = (Vec::new(), Vec::new());
    for (id, ans) in &predicted {
        let t = truth.get(id).with_context(|| format!("{}: image `{id}` has no label in {}", submission.display(), labels.display()))?;
        y_true.push(*t);
        y_pred.push(*ans);
    }
    if y_true.len() != truth.len() {
        return Err(anyhow!("{}: {} rows, but {} has {} labels", submission.display(), y_true.len(), labels.display(), truth.len()));
    }
    let f1 = crate::metrics::macro_f1(&y_true, &y_pred);
    let acc = crate::metrics::accuracy(&y_true, &y_pred);
    if json {
        println!("{}", serde_json::json!({ "macro_f1": f1, "accuracy": acc, "images": y_true.len() }));
    } else {
        println!("macro-F1 {f1:.4}, accuracy {acc:.4} over {} images", y_true.len());
    }
    Ok(0)
}

/// `maskflow init [DIR]`: the starter layout, and what to type next.
pub(super) fn init(dir: &Path) -> Result<i32> {
    let report = crate::project::init(dir).with_context(|| format!("{}: cannot write the starter layout", dir.display()))?;
    let shown = |p: &Path| if dir == Path::new(".") { p.display().to_string() } else { dir.join(p).display().to_string() };
    for p in &report.created {
        println!("created {}", shown(p));
    }
    for p in &report.kept {
        println!("kept {} (already there)", shown(p));
    }
    if !report.ignored.is_empty() {
        println!("added {} to {}", report.ignored.join(" and "), shown(Path::new(".gitignore")));
    }
    let cd = if dir == Path::new(".") { String::new() } else { format!("cd {} && ", dir.display()) };
    println!("next:");
    println!(
        "  {cd}maskflow synth --out data/mask --persons 200 --eval-persons 20 --size 96x128   # a trial dataset (or put the competition's train/ and eval/ under data/mask/)"
    );
    println!("  maskflow run pipelines/starter.mf");
    Ok(0)
}
