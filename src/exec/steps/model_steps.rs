//! The model steps: train (per fold), evaluate (on the fold's val persons) and predict (the
//! eval set into a submission). The IR is converted here into the plain configs of the
//! `data` loaders and the `train` library.

use super::data_steps::{Labels, SourceIndex};
use super::prepare::ShardRows;
use super::{Inputs, StepOutput, put_json};
use crate::batch::BatchSource;
use crate::cache::Cache;
use crate::data::augment::AugOp;
use crate::data::labels::NUM_CLASSES;
use crate::data::loader::{self, EvalSource, SampleLabel, SampleRef, TrainSource};
use crate::data::mix::MixParams;
use crate::data::shard::Shard;
use crate::data::split::SplitFile;
use crate::ir::{self, Cmp, LabelField, Pipeline};
use crate::model::{HeadKind, ModelSpec};
use crate::plan::{FileRole, Plan, Role, Step};
use crate::train::{self, ClassWeights, LossConfig, LossKind, LossTerm, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind};
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

pub fn aug_op(op: &ir::Op) -> AugOp {
    match op {
        ir::Op::Resize { size } => AugOp::Resize { width: size[0], height: size[1] },
        ir::Op::RandomResizedCrop { size, scale, ratio } => {
            AugOp::RandomResizedCrop { width: size[0], height: size[1], scale: *scale, ratio: *ratio }
        }
        ir::Op::CenterCrop { size } => AugOp::CenterCrop { width: size[0], height: size[1] },
        ir::Op::Hflip { p } => AugOp::Hflip { p: *p },
        ir::Op::Rotate { degrees, random } => AugOp::Rotate { degrees: *degrees, random: *random },
        ir::Op::Jitter { brightness, contrast, saturation } => {
            AugOp::Jitter { brightness: *brightness, contrast: *contrast, saturation: *saturation }
        }
        ir::Op::Normalize { mean, std } => AugOp::Normalize { mean: *mean, std: *std },
        ir::Op::RandomErasing { p, scale, ratio } => AugOp::RandomErasing { p: *p, scale: *scale, ratio: *ratio },
    }
}

fn clause_holds(c: &ir::Clause, l: &SampleLabel) -> bool {
    let v: i64 = match c.field {
        LabelField::Mask => l.mask as i64,
        LabelField::Gender => l.gender as i64,
        LabelField::Age => l.age as i64,
        LabelField::Years => l.years as i64,
        LabelField::Class => l.class() as i64,
    };
    match c.cmp {
        Cmp::Eq => v == c.value,
        Cmp::Ne => v != c.value,
        Cmp::Lt => v < c.value,
        Cmp::Le => v <= c.value,
        Cmp::Gt => v > c.value,
        Cmp::Ge => v >= c.value,
    }
}

pub fn model_spec(m: &ir::Model) -> ModelSpec {
    let head = match m.heads {
        ir::Heads::Single => HeadKind::Single,
        ir::Heads::Multi { .. } => HeadKind::Multi,
        ir::Heads::Separate => HeadKind::Separate,
    };
    ModelSpec { arch: m.arch.clone(), head, dropout: Some(m.dropout), drop_path: m.drop_path }
}

fn class_weights(w: &ir::ClassWeights, counts: &[u64]) -> ClassWeights {
    match w {
        ir::ClassWeights::None => ClassWeights::None,
        ir::ClassWeights::Auto => ClassWeights::InverseFrequency(counts.to_vec()),
        ir::ClassWeights::PerClass(v) => ClassWeights::Given(v.iter().map(|x| *x as f32).collect()),
    }
}

