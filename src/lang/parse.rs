//! pest → AST. The only module that sees pest types: syntax errors leave it as
//! [`Diagnostic`]s and the tree leaves it as [`ast`](super::ast) values with spans.

use super::ast::*;
use super::diag::{Diagnostic, Kind, Sink};
use super::scan::{self, Comment};
use super::source::{FileId, Span};
use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/maskflow.pest"]
struct MfParser;

/// Bounds pest's work on pathological input (it counts rule calls, not depth; depth is
/// bounded by [`scan::MAX_DEPTH`]).
const CALL_LIMIT: usize = 50_000_000;

pub struct Parsed {
    pub file: File,
    pub comments: Vec<Comment>,
}

/// Parses one file's text. On a syntax error the sink gets exactly one diagnostic.
pub fn parse_file(id: FileId, text: &str, sink: &mut Sink) -> Option<Parsed> {
    let scanned = match scan::scan(id, text) {
        Ok(s) => s,
        Err(d) => {
            sink.push(d);
            return None;
        }
    };
    configure_pest();
    match MfParser::parse(Rule::file, text) {
        Ok(mut pairs) => {
            let root = pairs.next()?;
            let comment_at_end = scanned.comments.iter().map(|c| (c.end, c.start)).collect();
            let b = Builder { file: id, sink, text, comment_at_end };
            let file = b.file(root);
            Some(Parsed { file, comments: scanned.comments })
        }
        Err(e) => {
            sink.push(syntax_error(id, text, 0, &e));
            None
        }
    }
}

/// Parses the value of a `--set PATH=VALUE`; `offset` is where the value starts in `text`.
/// `Err` carries the syntax error, to be reported or not by the caller.
pub fn parse_set_value(id: FileId, text: &str, offset: usize, sink: &mut Sink) -> Result<Value, Diagnostic> {
    let src = &text[offset..];
    if let Err(d) = scan::scan(id, src) {
        let mut d = d;
        d.span.start += offset;
        d.span.end += offset;
        return Err(d);
    }
    configure_pest();
    let root = match MfParser::parse(Rule::set_value, src) {
        Ok(mut pairs) => pairs.next(),
        Err(e) => return Err(syntax_error(id, text, offset, &e)),
    };
    let fail = || Diagnostic::new(Kind::Syntax, Span::new(id, offset, text.len()), "syntax error: expected a value");
    let root = root.ok_or_else(fail)?;
    let mut b = Builder { file: id, sink, text: src, comment_at_end: Default::default() };
    let value = root.into_inner().find(|p| p.as_rule() == Rule::value).ok_or_else(fail)?;
    let mut v = b.value(value);
    shift(&mut v, offset);
    Ok(v)
}

fn configure_pest() {
    pest::set_call_limit(std::num::NonZeroUsize::new(CALL_LIMIT));
}

