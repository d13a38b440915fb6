//! The checker and lowering: one merged, sweep-free document → [`ir::Pipeline`].
//!
//! Every block is checked even after an error elsewhere, so one run reports all problems.
//! Defaults are filled in here (see the `defaults` constants and the README's language
//! reference), units are normalised (radians → degrees, `imagenet` → numbers) and unordered
//! collections are sorted, so equivalent spellings give identical IR.

use super::ast::*;
use super::check::{Bound, Cx, Keys, bind_args};
use super::diag::Kind;
use super::merge::Doc;
use super::names;
use super::source::Span;
use crate::data::labels::NUM_CLASSES;
use crate::ir;
use std::collections::BTreeMap;

const DEFAULT_SEED: u64 = 42;

pub fn lower(cx: &mut Cx<'_>, doc: &Doc) -> ir::Pipeline {
    let mut found: BTreeMap<&str, &Block> = BTreeMap::new();
    let mut augments = Vec::new();
    let mut oversamples = Vec::new();
    for b in &doc.blocks {
        let kind = b.kind.name.as_str();
        match names::BLOCKS.iter().find(|k| **k == kind) {
            None => cx.error(Kind::UnknownName, b.kind.span, names::unknown("block", kind, names::BLOCKS)),
            Some(&"augment") => augments.push(b),
            Some(&"oversample") => oversamples.push(b),
            Some(k) => {
                found.insert(k, b);
            }
        }
        if kind != "oversample"
            && let Some(c) = b.predicate.first()
        {
            cx.error(Kind::Syntax, c.span, format!("only `oversample` takes a `where` clause, not `{kind}`"));
        }
        if matches!(kind, "relabel" | "prepare" | "train" | "evaluate" | "predict" | "ensemble")
            && let Some(q) = b.qualifiers.first()
        {
            cx.error(Kind::Syntax, q.span, format!("`{kind}` takes no qualifier, found `{}`", q.name));
        }
    }
    let root = Span::new(doc.root, 0, 0);
    let data = data(cx, found.get("data").copied(), root);
    let relabel = found.get("relabel").map_or_else(ir::Relabel::default, |b| relabel(cx, b));
    let split = split(cx, found.get("split").copied());
    let prepare = prepare(cx, found.get("prepare").copied());
    let augment = augment(cx, &augments);
    let oversample = oversamples.iter().map(|b| oversample(cx, b)).collect();
    let model = model(cx, found.get("model").copied(), root);
    let loss = loss(cx, found.get("loss").copied());
    let train = train(cx, found.get("train").copied());
    let evaluate = ir::Evaluate { tta: found.get("evaluate").map_or(ir::Tta::None, |b| tta_block(cx, b, "evaluate").0) };
    let predict = found.get("predict").map(|b| {
        let (tta, output) = tta_block(cx, b, "predict");
        ir::Predict { tta, output }
    });
    let ensemble = found.get("ensemble").map(|b| ensemble(cx, b));
    ir::Pipeline { data, relabel, split, prepare, augment, oversample, model, loss, train, evaluate, predict, ensemble }
}

// ---------------------------------------------------------------- data

fn data(cx: &mut Cx<'_>, b: Option<&Block>, root: Span) -> ir::Data {
    let fallback = ir::Data {
        source: ir::Source::Dir { root: String::new(), eval: None },
        age_bins: [30, 60],
        on_bad_image: ir::BadImagePolicy::Error,
    };
    let Some(b) = b else {
        cx.error(Kind::Missing, root, "missing `data` block; write `data { root = \"...\" }` or `data synthetic { }`");
        return fallback;
    };
    let synthetic = match b.qualifiers.as_slice() {
        [] => false,
        [q] if q.name == "synthetic" => true,
        [q, ..] => {
            cx.error(Kind::UnknownName, q.span, names::unknown("data source", &q.name, &["synthetic"]));
            return fallback;
        }
    };
    let mut k = Keys::new(cx, b);
    let source = if synthetic {
        let persons = k.get("persons").and_then(|v| cx.u32(v, "persons", 1, 100_000)).unwrap_or(300);
        let eval_persons = k.get("eval_persons").and_then(|v| cx.u32(v, "eval_persons", 0, 100_000)).unwrap_or(60);
        let seed = k.get("seed").and_then(|v| cx.seed(v, "seed")).unwrap_or(DEFAULT_SEED);
        let size = k.get("size").and_then(|v| cx.size(v, "size")).unwrap_or([384, 512]);
        ir::Source::Synthetic { persons, eval_persons, seed, size }
    } else {
        let root_dir = match k.get("root") {
            Some(v) => cx.string(v, "root").unwrap_or_default(),
            None => {
                cx.error(Kind::Missing, b.head_span(), "missing `root` in `data`; or use `data synthetic { }`");
                String::new()
            }
        };
        let eval = k.get("eval").and_then(|v| cx.string(v, "eval"));
        ir::Source::Dir { root: root_dir, eval }
    };
    let age_bins = k.get("age_bins").and_then(|v| age_bins(cx, v)).unwrap_or([30, 60]);
    let on_bad_image = match k.get("on_bad_image").and_then(|v| cx.choice(v, "on_bad_image", &["error", "skip"])) {
        Some("skip") => ir::BadImagePolicy::Skip,
        _ => ir::BadImagePolicy::Error,
    };
    let known: &[&str] = if synthetic {
        &["persons", "eval_persons", "seed", "size", "age_bins", "on_bad_image"]
    } else {
        &["root", "eval", "age_bins", "on_bad_image"]
    };
    let what = if synthetic { "data synthetic" } else { "data" };
    k.finish(cx, what, known);
    ir::Data { source, age_bins, on_bad_image }
}

