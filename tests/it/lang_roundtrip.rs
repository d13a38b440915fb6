//! Property test of `maskflow fmt` on random *valid* pipelines: formatting keeps the meaning
//! (the lowered IR of every sweep variant, compared as values and as canonical JSON), is a
//! fixed point (`fmt(fmt(x)) == fmt(x)`) and keeps every comment.
//!
//! The generator writes pipeline text from pieces: every block of the language (both `data`
//! sources, `relabel` maps, `split` by holdout or folds, `prepare` crops, `augment` ops in
//! their positional, named and bare spellings, `oversample` predicates and `with` lists,
//! `model` heads, `loss` blocks and weighted sums, `train` optimisers and schedules,
//! `evaluate`, `predict`, `ensemble`, `extends`, sweeps), with values drawn inside their valid
//! ranges and spelled in equivalent ways (`0.5`, `5e-1`, `5E-1`, `5e+0`, leading zeros,
//! `deg`/`rad`), and lays it out at random: block and key order, `;` or line ends (`\n`,
//! `\r\n` or `\r`), blank lines, one-line or multi-line bodies, lists and calls, spaces and
//! tabs, comments wherever a comment can go. A generated pipeline must pass the checker: a
//! failure there is a generator bug and fails the test with the input shown.

use maskflow::{ir, lang};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

type S = BoxedStrategy<String>;

// ---------------------------------------------------------------- values

/// `x` in one of the spellings that parse back to the same `f64`.
fn spell(x: f64, how: u8) -> String {
    match how % 5 {
        0 => format!("{x}"),
        1 => format!("{x:e}"),
        2 => format!("{x:E}"),
        3 => format!("{x:?}"),
        _ => {
            let e = format!("{x:e}");
            if e.contains("e-") { e } else { e.replace('e', "e+") }
        }
    }
}

/// `k / denom` for `k` in `lo..=hi`, spelled at random.
fn frac(lo: i64, hi: i64, denom: f64) -> S {
    (lo..=hi, any::<u8>()).prop_map(move |(k, how)| spell(k as f64 / denom, how)).boxed()
}

/// `m × 10^-e` for a mantissa in 1..=99 and `e` in `e_lo..=e_hi`: learning rates and the like.
fn sci(e_lo: i32, e_hi: i32) -> S {
    (1..=99i64, e_lo..=e_hi, any::<u8>()).prop_map(|(m, e, how)| spell(m as f64 / 10f64.powi(e), how)).boxed()
}

/// An integer in `lo..=hi`, now and then with leading zeros.
fn int(lo: i64, hi: i64) -> S {
    (lo..=hi, 0..6u8).prop_map(|(i, how)| if how == 0 { format!("{i:04}") } else { i.to_string() }).boxed()
}

fn seed() -> S {
    prop_oneof![int(0, 1000), (0..=i64::MAX).prop_map(|i| i.to_string())].boxed()
}

fn size() -> S {
    (1..=8192u32, 1..=8192u32, 0..6u8).prop_map(|(w, h, how)| if how == 0 { format!("0{w}x{h}") } else { format!("{w}x{h}") }).boxed()
}

fn boolean() -> S {
    prop_oneof![Just("true".to_string()), Just("false".to_string())].boxed()
}

fn one_of(names: &'static [&'static str]) -> S {
    proptest::sample::select(names).prop_map(str::to_string).boxed()
}

/// A string literal with escapes.
fn string_lit(content: &'static str) -> S {
    content
        .prop_map(|s| {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        })
        .boxed()
}

/// Marks a line break inside a value (a list, call or map written over several lines); the
/// layout turns it into a newline, sometimes after a comment.
const BREAK: char = '\u{2}';

/// `items` between `open` and `close` in one of several layouts.
fn seq(open: &str, close: &str, items: &[String], style: u8) -> String {
    if items.is_empty() {
        return if style.is_multiple_of(2) { format!("{open}{close}") } else { format!("{open} {close}") };
    }
    match style % 5 {
        0 => format!("{open}{}{close}", items.join(", ")),
        1 => format!("{open}{}{close}", items.join(",")),
        2 => format!("{open} {} {close}", items.join(" , ")),
        3 => format!("{open}{}, {close}", items.join(", ")),
        _ => format!("{open}{BREAK}{},{BREAK}{close}", items.join(&format!(",{BREAK}"))),
    }
}

