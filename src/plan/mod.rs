//! The planner: a loaded pipeline (all variants) → a DAG of keyed steps.
//!
//! Steps are created in dependency order, so each key can include the keys of the steps it
//! depends on. Variants (sweeps) and folds that produce the same key share one step; a step
//! gets a name suffix (`train[fold=1]`) only when its kind has several distinct steps.
//! Planning reads nothing but file stamps for an unchanged dataset: the source manifest is
//! built through the stat cache.

pub mod key;

use crate::cache::Cache;
use crate::cache::manifest::Manifest;
use crate::digest::Digest;
use crate::ir::{self, Pipeline, Source, SplitScheme};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Step kinds in pipeline order.
pub const KINDS: &[&str] = &["source", "relabel", "split", "prepare", "train", "evaluate", "predict", "ensemble"];

/// A directory source, scanned during planning and reused by the executor.
#[derive(Debug)]
pub struct ScannedSource {
    pub train_dir: PathBuf,
    pub eval_dir: Option<PathBuf>,
    /// Paths are prefixed `train/` and `eval/`.
    pub manifest: Manifest,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: &'static str,
    pub key: Digest,
    pub key_object: Value,
    /// Dependencies by role (`split`, `prepare`, …) → index into `Plan::steps`.
    pub deps: Vec<(&'static str, usize)>,
    /// The first variant that uses this step (its IR is what the step reads).
    pub variant: usize,
    /// The fold, for per-fold steps of a k-fold split.
    pub fold: Option<u32>,
    pub scanned: Option<Arc<ScannedSource>>,
    /// Resolved paths of files the step reads directly (relabel CSV, weights), by role.
    pub files: Vec<(&'static str, PathBuf)>,
}

#[derive(Debug)]
pub struct Plan {
    /// The pipeline path as the user gave it (the refs and `saved/` are named from it).
    pub pipeline: String,
    pub name: String,
    pub base_dir: PathBuf,
    pub variants: Vec<ir::Variant>,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    pub fn pipeline_ir(&self, step: &Step) -> &Pipeline {
        &self.variants[step.variant].pipeline
    }
}

/// Resolves a path written in a pipeline: relative paths are relative to the pipeline file.
pub fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) }
}