fn age_bins(cx: &mut Cx<'_>, v: &Value) -> Option<[u32; 2]> {
    let items = cx.list(v, "age_bins")?;
    if items.len() != 2 {
        cx.error(Kind::Type, v.span, format!("`age_bins` needs 2 ages, found {}", items.len()));
        return None;
    }
    let lo = cx.u32(&items[0], "age_bins", 1, 150);
    let hi = cx.u32(&items[1], "age_bins", 1, 150);
    let (lo, hi) = (lo?, hi?);
    if lo >= hi {
        cx.error(Kind::Range, v.span, format!("`age_bins` must increase, found [{lo}, {hi}]"));
        return None;
    }
    Some([lo, hi])
}

// ---------------------------------------------------------------- relabel

fn person_id(cx: &mut Cx<'_>, key: &Ident, quoted_ok: bool) -> Option<String> {
    let id = key.name.as_str();
    let (digits, suffix) = id.split_once('-').unwrap_or((id, ""));
    let valid = quoted_ok
        && digits.len() == 6
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (suffix.is_empty() && !id.contains('-') || suffix.bytes().all(|b| b.is_ascii_digit()) && !suffix.is_empty());
    if !valid {
        cx.error(Kind::Type, key.span, format!("expected a person id such as \"001498\" or \"001498-1\", found `{id}`"));
        return None;
    }
    Some(id.to_string())
}

fn relabel(cx: &mut Cx<'_>, b: &Block) -> ir::Relabel {
    let mut k = Keys::new(cx, b);
    let mut fixes: BTreeMap<String, ir::PersonFix> = BTreeMap::new();
    // `known = true`: the competition's known label errors, as the data library lists them.
    if k.get("known").and_then(|v| cx.bool(v, "known")).unwrap_or(false) {
        for (id, known) in crate::data::relabel::competition_fixes() {
            let fix = fixes.entry(id).or_default();
            if let Some(g) = known.gender {
                fix.gender = Some(match g {
                    crate::data::labels::Gender::Male => ir::Gender::Male,
                    crate::data::labels::Gender::Female => ir::Gender::Female,
                });
            }
            fix.age = known.age.or(fix.age);
            fix.swap_incorrect_normal |= known.swap_incorrect_normal;
        }
    }
    if let Some(v) = k.get("gender") {
        for (key, quoted, value) in map_entries(cx, v, "gender") {
            let gender = cx.choice(value, "gender", &["male", "female"]);
            if let (Some(id), Some(g)) = (person_id(cx, key, quoted), gender) {
                let g = if g == "male" { ir::Gender::Male } else { ir::Gender::Female };
                fixes.entry(id).or_default().gender = Some(g);
            }
        }
    }
    if let Some(v) = k.get("age") {
        for (key, quoted, value) in map_entries(cx, v, "age") {
            let age = cx.u32(value, "age", 0, 150);
            if let (Some(id), Some(age)) = (person_id(cx, key, quoted), age) {
                fixes.entry(id).or_default().age = Some(age);
            }
        }
    }
    if let Some(v) = k.get("swap_incorrect_normal") {
        for item in cx.list(v, "swap_incorrect_normal").unwrap_or(&[]) {
            let Some(s) = cx.string(item, "swap_incorrect_normal") else {
                continue;
            };
            let key = Ident { name: s, span: item.span };
            if let Some(id) = person_id(cx, &key, true) {
                fixes.entry(id).or_default().swap_incorrect_normal = true;
            }
        }
    }
    let csv = k.get("file").and_then(|v| cx.string(v, "file"));
    k.finish(cx, "relabel", names::block_keys("relabel"));
    ir::Relabel { fixes, csv }
}

fn map_entries<'v>(cx: &mut Cx<'_>, v: &'v Value, key: &str) -> Vec<(&'v Ident, bool, &'v Value)> {
    match &v.kind {
        ValueKind::Map(entries) => entries.iter().map(|e| (&e.key, e.quoted, &e.value)).collect(),
        _ => {
            cx.type_error(v, "a map `{ \"id\": value }`", key);
            Vec::new()
        }
    }
}

// ---------------------------------------------------------------- split, prepare

fn split(cx: &mut Cx<'_>, b: Option<&Block>) -> ir::Split {
    let mut out = ir::Split {
        scheme: ir::SplitScheme::Holdout { val: 0.2 },
        stratify: vec![ir::StratifyKey::Gender, ir::StratifyKey::Age],
        seed: DEFAULT_SEED,
    };
    let Some(b) = b else { return out };
    match b.qualifiers.as_slice() {
        [] => {}
        [by, unit] if by.name == "by" && unit.name == "person" => {}
        [by, unit] if by.name == "by" && unit.name == "image" => {
            cx.error(Kind::Conflict, unit.span, "splitting by image puts one person's photos on both sides; use `split by person`")
        }
        [q, ..] => cx.error(Kind::Syntax, q.span, format!("expected `split by person`, found `{}`", b.qualifier_text())),
    }
    let mut k = Keys::new(cx, b);
    let val = k.get("val").and_then(|v| cx.float(v, "val", Bound::Excl(0.0), Bound::Excl(1.0)));
    let folds = k.get("folds").and_then(|v| cx.u32(v, "folds", 2, 100));
    if let (Some(_), Some(span)) = (k.get("val"), k.key_span("folds")) {
        cx.error(Kind::Conflict, span, "`val` and `folds` cannot both be set in `split`");
    }
    out.scheme = match (folds, val) {
        (Some(k), _) => ir::SplitScheme::Kfold { k },
        (None, Some(val)) => ir::SplitScheme::Holdout { val },
        _ => out.scheme,
    };
    if let Some(v) = k.get("stratify") {
        let mut keys = Vec::new();
        for item in cx.list(v, "stratify").unwrap_or(&[]) {
            match cx.choice(item, "stratify", &["gender", "age"]) {
                Some("gender") => keys.push(ir::StratifyKey::Gender),
                Some(_) => keys.push(ir::StratifyKey::Age),
                None => {}
            }
        }
        keys.sort();
        keys.dedup();
        out.stratify = keys;
    }
    if let Some(seed) = k.get("seed").and_then(|v| cx.seed(v, "seed")) {
        out.seed = seed;
    }
    k.finish(cx, "split", names::block_keys("split"));
    out
}