fn list(items: S, len: std::ops::RangeInclusive<usize>) -> S {
    (prop::collection::vec(items, len), any::<u8>()).prop_map(|(items, style)| seq("[", "]", &items, style)).boxed()
}

/// A call: positional arguments first, then `name = value` ones (each optional).
fn call(name: &'static str, positional: Vec<S>, named: Vec<(&'static str, S)>) -> S {
    let named: Vec<S> = named
        .into_iter()
        .map(|(k, v)| prop::option::of(v).prop_map(move |v| v.map_or(String::new(), |v| format!("{k} = {v}"))).boxed())
        .collect();
    (positional, named, any::<u8>())
        .prop_map(move |(pos, named, style)| {
            let args: Vec<String> = pos.into_iter().chain(named.into_iter().filter(|a| !a.is_empty())).collect();
            format!("{name}{}", seq("(", ")", &args, style))
        })
        .boxed()
}

/// Usually `v`; now and then a sweep of one or two values like it.
fn sweepable(v: S) -> S {
    prop_oneof![8 => v.clone(), 1 => (prop::collection::vec(v, 1..=2), any::<u8>()).prop_map(|(items, style)| format!("sweep{}", seq("[", "]", &items, style)))].boxed()
}

/// A pair `[lo, hi]` with `lo <= hi`, each `k / denom` for `k` in `lo..=hi`.
fn pair(lo: i64, hi: i64, denom: f64) -> S {
    (lo..=hi, lo..=hi, any::<u8>(), any::<u8>(), any::<u8>())
        .prop_map(move |(a, b, h1, h2, style)| {
            let (a, b) = (a.min(b), a.max(b));
            seq("[", "]", &[spell(a as f64 / denom, h1), spell(b as f64 / denom, h2)], style)
        })
        .boxed()
}

// ---------------------------------------------------------------- blocks

/// One block (or the `extends` line): its head and statements, laid out later.
#[derive(Debug, Clone)]
enum Piece {
    Extends,
    Block {
        head: String,
        stmts: Vec<String>,
    },
    /// `loss = <sum>`
    LossSum(String),
}

