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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A static page (no server, no network, no scripts) with the runs table and, per pipeline,
/// the plots of its latest saved run. `saved_root` is where `saved/` is; plot links are
/// relative to the page, which is written at `saved_root/index.html`.
pub fn render_html(rows: &[Row], saved_root: &std::path::Path) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>maskflow runs</title>\n<style>body{font-family:sans-serif;margin:2em}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{max-width:480px;margin:4px}</style>\n\
         </head><body>\n<h1>maskflow runs</h1>\n",
    );
    if rows.is_empty() {
        out.push_str("<p>no evaluated runs in the cache</p>\n");
    } else {
        out.push_str("<table id=\"runs\">\n<tr>");
        for c in columns(rows) {
            out.push_str(&format!("<th>{}</th>", escape(&c)));
        }
        out.push_str("</tr>\n");
        for r in rows {
            out.push_str("<tr>");
            for c in cells(r) {
                out.push_str(&format!("<td>{}</td>", escape(&c)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    let mut pipelines: Vec<&str> = rows.iter().map(|r| r.pipeline.as_str()).collect();
    pipelines.dedup();
    for p in pipelines {
        let name = std::path::Path::new(p).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let latest = saved_root.join(&name).join("latest");
        let mut plots: Vec<String> = walkdir::WalkDir::new(&latest)
            .follow_links(true)
            .into_iter()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
            .filter_map(|e| e.path().strip_prefix(saved_root).ok().map(|r| r.to_string_lossy().to_string()))
            .collect();
        plots.sort();
        if plots.is_empty() {
            continue;
        }
        out.push_str(&format!("<h2>{}</h2>\n", escape(p)));
        for plot in plots {
            out.push_str(&format!("<img src=\"{0}\" alt=\"{0}\">\n", escape(&plot)));
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// Writes `saved/index.html`: the runs table of `plans` and their latest plots.
pub fn write_index(find: FindRecord, saved: &std::path::Path, plans: &[&Plan]) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let rows = collect(find, plans);
    let path = saved.join("index.html");
    std::fs::create_dir_all(saved).with_context(|| format!("{}: cannot create", saved.display()))?;
    crate::fsutil::write_atomic(&path, render_html(&rows, saved).as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(path)
}
