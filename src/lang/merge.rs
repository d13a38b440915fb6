//! From files to one merged document: reading (UTF-8 check), the `extends` chain (depth limit,
//! cycles), per-file duplicate checks, merging a file onto its base, and `--set` overrides.
//!
//! Merge rules (a child file onto its base):
//! - a block the base lacks is added;
//! - `augment train` / `augment eval` blocks replace the base's block of the same name whole;
//! - any `oversample` block in the child replaces all of the base's `oversample` blocks;
//! - a `loss` of another kind (or a weighted-sum `loss = ...` on either side) replaces the base's;
//! - a `data` block that switches between a directory (`root = ...`) and `synthetic` replaces it;
//! - otherwise keys merge, the child's value winning; the child's qualifiers (e.g. the model
//!   name) win when it writes any; in `split`, `val` and `folds` displace each other.

use super::ast::*;
use super::diag::{Diagnostic, Kind, Sink};
use super::names;
use super::parse;
use super::source::{FileId, Origin, SourceFile, SourceMap, Span};
use std::path::{Path, PathBuf};

/// Longest `extends` chain, counting the loaded file.
pub const MAX_EXTENDS_DEPTH: usize = 8;

/// The merged blocks of a file and its bases. `root` is the loaded file (for diagnostics
/// about missing blocks).
#[derive(Debug, Clone)]
pub struct Doc {
    pub blocks: Vec<Block>,
    pub root: FileId,
}

pub struct Loader<'a> {
    pub sources: &'a mut SourceMap,
    pub sink: &'a mut Sink,
    /// The files read, the loaded file first.
    pub files: Vec<PathBuf>,
}

/// Largest pipeline file read. Far above any real pipeline; it stops `extends "/dev/zero"`
/// (or a huge file named by mistake) from exhausting memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads a file as UTF-8 into the source map; reports unreadable, oversized or non-UTF-8 input.
pub fn read_source(sources: &mut SourceMap, sink: &mut Sink, path: &Path, from: Option<Span>) -> Option<(FileId, String)> {
    let name = path.display().to_string();
    let span = |sources: &mut SourceMap| {
        from.unwrap_or_else(|| {
            let id = sources.add(SourceFile { name: name.clone(), text: String::new(), path: None, origin: Origin::Unreadable });
            Span::new(id, 0, 0)
        })
    };
    let bytes = match read_capped(path) {
        Ok(b) if b.len() as u64 > MAX_FILE_BYTES => {
            let span = span(sources);
            sink.error(Kind::Limit, span, format!("`{name}` is larger than {} MiB", MAX_FILE_BYTES >> 20));
            return None;
        }
        Ok(b) => b,
        Err(e) => {
            let span = span(sources);
            sink.error(Kind::Include, span, format!("cannot read `{name}`: {}", io_reason(&e)));
            return None;
        }
    };
    decode_source(sources, sink, path, bytes)
}

/// The file's bytes, at most one past [`MAX_FILE_BYTES`] (so that "too large" can be told).
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Adds the bytes of the file at `path` to the source map as UTF-8 text; reports non-UTF-8
/// input. Everything a file's bytes go through after they are read, so that text held in
/// memory (a fuzzer's input, an editor buffer) is checked exactly as a file on disk.
pub fn decode_source(sources: &mut SourceMap, sink: &mut Sink, path: &Path, bytes: Vec<u8>) -> Option<(FileId, String)> {
    let name = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(text) => {
            let id = sources.add(SourceFile { name, text: text.clone(), path: Some(path.to_path_buf()), origin: Origin::File });
            Some((id, text))
        }
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let id = sources.add(SourceFile { name, text, path: Some(path.to_path_buf()), origin: Origin::File });
            sink.error(Kind::Encoding, Span::new(id, at, at + 1), "file is not valid UTF-8");
            None
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string().to_lowercase(),
    }
}