/// `key = value` for each key that is present.
fn assigns(pairs: Vec<(&'static str, Option<String>)>) -> Vec<String> {
    pairs.into_iter().filter_map(|(k, v)| v.map(|v| format!("{k}\u{3}=\u{3}{v}"))).collect()
}

fn opt(s: S) -> BoxedStrategy<Option<String>> {
    prop::option::of(s).boxed()
}

fn data() -> BoxedStrategy<Piece> {
    let synthetic =
        (opt(int(1, 100_000)), opt(int(0, 100_000)), opt(seed()), opt(size()), opt(age_bins()), opt(one_of(&["error", "skip"]))).prop_map(
            |(p, e, s, z, a, o)| Piece::Block {
                head: "data synthetic".into(),
                stmts: assigns(vec![("persons", p), ("eval_persons", e), ("seed", s), ("size", z), ("age_bins", a), ("on_bad_image", o)]),
            },
        );
    let dir = (string_lit("[a-z0-9_/ .é\"\\\\#-]{0,12}"), opt(string_lit("[a-z/]{1,8}")), opt(age_bins()), opt(one_of(&["error", "skip"])))
        .prop_map(|(r, e, a, o)| Piece::Block {
            head: "data".into(),
            stmts: assigns(vec![("root", Some(r)), ("eval", e), ("age_bins", a), ("on_bad_image", o)]),
        });
    prop_oneof![synthetic, dir].boxed()
}

fn age_bins() -> S {
    (1..150u32)
        .prop_flat_map(|lo| (Just(lo), lo + 1..=150, any::<u8>()))
        .prop_map(|(lo, hi, style)| seq("[", "]", &[lo.to_string(), hi.to_string()], style))
        .boxed()
}

fn person_id() -> S {
    prop_oneof![3 => "[0-9]{6}", 1 => "[0-9]{6}-[0-9]{1,2}"].prop_map(|id| format!("\"{id}\"")).boxed()
}

fn map_of(value: S) -> S {
    (prop::collection::btree_map(person_id(), value, 0..=3), any::<u8>())
        .prop_map(|(m, style)| {
            let entries: Vec<String> = m.into_iter().map(|(k, v)| format!("{k}:\u{3}{v}")).collect();
            seq("{", "}", &entries, style)
        })
        .boxed()
}

fn relabel() -> BoxedStrategy<Piece> {
    (
        opt(boolean()),
        opt(map_of(one_of(&["male", "female"]))),
        opt(map_of(int(0, 150))),
        opt(list(person_id(), 0..=3)),
        opt(string_lit("[a-z_]{1,8}\\.csv")),
    )
        .prop_map(|(k, g, a, s, f)| Piece::Block {
            head: "relabel".into(),
            stmts: assigns(vec![("known", k), ("gender", g), ("age", a), ("swap_incorrect_normal", s), ("file", f)]),
        })
        .boxed()
}

fn split() -> BoxedStrategy<Piece> {
    let scheme = prop_oneof![Just(None), frac(1, 999, 1000.0).prop_map(|v| Some(("val", v))), int(2, 100).prop_map(|f| Some(("folds", f)))];
    (any::<bool>(), scheme, opt(list(one_of(&["gender", "age"]), 0..=3)), opt(sweepable(seed())))
        .prop_map(|(by_person, scheme, stratify, seed)| {
            let mut stmts = assigns(vec![("stratify", stratify), ("seed", seed)]);
            if let Some((k, v)) = scheme {
                stmts.extend(assigns(vec![(k, Some(v))]));
            }
            Piece::Block { head: if by_person { "split by person".into() } else { "split".into() }, stmts }
        })
        .boxed()
}

fn prepare() -> BoxedStrategy<Piece> {
    let crop = prop_oneof![
        one_of(&["none", "face"]),
        size().prop_map(|s| format!("center({s})")),
        size().prop_map(|s| format!("center(size = {s})")),
    ];
    (opt(size()), opt(crop.boxed()))
        .prop_map(|(s, c)| Piece::Block { head: "prepare".into(), stmts: assigns(vec![("size", s), ("crop", c)]) })
        .boxed()
}

/// An angle in degrees, as `deg`, `rad` or a plain number.
fn angle(lo: i64, hi: i64) -> S {
    (lo..=hi, any::<u8>(), 0..3u8)
        .prop_map(|(d, how, unit)| match unit {
            0 => format!("{}deg", spell(d as f64, how)),
            // Radians that convert back inside ±360°.
            1 => format!("{}rad", spell((d as f64 * 0.9).to_radians(), how)),
            _ => spell(d as f64, how),
        })
        .boxed()
}

/// One `augment` op, in its bare, positional, call or named spelling.
fn op() -> S {
    let one = |name: &'static str, v: S, key: &'static str| -> S {
        (v, 0..3u8)
            .prop_map(move |(v, how)| match how {
                0 => format!("{name} {v}"),
                1 => format!("{name}({v})"),
                _ => format!("{name}({key} = {v})"),
            })
            .boxed()
    };
    prop_oneof![
        one("resize", size(), "size"),
        one("center_crop", size(), "size"),
        call("random_resized_crop", vec![size()], vec![("scale", pair(1, 100, 100.0)), ("ratio", pair(1, 400, 100.0))]),
        Just("hflip".to_string()).boxed(),
        one("hflip", sweepable(frac(0, 100, 100.0)), "p"),
        one("rotate", angle(0, 360), "degrees"),
        (angle(-360, 360), boolean())
            .prop_map(|(a, r)| if r == "true" {
                format!("rotate({a}, random = false)")
            } else {
                format!("rotate(degrees = {a}, random = false)")
            })
            .boxed(),
        call(
            "jitter",
            vec![],
            vec![("brightness", frac(0, 100, 100.0)), ("contrast", frac(0, 100, 100.0)), ("saturation", frac(0, 100, 100.0))]
        ),
        prop_oneof![Just("normalize imagenet"), Just("normalize(imagenet)"), Just("normalize(preset = imagenet)")]
            .prop_map(str::to_string)
            .boxed(),
        (list(frac(-1000, 1000, 1000.0), 3..=3), list(frac(1, 1000, 1000.0), 3..=3))
            .prop_map(|(m, s)| format!("normalize(mean = {m}, std = {s})"))
            .boxed(),
        Just("random_erasing".to_string()).boxed(),
        call("random_erasing", vec![frac(0, 100, 100.0)], vec![("scale", pair(1, 100, 100.0)), ("ratio", pair(1, 400, 100.0))]),
    ]
    .boxed()
}

fn augment(which: &'static str) -> BoxedStrategy<Piece> {
    prop::collection::vec(op(), 0..=5).prop_map(move |ops| Piece::Block { head: format!("augment {which}"), stmts: ops }).boxed()
}

fn clause() -> S {
    let cmp = one_of(&["==", "!=", "<", "<=", ">", ">="]);
    let field = prop_oneof![
        prop_oneof![int(0, 2), one_of(&["wear", "incorrect", "normal"])].prop_map(|v| ("mask", v)),
        prop_oneof![int(0, 1), one_of(&["male", "female"])].prop_map(|v| ("gender", v)),
        int(0, 2).prop_map(|v| ("age", v)),
        int(0, 150).prop_map(|v| ("years", v)),
        int(0, 17).prop_map(|v| ("class", v)),
    ];
    (field, cmp).prop_map(|((f, v), c)| format!("{f} {c} {v}")).boxed()
}

fn oversample() -> BoxedStrategy<Piece> {
    let with_op = prop_oneof![
        one_of(&["hflip", "random_erasing"]),
        angle(-360, 360).prop_map(|a| format!("rotate({a})")),
        frac(0, 100, 100.0).prop_map(|p| format!("hflip(p = {p})")),
    ];
    (prop::collection::vec(clause(), 1..=3), opt(int(1, 100)), opt(list(with_op.boxed(), 0..=3)))
        .prop_map(|(clauses, copies, with)| Piece::Block {
            head: format!("oversample where {}", clauses.join(" and ")),
            stmts: assigns(vec![("copies", copies), ("with", with)]),
        })
        .boxed()
}

fn model() -> BoxedStrategy<Piece> {
    let heads = prop_oneof![
        one_of(&["single", "multi", "separate"]),
        call("multi", vec![], vec![("mask", frac(0, 50, 10.0)), ("gender", frac(0, 50, 10.0)), ("age", frac(0, 50, 10.0))]),
        (Just(vec!["mask: 3", "gender: 2", "\"age\": 3"]).prop_shuffle(), any::<u8>()).prop_map(|(e, style)| seq(
            "{",
            "}",
            &e.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            style
        )),
    ];
    (
        proptest::sample::select(ir::MODEL_NAMES),
        opt(string_lit("[a-z0-9_/.]{1,12}")),
        opt(heads.boxed()),
        opt(sweepable(frac(0, 99, 100.0))),
        opt(frac(0, 99, 100.0)),
    )
        .prop_map(|(arch, p, h, d, dp)| Piece::Block {
            head: format!("model {arch}"),
            stmts: assigns(vec![("pretrained", p), ("heads", h), ("dropout", d), ("drop_path", dp)]),
        })
        .boxed()
}

fn class_weights() -> S {
    prop_oneof![one_of(&["none", "auto"]), list(frac(1, 500, 100.0), 18..=18)].boxed()
}

fn loss() -> BoxedStrategy<Piece> {
    let focal = (opt(frac(0, 100, 10.0)), opt(class_weights()))
        .prop_map(|(g, a)| Piece::Block { head: "loss focal".into(), stmts: assigns(vec![("gamma", g), ("alpha", a)]) });
    let ce = (opt(frac(0, 99, 100.0)), opt(class_weights())).prop_map(|(s, c)| Piece::Block {
        head: "loss cross_entropy".into(),
        stmts: assigns(vec![("smoothing", s), ("class_weights", c)]),
    });
    let soft_f1 = Just(Piece::Block { head: "loss soft_f1".into(), stmts: vec![] });
    let term = prop_oneof![
        one_of(&["focal", "cross_entropy", "soft_f1"]),
        call("focal", vec![], vec![("gamma", frac(0, 100, 10.0)), ("alpha", one_of(&["none", "auto"]))]),
        call("cross_entropy", vec![], vec![("smoothing", frac(0, 99, 100.0))]),
    ];
    let weighted = (opt(frac(1, 100, 10.0)), term.boxed()).prop_map(|(w, t)| match w {
        Some(w) => format!("{w}\u{3}*\u{3}{t}"),
        None => t,
    });
    let sum = prop::collection::vec(weighted, 1..=3).prop_map(|terms| Piece::LossSum(terms.join("\u{3}+\u{3}")));
    prop_oneof![focal, ce, soft_f1, sum].boxed()
}

fn optimizer() -> S {
    let adam = |name: &'static str| {
        call(
            name,
            vec![],
            vec![("lr", sweepable(sci(1, 6))), ("betas", pair(0, 999, 1000.0)), ("eps", sci(2, 10)), ("weight_decay", frac(0, 100, 100.0))],
        )
    };
    prop_oneof![
        one_of(&["adamw", "adam", "sgd"]),
        adam("adamw"),
        adam("adam"),
        (sci(1, 5), any::<u8>()).prop_map(|(lr, style)| format!("adamw{}", seq("(", ")", &[lr], style))).boxed(),
        call(
            "sgd",
            vec![],
            vec![("lr", sci(1, 6)), ("momentum", frac(0, 99, 100.0)), ("nesterov", boolean()), ("weight_decay", frac(0, 100, 100.0))]
        ),
    ]
    .boxed()
}

