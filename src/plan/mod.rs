//! The planner: a loaded pipeline (all variants) → a DAG of keyed steps.
//!
//! Steps are created in dependency order, so each key can include the keys of the steps it
//! depends on. Variants (sweeps) and folds that produce the same key share one step; a step
//! gets a name suffix (`train[fold=1]`) only when its kind has several distinct steps.
//! Planning reads nothing but file stamps for an unchanged dataset: the source manifest is
//! built through the stat cache.
//!
//! Paths written in a pipeline (`data.root`, a relabel CSV, pretrained weights) are relative
//! to the current directory, the project root, like `cache/` and `saved/`; `extends` and
//! ensemble members are relative to the file that names them (the front end resolves those).

pub mod key;
pub mod spelling;
mod step;

pub use step::{FileRole, Role, Step, StepKind};

use crate::cache::Cache;
use crate::cache::manifest::Manifest;
use crate::digest::Digest;
use crate::ir::{self, Pipeline, Source, SplitScheme};
use crate::lang::Loaded;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory source, scanned during planning and reused by the executor.
#[derive(Debug)]
pub struct ScannedSource {
    pub train_dir: PathBuf,
    pub eval_dir: Option<PathBuf>,
    /// Paths are prefixed `train/` and `eval/`.
    pub manifest: Manifest,
}

#[derive(Debug)]
pub struct Plan {
    /// The pipeline path as the user gave it (the refs and `saved/` are named from it).
    pub pipeline: String,
    pub name: String,
    /// This pipeline's variants, then those of its ensemble members.
    pub variants: Vec<ir::Variant>,
    pub steps: Vec<Step>,
    /// The hub weights the plan read, by their `hf://` reference: the commit and blake3 the
    /// lockfile pins.
    pub weights: BTreeMap<String, HubWeights>,
}

/// Hub weights as planned: which commit of the file, and its content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubWeights {
    pub commit: String,
    pub digest: Digest,
}

impl Plan {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    pub fn pipeline_ir(&self, step: &Step) -> &Pipeline {
        &self.variants[step.variant].pipeline
    }
}

/// What planning does about an input file (a dataset, weights) that is not on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingInputs {
    /// Fail, naming the file: what `run`, `plan` and `verify` need.
    Fail,
    /// Stand in a placeholder digest ([`missing_placeholder`]): the keys of the steps that
    /// read the file are then not real, but two pipelines naming the same missing input still
    /// share those steps, which is all `diff` and `runs` need.
    Placeholder,
}