fn prepare(cx: &mut Cx<'_>, b: Option<&Block>) -> ir::Prepare {
    let mut out = ir::Prepare { size: [192, 256], crop: ir::Crop::None };
    let Some(b) = b else { return out };
    let mut k = Keys::new(cx, b);
    if let Some(size) = k.get("size").and_then(|v| cx.size(v, "size")) {
        out.size = size;
    }
    if let Some(v) = k.get("crop") {
        out.crop = crop(cx, v).unwrap_or(ir::Crop::None);
    }
    k.finish(cx, "prepare", names::block_keys("prepare"));
    out
}

fn crop(cx: &mut Cx<'_>, v: &Value) -> Option<ir::Crop> {
    const CROPS: &[&str] = &["none", "face", "center"];
    match &v.kind {
        ValueKind::Ident(name) if name == "center" => {
            cx.error(Kind::Missing, v.span, "`center` needs a size: `center(384x384)`");
            None
        }
        ValueKind::Ident(_) => match cx.choice(v, "crop", CROPS)? {
            "face" => Some(ir::Crop::Face),
            _ => Some(ir::Crop::None),
        },
        ValueKind::Call { name, args } if name.name == "center" => {
            let bound = bind_args(cx, name, args, &["size"]);
            match bound[0] {
                Some(s) => Some(ir::Crop::Center { size: cx.size(s, "size")? }),
                None => {
                    cx.error(Kind::Missing, v.span, "`center` needs a size: `center(384x384)`");
                    None
                }
            }
        }
        ValueKind::Call { name, .. } => {
            cx.error(Kind::UnknownName, name.span, names::unknown("crop", &name.name, CROPS));
            None
        }
        _ => {
            cx.type_error(v, "`none`, `face` or `center(WxH)`", "crop");
            None
        }
    }
}

// ---------------------------------------------------------------- augment, oversample

fn augment(cx: &mut Cx<'_>, blocks: &[&Block]) -> ir::Augment {
    let normalize = ir::Op::Normalize { mean: ir::IMAGENET_MEAN, std: ir::IMAGENET_STD };
    let mut out = ir::Augment { train: vec![ir::Op::Hflip { p: 0.5 }, normalize.clone()], eval: vec![normalize] };
    for b in blocks {
        let which = match b.qualifiers.as_slice() {
            [q] if q.name == "train" || q.name == "eval" => q.name.as_str(),
            [q, ..] => {
                cx.error(Kind::UnknownName, q.span, names::unknown("augment set", &q.name, &["train", "eval"]));
                continue;
            }
            [] => {
                cx.error(Kind::Missing, b.kind.span, "`augment` needs `train` or `eval`: `augment train { ... }`");
                continue;
            }
        };
        let mut ops = Vec::new();
        for s in b.stmts() {
            match s {
                Stmt::Op(call) => ops.extend(op(cx, &call.name, &call.args, true)),
                Stmt::Assign { key, .. } => cx.error(
                    Kind::Syntax,
                    key.span,
                    format!("expected an op in `augment {which}`, found `{} = ...`; write `{} ...`", key.name, key.name),
                ),
            }
        }
        if which == "train" {
            out.train = ops;
        } else {
            out.eval = ops;
        }
    }
    out
}

/// Parameters of each op, positional order first.
fn op_params(name: &str) -> &'static [&'static str] {
    match name {
        "resize" | "center_crop" => &["size"],
        "random_resized_crop" => &["size", "scale", "ratio"],
        "hflip" => &["p"],
        "rotate" => &["degrees", "random"],
        "jitter" => &["brightness", "contrast", "saturation"],
        "normalize" => &["preset", "mean", "std"],
        "random_erasing" => &["p", "scale", "ratio"],
        _ => &[],
    }
}

