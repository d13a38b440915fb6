//! The data steps: source (index the dataset), relabel (fix labels), split (by person).

use super::{Inputs, StepOutput, put_json};
use crate::cache::Cache;
use crate::cache::manifest::Manifest;
use crate::data::labels::Gender as DataGender;
use crate::data::layout::{self, EvalIndex, TrainIndex};
use crate::data::relabel::{self, Fix, Fixes, RelabelReport, Sample};
use crate::data::split::{self, SplitFile, StratifyKey};
use crate::data::synth;
use crate::ir::{self, Source, SplitScheme};
use crate::plan::{FileRole, Plan, Role, Step};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The source step's index output. Paths inside are relative to the dataset directories,
/// never absolute: a moved dataset keeps its key, so the index must not name where it was.
#[derive(Debug, Serialize, Deserialize)]
pub struct SourceIndex {
    pub train: TrainIndex,
    pub eval: Option<EvalIndex>,
}

/// The relabel step's output: the fixed persons and one labelled sample per image.
#[derive(Debug, Serialize, Deserialize)]
pub struct Labels {
    pub train: TrainIndex,
    pub samples: Vec<Sample>,
}

/// Where the dataset of a source step lives now: the scanned directory, or the cached
/// synthetic tree. Used by every step that reads images.
pub fn dataset_dirs(cache: &mut Cache, source_step: &Step, source_record: &crate::cache::Record) -> Result<(PathBuf, Option<PathBuf>)> {
    if let Some(scanned) = &source_step.scanned {
        return Ok((scanned.train_dir.clone(), scanned.eval_dir.clone()));
    }
    let tree = source_record.outputs.get("dataset").context("the source record has no dataset; rerun with --force source")?.clone();
    let root = cache.tree_dir(&tree)?;
    let eval = Some(root.join("eval")).filter(|d| d.is_dir());
    Ok((root.join("train"), eval))
}

pub fn source(cache: &mut Cache, plan: &Plan, step: &Step) -> Result<StepOutput> {
    let ir = plan.pipeline_ir(step);
    let mut out = StepOutput::default();
    let (train_dir, eval_dir, manifest) = match (&ir.data.source, &step.scanned) {
        (Source::Dir { .. }, Some(scanned)) => (scanned.train_dir.clone(), scanned.eval_dir.clone(), scanned.manifest.clone()),
        (Source::Synthetic { persons, eval_persons, seed, size }, _) => {
            let tmp = cache.temp_dir("synth")?;
            let dataset = tmp.join("dataset");
            let params = synth::SynthParams {
                persons: *persons as usize,
                eval_persons: *eval_persons as usize,
                seed: *seed,
                width: size[0],
                height: size[1],
            };
            synth::generate(&params, &dataset).with_context(|| format!("generating synthetic data in {}", dataset.display()))?;
            let tree = cache.put_tree(&dataset)?;
            let _ = std::fs::remove_dir_all(&tmp);
            out.outputs.insert("dataset".into(), tree.clone());
            let root = cache.tree_dir(&tree)?;
            let mut manifest = Manifest::scan(&root, cache.stats())?;
            manifest.files.retain(|f| f.path.starts_with("train/") || f.path.starts_with("eval/"));
            let eval = Some(root.join("eval")).filter(|d| d.is_dir());
            (root.join("train"), eval, manifest)
        }
        (Source::Dir { .. }, None) => anyhow::bail!("internal: directory source was not scanned"),
    };
    let train = layout::read_train(&train_dir, super::bad_image_policy(ir.data.on_bad_image))?;
    let eval = match &eval_dir {
        Some(dir) => Some(layout::read_eval(dir)?),
        None => None,
    };
    let mut summary = format!("{} persons, {} images", train.persons.len(), train.images.len());
    if let Some(e) = &eval {
        summary.push_str(&format!(", {} eval images", e.images.len()));
    }
    if !train.skipped.is_empty() {
        summary.push_str(&format!(", {} skipped (on_bad_image = skip)", train.skipped.len()));
    }
    let manifest_out = cache.put_bytes(manifest.to_text().as_bytes())?;
    out.outputs.insert("manifest".into(), manifest_out);
    put_json(cache, &mut out, "index.json", &SourceIndex { train, eval })?;
    out.summary = Some(summary);
    Ok(out)
}

fn to_data_fix(f: &ir::PersonFix) -> Fix {
    Fix {
        gender: f.gender.map(|g| match g {
            ir::Gender::Male => DataGender::Male,
            ir::Gender::Female => DataGender::Female,
        }),
        age: f.age,
        swap_incorrect_normal: f.swap_incorrect_normal,
    }
}

pub fn relabel(cache: &mut Cache, plan: &Plan, step: &Step, inputs: &Inputs) -> Result<StepOutput> {
    let ir = plan.pipeline_ir(step);
    let index: SourceIndex = inputs.json(cache, Role::Source, "index.json")?;
    let mut train = index.train;
    // Fixes from the CSV first; inline fixes in the pipeline override them per person.
    let mut fixes: Fixes = match step.file(FileRole::RelabelCsv) {
        Some(csv) => relabel::read_fixes_csv(csv)?,
        None => Fixes::new(),
    };
    for (id, f) in &ir.relabel.fixes {
        fixes.insert(id.clone(), to_data_fix(f));
    }
    let report: RelabelReport = relabel::apply_fixes(&mut train, &fixes);
    let samples = relabel::label_samples(&train, ir.data.age_bins);
    let mut out = StepOutput {
        summary: Some(format!("{} fixes applied, {} warnings", report.changes.len(), report.warnings.len())),
        ..Default::default()
    };
    put_json(cache, &mut out, "labels.json", &Labels { train, samples })?;
    put_json(cache, &mut out, "relabel_report.json", &report)?;
    Ok(out)
}

pub fn split(cache: &mut Cache, plan: &Plan, step: &Step, inputs: &Inputs) -> Result<StepOutput> {
    let ir = plan.pipeline_ir(step);
    let labels: Labels = inputs.json(cache, Role::Relabel, "labels.json")?;
    let stratify: Vec<StratifyKey> = ir
        .split
        .stratify
        .iter()
        .map(|k| match k {
            ir::StratifyKey::Gender => StratifyKey::Gender,
            ir::StratifyKey::Age => StratifyKey::Age,
        })
        .collect();
    let persons = &labels.train.persons;
    let file: SplitFile = match ir.split.scheme {
        SplitScheme::Holdout { val } => split::holdout(persons, val, &stratify, ir.split.seed, ir.data.age_bins)?,
        SplitScheme::Kfold { k } => split::kfold(persons, k as usize, &stratify, ir.split.seed, ir.data.age_bins)?,
    };
    let summary = match file.folds.as_slice() {
        [one] => format!("{} train / {} val persons", one.train.len(), one.val.len()),
        folds => format!("{} folds of ~{} val persons", folds.len(), persons.len() / folds.len().max(1)),
    };
    let mut out = StepOutput { summary: Some(summary), ..Default::default() };
    put_json(cache, &mut out, "split.json", &file)?;
    Ok(out)
}
