//! A character-level pre-pass over the source, run before pest.
//!
//! It finds comments (which pest skips but `fmt` must keep) and enforces the nesting limit:
//! brackets deeper than [`MAX_DEPTH`] are reported as an error instead of letting the
//! recursive-descent parser (or any later recursive walk) exhaust the stack.

use super::diag::{Diagnostic, Kind};
use super::source::{FileId, Span};

/// Deepest allowed nesting of `(`, `[` and `{`.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub start: usize,
    pub end: usize,
    /// The text after `#`, without the line end.
    pub text: String,
}

pub struct Scan {
    pub comments: Vec<Comment>,
}

pub fn scan(file: FileId, text: &str) -> Result<Scan, Diagnostic> {
    let mut comments = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                // A string cannot span lines; `\r` ends a line as it does for pest.
                '"' | '\n' | '\r' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '#' => {
                // The comment ends where pest's does: at `\n`, `\r\n` or a lone `\r`.
                let end = text[i..].find(['\n', '\r']).map_or(text.len(), |n| i + n);
                let body = &text[i + 1..end];
                comments.push(Comment { start: i, end, text: body.to_string() });
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Diagnostic::new(
                        Kind::Limit,
                        Span::new(file, i, i + 1),
                        format!("nesting is deeper than {MAX_DEPTH} levels"),
                    ));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(Scan { comments })
}
