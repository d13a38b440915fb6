//! The canonical spelling of a `.mf` file.
//!
//! - Top-level items in a fixed order: `extends`, `data`, `relabel`, `split`, `prepare`,
//!   `augment train`, `augment eval`, `oversample` (as written), `model`, `loss`, `train`,
//!   `evaluate`, `predict`, `ensemble`, then anything unknown; one blank line between items.
//! - One statement per line, 4-space indent, no `;`. Keys in each block's schema order
//!   ([`names::block_keys`]); unknown keys after them as written; `augment` ops as written.
//! - Values on one line: numbers canonical (`5e-1` → `0.5`, `1e-8` stays), lists `[a, b]`,
//!   maps `{ k: v }`, calls `f(a, k = v)`, weighted sums `0.7 * focal + 0.3 * soft_f1`; an op
//!   with one positional argument is written `hflip 0.5`.
//! - Comments are kept: a comment on its own line goes with the statement or item below it (or
//!   to the end of its block or file); a comment after code stays at the end of that line.
//!   Comments before the first item and separated from it by a blank line stay at the top.

use super::ast::*;
use super::names;
use super::scan::Comment;
use std::collections::HashMap;

type Anchor = (usize, usize);

#[derive(Default)]
struct Attached {
    header: Vec<String>,
    leading: HashMap<Anchor, Vec<String>>,
    trailing: HashMap<Anchor, String>,
    /// Comments on a block's opening line, keyed by the block's span.
    opening: HashMap<Anchor, String>,
    /// Own-line comments after a block's last statement.
    inner_tail: HashMap<Anchor, Vec<String>>,
    file_tail: Vec<String>,
}

fn key(s: super::source::Span) -> Anchor {
    (s.start, s.end)
}

pub fn format(file: &File, comments: &[Comment], text: &str) -> String {
    let att = attach(file, comments, text);
    let mut items: Vec<&Item> = file.items.iter().collect();
    items.sort_by_key(|i| item_rank(i));
    let mut out = String::new();
    for c in &att.header {
        out.push_str(c);
        out.push('\n');
    }
    for (n, item) in items.iter().enumerate() {
        if n > 0 || !att.header.is_empty() {
            out.push('\n');
        }
        write_item(&mut out, item, &att);
    }
    if !att.file_tail.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        for c in &att.file_tail {
            out.push_str(c);
            out.push('\n');
        }
    }
    out
}

fn item_rank(item: &Item) -> usize {
    match item {
        Item::Extends(_) => 0,
        Item::Block(b) => block_rank(b),
    }
}

/// Where a block goes in the canonical order (blocks of one rank keep their written order).
/// Sweep expansion visits blocks in this order too, so formatting never renames a variant.
pub(crate) fn block_rank(b: &Block) -> usize {
    let kind = b.kind.name.as_str();
    if kind == "augment" {
        let q = b.qualifier_text();
        return 100 * 5
            + if q == "train" {
                0
            } else if q == "eval" {
                1
            } else {
                2
            };
    }
    match names::BLOCKS.iter().position(|k| *k == kind) {
        Some(i) => 100 * (i + 1),
        None => 100 * (names::BLOCKS.len() + 1),
    }
}

fn comment_line(c: &Comment) -> String {
    format!("#{}", c.text.trim_end())
}

