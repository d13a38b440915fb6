//! `maskflow runs`: every evaluated variant/fold of some pipelines found in the cache, as one
//! table sorted by macro-F1.
//!
//! Constraint kept: the parameter columns are exactly the IR leaves whose values differ
//! between the rows, so the table shows what distinguishes experiments and nothing else.

use super::diff::leaves;
use crate::plan::Plan;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub pipeline: String,
    pub variant: String,
    pub fold: Option<u32>,
    pub step: String,
    pub key: String,
    /// Only the parameters that differ between rows.
    pub params: BTreeMap<String, Value>,
    pub macro_f1: Option<f64>,
    pub accuracy: Option<f64>,
    pub per_task: BTreeMap<String, f64>,
}

/// Where `runs` finds a step's record: the local cache, and then (with a remote) a signed
/// record there that counts. Metrics live in the record itself, so nothing is downloaded.
pub type FindRecord<'a> = &'a dyn Fn(&crate::digest::Digest) -> Option<crate::cache::Record>;

/// Collects the rows of every plan's evaluate steps that have a record with metrics. A step
/// shared by several pipelines or variants appears once (the first that names it).
pub fn collect(find: FindRecord, plans: &[&Plan]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut all_leaves: Vec<BTreeMap<String, Value>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for plan in plans {
        for step in plan.steps.iter().filter(|s| s.kind == crate::plan::StepKind::Evaluate) {
            let Some(record) = find(&step.key) else { continue };
            let Some(m) = record.metrics else { continue };
            if !seen.insert(step.key) {
                continue;
            }
            let mut l = Vec::new();
            leaves("", &serde_json::to_value(plan.pipeline_ir(step)).unwrap_or_default(), &mut l);
            all_leaves.push(l.into_iter().collect());
            let per_task = ["mask", "gender", "age"].iter().filter_map(|t| Some((t.to_string(), m["per_task"][*t].as_f64()?))).collect();
            rows.push(Row {
                pipeline: plan.pipeline.clone(),
                variant: plan.variants[step.variant].name.clone(),
                fold: step.fold,
                step: step.name.clone(),
                key: step.key.hex(),
                params: BTreeMap::new(),
                macro_f1: m["macro_f1"].as_f64(),
                accuracy: m["accuracy"].as_f64(),
                per_task,
            });
        }
    }
    let paths: std::collections::BTreeSet<&String> = all_leaves.iter().flat_map(|l| l.keys()).collect();
    for path in paths {
        let values: Vec<Option<&Value>> = all_leaves.iter().map(|l| l.get(path)).collect();
        if values.windows(2).any(|w| w[0] != w[1]) {
            for (row, v) in rows.iter_mut().zip(&values) {
                row.params.insert(path.clone(), v.cloned().unwrap_or(Value::Null));
            }
        }
    }
    rows.sort_by(|a, b| {
        b.macro_f1.unwrap_or(f64::NEG_INFINITY).total_cmp(&a.macro_f1.unwrap_or(f64::NEG_INFINITY)).then(a.step.cmp(&b.step))
    });
    rows
}

fn columns(rows: &[Row]) -> Vec<String> {
    let mut cols = vec!["pipeline".to_string(), "variant".into(), "fold".into()];
    if let Some(r) = rows.first() {
        cols.extend(r.params.keys().cloned());
    }
    cols.extend(["macro_f1", "accuracy", "mask_f1", "gender_f1", "age_f1"].map(String::from));
    cols
}

fn cells(r: &Row) -> Vec<String> {
    let f = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.4}"));
    let mut out = vec![r.pipeline.clone(), r.variant.clone(), r.fold.map_or(String::new(), |f| f.to_string())];
    out.extend(r.params.values().map(|v| crate::plan::key::show(&Some(v.clone()))));
    out.push(f(r.macro_f1));
    out.push(f(r.accuracy));
    for t in ["mask", "gender", "age"] {
        out.push(f(r.per_task.get(t).copied()));
    }
    out
}

pub fn render_text(rows: &[Row], colour: bool) -> String {
    if rows.is_empty() {
        return "no evaluated runs in the cache\n".into();
    }
    let cols = columns(rows);
    let n = cols.len();
    let header: Vec<String> = cols.iter().enumerate().map(|(i, c)| if i + 5 >= n { format!(">{c}") } else { c.clone() }).collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let body: Vec<Vec<super::table::Cell>> = rows.iter().map(|r| cells(r).into_iter().map(Into::into).collect()).collect();
    super::table::render(&header, &body, colour)
}