fn schedule() -> S {
    prop_oneof![
        one_of(&["cosine", "step", "constant"]),
        call(
            "cosine",
            vec![],
            vec![("warmup", int(0, 100_000)), ("min_lr", prop_oneof![Just("0".to_string()).boxed(), sci(3, 9)].boxed())]
        ),
        call("step", vec![], vec![("warmup", int(0, 100)), ("every", int(1, 100_000)), ("gamma", frac(1, 100, 100.0))]),
        call("constant", vec![], vec![("warmup", int(0, 100))]),
    ]
    .boxed()
}

fn train() -> BoxedStrategy<Piece> {
    (
        (opt(sweepable(int(1, 100_000))), opt(int(1, 65_536)), opt(optimizer()), opt(schedule()), opt(frac(1, 1000, 100.0))),
        (opt(frac(0, 100, 100.0)), opt(frac(0, 100, 100.0)), opt(int(1, 100_000)), opt(sweepable(seed())), opt(one_of(&["cpu", "cuda"]))),
    )
        .prop_map(|((e, b, o, s, g), (c, m, es, sd, be))| Piece::Block {
            head: "train".into(),
            stmts: assigns(vec![
                ("epochs", e),
                ("batch", b),
                ("optimizer", o),
                ("schedule", s),
                ("grad_clip", g),
                ("cutmix", c),
                ("mixup", m),
                ("early_stop", es),
                ("seed", sd),
                ("backend", be),
            ]),
        })
        .boxed()
}

