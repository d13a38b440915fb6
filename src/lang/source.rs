//! Source files and spans.
//!
//! Every diagnostic points into a [`SourceMap`] by [`Span`] (file id + byte range), so that
//! nothing after parsing needs the text itself, and `--set` overrides can be rendered against
//! pseudo-files of their own.

use std::path::PathBuf;

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// What a source file is: a real file, or the text of one `--set` override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    File,
    SetOverride,
    /// A file that could not be read: diagnostics about it have no source line to show.
    Unreadable,
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name shown in diagnostics (the path as given, or `--set`).
    pub name: String,
    pub text: String,
    pub path: Option<PathBuf>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId((self.files.len() - 1) as u32)
    }

    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub fn is_set_override(&self, id: FileId) -> bool {
        self.get(id).is_some_and(|f| f.origin == Origin::SetOverride)
    }
}
