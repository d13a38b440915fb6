//! The prepare step: decode and resize every train and eval image once into uint8 shards.
//! Per-image results are cached in `cache/pixels/` by (image digest, prepare params), so a
//! change to one image re-decodes only that image.

use super::data_steps::{SourceIndex, dataset_dirs};
use super::{Inputs, StepOutput, put_json};
use crate::cache::Cache;
use crate::cache::manifest::Manifest;
use crate::data::prepare::{self, Crop, OnBadImage, PixelCache, PrepareParams};
use crate::ir;
use crate::plan::{Plan, Step};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which source image each shard row holds (rows differ from the index only when
/// `on_bad_image = skip` left images out).
#[derive(Debug, Serialize, Deserialize)]
pub struct ShardRows {
    /// `train_rows[r]` = index into the train index's images.
    pub train_rows: Vec<usize>,
    /// Eval images are never skipped: a submission needs every row.
    pub eval_rows: Vec<usize>,
    /// Train images left out, with the reason.
    pub skipped: Vec<(String, String)>,
}

pub fn params(p: &ir::Prepare) -> PrepareParams {
    let crop = match &p.crop {
        ir::Crop::None => Crop::None,
        ir::Crop::Center { size } => Crop::Center { w: size[0], h: size[1] },
        ir::Crop::Face => Crop::Face,
    };
    PrepareParams::new(p.size[0], p.size[1], crop)
}

/// The step that a role of `step` depends on.
pub fn dep_step<'p>(plan: &'p Plan, step: &Step, role: &str) -> Result<&'p Step> {
    let (_, i) =
        step.deps.iter().find(|(r, _)| *r == role).with_context(|| format!("internal: `{}` has no `{role}` dependency", step.name))?;
    Ok(&plan.steps[*i])
}

pub fn run(cache: &mut Cache, plan: &Plan, step: &Step, inputs: &Inputs) -> Result<StepOutput> {
    let ir = plan.pipeline_ir(step);
    let source_step = dep_step(plan, step, "source")?;
    let source_record = inputs.record("source")?.clone();
    let (train_dir, eval_dir) = dataset_dirs(cache, plan, source_step, &source_record)?;
    let index: SourceIndex = inputs.json(cache, "source", "index.json")?;
    let manifest_bytes = cache.read_blob(&inputs.output("source", "manifest")?.digest.clone())?;
    let manifest = Manifest::from_text(&String::from_utf8_lossy(&manifest_bytes)).context("the source manifest does not parse")?;
    let digests: HashMap<&str, [u8; 32]> = manifest.files.iter().map(|f| (f.path.as_str(), f.digest.0)).collect();
    let lookup = |prefix: &str, dir: &Path, rel: &Path| -> Result<(PathBuf, [u8; 32])> {
        let key = format!("{prefix}/{}", rel.to_string_lossy());
        let digest = digests.get(key.as_str()).with_context(|| format!("{}: not in the source manifest", dir.join(rel).display()))?;
        Ok((dir.join(rel), *digest))
    };
    let train_images: Vec<(PathBuf, [u8; 32])> =
        index.train.images.iter().map(|img| lookup("train", &train_dir, &img.path)).collect::<Result<_>>()?;
    let eval_images: Vec<(PathBuf, [u8; 32])> = match (&index.eval, &eval_dir) {
        (Some(eval), Some(dir)) => eval.images.iter().map(|img| lookup("eval", dir, &img.path)).collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    let params = params(&ir.prepare);
    let pixels = PixelCache::new(cache.root().join("pixels"));
    let tmp = cache.temp_dir("prepare")?;
    let on_bad = match ir.data.on_bad_image {
        ir::BadImagePolicy::Error => OnBadImage::Fail,
        ir::BadImagePolicy::Skip => OnBadImage::Skip,
    };
    let train_shard = tmp.join("train.shard");
    let train_stats = prepare::build_shard_with(&train_images, &params, &pixels, &train_shard, on_bad)?;
    let mut out = StepOutput::default();
    out.outputs.insert("train.shard".into(), cache.put_file(&train_shard)?);
    let mut decoded = train_stats.decoded;
    let mut reused = train_stats.reused;
    let mut eval_rows = Vec::new();
    if !eval_images.is_empty() {
        let eval_shard = tmp.join("eval.shard");
        let eval_stats = prepare::build_shard_with(&eval_images, &params, &pixels, &eval_shard, OnBadImage::Fail)?;
        out.outputs.insert("eval.shard".into(), cache.put_file(&eval_shard)?);
        decoded += eval_stats.decoded;
        reused += eval_stats.reused;
        eval_rows = eval_stats.kept;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let skipped = train_stats.skipped.iter().map(|(i, e)| (train_images[*i].0.display().to_string(), e.to_string())).collect::<Vec<_>>();
    let rows = ShardRows { train_rows: train_stats.kept, eval_rows, skipped };
    let mut summary = format!(
        "{} train + {} eval images at {}x{}: {decoded} decoded, {reused} reused",
        rows.train_rows.len(),
        rows.eval_rows.len(),
        params.width,
        params.height
    );
    if !rows.skipped.is_empty() {
        summary.push_str(&format!(", {} skipped", rows.skipped.len()));
    }
    put_json(cache, &mut out, "rows.json", &rows)?;
    out.summary = Some(summary);
    Ok(out)
}