/// Moves a value parsed from a substring to its place in the whole text.
fn shift(v: &mut Value, by: usize) {
    v.span.start += by;
    v.span.end += by;
    let shift_ident = |i: &mut Ident| {
        i.span.start += by;
        i.span.end += by;
    };
    match &mut v.kind {
        ValueKind::List(items) | ValueKind::Sweep(items) => items.iter_mut().for_each(|x| shift(x, by)),
        ValueKind::Map(entries) => {
            for e in entries {
                shift_ident(&mut e.key);
                shift(&mut e.value, by);
            }
        }
        ValueKind::Call { name, args } => {
            shift_ident(name);
            for a in args {
                if let Some(n) = &mut a.name {
                    shift_ident(n);
                }
                shift(&mut a.value, by);
            }
        }
        ValueKind::Sum(terms) => {
            for t in terms {
                if let Some((_, s)) = &mut t.weight {
                    s.start += by;
                    s.end += by;
                }
                shift(&mut t.value, by);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- syntax errors

fn syntax_error(id: FileId, whole: &str, offset: usize, e: &pest::error::Error<Rule>) -> Diagnostic {
    let text = &whole[offset..];
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !expected.contains(&s) {
            expected.push(s);
        }
    };
    let mut wants_value = false;
    if let ErrorVariant::ParsingError { positives, .. } = &e.variant {
        for r in positives {
            match rule_name(*r) {
                Some("a value") => wants_value = true,
                Some(n) => push(n.to_string()),
                None => {}
            }
        }
    }
    if wants_value {
        push("a value".to_string());
    }
    let at_end = text[pos..].trim().is_empty();
    let (pos, found) = if at_end { (text.trim_end().len(), "end of file".to_string()) } else { (pos, describe_found(&text[pos..])) };
    let unterminated_string = !at_end && text[pos..].starts_with('"') && !text[pos + 1..].lines().next().unwrap_or("").contains('"');
    let message = if unterminated_string {
        "syntax error: unterminated string".to_string()
    } else if expected.is_empty() {
        format!("syntax error: unexpected {found}")
    } else {
        format!("syntax error: expected {}, found {found}", join_or(&expected))
    };
    let end = if at_end { pos } else { pos + text[pos..].chars().next().map_or(0, char::len_utf8) };
    Diagnostic::new(Kind::Syntax, Span::new(id, pos + offset, end + offset), message)
}

fn describe_found(rest: &str) -> String {
    let Some(c) = rest.chars().next() else {
        return "end of file".to_string();
    };
    if c == '\n' || c == '\r' {
        return "end of line".to_string();
    }
    if c.is_alphanumeric() || c == '_' {
        let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.').collect();
        return format!("`{word}`");
    }
    format!("`{c}`")
}

pub(crate) fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn rule_name(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::value
        | Rule::term
        | Rule::weight
        | Rule::sweep
        | Rule::list
        | Rule::map
        | Rule::call
        | Rule::size
        | Rule::angle
        | Rule::number
        | Rule::number_core
        | Rule::string
        | Rule::boolean => "a value",
        Rule::ident | Rule::qualifier => "a name",
        Rule::body => "`{`",
        Rule::assign | Rule::op => "a statement",
        Rule::block | Rule::extends | Rule::loss_expr | Rule::kw_extends | Rule::kw_loss => "a block",
        Rule::predicate | Rule::kw_where => "`where`",
        Rule::kw_and => "`and`",
        Rule::clause => "a condition",
        Rule::cmp => "a comparison",
        Rule::entry => "a map entry `key: value`",

        Rule::arg => "an argument",

        Rule::EOI => "end of file",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::rbracket => "`]`",
        Rule::rparen => "`)`",
        Rule::eq => "`=`",
        Rule::colon => "`:`",
        Rule::comma => "`,`",
        _ => return None,
    })
}

// ---------------------------------------------------------------- tree building

fn is_punct(r: Rule) -> bool {
    matches!(r, Rule::lbrace | Rule::rbrace | Rule::rbracket | Rule::rparen | Rule::eq | Rule::colon | Rule::comma)
}

struct Builder<'s> {
    file: FileId,
    sink: &'s mut Sink,
    text: &'s str,
    /// Comment end → comment start, to trim comments off the end of spans.
    comment_at_end: std::collections::HashMap<usize, usize>,
}

