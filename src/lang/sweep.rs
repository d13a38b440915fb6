//! Sweep expansion: `sweep[a, b]` anywhere a value goes; the cartesian product of all sweeps
//! in the merged document gives one document per variant.
//!
//! Sites are visited in canonical order, the order `fmt` writes (blocks by kind, keys in schema
//! order, `augment` ops and `oversample` blocks as written), so that formatting a file or
//! reordering its blocks never renames or reorders its variants; the first sweep varies
//! slowest. Each site is named by a dotted path (`train.optimizer.lr`), which also names the
//! variant.

use super::ast::*;
use super::diag::{Kind, Sink};
use super::fmt::{block_rank, stmt_order, value_text};
use super::merge::Doc;

/// Most variants one pipeline may expand to.
pub const MAX_VARIANTS: usize = 4096;

pub struct Expanded {
    pub doc: Doc,
    /// (path, chosen value in canonical spelling), in site order.
    pub assignments: Vec<(String, String)>,
}

struct Site {
    count: usize,
}

pub fn expand(doc: &Doc, sink: &mut Sink) -> Option<Vec<Expanded>> {
    let mut sites: Vec<Site> = Vec::new();
    let mut ok = true;
    let mut probe = doc.clone();
    walk_doc(&mut probe, &mut |_, v| {
        let ValueKind::Sweep(items) = &v.kind else {
            return true;
        };
        if items.is_empty() {
            sink.error(Kind::Sweep, v.span, "a sweep needs at least one value");
            ok = false;
        }
        for item in items {
            if contains_sweep(item) {
                sink.error(Kind::Sweep, item.span, "sweeps cannot be nested");
                ok = false;
            }
        }
        sites.push(Site { count: items.len() });
        false
    });
    if !ok {
        return None;
    }
    let mut total: usize = 1;
    for s in &sites {
        total = total.saturating_mul(s.count);
    }
    if total > MAX_VARIANTS {
        let span = first_sweep_span(doc);
        sink.error(Kind::Limit, span, format!("sweeps expand to {total} variants; at most {MAX_VARIANTS} are allowed"));
        return None;
    }
    let mut out = Vec::with_capacity(total);
    for n in 0..total {
        // Mixed-radix digits of n, the first site most significant.
        let mut choice = vec![0usize; sites.len()];
        let mut rest = n;
        for (i, s) in sites.iter().enumerate().rev() {
            choice[i] = rest % s.count;
            rest /= s.count;
        }
        let mut d = doc.clone();
        let mut assignments = Vec::new();
        let mut k = 0;
        walk_doc(&mut d, &mut |path, v| {
            let ValueKind::Sweep(items) = &mut v.kind else {
                return true;
            };
            let chosen = items.swap_remove(choice[k]);
            assignments.push((path.to_string(), value_text(&chosen)));
            *v = chosen;
            k += 1;
            false
        });
        out.push(Expanded { doc: d, assignments });
    }
    Some(out)
}

fn first_sweep_span(doc: &Doc) -> super::source::Span {
    let mut d = doc.clone();
    let mut span = None;
    walk_doc(&mut d, &mut |_, v| {
        if matches!(v.kind, ValueKind::Sweep(_)) && span.is_none() {
            span = Some(v.span);
        }
        true
    });
    span.unwrap_or(super::source::Span::new(doc.root, 0, 0))
}

fn contains_sweep(v: &Value) -> bool {
    let mut found = false;
    let mut v = v.clone();
    walk_value(&mut v, "", &mut |_, x| {
        found |= matches!(x.kind, ValueKind::Sweep(_));
        true
    });
    found
}

type Visit<'f> = dyn FnMut(&str, &mut Value) -> bool + 'f;

/// Visits every value with its path, in canonical order; the callback returns whether to
/// descend into it.
fn walk_doc(doc: &mut Doc, f: &mut Visit<'_>) {
    let mut oversample = 0;
    let mut blocks: Vec<&mut Block> = doc.blocks.iter_mut().collect();
    blocks.sort_by_key(|b| block_rank(b));
    for b in blocks {
        let order = stmt_order(b);
        let prefix = match b.kind.name.as_str() {
            "augment" => format!("augment.{}", b.qualifier_text()),
            "oversample" => {
                oversample += 1;
                format!("oversample[{}]", oversample - 1)
            }
            k => k.to_string(),
        };
        for c in &mut b.predicate {
            walk_value(&mut c.value, &format!("{prefix}.where.{}", c.field.name), f);
        }
        match &mut b.body {
            Body::Expr(v) => walk_value(v, &prefix, f),
            Body::Stmts(stmts) => {
                for i in order {
                    match &mut stmts[i] {
                        Stmt::Assign { key, value, .. } => walk_value(value, &format!("{prefix}.{}", key.name), f),
                        Stmt::Op(op) => {
                            let at = format!("{prefix}[{i}].{}", op.name.name);
                            walk_args(&mut op.args, &at, f);
                        }
                    }
                }
            }
        }
    }
}

fn walk_args(args: &mut [Arg], at: &str, f: &mut Visit<'_>) {
    for (j, a) in args.iter_mut().enumerate() {
        let p = match &a.name {
            Some(n) => format!("{at}.{}", n.name),
            None => format!("{at}.{j}"),
        };
        walk_value(&mut a.value, &p, f);
    }
}

fn walk_value(v: &mut Value, path: &str, f: &mut Visit<'_>) {
    if !f(path, v) {
        return;
    }
    match &mut v.kind {
        ValueKind::List(items) | ValueKind::Sweep(items) => {
            for (i, x) in items.iter_mut().enumerate() {
                walk_value(x, &format!("{path}[{i}]"), f);
            }
        }
        ValueKind::Map(entries) => {
            for e in entries {
                walk_value(&mut e.value, &format!("{path}.{}", e.key.name), f);
            }
        }
        ValueKind::Call { args, .. } => walk_args(args, path, f),
        ValueKind::Sum(terms) => {
            for (i, t) in terms.iter_mut().enumerate() {
                walk_value(&mut t.value, &format!("{path}[{i}]"), f);
            }
        }
        _ => {}
    }
}
