//! The prepare step: decode and resize every train and eval image once into uint8 shards.
//!
//! Two levels of reuse keep a one-image change cheap:
//! - per image: prepared pixels are cached in `cache/pixels/` by (image digest, prepare
//!   params), so only the changed image is decoded;
//! - per part: each shard is written as parts of [`prepare::IMAGES_PER_PART`] source images
//!   (outputs `train.shard.0000`, `train.shard.0001`, ...). A part's recipe (params plus its
//!   images' digests) maps to the object that holds it (`cache/pixels/parts/<recipe>`), so
//!   only the part with the changed image is rewritten and re-hashed.
//!
//! Both are accelerators, never the source of truth: a memo naming a missing or damaged
//! object is ignored, `maskflow gc` may drop them, and `maskflow verify` bypasses both.

use super::data_steps::{SourceIndex, dataset_dirs};
use super::{Inputs, StepOutput, put_json};
use crate::cache::manifest::Manifest;
use crate::cache::{Cache, Dir, Output, OutputState};
use crate::data::layout::BadImagePolicy;
use crate::data::prepare::{self, Crop, PixelCache, PrepareParams};
use crate::data::shard::Shard;
use crate::digest::Digest;
use crate::ir;
use crate::plan::{Plan, Role, Step};
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
pub fn dep_step<'p>(plan: &'p Plan, step: &Step, role: Role) -> Result<&'p Step> {
    let (_, i) =
        step.deps.iter().find(|(r, _)| *r == role).with_context(|| format!("internal: `{}` has no `{role}` dependency", step.name))?;
    Ok(&plan.steps[*i])
}

pub fn run(cache: &mut Cache, plan: &Plan, step: &Step, inputs: &Inputs) -> Result<StepOutput> {
    let ir = plan.pipeline_ir(step);
    let source_step = dep_step(plan, step, Role::Source)?;
    let source_record = inputs.record(Role::Source)?.clone();
    let (train_dir, eval_dir) = dataset_dirs(cache, source_step, &source_record)?;
    let index: SourceIndex = inputs.json(cache, Role::Source, "index.json")?;
    let manifest_bytes = cache.read_blob(&inputs.output(Role::Source, "manifest")?.digest.clone())?;
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
    let tmp = cache.temp_dir("prepare")?;
    // `maskflow verify` recomputes: a throwaway pixel cache and no part reuse.
    let recompute = cache.recomputing();
    let pixels = PixelCache::new(if recompute { tmp.join("pixels") } else { cache.dir(Dir::Pixels) });
    let on_bad = super::bad_image_policy(ir.data.on_bad_image);
    let mut out = StepOutput::default();
    let mut parts = PartBuilder { cache, params: &params, pixels: &pixels, tmp: &tmp, reuse: !recompute };
    let train_stats = parts.build("train", &train_images, on_bad, &mut out)?;
    let mut decoded = train_stats.decoded;
    let mut reused = train_stats.reused;
    let mut eval_rows = Vec::new();
    if !eval_images.is_empty() {
        // Eval images are never skipped: a submission needs every row.
        let eval_stats = parts.build("eval", &eval_images, BadImagePolicy::Error, &mut out)?;
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

/// Writes one split's shard as parts, reusing parts built before from the same recipe.
struct PartBuilder<'a> {
    cache: &'a mut Cache,
    params: &'a PrepareParams,
    pixels: &'a PixelCache,
    tmp: &'a Path,
    reuse: bool,
}

impl PartBuilder<'_> {
    fn memo_path(&self, recipe: &[u8; 32]) -> PathBuf {
        let hex = Digest(*recipe).hex();
        self.cache.dir(Dir::PixelParts).join(&hex[..2]).join(&hex[2..])
    }

    /// The intact object a memo names, if any.
    fn reusable(&mut self, recipe: &[u8; 32]) -> Option<Output> {
        let text = std::fs::read_to_string(self.memo_path(recipe)).ok()?;
        let (digest, size) = text.trim().split_once(' ')?;
        let out = Output { digest: Digest::from_hex(digest)?, size: size.parse().ok()?, tree: false };
        (self.cache.check_output(&out) == OutputState::Ok).then_some(out)
    }

    fn build(
        &mut self,
        split: &str,
        images: &[(PathBuf, [u8; 32])],
        on_bad: BadImagePolicy,
        out: &mut StepOutput,
    ) -> Result<prepare::ShardStats> {
        let mut stats = prepare::ShardStats::default();
        for (k, chunk) in images.chunks(prepare::IMAGES_PER_PART).enumerate() {
            let first = k * prepare::IMAGES_PER_PART;
            let name = format!("{split}.shard.{k:04}");
            let recipe = prepare::part_recipe(chunk, self.params);
            if self.reuse
                && let Some(part) = self.reusable(&recipe)
            {
                stats.reused += chunk.len();
                stats.kept.extend(first..first + chunk.len());
                out.outputs.insert(name, part);
                continue;
            }
            let file = self.tmp.join(&name);
            let part_stats = prepare::build_shard_with(chunk, self.params, self.pixels, &file, on_bad)?;
            let part = self.cache.put_file(&file)?;
            // A part with skipped images is not memoised: its rows depend on which images
            // failed, and re-deriving that is the point of rerunning.
            if self.reuse && part_stats.skipped.is_empty() {
                let memo = self.memo_path(&recipe);
                if let Some(dir) = memo.parent() {
                    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
                }
                crate::fsutil::write_atomic(&memo, format!("{} {}\n", part.digest.hex(), part.size).as_bytes())
                    .with_context(|| format!("{}: cannot write", memo.display()))?;
            }
            stats.decoded += part_stats.decoded;
            stats.reused += part_stats.reused;
            stats.kept.extend(part_stats.kept.iter().map(|i| first + i));
            stats.skipped.extend(part_stats.skipped.into_iter().map(|(i, e)| (first + i, e)));
            out.outputs.insert(name, part);
        }
        Ok(stats)
    }
}

/// Opens a split's shard (`train` or `eval`) from the prepare record: its parts in order, or
/// the single `<split>.shard` output of records written before shards had parts.
pub fn open_shard(cache: &Cache, inputs: &Inputs, split: &str) -> Result<Shard> {
    let record = inputs.record(Role::Prepare)?;
    let prefix = format!("{split}.shard.");
    let mut paths: Vec<PathBuf> =
        record.outputs.iter().filter(|(name, _)| name.starts_with(&prefix)).map(|(_, o)| cache.object_path(&o.digest)).collect();
    if paths.is_empty()
        && let Some(single) = record.outputs.get(&format!("{split}.shard"))
    {
        paths.push(cache.object_path(&single.digest));
    }
    if paths.is_empty() {
        anyhow::bail!("the prepare record has no {split} shard; rerun with --force prepare");
    }
    Ok(Shard::open_parts(&paths)?)
}