/// Lowers one op. `random_rotate` is the default for `rotate` (random in `augment`, a fixed
/// angle in an `oversample` `with` list).
fn op(cx: &mut Cx<'_>, name: &Ident, args: &[Arg], random_rotate: bool) -> Option<ir::Op> {
    let n = name.name.as_str();
    if !ir::OP_NAMES.contains(&n) {
        cx.error(Kind::UnknownName, name.span, names::unknown("op", n, ir::OP_NAMES));
        return None;
    }
    let a = bind_args(cx, name, args, op_params(n));
    let need = |cx: &mut Cx<'_>, i: usize| -> Option<&Value> {
        if a[i].is_none() {
            cx.error(Kind::Missing, name.span, format!("`{n}` needs `{}`", op_params(n)[i]));
        }
        a[i]
    };
    let unit = (Bound::Incl(0.0), Bound::Incl(1.0));
    let get_pair = |cx: &mut Cx<'_>, i: usize, key: &str, default: [f64; 2], lo: Bound, hi: Bound| -> Option<[f64; 2]> {
        match a[i] {
            Some(v) => cx.pair(v, key, lo, hi),
            None => Some(default),
        }
    };
    Some(match n {
        "resize" => {
            let v = need(cx, 0)?;
            ir::Op::Resize { size: cx.size(v, "size")? }
        }
        "center_crop" => {
            let v = need(cx, 0)?;
            ir::Op::CenterCrop { size: cx.size(v, "size")? }
        }
        "random_resized_crop" => {
            let size = need(cx, 0).and_then(|v| cx.size(v, "size"));
            let scale = get_pair(cx, 1, "scale", [0.08, 1.0], Bound::Excl(0.0), Bound::Incl(1.0));
            let ratio = get_pair(cx, 2, "ratio", [0.75, 4.0 / 3.0], Bound::Excl(0.0), Bound::Open);
            ir::Op::RandomResizedCrop { size: size?, scale: scale?, ratio: ratio? }
        }
        "hflip" => ir::Op::Hflip { p: a[0].map_or(Some(0.5), |v| cx.prob(v, "p"))? },
        "rotate" => {
            let degrees = need(cx, 0).and_then(|v| cx.degrees(v, "degrees"));
            let random = a[1].map_or(Some(random_rotate), |v| cx.bool(v, "random"));
            let (degrees, random) = (degrees?, random?);
            if random && degrees < 0.0 {
                cx.error(Kind::Range, a[0]?.span, "a random `rotate` takes a non-negative range; use `random = false` for a fixed angle");
                return None;
            }
            ir::Op::Rotate { degrees, random }
        }
        "jitter" => {
            let mut get = |i: usize, key: &str| a[i].map_or(Some(0.0), |v| cx.float(v, key, unit.0, unit.1));
            let (b, c, s) = (get(0, "brightness"), get(1, "contrast"), get(2, "saturation"));
            ir::Op::Jitter { brightness: b?, contrast: c?, saturation: s? }
        }
        "normalize" => match (a[0], a[1], a[2]) {
            (Some(p), None, None) => {
                cx.choice(p, "preset", &["imagenet"])?;
                ir::Op::Normalize { mean: ir::IMAGENET_MEAN, std: ir::IMAGENET_STD }
            }
            (None, Some(m), Some(s)) => {
                let mean = cx.floats::<3>(m, "mean", Bound::Open, Bound::Open);
                let std = cx.floats::<3>(s, "std", Bound::Excl(0.0), Bound::Open);
                ir::Op::Normalize { mean: mean?, std: std? }
            }
            _ => {
                cx.error(Kind::Missing, name.span, "`normalize` takes `imagenet` or both `mean` and `std`");
                return None;
            }
        },
        _ => {
            let p = a[0].map_or(Some(0.5), |v| cx.prob(v, "p"));
            let scale = get_pair(cx, 1, "scale", [0.02, 0.33], Bound::Excl(0.0), Bound::Incl(1.0));
            let ratio = get_pair(cx, 2, "ratio", [0.3, 3.3], Bound::Excl(0.0), Bound::Open);
            ir::Op::RandomErasing { p: p?, scale: scale?, ratio: ratio? }
        }
    })
}

/// An op written as a value: `hflip` or `rotate(10deg)`.
fn op_value(cx: &mut Cx<'_>, v: &Value, random_rotate: bool) -> Option<ir::Op> {
    match &v.kind {
        ValueKind::Ident(name) => op(cx, &Ident { name: name.clone(), span: v.span }, &[], random_rotate),
        ValueKind::Call { name, args } => op(cx, name, args, random_rotate),
        _ => {
            cx.type_error(v, "an op such as `rotate(10deg)`", "with");
            None
        }
    }
}

fn oversample(cx: &mut Cx<'_>, b: &Block) -> ir::Oversample {
    if let Some(q) = b.qualifiers.first() {
        cx.error(Kind::Syntax, q.span, format!("expected `where` after `oversample`, found `{}`", q.name));
    }
    if b.predicate.is_empty() {
        cx.error(Kind::Missing, b.kind.span, "`oversample` needs a condition: `oversample where age == 2 { ... }`");
    }
    let predicate = b.predicate.iter().filter_map(|c| clause(cx, c)).collect();
    let mut k = Keys::new(cx, b);
    let copies = k.get("copies").and_then(|v| cx.u32(v, "copies", 1, 100)).unwrap_or(1);
    let with = match k.get("with") {
        Some(v) => cx.list(v, "with").unwrap_or(&[]).iter().filter_map(|o| op_value(cx, o, false)).collect(),
        None => Vec::new(),
    };
    k.finish(cx, "oversample", names::block_keys("oversample"));
    ir::Oversample { predicate, copies, with }
}

fn clause(cx: &mut Cx<'_>, c: &Clause) -> Option<ir::Clause> {
    const FIELDS: &[&str] = &["mask", "gender", "age", "years", "class"];
    let (field, max, named): (ir::LabelField, i64, &[&str]) = match c.field.name.as_str() {
        "mask" => (ir::LabelField::Mask, 2, &["wear", "incorrect", "normal"]),
        "gender" => (ir::LabelField::Gender, 1, &["male", "female"]),
        "age" => (ir::LabelField::Age, 2, &[]),
        "years" => (ir::LabelField::Years, 150, &[]),
        "class" => (ir::LabelField::Class, 17, &[]),
        other => {
            cx.error(Kind::UnknownName, c.field.span, names::unknown("label field", other, FIELDS));
            return None;
        }
    };
    let cmp = match c.cmp {
        CmpOp::Eq => ir::Cmp::Eq,
        CmpOp::Ne => ir::Cmp::Ne,
        CmpOp::Lt => ir::Cmp::Lt,
        CmpOp::Le => ir::Cmp::Le,
        CmpOp::Gt => ir::Cmp::Gt,
        CmpOp::Ge => ir::Cmp::Ge,
    };
    let key = c.field.name.as_str();
    let value = match &c.value.kind {
        ValueKind::Ident(name) if !named.is_empty() => {
            let options: Vec<&'static str> = named.to_vec();
            let chosen = cx.choice(&c.value, key, &options)?;
            named.iter().position(|n| *n == chosen)? as i64
        }
        _ => cx.int(&c.value, key, 0, max)?,
    };
    Some(ir::Clause { field, cmp, value })
}