impl Loader<'_> {
    /// Loads `path` and, recursively, what it extends. `chain` holds the files above it.
    pub fn load(&mut self, path: &Path, from: Option<Span>, chain: &mut Vec<(PathBuf, String)>) -> Option<Doc> {
        self.load_with(path, None, from, chain)
    }

    /// [`Loader::load`], with the loaded file's bytes given instead of read (`None`: read
    /// them); its bases are read from disk, relative to `path`.
    pub fn load_with(
        &mut self,
        path: &Path,
        bytes: Option<Vec<u8>>,
        from: Option<Span>,
        chain: &mut Vec<(PathBuf, String)>,
    ) -> Option<Doc> {
        let (id, text) = match bytes {
            Some(bytes) => decode_source(self.sources, self.sink, path, bytes)?,
            None => read_source(self.sources, self.sink, path, from)?,
        };
        self.files.push(path.to_path_buf());
        let parsed = parse::parse_file(id, &text, self.sink)?;
        check_file(&parsed.file, &text, self.sink);
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        chain.push((canonical, path.display().to_string()));

        let mut base: Option<Doc> = None;
        let mut extends_seen = false;
        for item in &parsed.file.items {
            let Item::Extends(ext) = item else { continue };
            if extends_seen {
                self.sink.error(Kind::Duplicate, ext.span, "a file can `extends` only one base");
                continue;
            }
            extends_seen = true;
            let dir = path.parent().unwrap_or(Path::new(""));
            let target = dir.join(&ext.path);
            let target_canonical = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
            if let Some(at) = chain.iter().position(|(c, _)| *c == target_canonical) {
                let mut names: Vec<&str> = chain[at..].iter().map(|(_, n)| n.as_str()).collect();
                let target_name = target.display().to_string();
                names.push(&target_name);
                self.sink.push(
                    Diagnostic::new(Kind::Include, ext.path_span, format!("`extends` cycle through `{}`", ext.path))
                        .with_note(format!("the chain is {}", names.join(" -> "))),
                );
                continue;
            }
            if chain.len() >= MAX_EXTENDS_DEPTH {
                self.sink.error(Kind::Limit, ext.path_span, format!("`extends` chain is deeper than {MAX_EXTENDS_DEPTH} files"));
                continue;
            }
            base = self.load(&target, Some(ext.path_span), chain);
        }
        chain.pop();

        let mut doc = base.unwrap_or(Doc { blocks: Vec::new(), root: id });
        doc.root = id;
        let mut child_replaced_oversample = false;
        for item in parsed.file.items {
            if let Item::Block(b) = item {
                merge_block(&mut doc, b, &mut child_replaced_oversample);
            }
        }
        Some(doc)
    }
}

fn identity(b: &Block) -> String {
    if b.kind.name == "augment" { format!("augment {}", b.qualifier_text()) } else { b.kind.name.clone() }
}

fn has_key(b: &Block, key: &str) -> bool {
    b.stmts().iter().any(|s| matches!(s, Stmt::Assign { key: k, .. } if k.name == key))
}

fn is_synthetic(b: &Block) -> bool {
    b.qualifiers.iter().any(|q| q.name == "synthetic")
}

fn merge_block(doc: &mut Doc, child: Block, replaced_oversample: &mut bool) {
    if child.kind.name == "oversample" {
        if !*replaced_oversample {
            doc.blocks.retain(|b| b.kind.name != "oversample");
            *replaced_oversample = true;
        }
        doc.blocks.push(child);
        return;
    }
    let id = identity(&child);
    let Some(pos) = doc.blocks.iter().position(|b| identity(b) == id) else {
        doc.blocks.push(child);
        return;
    };
    let base = &mut doc.blocks[pos];
    let replace = match child.kind.name.as_str() {
        "augment" => true,
        "loss" => {
            matches!(child.body, Body::Expr(_))
                || matches!(base.body, Body::Expr(_))
                || (!child.qualifiers.is_empty() && child.qualifier_text() != base.qualifier_text())
        }
        "data" => (is_synthetic(&child) && !is_synthetic(base)) || (is_synthetic(base) && has_key(&child, "root")),
        _ => false,
    };
    if replace {
        *base = child;
        return;
    }
    if !child.qualifiers.is_empty() {
        base.qualifiers = child.qualifiers.clone();
    }
    if !child.predicate.is_empty() {
        base.predicate = child.predicate.clone();
    }
    let Body::Stmts(child_stmts) = child.body else {
        return;
    };
    for stmt in child_stmts {
        upsert_stmt(base, stmt);
    }
}