impl Builder<'_> {
    /// The pair's span without the trailing blanks and comments pest includes when an
    /// optional or repeated part after it matched nothing.
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        let (start, mut end) = (s.start(), s.end());
        while end > start {
            if self.text[..end].ends_with([' ', '\t']) {
                end -= 1;
            } else if let Some(&c) = self.comment_at_end.get(&end) {
                end = c.max(start);
            } else {
                break;
            }
        }
        Span::new(self.file, start, end)
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident { name: p.as_str().to_string(), span: self.span(&p) }
    }

    fn file(mut self, root: Pair<Rule>) -> File {
        let mut items = Vec::new();
        for p in root.into_inner() {
            match p.as_rule() {
                Rule::extends => {
                    let span = self.span(&p);
                    if let Some(s) = p.into_inner().find(|q| q.as_rule() == Rule::string) {
                        let path_span = self.span(&s);
                        let path = self.string(s);
                        items.push(Item::Extends(Extends { path, path_span, span }));
                    }
                }
                Rule::loss_expr => {
                    let span = self.span(&p);
                    let mut inner = p.into_inner();
                    let kw = inner.next();
                    let value = inner.find(|q| q.as_rule() == Rule::value);
                    if let (Some(kw), Some(value)) = (kw, value) {
                        let kind = self.ident(kw);
                        let value = self.value(value);
                        items.push(Item::Block(Block { kind, qualifiers: vec![], predicate: vec![], body: Body::Expr(value), span }));
                    }
                }
                Rule::block => items.push(Item::Block(self.block(p))),
                _ => {}
            }
        }
        File { items }
    }

    fn block(&mut self, p: Pair<Rule>) -> Block {
        let span = self.span(&p);
        let mut kind = None;
        let mut qualifiers = Vec::new();
        let mut predicate = Vec::new();
        let mut stmts = Vec::new();
        for q in p.into_inner() {
            match q.as_rule() {
                Rule::ident => kind = Some(self.ident(q)),
                Rule::qualifier => {
                    if let Some(i) = q.into_inner().next() {
                        qualifiers.push(self.ident(i));
                    }
                }
                Rule::predicate => {
                    for c in q.into_inner().filter(|c| c.as_rule() == Rule::clause) {
                        if let Some(c) = self.clause(c) {
                            predicate.push(c);
                        }
                    }
                }
                Rule::body => {
                    for s in q.into_inner() {
                        match s.as_rule() {
                            Rule::assign => {
                                let span = self.span(&s);
                                let mut inner = s.into_inner().filter(|q| !is_punct(q.as_rule()));
                                if let (Some(k), Some(v)) = (inner.next(), inner.next()) {
                                    let key = self.ident(k);
                                    let value = self.value(v);
                                    stmts.push(Stmt::Assign { key, value, span });
                                }
                            }
                            Rule::op => stmts.push(Stmt::Op(self.op(s))),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let kind = kind.unwrap_or(Ident { name: String::new(), span });
        Block { kind, qualifiers, predicate, body: Body::Stmts(stmts), span }
    }

    fn clause(&mut self, p: Pair<Rule>) -> Option<Clause> {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let field = self.ident(inner.next()?);
        let c = inner.next()?;
        let cmp_span = self.span(&c);
        let cmp = match c.as_str() {
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            _ => CmpOp::Ge,
        };
        let value = self.value(inner.next()?);
        Some(Clause { field, cmp, cmp_span, value, span })
    }

    fn op(&mut self, p: Pair<Rule>) -> OpCall {
        let span = self.span(&p);
        let mut name = Ident { name: String::new(), span };
        let mut args = Vec::new();
        for q in p.into_inner() {
            match q.as_rule() {
                Rule::ident => name = self.ident(q),
                Rule::args => args = self.args(q),
                Rule::value => args.push(Arg { name: None, value: self.value(q) }),
                _ => {}
            }
        }
        OpCall { name, args, span }
    }

    fn args(&mut self, p: Pair<Rule>) -> Vec<Arg> {
        let mut args = Vec::new();
        for a in p.into_inner().filter(|a| a.as_rule() == Rule::arg) {
            let mut name = None;
            let mut value = None;
            for q in a.into_inner() {
                match q.as_rule() {
                    Rule::ident => name = Some(self.ident(q)),
                    Rule::value => value = Some(self.value(q)),
                    _ => {}
                }
            }
            if let Some(value) = value {
                args.push(Arg { name, value });
            }
        }
        args
    }

    fn value(&mut self, p: Pair<Rule>) -> Value {
        let span = self.span(&p);
        let mut terms: Vec<Term> = Vec::new();
        for t in p.into_inner().filter(|t| t.as_rule() == Rule::term) {
            let mut weight = None;
            let mut value = None;
            for q in t.into_inner() {
                if q.as_rule() == Rule::weight {
                    if let Some(n) = q.into_inner().next() {
                        let s = self.span(&n);
                        weight = Some((self.number(n.as_str(), s), s));
                    }
                } else {
                    value = Some(self.atom(q));
                }
            }
            if let Some(value) = value {
                terms.push(Term { weight, value });
            }
        }
        if terms.len() == 1
            && terms[0].weight.is_none()
            && let Some(t) = terms.pop()
        {
            return t.value;
        }
        Value { kind: ValueKind::Sum(terms), span }
    }

    fn atom(&mut self, p: Pair<Rule>) -> Value {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::sweep => ValueKind::Sweep(self.values(p)),
            Rule::list => ValueKind::List(self.values(p)),
            Rule::map => {
                let mut entries = Vec::new();
                for e in p.into_inner().filter(|e| e.as_rule() == Rule::entry) {
                    let mut inner = e.into_inner().filter(|q| !is_punct(q.as_rule()));
                    let (Some(k), Some(v)) = (inner.next(), inner.next()) else {
                        continue;
                    };
                    let quoted = k.as_rule() == Rule::string;
                    let key_span = self.span(&k);
                    let name = if quoted { self.string(k) } else { k.as_str().to_string() };
                    let value = self.value(v);
                    entries.push(MapEntry { key: Ident { name, span: key_span }, quoted, value });
                }
                ValueKind::Map(entries)
            }
            Rule::call => {
                let mut name = Ident { name: String::new(), span };
                let mut args = Vec::new();
                for q in p.into_inner() {
                    match q.as_rule() {
                        Rule::ident => name = self.ident(q),
                        Rule::args => args = self.args(q),
                        _ => {}
                    }
                }
                ValueKind::Call { name, args }
            }
            Rule::size => {
                let text = p.as_str();
                let (w, h) = text.split_once('x').unwrap_or((text, "0"));
                match (w.parse::<u32>(), h.parse::<u32>()) {
                    (Ok(w), Ok(h)) => ValueKind::Size(w, h),
                    _ => {
                        self.sink.error(Kind::Range, span, format!("size `{text}` is too large"));
                        ValueKind::Size(0, 0)
                    }
                }
            }
            Rule::angle => {
                let errors = self.sink.len();
                let mut num = Num::Int(0);
                let mut unit = AngleUnit::Deg;
                for q in p.into_inner() {
                    match q.as_rule() {
                        Rule::number_core => num = self.number(q.as_str(), span),
                        Rule::angle_unit => unit = if q.as_str() == "rad" { AngleUnit::Rad } else { AngleUnit::Deg },
                        _ => {}
                    }
                }
                if self.sink.len() > errors { ValueKind::Invalid } else { ValueKind::Angle(num, unit) }
            }
            Rule::number => self.number_value(p.as_str(), span),
            Rule::string => ValueKind::Str(self.string(p)),
            Rule::boolean => ValueKind::Bool(p.as_str() == "true"),
            _ => ValueKind::Ident(p.as_str().to_string()),
        };
        Value { kind, span }
    }

    fn values(&mut self, p: Pair<Rule>) -> Vec<Value> {
        p.into_inner().filter(|q| q.as_rule() == Rule::value).map(|q| self.value(q)).collect()
    }

    /// A number literal, or `Invalid` (reported) when it does not fit.
    fn number_value(&mut self, text: &str, span: Span) -> ValueKind {
        let errors = self.sink.len();
        let n = self.number(text, span);
        if self.sink.len() > errors { ValueKind::Invalid } else { ValueKind::Num(n) }
    }

    fn number(&mut self, text: &str, span: Span) -> Num {
        if text.contains(['.', 'e', 'E']) {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Num::Float(f),
                _ => {
                    self.sink.error(Kind::Range, span, format!("number `{text}` is out of range"));
                    Num::Float(0.0)
                }
            }
        } else {
            match text.parse::<i64>() {
                Ok(i) => Num::Int(i),
                Err(_) => {
                    self.sink.error(Kind::Range, span, format!("integer `{text}` is too large"));
                    Num::Int(0)
                }
            }
        }
    }

    fn string(&mut self, p: Pair<Rule>) -> String {
        let span = self.span(&p);
        let raw = p.into_inner().next().map_or("", |b| b.as_str());
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(other) => {
                    self.sink.error(Kind::Syntax, span, format!("unknown escape `\\{other}` in string"));
                }
                None => {}
            }
        }
        out
    }
}