fn evaluate() -> BoxedStrategy<Piece> {
    opt(one_of(&["none", "hflip"])).prop_map(|t| Piece::Block { head: "evaluate".into(), stmts: assigns(vec![("tta", t)]) }).boxed()
}

fn predict() -> BoxedStrategy<Piece> {
    (opt(one_of(&["none", "hflip"])), opt(string_lit("[a-z0-9_]{1,8}\\.csv")))
        .prop_map(|(t, o)| Piece::Block { head: "predict".into(), stmts: assigns(vec![("tta", t), ("output", o)]) })
        .boxed()
}

/// Ensemble members that exist next to the generated file (see [`workdir`]).
const MEMBERS: &[&str] = &["\"a.mf\"", "\"b.mf\"", "\"sub/c.mf\""];

fn ensemble() -> BoxedStrategy<Piece> {
    (prop::sample::subsequence(MEMBERS, 1..=3), opt(one_of(&["soft", "hard"])), any::<bool>(), any::<u8>())
        .prop_flat_map(|(members, vote, with_weights, style)| {
            let n = members.len();
            let weights =
                if with_weights { prop::collection::vec(frac(0, 100, 10.0), n..=n).prop_map(Some).boxed() } else { Just(None).boxed() };
            (Just(members), Just(vote), weights, Just(style))
        })
        .prop_map(|(members, vote, weights, style)| {
            let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
            let weights = weights.map(|w| seq("[", "]", &w, style));
            Piece::Block {
                head: "ensemble".into(),
                stmts: assigns(vec![("members", Some(seq("[", "]", &members, style))), ("vote", vote), ("weights", weights)]),
            }
        })
        .boxed()
}