/// Sets a key in a block (replacing its earlier value), keeping `split`'s `val`/`folds` exclusive.
fn upsert_stmt(block: &mut Block, stmt: Stmt) {
    let Body::Stmts(stmts) = &mut block.body else {
        return;
    };
    let Stmt::Assign { key, .. } = &stmt else {
        stmts.push(stmt);
        return;
    };
    if block.kind.name == "split" {
        let other = match key.name.as_str() {
            "val" => Some("folds"),
            "folds" => Some("val"),
            _ => None,
        };
        if let Some(other) = other {
            stmts.retain(|s| !matches!(s, Stmt::Assign { key: k, .. } if k.name == other));
        }
    }
    let name = key.name.clone();
    match stmts.iter_mut().find(|s| matches!(s, Stmt::Assign { key: k, .. } if k.name == name)) {
        Some(slot) => *slot = stmt,
        None => stmts.push(stmt),
    }
}

// ---------------------------------------------------------------- per-file checks

/// Duplicate blocks, keys, map keys and call arguments within one file (merging would hide them).
fn check_file(file: &File, text: &str, sink: &mut Sink) {
    let mut seen: Vec<(String, Span)> = Vec::new();
    for item in &file.items {
        let Item::Block(b) = item else { continue };
        if b.kind.name != "oversample" {
            let id = identity(b);
            if let Some((_, first)) = seen.iter().find(|(i, _)| *i == id) {
                sink.push(
                    Diagnostic::new(Kind::Duplicate, b.head_span(), format!("duplicate block `{id}`"))
                        .with_note(format!("the first `{id}` block is at line {}", line_of(text, first.start))),
                );
            } else {
                seen.push((id, b.span));
            }
        }
        let mut keys: Vec<&str> = Vec::new();
        for s in b.stmts() {
            match s {
                Stmt::Assign { key, value, .. } => {
                    if keys.contains(&key.name.as_str()) {
                        sink.error(Kind::Duplicate, key.span, format!("duplicate key `{}` in `{}`", key.name, b.kind.name));
                    }
                    keys.push(&key.name);
                    check_value(value, sink);
                }
                Stmt::Op(op) => op.args.iter().for_each(|a| check_value(&a.value, sink)),
            }
        }
        if let Body::Expr(v) = &b.body {
            check_value(v, sink);
        }
        for c in &b.predicate {
            check_value(&c.value, sink);
        }
    }
}

fn check_value(v: &Value, sink: &mut Sink) {
    match &v.kind {
        ValueKind::List(items) | ValueKind::Sweep(items) => items.iter().for_each(|x| check_value(x, sink)),
        ValueKind::Map(entries) => {
            for (i, e) in entries.iter().enumerate() {
                if entries[..i].iter().any(|f| f.key.name == e.key.name) {
                    sink.error(Kind::Duplicate, e.key.span, format!("duplicate key `{}` in map", e.key.name));
                }
                check_value(&e.value, sink);
            }
        }
        ValueKind::Call { name, args } => {
            for (i, a) in args.iter().enumerate() {
                if let Some(n) = &a.name
                    && args[..i].iter().any(|b| b.name.as_ref().is_some_and(|m| m.name == n.name))
                {
                    sink.error(Kind::Duplicate, n.span, format!("duplicate argument `{}` in `{}`", n.name, name.name));
                }
                check_value(&a.value, sink);
            }
        }
        ValueKind::Sum(terms) => terms.iter().for_each(|t| check_value(&t.value, sink)),
        _ => {}
    }
}

pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

// ---------------------------------------------------------------- --set

/// Default call names for keys whose value is a call, so `--set train.optimizer.lr=...` works
/// on a file that does not write `optimizer`.
fn default_call(block: &str, key: &str) -> Option<&'static str> {
    match (block, key) {
        ("train", "optimizer") => Some("adamw"),
        ("train", "schedule") => Some("cosine"),
        _ => None,
    }
}