struct Builder<'a> {
    cache: &'a mut Cache,
    scans: HashMap<String, Arc<ScannedSource>>,
    /// Plan with placeholder digests for inputs that are missing (for `diff` of pipelines
    /// whose data is not on this machine) instead of failing.
    tolerate_missing: bool,
    base_dir: PathBuf,
    steps: Vec<Step>,
    by_key: HashMap<Digest, usize>,
    /// (step index) → the (variant, fold) labels that use it.
    users: Vec<Vec<(usize, Option<u32>)>>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kind: &'static str,
        params: Value,
        deps: Vec<(&'static str, usize)>,
        files: Vec<(&'static str, PathBuf, Digest)>,
        env: Option<Value>,
        variant: usize,
        fold: Option<u32>,
        scanned: Option<Arc<ScannedSource>>,
    ) -> usize {
        let mut object = json!({
            "kind": kind,
            "version": key::step_version(kind),
            "params": params,
            "deps": deps.iter().map(|(role, i)| (role.to_string(), Value::String(self.steps[*i].key.hex()))).collect::<serde_json::Map<_, _>>(),
            "files": files.iter().map(|(role, _, d)| (role.to_string(), Value::String(d.hex()))).collect::<serde_json::Map<_, _>>(),
        });
        if let Some(env) = env {
            object["env"] = env;
        }
        let key = key::hash_key_object(&object);
        if let Some(&i) = self.by_key.get(&key) {
            self.users[i].push((variant, fold));
            return i;
        }
        let i = self.steps.len();
        self.steps.push(Step {
            name: kind.to_string(),
            kind,
            key,
            key_object: object,
            deps,
            variant,
            fold,
            scanned,
            files: files.into_iter().map(|(role, path, _)| (role, path)).collect(),
        });
        self.by_key.insert(key, i);
        self.users.push(vec![(variant, fold)]);
        i
    }

    fn file_digest(&mut self, path: &Path, what: &str) -> Result<Digest> {
        if self.tolerate_missing && !path.exists() {
            return Ok(missing_placeholder(path));
        }
        let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read {what}", path.display()))?;
        if !meta.is_file() {
            bail!("{}: {what} is not a file", path.display());
        }
        self.cache.stats().digest(path, &meta).with_context(|| format!("{}: cannot read {what}", path.display()))
    }

    fn scan_source(&mut self, root: &str, eval: &Option<String>) -> Result<Arc<ScannedSource>> {
        let root = resolve(&self.base_dir, root);
        let train_dir = root.join("train");
        if !train_dir.is_dir() {
            bail!("{}: data directory not found (expected the competition layout: train/train.csv, train/images/)", train_dir.display());
        }
        let eval_dir = match eval {
            Some(e) => Some(resolve(&self.base_dir, e)),
            None => Some(root.join("eval")).filter(|d| d.is_dir()),
        };
        let mut manifest = Manifest::scan(&train_dir, self.cache.stats())?;
        for f in &mut manifest.files {
            f.path = format!("train/{}", f.path);
        }
        if let Some(dir) = &eval_dir {
            let eval_manifest = Manifest::scan(dir, self.cache.stats())?;
            manifest.files.extend(eval_manifest.files.into_iter().map(|mut f| {
                f.path = format!("eval/{}", f.path);
                f
            }));
        }
        Ok(Arc::new(ScannedSource { train_dir, eval_dir, manifest }))
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("IR serialises")
}

/// The compute environment of steps that run models: results depend on it bit for bit.
pub fn model_env(backend: ir::Backend) -> Value {
    json!({
        "backend": to_value(&backend),
        "burn": crate::BURN_VERSION,
    })
}

impl Builder<'_> {
    /// Adds the steps of one variant; returns its predict steps (one per fold).
    fn add_variant(&mut self, v: usize, p: &Pipeline) -> Result<Vec<usize>> {
        let base_dir = self.base_dir.clone();
        let mut predicts = Vec::new();
        // source
        let source = match &p.data.source {
            Source::Dir { root, eval } if self.tolerate_missing && !resolve(&base_dir, root).join("train").is_dir() => {
                let root_path = resolve(&base_dir, root);
                let params = json!({ "on_bad_image": to_value(&p.data.on_bad_image) });
                let placeholder = missing_placeholder(&root_path);
                self.add("source", params, vec![], vec![("manifest", root_path, placeholder)], None, v, None, None)
            }
            Source::Dir { root, eval } => {
                let scan_key = format!("{root}\0{eval:?}");
                let scanned = match self.scans.get(&scan_key) {
                    Some(s) => s.clone(),
                    None => {
                        let s = self.scan_source(root, eval)?;
                        self.scans.insert(scan_key, s.clone());
                        s
                    }
                };
                let manifest_digest = scanned.manifest.digest();
                let params = json!({ "on_bad_image": to_value(&p.data.on_bad_image) });
                let root_path = scanned.train_dir.parent().unwrap_or(Path::new(".")).to_path_buf();
                self.add("source", params, vec![], vec![("manifest", root_path, manifest_digest)], None, v, None, Some(scanned))
            }
            Source::Synthetic { .. } => {
                let params = json!({
                    "synthetic": to_value(&p.data.source),
                    "generator": crate::data::synth::GENERATOR_VERSION,
                    "on_bad_image": to_value(&p.data.on_bad_image),
                });
                self.add("source", params, vec![], vec![], None, v, None, None)
            }
        };
        // relabel
        let mut files = Vec::new();
        if let Some(csv) = &p.relabel.csv {
            let path = resolve(&base_dir, csv);
            let d = self.file_digest(&path, "relabel file")?;
            files.push(("relabel_csv", path, d));
        }
        let params = json!({ "fixes": to_value(&p.relabel.fixes), "age_bins": to_value(&p.data.age_bins) });
        let relabel = self.add("relabel", params, vec![("source", source)], files, None, v, None, None);
        // split
        let split = self.add("split", to_value(&p.split), vec![("relabel", relabel)], vec![], None, v, None, None);
        // prepare
        let prepare = self.add("prepare", to_value(&p.prepare), vec![("source", source)], vec![], None, v, None, None);
        // per-fold training, evaluation and prediction
        let folds: Vec<Option<u32>> = match p.split.scheme {
            SplitScheme::Holdout { .. } => vec![None],
            SplitScheme::Kfold { k } => (0..k).map(Some).collect(),
        };
        let mut weights = Vec::new();
        if let Some(w) = &p.model.pretrained {
            let path = resolve(&base_dir, w);
            let d = self.file_digest(&path, "pretrained weights")?;
            weights.push(("pretrained", path, d));
        }
        for fold in folds {
            let params = json!({
                "fold": fold,
                "augment": to_value(&p.augment.train),
                "oversample": to_value(&p.oversample),
                "model": model_params(&p.model),
                "loss": to_value(&p.loss),
                "train": train_params(&p.train),
            });
            let env = Some(model_env(p.train.backend));
            let deps = vec![("split", split), ("relabel", relabel), ("prepare", prepare)];
            let train = self.add("train", params, deps, weights.clone(), env.clone(), v, fold, None);
            let params = json!({ "fold": fold, "augment": to_value(&p.augment.eval), "evaluate": to_value(&p.evaluate) });
            let deps = vec![("train", train), ("split", split), ("relabel", relabel), ("prepare", prepare)];
            self.add("evaluate", params, deps, vec![], env.clone(), v, fold, None);
            if let Some(predict) = &p.predict {
                let params = json!({ "augment": to_value(&p.augment.eval), "tta": to_value(&predict.tta) });
                let deps = vec![("train", train), ("prepare", prepare), ("source", source)];
                predicts.push(self.add("predict", params, deps, vec![], env, v, fold, None));
            }
        }

        Ok(predicts)
    }
}