fn loss_config(p: &Pipeline, counts: &[u64]) -> LossConfig {
    let terms = p
        .loss
        .terms
        .iter()
        .map(|t| LossTerm {
            weight: t.weight,
            loss: match &t.kind {
                ir::LossKind::CrossEntropy { smoothing, class_weights: w } => {
                    LossKind::CrossEntropy { smoothing: *smoothing, weights: class_weights(w, counts) }
                }
                ir::LossKind::Focal { gamma, alpha } => LossKind::Focal { gamma: *gamma, alpha: class_weights(alpha, counts) },
                ir::LossKind::SoftF1 => LossKind::SoftF1,
            },
        })
        .collect();
    let head_weights = match &p.model.heads {
        ir::Heads::Multi { weights } => [weights.mask, weights.gender, weights.age],
        _ => [1.0, 1.0, 1.0],
    };
    LossConfig { terms, head_weights }
}

fn optimizer(t: &ir::Train) -> (OptimizerConfig, f64) {
    let (kind, lr, weight_decay) = match &t.optimizer {
        ir::Optimizer::Sgd { lr, momentum, nesterov, weight_decay } => {
            (OptimizerKind::Sgd { momentum: *momentum, nesterov: *nesterov }, *lr, *weight_decay)
        }
        ir::Optimizer::Adam { lr, betas, eps, weight_decay } => {
            (OptimizerKind::Adam { beta1: betas[0] as f32, beta2: betas[1] as f32, eps: *eps as f32 }, *lr, *weight_decay)
        }
        ir::Optimizer::Adamw { lr, betas, eps, weight_decay } => {
            (OptimizerKind::AdamW { beta1: betas[0] as f32, beta2: betas[1] as f32, eps: *eps as f32 }, *lr, *weight_decay)
        }
    };
    (OptimizerConfig { kind, weight_decay, grad_clip_norm: t.grad_clip }, lr)
}

fn schedule(t: &ir::Train, lr: f64, steps_per_epoch: usize) -> Schedule {
    let (warmup, kind) = match &t.schedule {
        ir::Schedule::Constant { warmup } => (*warmup, ScheduleKind::Constant),
        ir::Schedule::Step { warmup, every, gamma } => (*warmup, ScheduleKind::Step { every_epochs: *every as usize, gamma: *gamma }),
        ir::Schedule::Cosine { warmup, min_lr } => (*warmup, ScheduleKind::Cosine { min_lr: min_lr.min(lr) }),
    };
    Schedule { lr, warmup_steps: warmup as usize * steps_per_epoch, kind }
}

pub fn backend_name(b: ir::Backend) -> &'static str {
    match b {
        ir::Backend::Cpu => "cpu",
        ir::Backend::Cuda => "cuda",
        ir::Backend::Wgpu => "wgpu",
    }
}

fn precision(p: ir::Precision) -> train::Precision {
    match p {
        ir::Precision::F32 => train::Precision::F32,
        ir::Precision::F16 => train::Precision::F16,
        ir::Precision::Bf16 => train::Precision::Bf16,
    }
}

/// The backend a model step computes on, or what to do when this build lacks it.
fn usable_backend(b: ir::Backend) -> Result<&'static str> {
    let name = backend_name(b);
    if !train::backend_names().contains(&name) {
        bail!(
            "`train.backend = {name}`, but this maskflow was built without it: rebuild with \
             `cargo build --release --features {name}`, or run on the CPU with `--set train.backend=cpu`"
        );
    }
    Ok(name)
}

/// The samples of one fold: shard rows of the train persons and of the val persons.
struct FoldSamples {
    shard: Arc<Shard>,
    train: Vec<SampleRef>,
    val: Vec<SampleRef>,
    /// Person id of each val sample (for the predictions file and paired bootstrap).
    val_persons: Vec<String>,
    val_paths: Vec<String>,
    class_counts: Vec<u64>,
}