// ---------------------------------------------------------------- model, loss

fn model(cx: &mut Cx<'_>, b: Option<&Block>, root: Span) -> ir::Model {
    let mut out = ir::Model { arch: String::new(), pretrained: None, heads: ir::Heads::Single, dropout: 0.2, drop_path: 0.2 };
    let Some(b) = b else {
        cx.error(Kind::Missing, root, "missing `model` block; write e.g. `model efficientnet_b0 { }`");
        return out;
    };
    match b.qualifiers.as_slice() {
        [] => cx.error(Kind::Missing, b.kind.span, "missing model name; write e.g. `model efficientnet_b0 { }`"),
        [arch, rest @ ..] => {
            if ir::MODEL_NAMES.contains(&arch.name.as_str()) {
                out.arch = arch.name.clone();
            } else {
                cx.error(Kind::UnknownName, arch.span, names::unknown("model", &arch.name, ir::MODEL_NAMES));
            }
            if let Some(extra) = rest.first() {
                cx.error(Kind::Syntax, extra.span, format!("expected `{{` after the model name, found `{}`", extra.name));
            }
        }
    }
    let mut k = Keys::new(cx, b);
    out.pretrained = k.get("pretrained").and_then(|v| pretrained(cx, v, &out.arch));
    if let Some(v) = k.get("heads") {
        out.heads = heads(cx, v).unwrap_or(ir::Heads::Single);
    }
    if let Some(x) = k.get("dropout").and_then(|v| cx.float(v, "dropout", Bound::Incl(0.0), Bound::Excl(1.0))) {
        out.dropout = x;
    }
    if let Some(x) = k.get("drop_path").and_then(|v| cx.float(v, "drop_path", Bound::Incl(0.0), Bound::Excl(1.0))) {
        out.drop_path = x;
    }
    k.finish(cx, "model", names::block_keys("model"));
    out
}

/// `pretrained`: a local file, `"hf://ORG/REPO[@REV][/FILE]"`, or `timm("NAME[.TAG]")`, the
/// last two lowered to the canonical `hf://` spelling (timm's default tag filled in).
fn pretrained(cx: &mut Cx<'_>, v: &Value, arch: &str) -> Option<String> {
    match &v.kind {
        ValueKind::Call { name, args } if name.name == "timm" => {
            let a = bind_args(cx, name, args, &["name"]);
            let Some(arg) = a[0] else {
                cx.error(Kind::Missing, name.span, "`timm` needs a model name, e.g. `timm(\"efficientnet_b0.ra_in1k\")`");
                return None;
            };
            let timm_name = cx.string(arg, "timm")?;
            match crate::hub::HubRef::timm(&timm_name) {
                Ok((hub, for_arch)) if arch.is_empty() || for_arch == arch => Some(hub.to_string()),
                Ok((_, for_arch)) => {
                    cx.error(Kind::Range, arg.span, format!("these are weights for `{for_arch}`, but the model is `{arch}`"));
                    None
                }
                Err(msg) => {
                    cx.error(Kind::UnknownName, arg.span, msg);
                    None
                }
            }
        }
        ValueKind::Call { name, .. } => {
            cx.error(
                Kind::UnknownName,
                name.span,
                format!("unknown weights source `{}`; write `timm(\"NAME\")`, `\"hf://ORG/REPO\"` or a file path", name.name),
            );
            None
        }
        _ => {
            let s = cx.string(v, "pretrained")?;
            match crate::hub::HubRef::parse(&s) {
                None => Some(s),
                Some(Ok(hub)) => Some(hub.to_string()),
                Some(Err(msg)) => {
                    cx.error(Kind::Syntax, v.span, msg);
                    None
                }
            }
        }
    }
}

fn heads(cx: &mut Cx<'_>, v: &Value) -> Option<ir::Heads> {
    const HEADS: &[&str] = &["single", "multi", "separate"];
    let ones = ir::TaskWeights { mask: 1.0, gender: 1.0, age: 1.0 };
    match &v.kind {
        ValueKind::Ident(_) => match cx.choice(v, "heads", HEADS)? {
            "single" => Some(ir::Heads::Single),
            "separate" => Some(ir::Heads::Separate),
            _ => Some(ir::Heads::Multi { weights: ones }),
        },
        // `multi(age = 2.0)`: per-task loss weights.
        ValueKind::Call { name, args } if name.name == "multi" => {
            let a = bind_args(cx, name, args, &["mask", "gender", "age"]);
            let mut w = |i: usize, key: &str| a[i].map_or(Some(1.0), |v| cx.float(v, key, Bound::Incl(0.0), Bound::Open));
            let (m, g, ag) = (w(0, "mask"), w(1, "gender"), w(2, "age"));
            Some(ir::Heads::Multi { weights: ir::TaskWeights { mask: m?, gender: g?, age: ag? } })
        }
        // `{ mask: 3, gender: 2, age: 3 }`: one head per task with its class count.
        ValueKind::Map(entries) => {
            let expected = [("mask", 3), ("gender", 2), ("age", 3)];
            let mut ok = true;
            for e in entries {
                match expected.iter().find(|(k, _)| *k == e.key.name) {
                    Some((key, n)) => {
                        let count = cx.int(&e.value, key, 1, 100);
                        if count.is_some_and(|c| c != *n) {
                            cx.error(Kind::Range, e.value.span, format!("the `{key}` head has {n} classes, found {}", count.unwrap_or(0)));
                            ok = false;
                        }
                        ok &= count.is_some();
                    }
                    None => {
                        cx.error(Kind::UnknownName, e.key.span, names::unknown("task", &e.key.name, &["mask", "gender", "age"]));
                        ok = false;
                    }
                }
            }
            for (key, _) in expected {
                if !entries.iter().any(|e| e.key.name == key) {
                    cx.error(Kind::Missing, v.span, format!("missing the `{key}` head in `heads`"));
                    ok = false;
                }
            }
            ok.then_some(ir::Heads::Multi { weights: ones })
        }
        ValueKind::Call { name, .. } => {
            cx.error(Kind::UnknownName, name.span, names::unknown("heads", &name.name, HEADS));
            None
        }
        _ => {
            cx.type_error(v, "`single`, `separate`, `multi` or `{ mask: 3, gender: 2, age: 3 }`", "heads");
            None
        }
    }
}