fn attach(file: &File, comments: &[Comment], text: &str) -> Attached {
    let mut att = Attached::default();
    let mut anchors: Vec<Anchor> = Vec::new();
    for item in &file.items {
        anchors.push(key(item.span()));
        if let Item::Block(b) = item {
            anchors.extend(b.stmts().iter().map(|s| key(s.span())));
        }
    }
    let blocks: Vec<&Block> = file.items.iter().filter_map(|i| if let Item::Block(b) = i { Some(b) } else { None }).collect();
    let first_item = file.items.iter().map(|i| i.span().start).min();
    for c in comments {
        let line = comment_line(c);
        let line_start = text[..c.start].rfind(['\n', '\r']).map_or(0, |i| i + 1);
        let code_before = !text[line_start..c.start].trim().is_empty();
        let inside = blocks.iter().filter(|b| b.span.start < c.start && c.start < b.span.end).max_by_key(|b| b.span.start);
        // A comment inside a multi-line value goes with its statement.
        let in_stmt = inside.and_then(|b| b.stmts().iter().find(|s| s.span().start < c.start && c.start < s.span().end));
        if let Some(s) = in_stmt {
            if code_before {
                append(&mut att.trailing, key(s.span()), &line);
            } else {
                att.leading.entry(key(s.span())).or_default().push(line);
            }
            continue;
        }
        // A `loss = ...` item written over several lines: its comments go with the item, as
        // those inside a multi-line statement go with the statement.
        if let Some(b) = inside
            && matches!(b.body, Body::Expr(_))
        {
            if code_before {
                append(&mut att.trailing, key(b.span), &line);
            } else {
                att.leading.entry(key(b.span)).or_default().push(line);
            }
            continue;
        }
        if code_before {
            let on_line = anchors.iter().filter(|(_, e)| *e <= c.start && *e >= line_start).max_by_key(|(_, e)| *e);
            if let Some(a) = on_line {
                append(&mut att.trailing, *a, &line);
                continue;
            }
            if let Some(b) = inside {
                append(&mut att.opening, key(b.span), &line);
                continue;
            }
        }
        if let Some(b) = inside {
            match b.stmts().iter().find(|s| s.span().start > c.start) {
                Some(s) => att.leading.entry(key(s.span())).or_default().push(line),
                None => att.inner_tail.entry(key(b.span)).or_default().push(line),
            }
            continue;
        }
        if let Some(first) = first_item
            && c.start < first
            && has_blank_line(&text[c.end..first])
        {
            att.header.push(line);
            continue;
        }
        match file.items.iter().filter(|i| i.span().start > c.start).min_by_key(|i| i.span().start) {
            Some(i) => att.leading.entry(key(i.span())).or_default().push(line),
            None if first_item.is_none() => att.header.push(line),
            None => att.file_tail.push(line),
        }
    }
    att
}

/// Whether blank text between two lines holds an empty line (`\n`, `\r\n` and `\r` all end a line).
fn has_blank_line(between: &str) -> bool {
    between.replace("\r\n", "\n").replace('\r', "\n").contains("\n\n")
}

/// Adds an end-of-line comment to those already kept for `at`: a statement or item written
/// over several lines can carry several, and `fmt` writes it on one.
fn append(comments: &mut HashMap<Anchor, String>, at: Anchor, line: &str) {
    let t = comments.entry(at).or_default();
    if !t.is_empty() {
        t.push(' ');
    }
    t.push_str(line);
}

fn push_line(out: &mut String, indent: &str, body: &str, trailing: Option<&String>) {
    out.push_str(indent);
    out.push_str(body);
    if let Some(t) = trailing {
        out.push_str("  ");
        out.push_str(t);
    }
    out.push('\n');
}

fn write_item(out: &mut String, item: &Item, att: &Attached) {
    let k = key(item.span());
    for c in att.leading.get(&k).into_iter().flatten() {
        push_line(out, "", c, None);
    }
    match item {
        Item::Extends(e) => push_line(out, "", &format!("extends {}", quote(&e.path)), att.trailing.get(&k)),
        Item::Block(b) => match &b.body {
            Body::Expr(v) => push_line(out, "", &format!("{} = {}", b.kind.name, value_text(v)), att.trailing.get(&k)),
            Body::Stmts(stmts) => {
                let head = block_head(b);
                let opening = att.opening.get(&k);
                let tail = att.inner_tail.get(&k);
                if stmts.is_empty() && opening.is_none() && tail.is_none() {
                    push_line(out, "", &format!("{head} {{}}"), att.trailing.get(&k));
                    return;
                }
                push_line(out, "", &format!("{head} {{"), opening);
                for s in stmt_order(b).into_iter().map(|i| &stmts[i]) {
                    let sk = key(s.span());
                    for c in att.leading.get(&sk).into_iter().flatten() {
                        push_line(out, "    ", c, None);
                    }
                    push_line(out, "    ", &stmt_text(s), att.trailing.get(&sk));
                }
                for c in tail.into_iter().flatten() {
                    push_line(out, "    ", c, None);
                }
                push_line(out, "", "}", att.trailing.get(&k));
            }
        },
    }
}

