//! The `.mf` front end: text → AST (with spans) → merged document (`extends`, `--set`) →
//! sweep variants → checked, normalised [`ir::Pipeline`]s.
//!
//! Stages, one module each: [`scan`] (comments, nesting limit) and [`parse`] (pest → [`ast`]);
//! [`merge`] (reading files, the `extends` chain, `--set`); [`sweep`] (variants); [`check`] and
//! [`lower`] (typed checks, defaults, IR); [`fmt`] (canonical text). Errors at every stage are
//! [`diag::Diagnostic`] data drawn by one renderer; the checker collects all of them.
//!
//! The language itself is described in `src/lang/reference.md`.

pub mod ast;
pub mod check;
pub mod diag;
pub mod fmt;
pub mod lower;
pub mod merge;
pub mod names;
pub mod parse;
pub mod scan;
pub mod source;
pub mod sweep;

pub use diag::Diagnostics;

use crate::ir;
use diag::{Kind, Sink};
use source::SourceMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded pipeline: one IR per sweep variant.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    /// The file stem (`b4_focal` for `pipelines/b4_focal.mf`).
    pub name: String,
    pub variants: Vec<ir::Variant>,
    /// The file and its `extends` chain, the loaded file first.
    pub files: Vec<PathBuf>,
    /// The pipelines its `ensemble` blocks name, loaded through the same front end (their
    /// diagnostics are this load's diagnostics), keyed by the member path as written. Members
    /// are loaded one level deep: a member's own members are not (the planner rejects a
    /// member that is itself an ensemble).
    pub members: BTreeMap<String, Loaded>,
}

/// Loads a pipeline file with its `extends` chain, applies `--set PATH=VALUE` overrides,
/// expands sweeps and checks and lowers each variant, then loads its ensemble members. All
/// errors are returned together.
pub fn load(path: &Path, sets: &[String]) -> Result<Loaded, Diagnostics> {
    load_inner(path, None, sets)
}

/// [`load`] for a file whose bytes are already in memory: `bytes` stand for the contents of
/// `path` and go through the same UTF-8 check, parse, merge, check and lowering; the bases it
/// `extends` are read from disk relative to `path`.
pub fn load_source(path: &Path, bytes: Vec<u8>, sets: &[String]) -> Result<Loaded, Diagnostics> {
    load_inner(path, Some(bytes), sets)
}

fn load_inner(path: &Path, bytes: Option<Vec<u8>>, sets: &[String]) -> Result<Loaded, Diagnostics> {
    let mut sources = SourceMap::default();
    let mut sink = Sink::default();
    let loaded = load_one(path, bytes, sets, &mut sources, &mut sink).map(|mut loaded| {
        // Member paths are relative to the file that names them.
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let names: BTreeSet<String> =
            loaded.variants.iter().filter_map(|v| v.pipeline.ensemble.as_ref()).flat_map(|e| e.members.iter().cloned()).collect();
        // A member that is not a file was already reported by the checker, at its name.
        for name in names.into_iter().filter(|n| dir.join(n).is_file()) {
            if let Some(member) = load_one(&dir.join(&name), None, &[], &mut sources, &mut sink) {
                loaded.members.insert(name, member);
            }
        }
        loaded
    });
    match loaded {
        Some(loaded) if sink.is_empty() => Ok(loaded),
        _ => Err(finish(sources, sink)),
    }
}

/// One file through every stage, its diagnostics into `sink`; `None` when a stage could not
/// produce anything for the next.
fn load_one(path: &Path, bytes: Option<Vec<u8>>, sets: &[String], sources: &mut SourceMap, sink: &mut Sink) -> Option<Loaded> {
    let (doc, files) = {
        let mut loader = merge::Loader { sources: &mut *sources, sink: &mut *sink, files: Vec::new() };
        let doc = loader.load_with(path, bytes, None, &mut Vec::new());
        (doc, loader.files)
    };
    let fatal = |sink: &Sink| sink.items().iter().any(|d| matches!(d.kind, Kind::Syntax | Kind::Encoding | Kind::Include | Kind::Limit));
    let mut doc = doc?;
    if fatal(sink) {
        return None;
    }
    for set in sets {
        merge::apply_set(&mut doc, set, sources, sink);
    }
    let expanded = sweep::expand(&doc, sink)?;
    let mut variants = Vec::with_capacity(expanded.len());
    for e in expanded {
        let mut cx = check::Cx { sink: &mut *sink, sources };
        let pipeline = lower::lower(&mut cx, &e.doc);
        let name = e.assignments.iter().map(|(p, v)| format!("{p}={v}")).collect::<Vec<_>>().join(",");
        let assignments: BTreeMap<String, String> = e.assignments.into_iter().collect();
        variants.push(ir::Variant { name, assignments, pipeline });
    }
    let name = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    Some(Loaded { path: path.to_path_buf(), name, variants, files, members: BTreeMap::new() })
}

/// The canonical text of one file (its `extends` line and comments kept; bases not read).
pub fn format_file(path: &Path) -> Result<String, Diagnostics> {
    format_inner(path, None)
}

/// [`format_file`] for a file whose bytes are already in memory (see [`load_source`]).
pub fn format_source(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostics> {
    format_inner(path, Some(bytes))
}

fn format_inner(path: &Path, bytes: Option<Vec<u8>>) -> Result<String, Diagnostics> {
    let mut sources = SourceMap::default();
    let mut sink = Sink::default();
    let read = match bytes {
        Some(bytes) => merge::decode_source(&mut sources, &mut sink, path, bytes),
        None => merge::read_source(&mut sources, &mut sink, path, None),
    };
    let Some((id, text)) = read else {
        return Err(finish(sources, sink));
    };
    match parse::parse_file(id, &text, &mut sink) {
        Some(parsed) if sink.is_empty() => Ok(fmt::format(&parsed.file, &parsed.comments, &text)),
        _ => Err(finish(sources, sink)),
    }
}

/// Diagnostics in source order (file, then position), whatever stage found them.
fn finish(sources: SourceMap, sink: Sink) -> Diagnostics {
    let mut items = sink.into_vec();
    items.sort_by_key(|d| (d.span.file, d.span.start));
    Diagnostics::new(Arc::new(sources), items)
}