pub fn render_csv(rows: &[Row]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(columns(rows))?;
    for r in rows {
        w.write_record(cells(r))?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

use crate::charts::escape;

/// What the index shows beyond the table: per row, where its run and its comparison with the
/// best run are (relative to the page), and per pipeline, its training curves overlaid.
#[derive(Debug, Default)]
pub struct IndexExtras {
    pub run_links: Vec<Option<String>>,
    pub diff_links: Vec<Option<String>>,
    /// (pipeline, curves of its variants and folds), in row order.
    pub overlays: Vec<(String, String)>,
}

/// A static page (no server, no network, no scripts) with the runs table (each row linked to
/// its run and to a comparison with the best), each pipeline's curves overlaid over its
/// variants and folds, and the charts of its latest saved run, inlined.
pub fn render_html(rows: &[Row], saved_root: &std::path::Path, extras: &IndexExtras) -> String {
    let mut out = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>maskflow runs</title>\n<style>{}</style>\n</head><body>\n<h1>maskflow runs</h1>\n",
        super::page::STYLE
    );
    if rows.is_empty() {
        out.push_str("<p>no evaluated runs in the cache</p>\n");
    } else {
        out.push_str("<table id=\"runs\">\n<tr>");
        for c in columns(rows) {
            out.push_str(&format!("<th>{}</th>", escape(&c)));
        }
        out.push_str("<th>links</th></tr>\n");
        for (i, r) in rows.iter().enumerate() {
            out.push_str("<tr>");
            for c in cells(r) {
                out.push_str(&format!("<td>{}</td>", escape(&c)));
            }
            let mut links = Vec::new();
            if let Some(Some(run)) = extras.run_links.get(i) {
                links.push(format!("<a href=\"{}\">run</a>", escape(run)));
            }
            if let Some(Some(diff)) = extras.diff_links.get(i) {
                links.push(format!("<a href=\"{}\">diff vs best</a>", escape(diff)));
            }
            out.push_str(&format!("<td>{}</td></tr>\n", links.join(" · ")));
        }
        out.push_str("</table>\n");
    }
    for (pipeline, svg) in &extras.overlays {
        out.push_str(&format!("<h2>{}: training curves of every variant and fold</h2>\n", escape(pipeline)));
        out.push_str(&crate::charts::inline(svg, &format!("overlay-{pipeline}")));
    }
    let mut pipelines: Vec<&str> = rows.iter().map(|r| r.pipeline.as_str()).collect();
    pipelines.dedup();
    for p in pipelines {
        let name = std::path::Path::new(p).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let latest = saved_root.join(&name).join("latest");
        let mut charts: Vec<std::path::PathBuf> = walkdir::WalkDir::new(&latest)
            .follow_links(true)
            .into_iter()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "svg"))
            .map(|e| e.into_path())
            .collect();
        charts.sort();
        if charts.is_empty() {
            continue;
        }
        out.push_str(&format!("<h2>{}: latest run</h2>\n", escape(p)));
        for chart in charts {
            let Ok(svg) = std::fs::read_to_string(&chart) else { continue };
            let rel = chart.strip_prefix(saved_root).unwrap_or(&chart).to_string_lossy().to_string();
            out.push_str(&format!("<h3>{}</h3>\n", escape(&rel)));
            out.push_str(&crate::charts::inline(&svg, &rel));
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// Reads a blob of the local cache (histories and predictions for the index's charts).
pub type ReadBlob<'a> = &'a dyn Fn(&crate::digest::Digest) -> Option<Vec<u8>>;

fn history_of(find: FindRecord, read: ReadBlob, row: &Row) -> Option<Vec<crate::train::EpochRecord>> {
    let key = crate::digest::Digest::from_hex(&row.key)?;
    let record = find(&key)?;
    serde_json::from_slice(&read(&record.outputs.get("history.json")?.digest)?).ok()
}

fn row_label(r: &Row) -> String {
    let mut label = r.pipeline.clone();
    if !r.variant.is_empty() {
        label.push_str(&format!("[{}]", r.variant));
    }
    if let Some(f) = r.fold {
        label.push_str(&format!(" fold {f}"));
    }
    label
}

/// The comparison page of the best row and `row`.
fn page_against_best(find: FindRecord, read: ReadBlob, best: &Row, row: &Row, bins: crate::data::labels::AgeBins) -> Option<String> {
    let record = |r: &Row| find(&crate::digest::Digest::from_hex(&r.key)?);
    let (ra, rb) = (record(best)?, record(row)?);
    let preds = |rec: &crate::cache::Record| -> Option<Vec<super::metrics::Prediction>> {
        let bytes = read(&rec.outputs.get("val_predictions.csv")?.digest)?;
        super::metrics::read_predictions(&bytes, "val_predictions.csv").ok()
    };
    let (bootstrap, no_bootstrap) = match (preds(&ra), preds(&rb)) {
        (Some(a), Some(b)) => match super::metrics::paired_bootstrap(&a, &b, 1000, 0) {
            Ok(bs) => (Some(bs), None),
            Err(e) => (None, Some(e.to_string())),
        },
        _ => (None, Some("the validation predictions are not in the local cache".to_string())),
    };
    let changes = best
        .params
        .iter()
        .filter(|(k, v)| row.params.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} {} → {}", crate::plan::key::show(&Some(v.clone())), crate::plan::key::show(&row.params.get(k).cloned())))
        .collect();
    let comparison = super::page::Comparison {
        title: format!("{} vs {}", row_label(best), row_label(row)),
        changes,
        a: super::page::Side { label: row_label(best), metrics: ra.metrics?, history: history_of(find, read, best) },
        b: super::page::Side { label: row_label(row), metrics: rb.metrics?, history: history_of(find, read, row) },
        bootstrap,
        no_bootstrap,
        bins,
    };
    super::page::render(&comparison).ok()
}

/// Writes `saved/index.html` (the runs table of `plans`, the curves of each pipeline's
/// variants and folds overlaid, the charts of their latest runs) and, per row, the page
/// comparing it with the best run under `saved/diff/`.
pub fn write_index(find: FindRecord, read: ReadBlob, saved: &std::path::Path, plans: &[&Plan]) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let rows = collect(find, plans);
    std::fs::create_dir_all(saved).with_context(|| format!("{}: cannot create", saved.display()))?;
    let mut extras = IndexExtras::default();
    let bins_of =
        |r: &Row| plans.iter().find(|p| p.pipeline == r.pipeline).and_then(|p| p.step(&r.step).map(|s| p.pipeline_ir(s).data.age_bins));
    for r in &rows {
        let name = std::path::Path::new(&r.pipeline).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        extras.run_links.push(saved.join(&name).join("latest").is_dir().then(|| format!("{name}/latest/")));
        let page = rows.first().filter(|best| best.key != r.key).and_then(|best| {
            page_against_best(find, read, best, r, bins_of(r).unwrap_or(crate::data::labels::DEFAULT_AGE_BINS)).map(|text| (best, text))
        });
        extras.diff_links.push(match page {
            Some((best, text)) => {
                let file = format!("diff/best-{}-vs-{}.html", &best.key[..12], &r.key[..12]);
                let path = saved.join(&file);
                std::fs::create_dir_all(saved.join("diff")).with_context(|| format!("{}: cannot create", saved.join("diff").display()))?;
                // Pages are rewritten only when they change: a sweep's index refresh after
                // each run would otherwise rewrite every variant's page.
                if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
                    crate::fsutil::write_atomic(&path, text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
                }
                Some(file)
            }
            None => None,
        });
    }
    let mut pipelines: Vec<&str> = rows.iter().map(|r| r.pipeline.as_str()).collect();
    pipelines.sort();
    pipelines.dedup();
    for p in pipelines {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.pipeline == p).collect();
        let histories: Vec<(String, Vec<crate::train::EpochRecord>)> =
            mine.iter().filter_map(|r| Some((row_label(r), history_of(find, read, r)?))).collect();
        if histories.len() < 2 {
            continue;
        }
        let runs: Vec<crate::charts::curves::Run> =
            histories.iter().map(|(label, h)| crate::charts::curves::Run { label: label.clone(), history: h }).collect();
        extras.overlays.push((p.to_string(), crate::charts::curves::svg_of(&runs, &format!("{p}: every variant and fold"))?));
    }
    let path = saved.join("index.html");
    crate::fsutil::write_atomic(&path, render_html(&rows, saved, &extras).as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(path)
}