fn loss_params(kind: &str) -> &'static [&'static str] {
    match kind {
        "cross_entropy" => &["smoothing", "class_weights"],
        "focal" => &["gamma", "alpha"],
        _ => &[],
    }
}

fn loss(cx: &mut Cx<'_>, b: Option<&Block>) -> ir::Loss {
    let ce = ir::LossKind::CrossEntropy { smoothing: 0.0, class_weights: ir::ClassWeights::None };
    let fallback = ir::Loss { terms: vec![ir::LossTerm { weight: 1.0, kind: ce.clone() }] };
    let Some(b) = b else { return fallback };
    if let Body::Expr(v) = &b.body {
        let terms: Vec<(Option<(Num, Span)>, &Value)> = match &v.kind {
            ValueKind::Sum(terms) => terms.iter().map(|t| (t.weight, &t.value)).collect(),
            _ => vec![(None, v)],
        };
        let mut out = Vec::new();
        for (weight, term) in terms {
            let weight = match weight {
                Some((n, span)) => {
                    let w = Value { kind: ValueKind::Num(n), span };
                    cx.float(&w, "weight", Bound::Excl(0.0), Bound::Open)
                }
                None => Some(1.0),
            };
            let kind = match &term.kind {
                ValueKind::Ident(name) => loss_kind(cx, &Ident { name: name.clone(), span: term.span }, &[]),
                ValueKind::Call { name, args } => {
                    let params = loss_params(&name.name);
                    let bound = bind_args(cx, name, args, params);
                    let named: Vec<(&str, &Value)> = params.iter().zip(bound).filter_map(|(p, v)| v.map(|v| (*p, v))).collect();
                    loss_kind(cx, name, &named)
                }
                _ => {
                    cx.type_error(term, "a loss such as `focal(gamma = 2)`", "loss");
                    None
                }
            };
            if let (Some(weight), Some(kind)) = (weight, kind) {
                out.push(ir::LossTerm { weight, kind });
            }
        }
        return if out.is_empty() { fallback } else { ir::Loss { terms: out } };
    }
    let Some(name) = b.qualifiers.first() else {
        cx.error(Kind::Missing, b.kind.span, "missing loss name; write e.g. `loss focal { gamma = 2 }`");
        return fallback;
    };
    let mut k = Keys::new(cx, b);
    let params = loss_params(&name.name);
    let named: Vec<(&str, &Value)> = params.iter().filter_map(|p| k.get(p).map(|v| (*p, v))).collect();
    let kind = loss_kind(cx, name, &named);
    if ir::LOSS_NAMES.contains(&name.name.as_str()) {
        k.finish(cx, &format!("loss {}", name.name), params);
    }
    kind.map_or(fallback, |kind| ir::Loss { terms: vec![ir::LossTerm { weight: 1.0, kind }] })
}

fn loss_kind(cx: &mut Cx<'_>, name: &Ident, args: &[(&str, &Value)]) -> Option<ir::LossKind> {
    let get = |key: &str| args.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    match name.name.as_str() {
        "cross_entropy" => {
            let smoothing = get("smoothing").map_or(Some(0.0), |v| cx.float(v, "smoothing", Bound::Incl(0.0), Bound::Excl(1.0)));
            let class_weights = get("class_weights").map_or(Some(ir::ClassWeights::None), |v| class_weights(cx, v, "class_weights"));
            Some(ir::LossKind::CrossEntropy { smoothing: smoothing?, class_weights: class_weights? })
        }
        "focal" => {
            let gamma = get("gamma").map_or(Some(2.0), |v| cx.float(v, "gamma", Bound::Incl(0.0), Bound::Incl(10.0)));
            let alpha = get("alpha").map_or(Some(ir::ClassWeights::None), |v| class_weights(cx, v, "alpha"));
            Some(ir::LossKind::Focal { gamma: gamma?, alpha: alpha? })
        }
        "soft_f1" => Some(ir::LossKind::SoftF1),
        other => {
            cx.error(Kind::UnknownName, name.span, names::unknown("loss", other, ir::LOSS_NAMES));
            None
        }
    }
}

fn class_weights(cx: &mut Cx<'_>, v: &Value, key: &str) -> Option<ir::ClassWeights> {
    match &v.kind {
        ValueKind::List(items) => {
            if items.len() != NUM_CLASSES {
                cx.error(Kind::Type, v.span, format!("`{key}` needs {NUM_CLASSES} class weights, found {}", items.len()));
                return None;
            }
            let ws: Vec<Option<f64>> = items.iter().map(|x| cx.float(x, key, Bound::Excl(0.0), Bound::Open)).collect();
            ws.into_iter().collect::<Option<Vec<f64>>>().map(ir::ClassWeights::PerClass)
        }
        _ => match cx.choice(v, key, &["none", "auto"])? {
            "auto" => Some(ir::ClassWeights::Auto),
            _ => Some(ir::ClassWeights::None),
        },
    }
}