fn fold_samples(cache: &mut Cache, step: &Step, inputs: &Inputs) -> Result<FoldSamples> {
    let labels: Labels = inputs.json(cache, Role::Relabel, "labels.json")?;
    let split: SplitFile = inputs.json(cache, Role::Split, "split.json")?;
    let rows: ShardRows = inputs.json(cache, Role::Prepare, "rows.json")?;
    let fold = step.fold.unwrap_or(0) as usize;
    let fold = split.folds.get(fold).with_context(|| format!("the split has no fold {fold}"))?;
    let train_ids: HashSet<&str> = fold.train.iter().map(String::as_str).collect();
    let val_ids: HashSet<&str> = fold.val.iter().map(String::as_str).collect();
    let shard = Arc::new(super::prepare::open_shard(cache, inputs, "train")?);
    let mut s =
        FoldSamples { shard, train: vec![], val: vec![], val_persons: vec![], val_paths: vec![], class_counts: vec![0; NUM_CLASSES] };
    for (row, &image) in rows.train_rows.iter().enumerate() {
        let sample = labels.samples.get(image).with_context(|| format!("shard row {row} names image {image}, which has no label"))?;
        let person = &labels.train.persons[sample.person];
        let label = SampleLabel { mask: sample.mask as u8, gender: sample.gender.index(), age: sample.age_class, years: person.age };
        let r = SampleRef::new(row, label);
        if train_ids.contains(person.id.as_str()) {
            s.class_counts[sample.class as usize] += 1;
            s.train.push(r);
        } else if val_ids.contains(person.id.as_str()) {
            s.val.push(r);
            s.val_persons.push(person.id.clone());
            s.val_paths.push(labels.train.images[image].path.to_string_lossy().into_owned());
        }
    }
    if s.train.is_empty() || s.val.is_empty() {
        bail!("fold has {} train and {} val images; both sides need images", s.train.len(), s.val.len());
    }
    Ok(s)
}

/// A directory that survives a killed run, so the next run of the same step resumes.
fn work_dir(cache: &Cache, step: &Step) -> PathBuf {
    cache.dir(crate::cache::Dir::Work).join(step.key.hex())
}