/// The pieces of one valid pipeline, required blocks always present.
fn pipeline() -> BoxedStrategy<Vec<Piece>> {
    let optional = |s: BoxedStrategy<Piece>| prop::option::weighted(0.5, s);
    (
        (any::<bool>(), data(), model(), optional(relabel()), optional(split()), optional(prepare())),
        (optional(augment("train")), optional(augment("eval")), prop::collection::vec(oversample(), 0..=2), optional(loss())),
        (optional(train()), optional(evaluate()), optional(predict()), prop::option::weighted(0.2, ensemble())),
    )
        .prop_map(|((extends, data, model, relabel, split, prepare), (at, ae, over, loss), (train, eval, pred, ens))| {
            let mut pieces = vec![data, model];
            if extends {
                pieces.push(Piece::Extends);
            }
            pieces.extend([relabel, split, prepare, at, ae, loss, train, eval, pred, ens].into_iter().flatten());
            pieces.extend(over);
            pieces
        })
        .boxed()
}

// ---------------------------------------------------------------- layout

/// Layout choices drawn from a byte string (zeros once it runs out, the plainest layout).
struct Layout<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The marker of every comment written, each of which `fmt` must keep.
    comments: Vec<String>,
}

const COMMENT_TAILS: &[&str] = &["", " note", " with \"quotes\" and { braces", " # twice", " sweep[1, 2]; x = 1", " é ü", "\t tab"];

impl Layout<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b as usize % n
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.pick(one_in) == 1 % one_in
    }

    fn comment(&mut self) -> String {
        let marker = format!("<c{}>", self.comments.len());
        let tail = COMMENT_TAILS[self.pick(COMMENT_TAILS.len())];
        self.comments.push(marker.clone());
        format!("#{marker}{tail}")
    }

    fn space(&mut self) -> &'static str {
        [" ", " ", "  ", "\t", " \t"][self.pick(5)]
    }

    fn maybe_space(&mut self) -> &'static str {
        ["", " ", "", "  ", "\t"][self.pick(5)]
    }

    /// Fills in the markers of a generated text: line breaks inside values (some after a
    /// comment) and optional blanks.
    fn expand(&mut self, s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            match c {
                BREAK => {
                    if self.chance(4) {
                        out.push(' ');
                        out.push_str(&self.comment());
                    }
                    out.push('\n');
                    out.push_str(["", "    ", "\t", "        "][self.pick(4)]);
                }
                '\u{3}' => out.push_str(self.maybe_space()),
                c => out.push(c),
            }
        }
        out
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.pick(i + 1);
            items.swap(i, j);
        }
    }
}

fn render(mut pieces: Vec<Piece>, lay: &mut Layout<'_>) -> String {
    let mut out = String::new();
    if lay.chance(3) {
        out.push_str(&lay.comment());
        out.push_str("\n\n");
    }
    lay.shuffle(&mut pieces);
    for (n, piece) in pieces.into_iter().enumerate() {
        if n > 0 {
            out.push_str(["\n", "\n\n", ";\n", "\n;\n\n"][lay.pick(4)]);
        }
        if lay.chance(4) {
            out.push_str(&lay.comment());
            out.push('\n');
        }
        match piece {
            Piece::Extends => out.push_str(&format!("extends{}\"base.mf\"", lay.space())),
            Piece::LossSum(sum) => {
                let sum = lay.expand(&sum);
                out.push_str(&format!("loss{}={}{sum}", lay.maybe_space(), lay.maybe_space()));
            }
            Piece::Block { head, mut stmts } => {
                let head = head.replace(' ', lay.space());
                out.push_str(&head);
                out.push_str(["", " ", "\n", " \n"][lay.pick(4)]);
                lay.shuffle(&mut stmts);
                render_body(&mut out, stmts, lay);
            }
        }
        if lay.chance(4) {
            out.push_str(lay.space());
            out.push_str(&lay.comment());
        }
        out.push('\n');
    }
    if lay.chance(4) {
        out.push_str(&lay.comment());
        out.push('\n');
    }
    // Line ends: `\n`, now and then `\r\n` or a lone `\r` (both are line ends too).
    match lay.pick(8) {
        1 => out.replace('\n', "\r\n"),
        2 => out.replace('\n', "\r"),
        _ => out,
    }
}

