//! Typed access to AST values for the checker: each accessor either returns the value in the
//! type the IR wants or records one diagnostic (wrong type, out of range, unknown name) and
//! returns `None`, so the checker keeps going and reports every error in one run.

use super::ast::*;
use super::diag::{Kind, Sink};
use super::names;
use super::source::{SourceMap, Span};

pub struct Cx<'a> {
    pub sink: &'a mut Sink,
    pub sources: &'a SourceMap,
}

/// An inclusive or exclusive bound of a numeric range.
#[derive(Clone, Copy)]
pub enum Bound {
    Incl(f64),
    Excl(f64),
    Open,
}

impl Bound {
    fn admits_low(self, x: f64) -> bool {
        match self {
            Bound::Incl(b) => x >= b,
            Bound::Excl(b) => x > b,
            Bound::Open => true,
        }
    }
    fn admits_high(self, x: f64) -> bool {
        match self {
            Bound::Incl(b) => x <= b,
            Bound::Excl(b) => x < b,
            Bound::Open => true,
        }
    }
}

fn range_text(lo: Bound, hi: Bound) -> String {
    let f = |x: f64| Num::Float(x).to_string().trim_end_matches(".0").to_string();
    match (lo, hi) {
        (Bound::Incl(a), Bound::Incl(b)) => format!("between {} and {}", f(a), f(b)),
        (Bound::Excl(a), Bound::Excl(b)) => format!("between {} and {} (exclusive)", f(a), f(b)),
        (Bound::Incl(a), Bound::Excl(b)) => format!("at least {} and below {}", f(a), f(b)),
        (Bound::Excl(a), Bound::Incl(b)) => format!("above {} and at most {}", f(a), f(b)),
        (Bound::Incl(a), Bound::Open) => format!("at least {}", f(a)),
        (Bound::Excl(a), Bound::Open) => format!("above {}", f(a)),
        (Bound::Open, Bound::Incl(b)) => format!("at most {}", f(b)),
        (Bound::Open, Bound::Excl(b)) => format!("below {}", f(b)),
        (Bound::Open, Bound::Open) => "a number".to_string(),
    }
}