/// The digest that stands for an input that is not on this machine (see `build_tolerant`).
pub fn missing_placeholder(path: &Path) -> Digest {
    Digest::of(format!("maskflow: missing input {}", path.display()).as_bytes())
}

/// Builds the plan for every variant of a loaded pipeline.
pub fn build(pipeline: &str, name: &str, base_dir: &Path, variants: &[ir::Variant], cache: &mut Cache) -> Result<Plan> {
    build_with(pipeline, name, base_dir, variants, cache, false)
}

/// Like [`build`], but inputs missing on this machine (a dataset, weights) get placeholder
/// digests instead of failing: the keys of the steps that read them are then not real,
/// but two pipelines naming the same missing input still share those steps.
pub fn build_tolerant(pipeline: &str, name: &str, base_dir: &Path, variants: &[ir::Variant], cache: &mut Cache) -> Result<Plan> {
    build_with(pipeline, name, base_dir, variants, cache, true)
}

fn build_with(
    pipeline: &str,
    name: &str,
    base_dir: &Path,
    variants: &[ir::Variant],
    cache: &mut Cache,
    tolerate_missing: bool,
) -> Result<Plan> {
    let mut b = Builder {
        cache,
        scans: HashMap::new(),
        tolerate_missing,
        base_dir: base_dir.to_path_buf(),
        steps: Vec::new(),
        by_key: HashMap::new(),
        users: Vec::new(),
    };
    let mut variants = variants.to_vec();
    let mut prefixes: Vec<Option<String>> = vec![None; variants.len()];
    let own = variants.len();
    for v in 0..own {
        let own_predicts = b.add_variant(v, &variants[v].pipeline.clone())?;
        let Some(ensemble) = variants[v].pipeline.ensemble.clone() else { continue };
        // Members are planned here, into the same graph: steps they share with this pipeline
        // (or with each other) stay one step, and a changed member reruns alone.
        let dir = Path::new(pipeline).parent().unwrap_or(Path::new(""));
        // This pipeline's own predictions weigh 1; each member's (all its variants and
        // folds) weigh its entry in `weights` (1 when none is given).
        let mut weights = vec![1.0; own_predicts.len()];
        let mut predicts = own_predicts;
        for (m, member) in ensemble.members.iter().enumerate() {
            let path = dir.join(member);
            let loaded =
                crate::lang::load(&path, &[]).map_err(|d| anyhow::anyhow!("ensemble member {}:\n{}", path.display(), d.render()))?;
            let weight = ensemble.weights.get(m).copied().unwrap_or(1.0);
            for mv in loaded.variants {
                if mv.pipeline.ensemble.is_some() {
                    bail!("{}: an ensemble member cannot itself be an ensemble", path.display());
                }
                if mv.pipeline.predict.is_none() {
                    bail!("{}: an ensemble member needs a `predict` block", path.display());
                }
                let label = if mv.name.is_empty() { loaded.name.clone() } else { format!("{}[{}]", loaded.name, mv.name) };
                variants.push(ir::Variant { name: label.clone(), assignments: mv.assignments.clone(), pipeline: mv.pipeline.clone() });
                prefixes.push(Some(label));
                let mi = variants.len() - 1;
                let added = b.add_variant(mi, &mv.pipeline)?;
                weights.extend(std::iter::repeat_n(weight, added.len()));
                predicts.extend(added);
            }
        }
        if predicts.is_empty() {
            bail!("{pipeline}: the ensemble has no member predictions");
        }
        // Roles name members by position; they must be `'static` like every dependency role.
        let deps: Vec<(&'static str, usize)> =
            predicts.iter().enumerate().map(|(i, &s)| (&*Box::leak(format!("member{i:02}").into_boxed_str()), s)).collect();
        let params = json!({ "vote": to_value(&ensemble.vote), "weights": weights });
        b.add("ensemble", params, deps, vec![], None, v, None, None);
    }
    name_steps(&mut b.steps, &b.users, &variants, own);
    // Member steps (not shared with this pipeline) are named after their member.
    for (i, step) in b.steps.iter_mut().enumerate() {
        if let Some(prefix) = &prefixes[b.users[i][0].0] {
            step.name = format!("{prefix}/{}", step.name);
        }
    }
    Ok(Plan { pipeline: pipeline.to_string(), name: name.to_string(), base_dir: base_dir.to_path_buf(), variants, steps: b.steps })
}

/// The model params, less the weights path: the weights enter by content digest (`files`).
fn model_params(m: &ir::Model) -> Value {
    let mut v = to_value(m);
    if let Value::Object(map) = &mut v {
        map.remove("pretrained");
    }
    v
}

/// The train params, less what goes into `env` (the backend).
fn train_params(t: &ir::Train) -> Value {
    let mut v = to_value(t);
    if let Value::Object(m) = &mut v {
        m.remove("backend");
    }
    v
}

/// `own` is the number of this pipeline's variants; later ones belong to ensemble members,
/// whose steps are prefixed by the member's name instead.
fn name_steps(steps: &mut [Step], users: &[Vec<(usize, Option<u32>)>], variants: &[ir::Variant], own: usize) {
    let mut per_kind: HashMap<&str, usize> = HashMap::new();
    for s in steps.iter() {
        *per_kind.entry(s.kind).or_default() += 1;
    }
    for (i, s) in steps.iter_mut().enumerate() {
        if per_kind[s.kind] <= 1 {
            continue;
        }
        let (variant, fold) = users[i][0];
        let mut parts = Vec::new();
        let shared_by_all_variants = (0..own).all(|v| users[i].iter().any(|(u, _)| *u == v));
        if variant < own && !shared_by_all_variants && !variants[variant].name.is_empty() {
            parts.push(variants[variant].name.clone());
        }
        if let Some(f) = fold {
            parts.push(format!("fold={f}"));
        }
        if !parts.is_empty() {
            s.name = format!("{}[{}]", s.kind, parts.join(","));
        }
    }
}