struct Builder<'a> {
    cache: &'a mut Cache,
    scans: HashMap<String, Arc<ScannedSource>>,
    missing: MissingInputs,
    steps: Vec<Step>,
    by_key: HashMap<Digest, usize>,
    /// (step index) → the (variant, fold) labels that use it.
    users: Vec<Vec<(usize, Option<u32>)>>,
    /// The commits the pipeline's lockfile pins hub weights to, by reference.
    pins: BTreeMap<String, String>,
    /// Hub weights resolved so far: reference → (local path, commit, digest).
    hub: BTreeMap<String, (PathBuf, HubWeights)>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kind: StepKind,
        params: Value,
        deps: Vec<(Role, usize)>,
        files: Vec<(FileRole, PathBuf, Digest)>,
        env: Option<Value>,
        variant: usize,
        fold: Option<u32>,
        scanned: Option<Arc<ScannedSource>>,
    ) -> usize {
        let mut object = json!({
            "kind": kind.name(),
            "version": key::step_version(kind),
            "params": params,
            "deps": deps.iter().map(|(role, i)| (role.to_string(), Value::String(self.steps[*i].key.hex()))).collect::<serde_json::Map<_, _>>(),
            "files": files.iter().map(|(role, _, d)| (role.name().to_string(), Value::String(d.hex()))).collect::<serde_json::Map<_, _>>(),
        });
        if let Some(env) = env {
            object["env"] = env;
        }
        let key = crate::canonical::digest(&object);
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
            member_weights: Vec::new(),
        });
        self.by_key.insert(key, i);
        self.users.push(vec![(variant, fold)]);
        i
    }

    fn file_digest(&mut self, path: &Path, what: &str) -> Result<Digest> {
        if self.missing == MissingInputs::Placeholder && !path.exists() {
            return Ok(missing_placeholder(path));
        }
        let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read {what}", path.display()))?;
        if !meta.is_file() {
            bail!("{}: {what} is not a file", path.display());
        }
        self.cache.stats().digest(path, &meta).with_context(|| format!("{}: cannot read {what}", path.display()))
    }

    /// Weights on the hub: the cached file (at the lockfile's pinned commit when there is
    /// one), downloaded first when planning must not stand in a placeholder.
    fn hub_weights(&mut self, hub: &crate::hub::HubRef) -> Result<(PathBuf, Digest)> {
        let reference = hub.to_string();
        if let Some((path, w)) = self.hub.get(&reference) {
            return Ok((path.clone(), w.digest));
        }
        let pin = self.pins.get(&reference).map(String::as_str);
        let located = match self.missing {
            MissingInputs::Placeholder => match crate::hub::HubCache::from_env().locate(hub, pin) {
                Some(found) => found,
                None => return Ok((PathBuf::from(&reference), missing_placeholder(Path::new(&reference)))),
            },
            MissingInputs::Fail => crate::hub::Client::from_env().fetch(hub, pin)?,
        };
        let digest = self.file_digest(&located.path, "pretrained weights")?;
        let w = HubWeights { commit: located.commit, digest };
        self.hub.insert(reference, (located.path.clone(), w));
        Ok((located.path, digest))
    }

    fn scan_source(&mut self, root: &str, eval: &Option<String>) -> Result<Arc<ScannedSource>> {
        let root = PathBuf::from(root);
        let train_dir = root.join("train");
        if !train_dir.is_dir() {
            bail!(
                "{}: data directory not found\n  for a trial run, generate a small synthetic set there: \
                 maskflow synth --out {} --persons 200 --eval-persons 20 --size 96x128\n  \
                 for the competition's data, put its train/ (train.csv, images/) and eval/ (info.csv, images/) under {}/",
                train_dir.display(),
                root.display(),
                root.display()
            );
        }
        let eval_dir = match eval {
            Some(e) => Some(PathBuf::from(e)),
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
/// On wgpu the adapter enters too (llvmpipe and a GPU round differently); `null` when this
/// build or machine has none, and then running the step fails with the reason. `precision`
/// is the float type of every tensor on the device, inference included.
pub fn model_env(backend: ir::Backend, precision: ir::Precision) -> Value {
    let mut env = json!({
        "backend": to_value(&backend),
        "burn": crate::BURN_VERSION,
        "precision": to_value(&precision),
    });
    if backend == ir::Backend::Wgpu {
        env["adapter"] = crate::train::backend::adapter_description().map_or(Value::Null, Value::String);
    }
    env
}

impl Builder<'_> {
    /// Adds the steps of one variant; returns its predict steps (one per fold).
    fn add_variant(&mut self, v: usize, p: &Pipeline) -> Result<Vec<usize>> {
        let mut predicts = Vec::new();
        // source
        let source = match &p.data.source {
            Source::Dir { root, .. } if self.missing == MissingInputs::Placeholder && !Path::new(root).join("train").is_dir() => {
                let root_path = PathBuf::from(root);
                let params = json!({ "on_bad_image": to_value(&p.data.on_bad_image) });
                let placeholder = missing_placeholder(&root_path);
                self.add(StepKind::Source, params, vec![], vec![(FileRole::Manifest, root_path, placeholder)], None, v, None, None)
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
                let files = vec![(FileRole::Manifest, root_path, manifest_digest)];
                self.add(StepKind::Source, params, vec![], files, None, v, None, Some(scanned))
            }
            Source::Synthetic { .. } => {
                let params = json!({
                    "synthetic": to_value(&p.data.source),
                    "generator": crate::data::synth::GENERATOR_VERSION,
                    "on_bad_image": to_value(&p.data.on_bad_image),
                });
                self.add(StepKind::Source, params, vec![], vec![], None, v, None, None)
            }
        };
        // relabel
        let mut files = Vec::new();
        if let Some(csv) = &p.relabel.csv {
            let path = PathBuf::from(csv);
            let d = self.file_digest(&path, "relabel file")?;
            files.push((FileRole::RelabelCsv, path, d));
        }
        let params = json!({ "fixes": to_value(&p.relabel.fixes), "age_bins": to_value(&p.data.age_bins) });
        let relabel = self.add(StepKind::Relabel, params, vec![(Role::Source, source)], files, None, v, None, None);
        // split
        let split = self.add(StepKind::Split, to_value(&p.split), vec![(Role::Relabel, relabel)], vec![], None, v, None, None);
        // prepare
        let prepare = self.add(StepKind::Prepare, to_value(&p.prepare), vec![(Role::Source, source)], vec![], None, v, None, None);
        // per-fold training, evaluation and prediction
        let folds: Vec<Option<u32>> = match p.split.scheme {
            SplitScheme::Holdout { .. } => vec![None],
            SplitScheme::Kfold { k } => (0..k).map(Some).collect(),
        };
        let mut weights = Vec::new();
        if let Some(w) = &p.model.pretrained {
            let (path, d) = match crate::hub::HubRef::parse(w) {
                Some(hub) => self.hub_weights(&hub.map_err(anyhow::Error::msg)?)?,
                None => {
                    let path = PathBuf::from(w);
                    let d = self.file_digest(&path, "pretrained weights")?;
                    (path, d)
                }
            };
            weights.push((FileRole::Pretrained, path, d));
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
            let env = Some(model_env(p.train.backend, p.train.precision));
            let deps = vec![(Role::Split, split), (Role::Relabel, relabel), (Role::Prepare, prepare)];
            let train = self.add(StepKind::Train, params, deps, weights.clone(), env.clone(), v, fold, None);
            let params = json!({ "fold": fold, "augment": to_value(&p.augment.eval), "evaluate": to_value(&p.evaluate) });
            let deps = vec![(Role::Train, train), (Role::Split, split), (Role::Relabel, relabel), (Role::Prepare, prepare)];
            self.add(StepKind::Evaluate, params, deps, vec![], env.clone(), v, fold, None);
            if let Some(predict) = &p.predict {
                let params = json!({ "augment": to_value(&p.augment.eval), "tta": to_value(&predict.tta) });
                let deps = vec![(Role::Train, train), (Role::Prepare, prepare), (Role::Source, source)];
                predicts.push(self.add(StepKind::Predict, params, deps, vec![], env, v, fold, None));
            }
        }

        Ok(predicts)
    }
}

/// The digest that stands for an input that is not on this machine (see `build_tolerant`).
pub fn missing_placeholder(path: &Path) -> Digest {
    Digest::of(format!("maskflow: missing input {}", path.display()).as_bytes())
}

/// Builds the plan for every variant of a loaded pipeline and of its ensemble members.
/// `pipeline` is the pipeline as the user named it (refs and `saved/` are named from it).
pub fn build(pipeline: &str, loaded: &Loaded, cache: &mut Cache, missing: MissingInputs) -> Result<Plan> {
    let pins = crate::report::lockfile::weight_pins(&crate::report::lockfile::path_for(&loaded.path));
    let mut b = Builder {
        cache,
        scans: HashMap::new(),
        missing,
        steps: Vec::new(),
        by_key: HashMap::new(),
        users: Vec::new(),
        pins,
        hub: BTreeMap::new(),
    };
    let mut variants = loaded.variants.clone();
    let mut prefixes: Vec<Option<String>> = vec![None; variants.len()];
    let own = variants.len();
    for v in 0..own {
        let own_predicts = b.add_variant(v, &variants[v].pipeline.clone())?;
        let Some(ensemble) = variants[v].pipeline.ensemble.clone() else { continue };
        // Members are planned here, into the same graph: steps they share with this pipeline
        // (or with each other) stay one step, and a changed member reruns alone.
        // This pipeline's own predictions weigh 1; each member's (all its variants and
        // folds) weigh its entry in `weights` (1 when none is given).
        let mut weights = vec![1.0; own_predicts.len()];
        let mut predicts = own_predicts;
        for (m, member) in ensemble.members.iter().enumerate() {
            let member_loaded =
                loaded.members.get(member).with_context(|| format!("internal: ensemble member `{member}` was not loaded"))?;
            let path = member_loaded.path.display();
            let weight = ensemble.weights.get(m).copied().unwrap_or(1.0);
            for mv in &member_loaded.variants {
                if mv.pipeline.ensemble.is_some() {
                    bail!("{path}: an ensemble member cannot itself be an ensemble");
                }
                if mv.pipeline.predict.is_none() {
                    bail!("{path}: an ensemble member needs a `predict` block");
                }
                let label = if mv.name.is_empty() { member_loaded.name.clone() } else { format!("{}[{}]", member_loaded.name, mv.name) };
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
        let deps: Vec<(Role, usize)> = predicts.iter().enumerate().map(|(i, &s)| (Role::Member(i as u16), s)).collect();
        let params = json!({ "vote": to_value(&ensemble.vote), "weights": weights });
        let i = b.add(StepKind::Ensemble, params, deps, vec![], None, v, None, None);
        // The weights are in the key, so a step shared under this key has these weights.
        b.steps[i].member_weights = weights;
    }
    name_steps(&mut b.steps, &b.users, &variants, own);
    // Member steps (not shared with this pipeline) are named after their member.
    for (i, step) in b.steps.iter_mut().enumerate() {
        if let Some(prefix) = &prefixes[b.users[i][0].0] {
            step.name = format!("{prefix}/{}", step.name);
        }
    }
    let weights = b.hub.into_iter().map(|(reference, (_, w))| (reference, w)).collect();
    Ok(Plan { pipeline: pipeline.to_string(), name: loaded.name.clone(), variants, steps: b.steps, weights })
}

/// The model params, less the weights path: the weights enter by content digest (`files`).
fn model_params(m: &ir::Model) -> Value {
    let mut v = to_value(m);
    if let Value::Object(map) = &mut v {
        map.remove("pretrained");
    }
    v
}

/// The train params, less what goes into `env` (the backend and precision).
fn train_params(t: &ir::Train) -> Value {
    let mut v = to_value(t);
    if let Value::Object(m) = &mut v {
        m.remove("backend");
        m.remove("precision");
    }
    v
}

/// `own` is the number of this pipeline's variants; later ones belong to ensemble members,
/// whose steps are prefixed by the member's name instead.
fn name_steps(steps: &mut [Step], users: &[Vec<(usize, Option<u32>)>], variants: &[ir::Variant], own: usize) {
    let mut per_kind: HashMap<StepKind, usize> = HashMap::new();
    for s in steps.iter() {
        *per_kind.entry(s.kind).or_default() += 1;
    }
    for (i, s) in steps.iter_mut().enumerate() {
        if per_kind[&s.kind] <= 1 {
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