impl Cx<'_> {
    pub fn error(&mut self, kind: Kind, span: Span, msg: impl Into<String>) {
        self.sink.error(kind, span, msg);
    }

    pub fn type_error(&mut self, v: &Value, expected: &str, key: &str) {
        if v.kind == ValueKind::Invalid {
            return;
        }
        self.error(Kind::Type, v.span, format!("expected {expected} for `{key}`, found {}", v.kind.describe()));
    }

    pub fn float(&mut self, v: &Value, key: &str, lo: Bound, hi: Bound) -> Option<f64> {
        let ValueKind::Num(n) = v.kind else {
            self.type_error(v, "a number", key);
            return None;
        };
        let x = n.as_f64();
        if !lo.admits_low(x) || !hi.admits_high(x) {
            self.error(Kind::Range, v.span, format!("`{key}` must be {}, found {n}", range_text(lo, hi)));
            return None;
        }
        Some(x)
    }

    /// A probability: a number in [0, 1].
    pub fn prob(&mut self, v: &Value, key: &str) -> Option<f64> {
        self.float(v, key, Bound::Incl(0.0), Bound::Incl(1.0))
    }

    pub fn int(&mut self, v: &Value, key: &str, lo: i64, hi: i64) -> Option<i64> {
        let ValueKind::Num(n) = v.kind else {
            self.type_error(v, "an integer", key);
            return None;
        };
        let Num::Int(i) = n else {
            self.type_error(v, "an integer", key);
            return None;
        };
        if i < lo || i > hi {
            let unbounded = hi >= u32::MAX as i64;
            let text = match (unbounded, i < lo) {
                (true, true) => format!("at least {lo}"),
                (true, false) => format!("at most {hi}"),
                (false, _) => format!("between {lo} and {hi}"),
            };
            self.error(Kind::Range, v.span, format!("`{key}` must be {text}, found {i}"));
            return None;
        }
        Some(i)
    }

    pub fn u32(&mut self, v: &Value, key: &str, lo: u32, hi: u32) -> Option<u32> {
        self.int(v, key, lo as i64, hi as i64).map(|i| i as u32)
    }

    pub fn seed(&mut self, v: &Value, key: &str) -> Option<u64> {
        self.int(v, key, 0, i64::MAX).map(|i| i as u64)
    }

    pub fn bool(&mut self, v: &Value, key: &str) -> Option<bool> {
        match v.kind {
            ValueKind::Bool(b) => Some(b),
            _ => {
                self.type_error(v, "`true` or `false`", key);
                None
            }
        }
    }

    /// A string; a bare name is accepted too when it comes from `--set`.
    pub fn string(&mut self, v: &Value, key: &str) -> Option<String> {
        match &v.kind {
            ValueKind::Str(s) => Some(s.clone()),
            ValueKind::Ident(s) if self.sources.is_set_override(v.span.file) => Some(s.clone()),
            _ => {
                self.type_error(v, "a string", key);
                None
            }
        }
    }

    /// One of a fixed set of names.
    pub fn choice(&mut self, v: &Value, key: &str, options: &[&'static str]) -> Option<&'static str> {
        let name = match &v.kind {
            ValueKind::Ident(s) => s.as_str(),
            ValueKind::Str(s) if self.sources.is_set_override(v.span.file) => s.as_str(),
            _ => {
                let expected = options.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>();
                self.type_error(v, &super::parse::join_or(&expected), key);
                return None;
            }
        };
        match options.iter().find(|o| **o == name) {
            Some(o) => Some(o),
            None => {
                let expected = options.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>();
                let msg = match names::did_you_mean(name, options.iter().copied()) {
                    Some(s) => format!("unknown value `{name}` for `{key}`; did you mean `{s}`?"),
                    None => format!("unknown value `{name}` for `{key}`; expected {}", super::parse::join_or(&expected)),
                };
                self.error(Kind::UnknownName, v.span, msg);
                None
            }
        }
    }

    /// A `WxH` size, both sides in 1..=8192.
    pub fn size(&mut self, v: &Value, key: &str) -> Option<[u32; 2]> {
        let ValueKind::Size(w, h) = v.kind else {
            self.type_error(v, "a size such as `224x224`", key);
            return None;
        };
        if !(1..=8192).contains(&w) || !(1..=8192).contains(&h) {
            self.error(Kind::Range, v.span, format!("`{key}` sides must be between 1 and 8192, found {w}x{h}"));
            return None;
        }
        Some([w, h])
    }

    /// An angle in degrees (`10deg`, `0.17rad`, or a plain number of degrees).
    pub fn degrees(&mut self, v: &Value, key: &str) -> Option<f64> {
        let deg = match v.kind {
            ValueKind::Angle(n, AngleUnit::Deg) | ValueKind::Num(n) => n.as_f64(),
            ValueKind::Angle(n, AngleUnit::Rad) => n.as_f64().to_degrees(),
            _ => {
                self.type_error(v, "an angle such as `10deg`", key);
                return None;
            }
        };
        if deg.abs() > 360.0 {
            self.error(Kind::Range, v.span, format!("`{key}` must be between -360deg and 360deg"));
            return None;
        }
        Some(deg)
    }

    pub fn list<'v>(&mut self, v: &'v Value, key: &str) -> Option<&'v [Value]> {
        match &v.kind {
            ValueKind::List(items) => Some(items),
            _ => {
                self.type_error(v, "a list", key);
                None
            }
        }
    }

    /// A list of exactly `N` numbers, each within the bounds.
    pub fn floats<const N: usize>(&mut self, v: &Value, key: &str, lo: Bound, hi: Bound) -> Option<[f64; N]> {
        let items = self.list(v, key)?;
        if items.len() != N {
            self.error(Kind::Type, v.span, format!("`{key}` needs {N} numbers, found {}", items.len()));
            return None;
        }
        let mut out = [0.0; N];
        let mut ok = true;
        for (slot, item) in out.iter_mut().zip(items) {
            match self.float(item, key, lo, hi) {
                Some(x) => *slot = x,
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A `[lo, hi]` pair with lo <= hi.
    pub fn pair(&mut self, v: &Value, key: &str, lo: Bound, hi: Bound) -> Option<[f64; 2]> {
        let p = self.floats::<2>(v, key, lo, hi)?;
        if p[0] > p[1] {
            self.error(Kind::Range, v.span, format!("`{key}` must be `[low, high]` with low <= high"));
            return None;
        }
        Some(p)
    }
}

/// The `key = value` entries of a block, handed out one by one; what is never asked for is
/// reported as unknown at the end.
pub struct Keys<'b> {
    pub block: &'b Block,
    entries: Vec<(&'b Ident, &'b Value)>,
    used: Vec<bool>,
}

impl<'b> Keys<'b> {
    pub fn new(cx: &mut Cx<'_>, block: &'b Block) -> Keys<'b> {
        let mut entries = Vec::new();
        for s in block.stmts() {
            match s {
                // A repeated key was reported when the file was read; the first one counts.
                Stmt::Assign { key, value, .. } if !entries.iter().any(|(k, _): &(&Ident, &Value)| k.name == key.name) => {
                    entries.push((key, value))
                }
                Stmt::Assign { .. } => {}
                Stmt::Op(op) => {
                    let what = if op.args.is_empty() { "a bare name" } else { "an op" };
                    cx.error(
                        Kind::Syntax,
                        op.span,
                        format!("expected `key = value` in `{}`, found {what} `{}`", block.kind.name, op.name.name),
                    );
                }
            }
        }
        let used = vec![false; entries.len()];
        Keys { block, entries, used }
    }

    pub fn get(&mut self, key: &str) -> Option<&'b Value> {
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.used[i] = true;
        Some(self.entries[i].1)
    }

    pub fn key_span(&self, key: &str) -> Option<Span> {
        self.entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k.span)
    }

    /// Reports every key not asked for; `known` feeds the did-you-mean.
    pub fn finish(self, cx: &mut Cx<'_>, what: &str, known: &[&str]) {
        for ((k, _), used) in self.entries.iter().zip(&self.used) {
            if !used {
                let msg = match names::did_you_mean(&k.name, known.iter().copied()) {
                    Some(s) => format!("unknown key `{}` in `{what}`; did you mean `{s}`?", k.name),
                    None => format!("unknown key `{}` in `{what}`", k.name),
                };
                cx.error(Kind::UnknownName, k.span, msg);
            }
        }
    }
}