// ---------------------------------------------------------------- train

fn train(cx: &mut Cx<'_>, b: Option<&Block>) -> ir::Train {
    let mut out = ir::Train {
        epochs: 10,
        batch: 32,
        optimizer: ir::Optimizer::Adamw { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 },
        schedule: ir::Schedule::Cosine { warmup: 1, min_lr: 1e-6 },
        grad_clip: None,
        cutmix: 0.0,
        mixup: 0.0,
        early_stop: None,
        seed: DEFAULT_SEED,
        backend: ir::Backend::Cpu,
        precision: ir::Precision::F32,
    };
    let Some(b) = b else { return out };
    let mut k = Keys::new(cx, b);
    if let Some(x) = k.get("epochs").and_then(|v| cx.u32(v, "epochs", 1, 100_000)) {
        out.epochs = x;
    }
    if let Some(x) = k.get("batch").and_then(|v| cx.u32(v, "batch", 1, 65_536)) {
        out.batch = x;
    }
    if let Some(v) = k.get("optimizer") {
        out.optimizer = optimizer(cx, v).unwrap_or(out.optimizer);
    }
    if let Some(v) = k.get("schedule") {
        out.schedule = schedule(cx, v).unwrap_or(out.schedule);
    }
    out.grad_clip = k.get("grad_clip").and_then(|v| cx.float(v, "grad_clip", Bound::Excl(0.0), Bound::Open));
    if let Some(x) = k.get("cutmix").and_then(|v| cx.prob(v, "cutmix")) {
        out.cutmix = x;
    }
    if let Some(x) = k.get("mixup").and_then(|v| cx.prob(v, "mixup")) {
        out.mixup = x;
    }
    out.early_stop = k.get("early_stop").and_then(|v| cx.u32(v, "early_stop", 1, 100_000));
    if let Some(x) = k.get("seed").and_then(|v| cx.seed(v, "seed")) {
        out.seed = x;
    }
    if let Some(x) = k.get("backend").and_then(|v| cx.choice(v, "backend", &["cpu", "cuda", "wgpu"])) {
        out.backend = match x {
            "cuda" => ir::Backend::Cuda,
            "wgpu" => ir::Backend::Wgpu,
            _ => ir::Backend::Cpu,
        };
    }
    if let Some(v) = k.get("precision") {
        if let Some(x) = cx.choice(v, "precision", &["f32", "f16", "bf16"]) {
            out.precision = match x {
                "f16" => ir::Precision::F16,
                "bf16" => ir::Precision::Bf16,
                _ => ir::Precision::F32,
            };
        }
        if out.precision != ir::Precision::F32 && out.backend == ir::Backend::Cpu {
            cx.error(
                Kind::Conflict,
                v.span,
                "half precision needs a GPU backend: set `backend = cuda` or `backend = wgpu` (the CPU backend computes in f32)",
            );
        } else if let (ir::Precision::F16, ir::Optimizer::Adam { eps, .. } | ir::Optimizer::Adamw { eps, .. }) =
            (out.precision, &out.optimizer)
            && *eps < F16_SMALLEST_NORMAL
        {
            // burn 0.21 has no f32 master weights: Adam's state and update are f16 too, where an
            // `eps` below f16's smallest normal rounds to 0 (or a subnormal the GPU may flush) and
            // an entry whose gradient has been zero divides 0 by 0. Found on lavapipe: NaN loss at
            // the second step of a tiny model with the default 1e-8.
            cx.error(
                Kind::Conflict,
                v.span,
                format!(
                    "`precision = f16` computes Adam's update in f16, where the optimizer's `eps = {eps:e}` is below the smallest normal \
                     ({F16_SMALLEST_NORMAL:e}) and a zero gradient gives NaN: set `eps = 1e-4` in the optimizer, or use `precision = bf16`"
                ),
            );
        }
    }
    k.finish(cx, "train", names::block_keys("train"));
    out
}

/// 2⁻¹⁴, the smallest positive normal `f16`.
const F16_SMALLEST_NORMAL: f64 = 6.103515625e-5;

/// A call-like value: `adamw` or `adamw(lr = 3e-4)`.
fn call_parts<'v>(cx: &mut Cx<'_>, v: &'v Value, key: &str, example: &str) -> Option<(Ident, &'v [Arg])> {
    match &v.kind {
        ValueKind::Ident(name) => Some((Ident { name: name.clone(), span: v.span }, &[])),
        ValueKind::Call { name, args } => Some((name.clone(), args)),
        _ => {
            cx.type_error(v, example, key);
            None
        }
    }
}

