//! A planned step: its kind, its dependencies by role, and its key.
//!
//! Kinds and roles are enums so that every `match` over them is exhaustive: a new kind
//! cannot be added without deciding its version, its outputs and how it runs. Their names
//! (`train`, `split`, `member03`) are what key objects, records and step names contain.

use super::ScannedSource;
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The kinds of step, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Source,
    Relabel,
    Split,
    Prepare,
    Train,
    Evaluate,
    Predict,
    Ensemble,
}

impl StepKind {
    pub const ALL: [StepKind; 8] = [
        StepKind::Source,
        StepKind::Relabel,
        StepKind::Split,
        StepKind::Prepare,
        StepKind::Train,
        StepKind::Evaluate,
        StepKind::Predict,
        StepKind::Ensemble,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StepKind::Source => "source",
            StepKind::Relabel => "relabel",
            StepKind::Split => "split",
            StepKind::Prepare => "prepare",
            StepKind::Train => "train",
            StepKind::Evaluate => "evaluate",
            StepKind::Predict => "predict",
            StepKind::Ensemble => "ensemble",
        }
    }

    pub fn from_name(name: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a dependency is to the step that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Source,
    Relabel,
    Split,
    Prepare,
    Train,
    /// The n-th prediction an ensemble votes over (members' variants and folds, in order).
    Member(u16),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Source => f.write_str("source"),
            Role::Relabel => f.write_str("relabel"),
            Role::Split => f.write_str("split"),
            Role::Prepare => f.write_str("prepare"),
            Role::Train => f.write_str("train"),
            Role::Member(i) => write!(f, "member{i:02}"),
        }
    }
}

/// A file a step reads directly (not through another step); its content digest is in the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileRole {
    /// The dataset directory, entering as the digest of its manifest.
    Manifest,
    RelabelCsv,
    Pretrained,
}

impl FileRole {
    pub fn name(self) -> &'static str {
        match self {
            FileRole::Manifest => "manifest",
            FileRole::RelabelCsv => "relabel_csv",
            FileRole::Pretrained => "pretrained",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub key: Digest,
    pub key_object: Value,
    /// Dependencies by role → index into `Plan::steps`.
    pub deps: Vec<(Role, usize)>,
    /// The first variant that uses this step (its IR is what the step reads).
    pub variant: usize,
    /// The fold, for per-fold steps of a k-fold split.
    pub fold: Option<u32>,
    pub scanned: Option<Arc<ScannedSource>>,
    /// Paths of files the step reads directly, by role (their digests are in the key).
    pub files: Vec<(FileRole, PathBuf)>,
    /// For an ensemble step: the weight of each `Member` dependency, in dependency order.
    pub member_weights: Vec<f64>,
}

impl Step {
    /// The path of a file this step reads directly.
    pub fn file(&self, role: FileRole) -> Option<&Path> {
        self.files.iter().find(|(r, _)| *r == role).map(|(_, p)| p.as_path())
    }

    /// Whether a user's `--force`/`--until`/`--steps` word names this step: its name or its kind.
    pub fn is_named(&self, word: &str) -> bool {
        self.name == word || self.kind.name() == word
    }
}