/// Binds a call's arguments (positional in `params` order, or named) to its parameters.
pub fn bind_args<'v>(cx: &mut Cx<'_>, callee: &Ident, args: &'v [Arg], params: &[&str]) -> Vec<Option<&'v Value>> {
    let mut bound: Vec<Option<&Value>> = vec![None; params.len()];
    let mut next_positional = 0;
    for a in args {
        let slot = match &a.name {
            Some(n) => match params.iter().position(|p| *p == n.name) {
                Some(i) => i,
                None => {
                    let msg = match names::did_you_mean(&n.name, params.iter().copied()) {
                        Some(s) => format!("unknown argument `{}` for `{}`; did you mean `{s}`?", n.name, callee.name),
                        None => format!("unknown argument `{}` for `{}`", n.name, callee.name),
                    };
                    cx.error(Kind::UnknownName, n.span, msg);
                    continue;
                }
            },
            None => {
                if next_positional >= params.len() {
                    cx.error(Kind::Type, a.value.span, format!("too many arguments for `{}`", callee.name));
                    continue;
                }
                next_positional += 1;
                next_positional - 1
            }
        };
        if bound[slot].is_some() {
            cx.error(Kind::Duplicate, a.value.span, format!("argument `{}` of `{}` is given twice", params[slot], callee.name));
            continue;
        }
        bound[slot] = Some(&a.value);
    }
    bound
}