/// The path of one `--set PATH=VALUE`: its segments (block, key, and an optional argument
/// of a call or map value), with spans into the `--set` pseudo-file.
struct SetOverride {
    segments: Vec<Ident>,
    /// The whole text, and the `PATH` part of it.
    whole: Span,
    path_span: Span,
    path_text: String,
}

/// Applies one `--set PATH=VALUE` to the merged document. The text becomes a pseudo-file
/// named `--set`, so errors in it (now or in the checker) point into it.
pub fn apply_set(doc: &mut Doc, set: &str, sources: &mut SourceMap, sink: &mut Sink) {
    let id = sources.add(SourceFile { name: "--set".to_string(), text: set.to_string(), path: None, origin: Origin::SetOverride });
    let Some((o, value)) = parse_set(id, set, sink) else { return };
    let Some(pos) = target_block(doc, &o, sink) else { return };
    let block = &mut doc.blocks[pos];
    match o.segments.as_slice() {
        [_, key] => set_key(block, key, value, o.whole, sink),
        [_, key, arg] => set_argument(block, key, arg, value, &o, sink),
        _ => unreachable!("parse_set accepts two or three segments"),
    }
}

/// Splits and checks `PATH=VALUE`; the value is `.mf` syntax, or else a bare string.
fn parse_set(id: FileId, set: &str, sink: &mut Sink) -> Option<(SetOverride, Value)> {
    let whole = Span::new(id, 0, set.len());
    let Some(eq) = set.find('=') else {
        sink.error(Kind::Syntax, whole, "expected `PATH=VALUE`");
        return None;
    };
    let path_text = &set[..eq];
    let mut segments: Vec<Ident> = Vec::new();
    let mut at = 0;
    for seg in path_text.split('.') {
        let span = Span::new(id, at, at + seg.len());
        at += seg.len() + 1;
        let valid = seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            sink.error(Kind::Syntax, span, format!("invalid path segment `{seg}`; expected a name"));
            return None;
        }
        segments.push(Ident { name: seg.to_string(), span });
    }
    let value_start = eq + 1;
    if set[value_start..].trim().is_empty() {
        sink.error(Kind::Syntax, Span::new(id, value_start, set.len()), "missing value after `=`");
        return None;
    }
    let raw = &set[value_start..];
    let looks_like_syntax = raw.starts_with(['[', '{', '(', '"', '-']) || raw.starts_with(|c: char| c.is_ascii_digit());
    let value = match parse::parse_set_value(id, set, value_start, sink) {
        Ok(v) => v,
        Err(d) if looks_like_syntax => {
            sink.push(d);
            return None;
        }
        // Not `.mf` syntax: take the text as a bare string (`data.root=/data/mask`).
        Err(_) => Value { kind: ValueKind::Str(raw.to_string()), span: Span::new(id, value_start, set.len()) },
    };
    let path_span = Span::new(id, 0, eq);
    let block_name = &segments[0];
    if !names::BLOCKS.contains(&block_name.name.as_str()) {
        sink.error(Kind::UnknownName, block_name.span, names::unknown("block", &block_name.name, names::BLOCKS));
        return None;
    }
    if matches!(block_name.name.as_str(), "augment" | "oversample") {
        sink.error(Kind::Conflict, block_name.span, format!("`--set` cannot address `{}` blocks", block_name.name));
        return None;
    }
    if segments.len() < 2 {
        sink.error(Kind::Syntax, path_span, format!("expected a key after `{}.`", block_name.name));
        return None;
    }
    if segments.len() > 3 {
        sink.error(Kind::Syntax, path_span, format!("path `{path_text}` is too deep"));
        return None;
    }
    Some((SetOverride { segments, whole, path_span, path_text: path_text.to_string() }, value))
}

