//! Data manifests: every file under a directory with its size and blake3 digest.
//!
//! A manifest is stored as text, one `digest size path` line per file, sorted by path, so
//! its own digest identifies the directory's content and two manifests diff line by line.
//! Hidden files (`.*`, including macOS `._*` junk) are not data and are left out.

use super::statcache::StatCache;
use crate::digest::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the scanned root, `/`-separated.
    pub path: String,
    pub size: u64,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub files: Vec<ManifestEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ManifestDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl ManifestDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `3 files changed, 1 added`, for one-line explanations.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let plural = |n: usize| if n == 1 { "file" } else { "files" };
        if !self.changed.is_empty() {
            parts.push(format!("{} {} changed", self.changed.len(), plural(self.changed.len())));
        }
        if !self.added.is_empty() {
            parts.push(format!("{} {} added", self.added.len(), plural(self.added.len())));
        }
        if !self.removed.is_empty() {
            parts.push(format!("{} {} removed", self.removed.len(), plural(self.removed.len())));
        }
        if parts.is_empty() { "no files changed".into() } else { parts.join(", ") }
    }
}

impl Manifest {
    /// Scans `root` (following symlinks, with loop detection) and digests every non-hidden
    /// file through the stat cache, in parallel for the files that must be read.
    pub fn scan(root: &Path, stats: &mut StatCache) -> Result<Manifest, ScanError> {
        let mut found: Vec<(String, PathBuf, std::fs::Metadata)> = Vec::new();
        let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
        for entry in walker.filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')) {
            let entry = entry.map_err(|e| {
                let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
                let message = if e.loop_ancestor().is_some() {
                    "symlink loop".to_string()
                } else {
                    e.io_error().map(|io| io.to_string()).unwrap_or_else(|| e.to_string())
                };
                ScanError::Io { path, message }
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let meta = entry.metadata().map_err(|e| ScanError::Io { path: entry.path().into(), message: e.to_string() })?;
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            found.push((rel, entry.path().to_path_buf(), meta));
        }
        let pairs: Vec<(PathBuf, std::fs::Metadata)> = found.iter().map(|(_, p, m)| (p.clone(), m.clone())).collect();
        let digests = stats.digest_many(&pairs);
        let mut files = Vec::with_capacity(found.len());
        for ((rel, path, meta), digest) in found.into_iter().zip(digests) {
            let digest = digest.map_err(|e| ScanError::Io { path, message: e.to_string() })?;
            files.push(ManifestEntry { path: rel, size: meta.len(), digest });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest { files })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.files.len() * 100);
        for f in &self.files {
            out.push_str(&format!("{} {} {}\n", f.digest, f.size, f.path));
        }
        out
    }

    pub fn from_text(text: &str) -> Option<Manifest> {
        let mut files = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            let digest = Digest::from_hex(parts.next()?)?;
            let size = parts.next()?.parse().ok()?;
            let path = parts.next()?.to_string();
            files.push(ManifestEntry { path, size, digest });
        }
        Some(Manifest { files })
    }

    pub fn digest(&self) -> Digest {
        Digest::of(self.to_text().as_bytes())
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn diff(old: &Manifest, new: &Manifest) -> ManifestDiff {
        let old_map: BTreeMap<&str, &Digest> = old.files.iter().map(|f| (f.path.as_str(), &f.digest)).collect();
        let new_map: BTreeMap<&str, &Digest> = new.files.iter().map(|f| (f.path.as_str(), &f.digest)).collect();
        let mut diff = ManifestDiff::default();
        for (path, digest) in &new_map {
            match old_map.get(path) {
                None => diff.added.push(path.to_string()),
                Some(old) if old != digest => diff.changed.push(path.to_string()),
                _ => {}
            }
        }
        diff.removed = old_map.keys().filter(|p| !new_map.contains_key(*p)).map(|p| p.to_string()).collect();
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_skips_hidden_files_and_diffs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("p1")).unwrap();
        std::fs::write(root.join("p1/mask1.jpg"), b"one").unwrap();
        std::fs::write(root.join("p1/._mask1.jpg"), b"junk").unwrap();
        std::fs::write(root.join("train.csv"), b"id\n").unwrap();
        let mut stats = StatCache::load(&dir.path().join("sc.bin"));
        let m1 = Manifest::scan(&root, &mut stats).unwrap();
        let paths: Vec<_> = m1.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["p1/mask1.jpg", "train.csv"]);
        assert_eq!(Manifest::from_text(&m1.to_text()), Some(m1.clone()));
        std::fs::write(root.join("p1/mask1.jpg"), b"two").unwrap();
        std::fs::write(root.join("p1/normal.png"), b"new").unwrap();
        let m2 = Manifest::scan(&root, &mut stats).unwrap();
        let d = Manifest::diff(&m1, &m2);
        assert_eq!(d.changed, ["p1/mask1.jpg"]);
        assert_eq!(d.added, ["p1/normal.png"]);
        assert_eq!(d.summary(), "1 file changed, 1 file added");
    }

    #[test]
    fn symlink_loop_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("a/loop")).unwrap();
        let mut stats = StatCache::load(&dir.path().join("sc.bin"));
        let err = Manifest::scan(&root, &mut stats).unwrap_err().to_string();
        assert!(err.contains("symlink loop"), "{err}");
    }
}
