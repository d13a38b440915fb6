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
    /// file through the stat cache. Directories are listed and files stat'ed in parallel;
    /// only files whose stamps missed are read.
    pub fn scan(root: &Path, stats: &mut StatCache) -> Result<Manifest, ScanError> {
        let meta = std::fs::metadata(root).map_err(|e| ScanError::Io { path: root.to_path_buf(), message: e.to_string() })?;
        let mut found = Vec::new();
        walk(root, "", &meta, &mut Vec::new(), &mut found)?;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let pairs: Vec<(PathBuf, std::fs::Metadata)> = found.iter().map(|(_, p, m)| (p.clone(), m.clone())).collect();
        let digests = stats.digest_many(&pairs);
        let mut files = Vec::with_capacity(found.len());
        for ((rel, path, meta), digest) in found.into_iter().zip(digests) {
            let digest = digest.map_err(|e| ScanError::Io { path, message: e.to_string() })?;
            files.push(ManifestEntry { path: rel, size: meta.len(), digest });
        }
        Ok(Manifest { files })
    }

    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.files.len() * 120);
        for f in &self.files {
            let _ = writeln!(out, "{} {} {}", f.digest.hex(), f.size, f.path);
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

type Found = Vec<(String, PathBuf, std::fs::Metadata)>;

/// Lists `dir` recursively into `out` as (relative path, path, metadata). `ancestors` holds
/// the (device, inode) of every directory above, so a symlink back up is reported as a loop
/// instead of being followed forever. Subdirectories are walked in parallel.
fn walk(dir: &Path, rel: &str, meta: &std::fs::Metadata, ancestors: &mut Vec<(u64, u64)>, out: &mut Found) -> Result<(), ScanError> {
    use rayon::prelude::*;
    use std::os::unix::fs::MetadataExt;
    let id = (meta.dev(), meta.ino());
    if ancestors.contains(&id) {
        return Err(ScanError::Io { path: dir.to_path_buf(), message: "symlink loop".into() });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| ScanError::Io { path, message: e.to_string() }
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            entries.push((name, entry));
        }
    }
    // Entries of one directory are stat'ed in order (a person folder holds 7 files: a
    // parallel job per file costs more than the stat); directories are walked in parallel
    // below. `DirEntry::metadata` stats relative to the open directory (no path lookup);
    // symlinks are followed by path.
    let stated: Vec<Result<(String, PathBuf, std::fs::Metadata), ScanError>> = entries
        .into_iter()
        .map(|(name, entry)| {
            let path = entry.path();
            let m = match entry.metadata() {
                Ok(m) if m.file_type().is_symlink() => std::fs::metadata(&path),
                other => other,
            }
            .map_err(io(&path))?;
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            Ok((rel, path, m))
        })
        .collect();
    let mut subdirs = Vec::new();
    for item in stated {
        let (rel, path, m) = item?;
        if m.is_dir() {
            subdirs.push((rel, path, m));
        } else if m.is_file() {
            out.push((rel, path, m));
        }
    }
    ancestors.push(id);
    let nested: Vec<Result<Found, ScanError>> = subdirs
        .par_iter()
        .map(|(rel, path, m)| {
            let mut found = Vec::new();
            walk(path, rel, m, &mut ancestors.clone(), &mut found)?;
            Ok(found)
        })
        .collect();
    ancestors.pop();
    for n in nested {
        out.extend(n?);
    }
    Ok(())
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
