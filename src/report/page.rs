//! The comparison page of two runs (`maskflow diff A B --html`, and the index's "diff against
//! the best run" links): one self-contained HTML file with the parameter changes, both runs'
//! curves overlaid, per-class F1 as paired bars sorted by change, the paired-bootstrap
//! interval against zero, and the confusion matrices' difference (B − A).
//!
//! The page is a pure function of [`Comparison`]: it needs metrics (in the record), histories
//! and, for the interval, a bootstrap already computed; no server, no network, no script.

use super::metrics::Bootstrap;
use crate::charts::{self, escape};
use crate::data::labels::{AgeBins, NUM_CLASSES};
use crate::train::EpochRecord;
use anyhow::Result;
use serde_json::Value;

/// One side of a comparison.
pub struct Side {
    /// How the page names it (`p.mf`, `q.mf[lr=0.001]`).
    pub label: String,
    /// The evaluate step's `metrics.json` (`macro_f1`, `per_class`, `confusion`, …).
    pub metrics: Value,
    pub history: Option<Vec<EpochRecord>>,
}

pub struct Comparison {
    pub title: String,
    /// The changes from A to B, in the user's spelling (`loss.gamma 2.0 → 1.5`).
    pub changes: Vec<String>,
    pub a: Side,
    pub b: Side,
    pub bootstrap: Option<Bootstrap>,
    /// Why there is no interval, when there is none.
    pub no_bootstrap: Option<String>,
    pub bins: AgeBins,
}

fn per_class_f1(metrics: &Value) -> Vec<f64> {
    (0..NUM_CLASSES).map(|c| metrics["per_class"][c]["f1"].as_f64().unwrap_or(0.0)).collect()
}

fn confusion(metrics: &Value) -> [[u64; NUM_CLASSES]; NUM_CLASSES] {
    let mut m = [[0u64; NUM_CLASSES]; NUM_CLASSES];
    for (t, row) in m.iter_mut().enumerate() {
        for (p, cell) in row.iter_mut().enumerate() {
            *cell = metrics["confusion"][t][p].as_u64().unwrap_or(0);
        }
    }
    m
}

pub const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}figure.chart{margin:1em 0}figure.chart svg{max-width:100%;height:auto}\
.better{color:#1e963c}.worse{color:#c82828}";

/// The page, as text.
pub fn render(c: &Comparison) -> Result<String> {
    let mut out = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{STYLE}</style>\n</head><body>\n<h1>{}</h1>\n",
        escape(&c.title),
        escape(&c.title)
    );
    out.push_str(&format!("<p>A = <b>{}</b>, B = <b>{}</b></p>\n", escape(&c.a.label), escape(&c.b.label)));
    out.push_str("<h2>What changed</h2>\n<ul id=\"changes\">\n");
    if c.changes.is_empty() {
        out.push_str("<li>no parameter differs</li>\n");
    }
    for change in &c.changes {
        out.push_str(&format!("<li>{}</li>\n", escape(change)));
    }
    out.push_str("</ul>\n<h2>Macro-F1</h2>\n<table id=\"headline\"><tr><th>metric</th><th>A</th><th>B</th><th>B − A</th></tr>\n");
    for key in ["macro_f1", "accuracy"] {
        if let (Some(a), Some(b)) = (c.a.metrics[key].as_f64(), c.b.metrics[key].as_f64()) {
            out.push_str(&format!("<tr><td>{key}</td><td>{a:.4}</td><td>{b:.4}</td><td>{:+.4}</td></tr>\n", b - a));
        }
    }
    out.push_str("</table>\n");
    match (&c.bootstrap, &c.no_bootstrap) {
        (Some(bs), _) => {
            let svg = charts::compare::interval_svg(bs.delta, bs.low, bs.high, bs.verdict.words())?;
            out.push_str(&charts::inline(&svg, "interval"));
            out.push_str(&format!(
                "<p>paired bootstrap over {} val persons, {} resamples, seed {}</p>\n",
                bs.persons, bs.resamples, bs.seed
            ));
        }
        (None, Some(why)) => out.push_str(&format!("<p>no bootstrap interval: {}</p>\n", escape(why))),
        (None, None) => {}
    }
    let runs: Vec<charts::curves::Run> = [&c.a, &c.b]
        .iter()
        .zip(["A", "B"])
        .filter_map(|(side, tag)| {
            side.history.as_deref().map(|h| charts::curves::Run { label: format!("{tag}: {}", side.label), history: h })
        })
        .collect();
    if !runs.is_empty() {
        out.push_str("<h2>Training curves</h2>\n");
        out.push_str(&charts::inline(&charts::curves::svg_of(&runs, "A and B")?, "curves"));
    }
    out.push_str("<h2>Per-class F1</h2>\n");
    let svg = charts::compare::per_class_svg(&per_class_f1(&c.a.metrics), &per_class_f1(&c.b.metrics), "A", "B", c.bins)?;
    out.push_str(&charts::inline(&svg, "per-class"));
    out.push_str("<h2>Confusion matrix, B − A</h2>\n");
    let svg = charts::confusion::difference_svg(&confusion(&c.a.metrics), &confusion(&c.b.metrics), c.bins)?;
    out.push_str(&charts::inline(&svg, "confusion-difference"));
    out.push_str("</body></html>\n");
    Ok(out)
}

/// A file name for the page of `a` against `b`: `p-vs-q.html`, only `[A-Za-z0-9._-]` kept.
pub fn file_name(a: &str, b: &str) -> String {
    let clean = |s: &str| -> String {
        let stem =
            std::path::Path::new(s.split('@').next().unwrap_or(s)).file_stem().map(|x| x.to_string_lossy().to_string()).unwrap_or_default();
        let rev = s.split_once('@').map(|(_, r)| format!("@{r}")).unwrap_or_default();
        format!("{stem}{rev}").chars().map(|ch| if ch.is_ascii_alphanumeric() || "._-@".contains(ch) { ch } else { '_' }).collect()
    };
    format!("{}-vs-{}.html", clean(a), clean(b))
}
