//! The syntax tree of one `.mf` file, with spans. No pest types appear here or after.

use super::source::Span;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Extends(Extends),
    Block(Block),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Extends(e) => e.span,
            Item::Block(b) => b.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Extends {
    pub path: String,
    pub path_span: Span,
    pub span: Span,
}

/// `kind qualifier* (where clause (and clause)*)? { stmt* }`, or `loss = value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub kind: Ident,
    pub qualifiers: Vec<Ident>,
    pub predicate: Vec<Clause>,
    pub body: Body,
    pub span: Span,
}

impl Block {
    pub fn stmts(&self) -> &[Stmt] {
        match &self.body {
            Body::Stmts(s) => s,
            Body::Expr(_) => &[],
        }
    }

    /// The span that names the block in diagnostics: its kind and qualifiers.
    pub fn head_span(&self) -> Span {
        self.qualifiers.last().map_or(self.kind.span, |q| self.kind.span.to(q.span))
    }

    pub fn qualifier_text(&self) -> String {
        self.qualifiers.iter().map(|q| q.name.as_str()).collect::<Vec<_>>().join(" ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Stmts(Vec<Stmt>),
    /// `loss = 0.7 * focal(gamma = 2) + 0.3 * soft_f1`
    Expr(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub field: Ident,
    pub cmp: CmpOp,
    pub cmp_span: Span,
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `key = value`
    Assign { key: Ident, value: Value, span: Span },
    /// `name`, `name value` or `name(args)`: an op in an `augment` block.
    Op(OpCall),
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Assign { span, .. } => *span,
            Stmt::Op(op) => op.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpCall {
    pub name: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

/// A number as written: integers and floats stay apart so that `epochs = 1.5` is an error,
/// while a float field accepts both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

impl fmt::Display for Num {
    /// The canonical spelling: integers plainly; floats in the shorter of Rust's shortest
    /// round-trip decimal and exponent forms, the decimal on a tie and for whole numbers
    /// (`0.5`, `2.0`, `10.0`, `0.01`, `3e-4`, `1e-8`), so learning rates read as ML people write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => {
                let decimal = format!("{x:?}");
                let exponent = format!("{x:e}");
                // Whole numbers stay decimal (`10.0`, not `1e1`).
                if x.fract() != 0.0 && exponent.len() < decimal.len() { f.write_str(&exponent) } else { f.write_str(&decimal) }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AngleUnit {
    Deg,
    Rad,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub weight: Option<(Num, Span)>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    pub key: Ident,
    pub quoted: bool,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    Num(Num),
    Str(String),
    Bool(bool),
    Ident(String),
    /// `WxH`
    Size(u32, u32),
    Angle(Num, AngleUnit),
    List(Vec<Value>),
    Map(Vec<MapEntry>),
    Call {
        name: Ident,
        args: Vec<Arg>,
    },
    Sweep(Vec<Value>),
    /// A weighted sum with at least one explicit weight or two terms.
    Sum(Vec<Term>),
    /// A literal that was already reported as invalid (e.g. an integer overflow); the
    /// checker stays silent about it.
    Invalid,
}

impl ValueKind {
    /// How a value is named in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            ValueKind::Num(Num::Int(i)) => format!("integer `{i}`"),
            ValueKind::Num(n) => format!("number `{n}`"),
            ValueKind::Str(s) => format!("string \"{}\"", s.escape_debug()),
            ValueKind::Bool(b) => format!("`{b}`"),
            ValueKind::Ident(s) => format!("`{s}`"),
            ValueKind::Size(w, h) => format!("size `{w}x{h}`"),
            ValueKind::Angle(..) => "an angle".to_string(),
            ValueKind::List(_) => "a list".to_string(),
            ValueKind::Map(_) => "a map".to_string(),
            ValueKind::Call { name, .. } => format!("call `{}(...)`", name.name),
            ValueKind::Sweep(_) => "a sweep".to_string(),
            ValueKind::Sum(_) => "a weighted sum".to_string(),
            ValueKind::Invalid => "an invalid value".to_string(),
        }
    }
}