pub fn train(
    cache: &mut Cache,
    plan: &Plan,
    step: &Step,
    inputs: &Inputs,
    progress: &mut dyn FnMut(train::Progress),
) -> Result<StepOutput> {
    let p = plan.pipeline_ir(step);
    let mut fs = fold_samples(cache, step, inputs)?;
    for o in &p.oversample {
        let with: Vec<Vec<AugOp>> = o.with.iter().map(|op| vec![aug_op(op)]).collect();
        fs.train = loader::oversample(&fs.train, |l| o.predicate.iter().all(|c| clause_holds(c, l)), o.copies, &with);
    }
    let batch = p.train.batch as usize;
    let config = loader::TrainConfig {
        batch_size: batch,
        seed: p.train.seed,
        ops: p.augment.train.iter().map(aug_op).collect(),
        mix: MixParams::new(p.train.cutmix, p.train.mixup),
        drop_last: fs.train.len() > batch,
    };
    let train_source = TrainSource::new(fs.shard.clone(), fs.train.clone(), config)?;
    let eval_ops: Vec<AugOp> = p.augment.eval.iter().map(aug_op).collect();
    let val_source = EvalSource::new(fs.shard.clone(), fs.val.clone(), batch, eval_ops, p.train.seed)?;
    let (optim, lr) = optimizer(&p.train);
    let mut cfg = train::TrainConfig::new(model_spec(&p.model), p.train.epochs as usize, p.train.seed);
    cfg.optimizer = optim;
    cfg.schedule = schedule(&p.train, lr, train_source.num_batches(0));
    cfg.loss = loss_config(p, &fs.class_counts);
    cfg.early_stopping_patience = p.train.early_stop.map(|n| n as usize);
    cfg.pretrained = step.file(FileRole::Pretrained).map(|w| w.to_path_buf());
    cfg.precision = precision(p.train.precision);
    let dir = work_dir(cache, step);
    let outcome = train::train_on(usable_backend(p.train.backend)?, &cfg, &train_source, &val_source, &dir, progress)?;
    let mut out = StepOutput::default();
    let weights = cache.temp_dir("weights")?.join("model.safetensors");
    train::export_weights(&cfg.model, &outcome.best_model, &weights)?;
    out.outputs.insert("model.safetensors".into(), cache.put_file(&weights)?);
    put_json(cache, &mut out, "history.json", &outcome.history)?;
    out.metrics = Some(serde_json::json!({
        "best_epoch": outcome.best_epoch + 1,
        "best_val_f1": outcome.best_val_f1,
        "epochs_done": outcome.epochs_done,
        "stopped_early": outcome.stopped_early,
        "weights_digest": outcome.best_digest,
    }));
    out.summary = Some(format!(
        "{} epoch{}{}, best val macro-F1 {:.4} at epoch {}",
        outcome.epochs_done,
        if outcome.epochs_done == 1 { "" } else { "s" },
        outcome.resumed_from.map(|e| format!(" (resumed after epoch {e})")).unwrap_or_default(),
        outcome.best_val_f1,
        outcome.best_epoch + 1
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

/// The trained weights of the `train` dependency, as a file burn can load.
fn model_path(cache: &mut Cache, inputs: &Inputs) -> Result<PathBuf> {
    let out = inputs.output(Role::Train, "model.safetensors")?.clone();
    Ok(cache.object_path(&out.digest))
}

pub fn evaluate(cache: &mut Cache, plan: &Plan, step: &Step, inputs: &Inputs) -> Result<StepOutput> {
    let p = plan.pipeline_ir(step);
    let fs = fold_samples(cache, step, inputs)?;
    let eval_ops: Vec<AugOp> = p.augment.eval.iter().map(aug_op).collect();
    let source = EvalSource::new(fs.shard.clone(), fs.val.clone(), p.train.batch as usize, eval_ops, p.train.seed)?;
    let weights = model_path(cache, inputs)?;
    let probs = train::predict_on(
        usable_backend(p.train.backend)?,
        precision(p.train.precision),
        &model_spec(&p.model),
        &weights,
        &source,
        p.evaluate.tta == ir::Tta::Hflip,
    )?;
    let y_true: Vec<u32> = fs.val.iter().map(|s| s.label.class()).collect();
    let y_pred: Vec<u32> = probs.iter().map(|r| crate::metrics::argmax(r)).collect();
    let report = crate::metrics::report(&y_true, &y_pred);
    let mut csv = String::from("path,person,true,pred");
    for c in 0..NUM_CLASSES {
        csv.push_str(&format!(",p{c}"));
    }
    csv.push('\n');
    for i in 0..y_true.len() {
        csv.push_str(&format!("{},{},{},{}", fs.val_paths[i], fs.val_persons[i], y_true[i], y_pred[i]));
        for v in probs[i] {
            csv.push_str(&format!(",{v:.6}"));
        }
        csv.push('\n');
    }
    let mut out = StepOutput::default();
    out.outputs.insert("val_predictions.csv".into(), cache.put_bytes(csv.as_bytes())?);
    let metrics = serde_json::to_value(&report)?;
    put_json(cache, &mut out, "metrics.json", &metrics)?;
    let bins = p.data.age_bins;
    let f1: Vec<f64> = report.per_class.iter().map(|c| c.f1).collect();
    let confusion = crate::charts::confusion::svg_of(&confusion_array(&report.confusion), &f1, bins)?;
    out.outputs.insert("confusion.svg".into(), cache.put_bytes(confusion.as_bytes())?);
    if let Some(h) = dep_history(cache, inputs) {
        // No step or pipeline name in the chart: the output is shared by every pipeline
        // whose step has this key, so it may depend on nothing outside the key.
        let curves = crate::charts::curves::svg_of(&[crate::charts::curves::Run { label: String::new(), history: &h }], "training curves")?;
        out.outputs.insert("curves.svg".into(), cache.put_bytes(curves.as_bytes())?);
        // The training history beside the metrics: the index, diff pages and TensorBoard
        // files read it from the evaluation (the same blob as the train step's).
        if let Some(history) = inputs.record(Role::Train)?.outputs.get("history.json") {
            out.outputs.insert("history.json".into(), history.clone());
        }
    }
    out.summary = Some(format!("val macro-F1 {:.4}, accuracy {:.4} on {} images", report.macro_f1, report.accuracy, y_true.len()));
    out.metrics = Some(metrics);
    Ok(out)
}

fn dep_history(cache: &mut Cache, inputs: &Inputs) -> Option<Vec<train::EpochRecord>> {
    inputs.json(cache, Role::Train, "history.json").ok()
}

pub fn predict(cache: &mut Cache, plan: &Plan, step: &Step, inputs: &Inputs) -> Result<StepOutput> {
    let p = plan.pipeline_ir(step);
    let index: SourceIndex = inputs.json(cache, Role::Source, "index.json")?;
    let Some(eval) = index.eval else {
        bail!("predict needs an eval set (eval/info.csv and eval/images/) next to the train data");
    };
    let rows: ShardRows = inputs.json(cache, Role::Prepare, "rows.json")?;
    let shard = Arc::new(super::prepare::open_shard(cache, inputs, "eval")?);
    // Eval images carry no labels: any valid label will do for the loader.
    let dummy = SampleLabel { mask: 0, gender: 0, age: 0, years: 0 };
    let samples: Vec<SampleRef> = (0..rows.eval_rows.len()).map(|r| SampleRef::new(r, dummy)).collect();
    let eval_ops: Vec<AugOp> = p.augment.eval.iter().map(aug_op).collect();
    let source = EvalSource::new(shard, samples, p.train.batch as usize, eval_ops, p.train.seed)?;
    let weights = model_path(cache, inputs)?;
    let tta = p.predict.as_ref().is_some_and(|pr| pr.tta == ir::Tta::Hflip);
    let probs =
        train::predict_on(usable_backend(p.train.backend)?, precision(p.train.precision), &model_spec(&p.model), &weights, &source, tta)?;
    let mut answers = vec![0u32; eval.images.len()];
    for (row, &image) in rows.eval_rows.iter().enumerate() {
        answers[image] = crate::metrics::argmax(&probs[row]);
    }
    let mut csv = String::from("ImageID,ans\n");
    for (img, ans) in eval.images.iter().zip(&answers) {
        csv.push_str(&format!("{},{ans}\n", img.id));
    }
    let mut probs_csv = String::from("ImageID");
    for c in 0..NUM_CLASSES {
        probs_csv.push_str(&format!(",p{c}"));
    }
    probs_csv.push('\n');
    for (row, &image) in rows.eval_rows.iter().enumerate() {
        probs_csv.push_str(&eval.images[image].id);
        for v in probs[row] {
            probs_csv.push_str(&format!(",{v:.6}"));
        }
        probs_csv.push('\n');
    }
    let mut out = StepOutput::default();
    out.outputs.insert("submission.csv".into(), cache.put_bytes(csv.as_bytes())?);
    out.outputs.insert("probabilities.csv".into(), cache.put_bytes(probs_csv.as_bytes())?);
    out.summary = Some(format!("{} eval images predicted", answers.len()));
    Ok(out)
}

fn confusion_array(rows: &[Vec<u64>]) -> [[u64; NUM_CLASSES]; NUM_CLASSES] {
    let mut m = [[0u64; NUM_CLASSES]; NUM_CLASSES];
    for (t, row) in rows.iter().enumerate().take(NUM_CLASSES) {
        for (p, v) in row.iter().enumerate().take(NUM_CLASSES) {
            m[t][p] = *v;
        }
    }
    m
}

/// Reads a predict step's `probabilities.csv` (`ImageID,p0,…,p17`).
fn read_probabilities(bytes: &[u8], what: &str) -> Result<Vec<(String, [f64; NUM_CLASSES])>> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{what}: not UTF-8"))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut fields = line.split(',');
        let id = fields.next().unwrap_or_default().to_string();
        let mut probs = [0.0; NUM_CLASSES];
        for (c, slot) in probs.iter_mut().enumerate() {
            let field = fields.next().with_context(|| format!("{what}:{}: missing p{c}", i + 1))?;
            *slot = field.parse().with_context(|| format!("{what}:{}: `{field}` is not a probability", i + 1))?;
        }
        rows.push((id, probs));
    }
    Ok(rows)
}

/// Soft (weighted mean of probabilities) or hard (weighted majority of argmaxes, ties broken
/// by the summed probabilities) voting over the members' predictions.
pub fn ensemble(cache: &mut Cache, plan: &Plan, step: &Step, inputs: &Inputs) -> Result<StepOutput> {
    let p = plan.pipeline_ir(step);
    let vote = p.ensemble.as_ref().map(|e| e.vote).unwrap_or(ir::Vote::Soft);
    let weights = &step.member_weights;
    let mut ids: Vec<String> = Vec::new();
    let mut summed: Vec<[f64; NUM_CLASSES]> = Vec::new();
    let mut votes: Vec<[f64; NUM_CLASSES]> = Vec::new();
    for (m, (role, dep)) in step.deps.iter().enumerate() {
        let what = format!("probabilities of {}", plan.steps[*dep].name);
        let digest = inputs.output(*role, "probabilities.csv")?.digest;
        let rows = read_probabilities(&cache.read_blob(&digest)?, &what)?;
        if m == 0 {
            ids = rows.iter().map(|(id, _)| id.clone()).collect();
            summed = vec![[0.0; NUM_CLASSES]; ids.len()];
            votes = vec![[0.0; NUM_CLASSES]; ids.len()];
        } else if rows.len() != ids.len() || rows.iter().zip(&ids).any(|((a, _), b)| a != b) {
            bail!("{what}: the members predicted different eval images; an ensemble needs the same eval set");
        }
        let w = weights.get(m).copied().unwrap_or(1.0);
        for (r, (_, probs)) in rows.iter().enumerate() {
            let best = (0..NUM_CLASSES).max_by(|&a, &b| probs[a].total_cmp(&probs[b])).unwrap_or(0);
            votes[r][best] += w;
            for c in 0..NUM_CLASSES {
                summed[r][c] += w * probs[c];
            }
        }
    }
    let total: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut submission = String::from("ImageID,ans\n");
    let mut probs_csv = String::from("ImageID");
    for c in 0..NUM_CLASSES {
        probs_csv.push_str(&format!(",p{c}"));
    }
    probs_csv.push('\n');
    for (r, id) in ids.iter().enumerate() {
        let by = |a: usize, b: usize| match vote {
            ir::Vote::Soft => summed[r][a].total_cmp(&summed[r][b]),
            ir::Vote::Hard => votes[r][a].total_cmp(&votes[r][b]).then(summed[r][a].total_cmp(&summed[r][b])),
        };
        let ans = (0..NUM_CLASSES).max_by(|&a, &b| by(a, b)).unwrap_or(0);
        submission.push_str(&format!("{id},{ans}\n"));
        probs_csv.push_str(id);
        for v in summed[r] {
            probs_csv.push_str(&format!(",{:.6}", v / total));
        }
        probs_csv.push('\n');
    }
    let mut out = StepOutput::default();
    out.outputs.insert("submission.csv".into(), cache.put_bytes(submission.as_bytes())?);
    out.outputs.insert("probabilities.csv".into(), cache.put_bytes(probs_csv.as_bytes())?);
    out.summary = Some(format!(
        "{} vote over {} members, {} eval images",
        if vote == ir::Vote::Soft { "soft" } else { "hard" },
        step.deps.len(),
        ids.len()
    ));
    Ok(out)
}