fn render_body(out: &mut String, stmts: Vec<String>, lay: &mut Layout<'_>) {
    if lay.chance(3) && !stmts.iter().any(|s| s.contains(BREAK)) {
        // One line: `{ a = 1; b = 2 }`.
        let stmts: Vec<String> = stmts.iter().map(|s| lay.expand(s)).collect();
        let sep = ["; ", ";", " ; ", ";; "][lay.pick(4)];
        let lead = ["", " ", "; ", " ;"][lay.pick(4)];
        out.push('{');
        out.push_str(lead);
        out.push_str(&stmts.join(sep));
        out.push_str(["", " ", ";", " ; "][lay.pick(4)]);
        out.push('}');
        return;
    }
    out.push('{');
    if lay.chance(3) {
        out.push_str(lay.space());
        out.push_str(&lay.comment());
    }
    out.push('\n');
    let indent = ["    ", "  ", "\t", "", "        "][lay.pick(5)];
    for s in stmts {
        if lay.chance(5) {
            out.push_str(indent);
            out.push_str(&lay.comment());
            out.push('\n');
        }
        out.push_str(indent);
        let s = lay.expand(&s);
        out.push_str(&s);
        out.push_str(["", "", ";", " ;"][lay.pick(4)]);
        if lay.chance(4) {
            out.push_str(lay.space());
            out.push_str(&lay.comment());
        }
        out.push_str(["\n", "\n", "\n\n"][lay.pick(3)]);
    }
    if lay.chance(5) {
        out.push_str(indent);
        out.push_str(&lay.comment());
        out.push('\n');
    }
    out.push('}');
}

// ---------------------------------------------------------------- the property

/// A directory with the files the generated pipelines refer to: the `extends` base and the
/// ensemble members. The generated pipeline itself is held in memory as `p.mf` there.
fn workdir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("base.mf", "data synthetic { persons = 40 }\nmodel tiny_cnn { dropout = 0.1 }\ntrain { epochs = 2; seed = 7 }\n");
        for m in ["a.mf", "b.mf", "sub/c.mf"] {
            write(m, "data synthetic {}\nmodel tiny_cnn {}\n");
        }
        dir
    })
    .path()
}

fn pipeline_path() -> PathBuf {
    workdir().join("p.mf")
}

fn load(text: &str) -> Result<lang::Loaded, String> {
    lang::load_source(&pipeline_path(), text.as_bytes().to_vec(), &[]).map_err(|d| d.render())
}

fn fmt(text: &str) -> Result<String, String> {
    lang::format_source(&pipeline_path(), text.as_bytes().to_vec()).map_err(|d| d.render())
}

/// The canonical JSON of every variant.
fn canonical(l: &lang::Loaded) -> String {
    serde_json::to_string(&l.variants).expect("IR serialises")
}

fn check_roundtrip(text: &str, comments: &[String]) -> Result<(), TestCaseError> {
    let fail = |what: &str, detail: &str| TestCaseError::fail(format!("{what}\n--- input:\n{text}\n--- {detail}"));
    let original = load(text).map_err(|d| fail("the generated pipeline does not check", &format!("diagnostics:\n{d}")))?;
    let formatted = fmt(text).map_err(|d| fail("fmt fails", &format!("diagnostics:\n{d}")))?;
    let reloaded =
        load(&formatted).map_err(|d| fail("the fmt output does not load", &format!("fmt output:\n{formatted}\n--- diagnostics:\n{d}")))?;
    if original.variants != reloaded.variants || canonical(&original) != canonical(&reloaded) {
        return Err(fail(
            "fmt changed the IR",
            &format!("fmt output:\n{formatted}\n--- IR before:\n{}\n--- IR after:\n{}", canonical(&original), canonical(&reloaded)),
        ));
    }
    let again =
        fmt(&formatted).map_err(|d| fail("the fmt output does not format", &format!("fmt output:\n{formatted}\n--- diagnostics:\n{d}")))?;
    if again != formatted {
        return Err(fail("fmt is not idempotent", &format!("fmt output:\n{formatted}\n--- fmt of it:\n{again}")));
    }
    for marker in comments {
        if formatted.matches(marker.as_str()).count() != 1 {
            return Err(fail(&format!("fmt lost or repeated comment {marker}"), &format!("fmt output:\n{formatted}")));
        }
    }
    Ok(())
}

