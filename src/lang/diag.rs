//! Diagnostics as data, and the one renderer that draws them.
//!
//! A [`Diagnostic`] is a kind, a span and a short lower-case message (plus optional notes).
//! The checker collects them all instead of stopping at the first; [`Diagnostics::render`]
//! draws each as `file:line:col`, the source line and a caret underline.

use super::source::{SourceMap, Span};
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Syntax,
    Encoding,
    UnknownName,
    Type,
    Range,
    Missing,
    Duplicate,
    Conflict,
    Include,
    Sweep,
    Limit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub kind: Kind,
    pub span: Span,
    pub message: String,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(kind: Kind, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { kind, span, message: message.into(), notes: Vec::new() }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}

/// A growing list of diagnostics that drops exact repeats (sweep variants re-check the same text).
#[derive(Debug, Default)]
pub struct Sink {
    items: Vec<Diagnostic>,
}

impl Sink {
    pub fn push(&mut self, d: Diagnostic) {
        if !self.items.contains(&d) {
            self.items.push(d);
        }
    }

    pub fn error(&mut self, kind: Kind, span: Span, message: impl Into<String>) {
        self.push(Diagnostic::new(kind, span, message));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }
}

/// The errors of one failed `load` or `format_file`, with the sources needed to draw them.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    sources: Arc<SourceMap>,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(sources: Arc<SourceMap>, items: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics { sources, items }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// All diagnostics, each as `error: ...`, location, source line and caret, separated by
    /// blank lines.
    pub fn render(&self) -> String {
        let drawn: Vec<String> = self.items.iter().map(|d| render_one(&self.sources, d)).collect();
        drawn.join("\n")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}

fn render_one(sources: &SourceMap, d: &Diagnostic) -> String {
    let mut out = format!("error: {}\n", d.message);
    let Some(file) = sources.get(d.span.file) else {
        return out;
    };
    if file.origin == super::source::Origin::Unreadable {
        return out;
    }
    let text = file.text.as_str();
    let start = clamp_to_char(text, d.span.start.min(text.len()));
    let end = clamp_to_char(text, d.span.end.clamp(start, text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text[line_start..line_end].trim_end_matches('\r');
    let prefix = &text[line_start..start];
    let col = prefix.chars().count() + 1;
    let width = line_no.to_string().len();
    let pad = " ".repeat(width);
    // Keep tabs in the padding so the caret lines up under tab-indented source.
    let caret_pad: String = prefix.chars().map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    let underlined = text[start..end.min(line_end)].chars().count().max(1);
    out.push_str(&format!("{pad}--> {}:{line_no}:{col}\n", file.name));
    out.push_str(&format!("{pad} |\n"));
    out.push_str(&format!("{line_no} | {line}\n"));
    out.push_str(&format!("{pad} | {caret_pad}{}\n", "^".repeat(underlined)));
    for note in &d.notes {
        out.push_str(&format!("{pad} = note: {note}\n"));
    }
    out
}

fn clamp_to_char(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}