/// The indices of a block's statements in canonical order: keys in the block's schema order,
/// unknown keys and ops after them as written; `augment` ops as written.
pub(crate) fn stmt_order(b: &Block) -> Vec<usize> {
    let stmts = b.stmts();
    let mut order: Vec<usize> = (0..stmts.len()).collect();
    if b.kind.name != "augment" {
        let schema = names::block_keys(&b.kind.name);
        order.sort_by_key(|&i| match &stmts[i] {
            Stmt::Assign { key, .. } => schema.iter().position(|k| *k == key.name).unwrap_or(schema.len()),
            Stmt::Op(_) => schema.len(),
        });
    }
    order
}

fn block_head(b: &Block) -> String {
    let mut head = b.kind.name.clone();
    for q in &b.qualifiers {
        head.push(' ');
        head.push_str(&q.name);
    }
    for (i, c) in b.predicate.iter().enumerate() {
        head.push_str(if i == 0 { " where " } else { " and " });
        head.push_str(&format!("{} {} {}", c.field.name, c.cmp.as_str(), value_text(&c.value)));
    }
    head
}

fn stmt_text(s: &Stmt) -> String {
    match s {
        Stmt::Assign { key, value, .. } => format!("{} = {}", key.name, value_text(value)),
        Stmt::Op(op) => match op.args.as_slice() {
            [] => op.name.name.clone(),
            [Arg { name: None, value }] => format!("{} {}", op.name.name, value_text(value)),
            args => format!("{}({})", op.name.name, args_text(args)),
        },
    }
}

fn args_text(args: &[Arg]) -> String {
    let parts: Vec<String> = args
        .iter()
        .map(|a| match &a.name {
            Some(n) => format!("{} = {}", n.name, value_text(&a.value)),
            None => value_text(&a.value),
        })
        .collect();
    parts.join(", ")
}

fn quote(s: &str) -> String {
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
}

fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The canonical spelling of a value (also used to name sweep variants).
pub fn value_text(v: &Value) -> String {
    let list = |items: &[Value]| items.iter().map(value_text).collect::<Vec<_>>().join(", ");
    match &v.kind {
        ValueKind::Num(n) => n.to_string(),
        ValueKind::Str(s) => quote(s),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Ident(s) => s.clone(),
        ValueKind::Invalid => String::new(),
        ValueKind::Size(w, h) => format!("{w}x{h}"),
        ValueKind::Angle(n, unit) => format!("{n}{}", if *unit == AngleUnit::Deg { "deg" } else { "rad" }),
        ValueKind::List(items) => format!("[{}]", list(items)),
        ValueKind::Sweep(items) => format!("sweep[{}]", list(items)),
        ValueKind::Map(entries) if entries.is_empty() => "{}".to_string(),
        ValueKind::Map(entries) => {
            let parts: Vec<String> = entries
                .iter()
                .map(|e| {
                    let k = if e.quoted || !is_ident(&e.key.name) { quote(&e.key.name) } else { e.key.name.clone() };
                    format!("{k}: {}", value_text(&e.value))
                })
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        ValueKind::Call { name, args } => format!("{}({})", name.name, args_text(args)),
        ValueKind::Sum(terms) => terms
            .iter()
            .map(|t| match t.weight {
                Some((w, _)) => format!("{w} * {}", value_text(&t.value)),
                None => value_text(&t.value),
            })
            .collect::<Vec<_>>()
            .join(" + "),
    }
}