fn optimizer(cx: &mut Cx<'_>, v: &Value) -> Option<ir::Optimizer> {
    let (name, args) = call_parts(cx, v, "optimizer", "an optimizer such as `adamw(lr = 3e-4)`")?;
    if !ir::OPTIMIZER_NAMES.contains(&name.name.as_str()) {
        cx.error(Kind::UnknownName, name.span, names::unknown("optimizer", &name.name, ir::OPTIMIZER_NAMES));
        return None;
    }
    let params: &[&str] = match name.name.as_str() {
        "sgd" => &["lr", "momentum", "nesterov", "weight_decay"],
        _ => &["lr", "betas", "eps", "weight_decay"],
    };
    let a = bind_args(cx, &name, args, params);
    let default_lr = if name.name == "sgd" { 0.01 } else { 1e-3 };
    let lr = a[0].map_or(Some(default_lr), |v| cx.float(v, "lr", Bound::Excl(0.0), Bound::Incl(10.0)));
    let wd_default = if name.name == "adamw" { 0.01 } else { 0.0 };
    let wd = a[3].map_or(Some(wd_default), |v| cx.float(v, "weight_decay", Bound::Incl(0.0), Bound::Incl(1.0)));
    Some(if name.name == "sgd" {
        let momentum = a[1].map_or(Some(0.9), |v| cx.float(v, "momentum", Bound::Incl(0.0), Bound::Excl(1.0)));
        let nesterov = a[2].map_or(Some(false), |v| cx.bool(v, "nesterov"));
        ir::Optimizer::Sgd { lr: lr?, momentum: momentum?, nesterov: nesterov?, weight_decay: wd? }
    } else {
        let betas = a[1].map_or(Some([0.9, 0.999]), |v| cx.floats::<2>(v, "betas", Bound::Incl(0.0), Bound::Excl(1.0)));
        let eps = a[2].map_or(Some(1e-8), |v| cx.float(v, "eps", Bound::Excl(0.0), Bound::Incl(1.0)));
        let (lr, betas, eps, weight_decay) = (lr?, betas?, eps?, wd?);
        if name.name == "adam" {
            ir::Optimizer::Adam { lr, betas, eps, weight_decay }
        } else {
            ir::Optimizer::Adamw { lr, betas, eps, weight_decay }
        }
    })
}

fn schedule(cx: &mut Cx<'_>, v: &Value) -> Option<ir::Schedule> {
    let (name, args) = call_parts(cx, v, "schedule", "a schedule such as `cosine(warmup = 1)`")?;
    let params: &[&str] = match name.name.as_str() {
        "constant" => &["warmup"],
        "step" => &["warmup", "every", "gamma"],
        "cosine" => &["warmup", "min_lr"],
        other => {
            cx.error(Kind::UnknownName, name.span, names::unknown("schedule", other, ir::SCHEDULE_NAMES));
            return None;
        }
    };
    let a = bind_args(cx, &name, args, params);
    let default_warmup = if name.name == "cosine" { 1 } else { 0 };
    let warmup = a[0].map_or(Some(default_warmup), |v| cx.u32(v, "warmup", 0, 100_000));
    Some(match name.name.as_str() {
        "constant" => ir::Schedule::Constant { warmup: warmup? },
        "step" => {
            let every = a[1].map_or(Some(2), |v| cx.u32(v, "every", 1, 100_000));
            let gamma = a[2].map_or(Some(0.1), |v| cx.float(v, "gamma", Bound::Excl(0.0), Bound::Incl(1.0)));
            ir::Schedule::Step { warmup: warmup?, every: every?, gamma: gamma? }
        }
        _ => {
            let min_lr = a[1].map_or(Some(1e-6), |v| cx.float(v, "min_lr", Bound::Incl(0.0), Bound::Open));
            ir::Schedule::Cosine { warmup: warmup?, min_lr: min_lr? }
        }
    })
}

// ---------------------------------------------------------------- evaluate, predict, ensemble

fn tta_block(cx: &mut Cx<'_>, b: &Block, what: &str) -> (ir::Tta, String) {
    let mut k = Keys::new(cx, b);
    let tta = match k.get("tta").and_then(|v| cx.choice(v, "tta", &["none", "hflip"])) {
        Some("hflip") => ir::Tta::Hflip,
        _ => ir::Tta::None,
    };
    let mut output = "submission.csv".to_string();
    if what == "predict"
        && let Some(v) = k.get("output")
        && let Some(s) = cx.string(v, "output")
    {
        if s.is_empty() || s.contains(['/', '\\']) || s == "." || s == ".." {
            cx.error(Kind::Range, v.span, "`output` must be a plain file name such as \"submission.csv\"");
        } else {
            output = s;
        }
    }
    k.finish(cx, what, names::block_keys(what));
    (tta, output)
}

fn ensemble(cx: &mut Cx<'_>, b: &Block) -> ir::Ensemble {
    let mut k = Keys::new(cx, b);
    let dir = cx.sources.get(b.span.file).and_then(|f| f.path.as_ref()).and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let mut members = Vec::new();
    match k.get("members") {
        Some(v) => {
            let items = cx.list(v, "members").unwrap_or(&[]);
            if items.is_empty() && matches!(v.kind, ValueKind::List(_)) {
                cx.error(Kind::Range, v.span, "`members` needs at least one pipeline");
            }
            for item in items {
                let Some(m) = cx.string(item, "members") else {
                    continue;
                };
                if let Some(dir) = &dir
                    && !dir.join(&m).is_file()
                {
                    cx.error(Kind::Include, item.span, format!("ensemble member `{m}` not found"));
                }
                members.push(m);
            }
        }
        None => cx.error(Kind::Missing, b.kind.span, "missing `members` in `ensemble`"),
    }
    let vote = match k.get("vote").and_then(|v| cx.choice(v, "vote", &["soft", "hard"])) {
        Some("hard") => ir::Vote::Hard,
        _ => ir::Vote::Soft,
    };
    let mut weights = vec![1.0; members.len()];
    if let Some(v) = k.get("weights") {
        let ws: Vec<f64> =
            cx.list(v, "weights").unwrap_or(&[]).iter().filter_map(|x| cx.float(x, "weights", Bound::Incl(0.0), Bound::Open)).collect();
        if matches!(v.kind, ValueKind::List(_)) && ws.len() != members.len() {
            cx.error(Kind::Range, v.span, format!("`weights` needs one weight per member ({}), found {}", members.len(), ws.len()));
        }
        weights = ws;
    }
    k.finish(cx, "ensemble", names::block_keys("ensemble"));
    ir::Ensemble { members, vote, weights }
}