/// 256 cases by default; `PROPTEST_CASES=N` for a longer run.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    Config { cases, failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fmt_keeps_the_ir_and_is_idempotent(pieces in pipeline(), layout in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut lay = Layout { bytes: &layout, at: 0, comments: Vec::new() };
        let text = render(pieces, &mut lay);
        let comments = lay.comments;
        check_roundtrip(&text, &comments)?;
    }
}

/// The generator reaches the parts of the language it claims to: over a fixed number of
/// cases, every block kind, sweeps, comments and `extends` show up.
#[test]
fn generator_covers_the_language() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = String::new();
    for _ in 0..200 {
        let pieces = pipeline().new_tree(&mut runner).expect("tree").current();
        let layout = prop::collection::vec(any::<u8>(), 0..400).new_tree(&mut runner).expect("tree").current();
        let mut lay = Layout { bytes: &layout, at: 0, comments: Vec::new() };
        seen.push_str(&render(pieces, &mut lay));
    }
    for needle in [
        "data synthetic",
        "root",
        "relabel",
        "split",
        "folds",
        "val",
        "prepare",
        "center(",
        "augment",
        "random_resized_crop",
        "rad",
        "oversample where",
        " and ",
        "model",
        "heads",
        "loss focal",
        "loss cross_entropy",
        "loss soft_f1",
        "*",
        "optimizer",
        "sgd(",
        "schedule",
        "evaluate",
        "predict",
        "ensemble",
        "extends",
        "sweep[",
        "#<c",
        "\t",
        ";",
        "\r\n",
    ] {
        assert!(seen.contains(needle), "no generated pipeline contains `{needle}`");
    }
}

// ---------------------------------------------------------------- what the property found

fn assert_roundtrip(text: &str, comments: &[&str]) {
    let comments: Vec<String> = comments.iter().map(|c| c.to_string()).collect();
    if let Err(e) = check_roundtrip(text, &comments) {
        panic!("{e}");
    }
}

/// A trailing comment after a statement written over several lines replaced the comments
/// inside it.
#[test]
fn a_statement_over_several_lines_keeps_all_its_comments() {
    assert_roundtrip(
        "data synthetic {}\nmodel tiny_cnn {}\naugment train {\n    normalize(mean = [0, 0, 0,  #<a>\n    ], std = [1, 1, 1])  #<b>\n}\n",
        &["<a>", "<b>"],
    );
}

/// Comments inside a `loss = ...` sum written over several lines were dropped.
#[test]
fn a_loss_sum_over_several_lines_keeps_its_comments() {
    assert_roundtrip(
        "data synthetic {}\nmodel tiny_cnn {}\nloss = 0.5 * focal(  #<a>\n    #<b>\n    gamma = 2,\n) + 0.5 * soft_f1  #<c>\n",
        &["<a>", "<b>", "<c>"],
    );
}

/// A comment after the block head and one after its `{` went to one slot; the second won.
#[test]
fn comments_on_a_block_head_and_its_brace_are_both_kept() {
    assert_roundtrip("data synthetic  #<a>\n{  #<b>\n}\nmodel tiny_cnn {}\n", &["<a>", "<b>"]);
}

/// Sweeps expanded in written order, so `fmt`, which sorts blocks and keys, renamed and
/// reordered the variants.
#[test]
fn formatting_does_not_rename_sweep_variants() {
    let text = "train { seed = sweep[1, 2]; epochs = sweep[3, 4] }\nsplit { seed = sweep[5, 6] }\ndata synthetic {}\nmodel tiny_cnn {}\n";
    assert_roundtrip(text, &[]);
    let names: Vec<String> = load(text).expect("loads").variants.into_iter().map(|v| v.name).collect();
    assert_eq!(names[0], "split.seed=5,train.epochs=3,train.seed=1");
    assert_eq!(names[1], "split.seed=5,train.epochs=3,train.seed=2");
    assert_eq!(names.len(), 8);
}