/// The index of the block an override addresses, added (empty) when the file has none.
fn target_block(doc: &mut Doc, o: &SetOverride, sink: &mut Sink) -> Option<usize> {
    let block_name = &o.segments[0];
    let pos = match doc.blocks.iter().position(|b| b.kind.name == block_name.name) {
        Some(p) => p,
        None => {
            doc.blocks.push(Block {
                kind: block_name.clone(),
                qualifiers: vec![],
                predicate: vec![],
                body: Body::Stmts(vec![]),
                span: o.whole,
            });
            doc.blocks.len() - 1
        }
    };
    if matches!(doc.blocks[pos].body, Body::Expr(_)) {
        sink.error(Kind::Conflict, o.path_span, format!("cannot set `{}` on a weighted-sum `loss`", o.path_text));
        return None;
    }
    Some(pos)
}

/// `BLOCK.KEY=VALUE`. A model's architecture and a loss's kind are the block's qualifier;
/// a synthetic source given a `root` becomes a directory source.
fn set_key(block: &mut Block, key: &Ident, value: Value, whole: Span, sink: &mut Sink) {
    match (block.kind.name.as_str(), key.name.as_str()) {
        ("model", "arch" | "name") | ("loss", "kind") => {
            let ValueKind::Ident(name) = &value.kind else {
                sink.error(Kind::Type, value.span, format!("expected a name, found {}", value.kind.describe()));
                return;
            };
            if block.kind.name == "loss" && block.qualifier_text() != *name {
                block.body = Body::Stmts(vec![]);
            }
            block.qualifiers = vec![Ident { name: name.clone(), span: value.span }];
            return;
        }
        ("data", "root") if is_synthetic(block) => {
            block.qualifiers.clear();
            if let Body::Stmts(stmts) = &mut block.body {
                stmts.retain(
                    |s| !matches!(s, Stmt::Assign { key, .. } if matches!(key.name.as_str(), "persons" | "eval_persons" | "seed" | "size")),
                );
            }
        }
        _ => {}
    }
    upsert_stmt(block, Stmt::Assign { key: key.clone(), value, span: whole });
}

/// `BLOCK.KEY.ARG=VALUE`: an argument of a call (`train.optimizer.lr`) or an entry of a map.
/// A key the file does not write takes its default call (`adamw`, `cosine`) first.
fn set_argument(block: &mut Block, key: &Ident, arg: &Ident, value: Value, o: &SetOverride, sink: &mut Sink) {
    let block_name = block.kind.name.clone();
    let default = default_call(&block_name, &key.name);
    let Body::Stmts(stmts) = &mut block.body else {
        return;
    };
    let slot = stmts.iter_mut().find_map(|s| match s {
        Stmt::Assign { key: k, value, .. } if k.name == key.name => Some(value),
        _ => None,
    });
    let target = match slot {
        Some(v) => v,
        None => match default {
            Some(call) => {
                let name = Ident { name: call.to_string(), span: key.span };
                stmts.push(Stmt::Assign {
                    key: key.clone(),
                    value: Value { kind: ValueKind::Call { name, args: vec![] }, span: o.whole },
                    span: o.whole,
                });
                match stmts.last_mut() {
                    Some(Stmt::Assign { value, .. }) => value,
                    _ => return,
                }
            }
            None => {
                sink.error(Kind::Missing, key.span, format!("`{block_name}.{}` is not set, so `{}` cannot be set", key.name, o.path_text));
                return;
            }
        },
    };
    if let ValueKind::Ident(name) = &target.kind {
        let name = Ident { name: name.clone(), span: target.span };
        target.kind = ValueKind::Call { name, args: vec![] };
    }
    match &mut target.kind {
        ValueKind::Call { args, .. } => match args.iter_mut().find(|a| a.name.as_ref().is_some_and(|n| n.name == arg.name)) {
            Some(a) => a.value = value,
            None => args.push(Arg { name: Some(arg.clone()), value }),
        },
        ValueKind::Map(entries) => match entries.iter_mut().find(|e| e.key.name == arg.name) {
            Some(e) => e.value = value,
            None => entries.push(MapEntry { key: arg.clone(), quoted: false, value }),
        },
        other => {
            sink.error(
                Kind::Type,
                o.path_span,
                format!("`{block_name}.{}` is {}, not a call; cannot set `{}`", key.name, other.describe(), arg.name),
            );
        }
    }
}
