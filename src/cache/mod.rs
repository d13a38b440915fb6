//! The content-addressed cache (`cache/` by default).
//!
//! Layout:
//! ```text
//! cache/
//!   objects/ab/cdef…        immutable blobs, named by their blake3 digest
//!   trees/<digest>/…        immutable directories (a synthetic dataset), named by the
//!                           digest of their manifest, which is itself stored as a blob
//!   records/ab/cdef….json   one record per step key: the full key object, the output
//!                           digests, metrics and timings
//!   refs/<pipeline>.json    the last key of each step of a pipeline, for "why did this rerun"
//!   locks/                  per-step lock files; `cache.lock` (shared by runs, exclusive for gc)
//!   tmp/                    private build directories of running steps, and files moved
//!                           aside as corrupt; emptied by `gc`
//!   work/<step key>/        a training step's checkpoints, kept across a killed run so the
//!                           next run resumes; removed when the step succeeds
//!   pixels/ab/cdef…         prepared pixels per (image digest, prepare params): the prepare
//!                           step's accelerator, never the source of truth
//!   pixels/parts/ab/cdef…   shard-part memos: a part's recipe → the object holding it
//!   statcache.bin           file stamps → digests (see `statcache`)
//! ```
//! Every folder is named once, by [`Dir`].
//! Invariants: an object or tree is written under a temporary name and renamed into place
//! only when complete; a record is written only after its step succeeded and all its
//! outputs are in place; every read of an object is verified against its name (a file whose
//! stamp matches a stat-cache entry written at verification time is trusted without being
//! re-read); anything that fails verification is reported by path and treated as absent.

pub mod manifest;
pub mod statcache;
pub mod verify;

use crate::digest::Digest;
use crate::fsutil;
use serde::{Deserialize, Serialize};
use statcache::StatCache;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache: {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("cache: {path}: corrupt ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cache: {path}: missing")]
    Missing { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |e| CacheError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// One output of a step: a blob, or a tree whose manifest is the blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tree: bool,
}

/// What a step left in the cache. Written once, after success; never modified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    /// The step kind (`split`, `train`, …).
    pub kind: String,
    pub key: Digest,
    /// The full key object the key was hashed from (see `plan::key`).
    pub key_object: serde_json::Value,
    /// The exact canonical text that was hashed. Verification hashes this text, not the
    /// re-parsed `key_object`: JSON float parsing need not round-trip every f64 bit for bit.
    #[serde(default)]
    pub key_text: String,
    pub outputs: BTreeMap<String, Output>,
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
    /// RFC 3339 time the step finished, and how long it ran.
    pub finished: String,
    pub seconds: f64,
    pub maskflow_version: String,
}

pub const RECORD_FORMAT: u32 = 1;

/// The state of a cached output, as found by [`Cache::check_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputState {
    Ok,
    Missing(PathBuf),
    Corrupt(PathBuf, String),
}

/// The cache's sub-folders (the layout above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Objects,
    Trees,
    Records,
    Refs,
    Locks,
    Tmp,
    Work,
    Pixels,
    PixelParts,
}

impl Dir {
    /// The folder's path relative to the cache root.
    pub fn rel(self) -> &'static str {
        match self {
            Dir::Objects => "objects",
            Dir::Trees => "trees",
            Dir::Records => "records",
            Dir::Refs => "refs",
            Dir::Locks => "locks",
            Dir::Tmp => "tmp",
            Dir::Work => "work",
            Dir::Pixels => "pixels",
            Dir::PixelParts => "pixels/parts",
        }
    }
}

pub struct Cache {
    root: PathBuf,
    stats: StatCache,
    _shared: File,
    recompute: bool,
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`, holding a shared lock that `gc` waits for.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        Cache::open_with(root, false)
    }

    /// Opens the cache holding the exclusive lock: no run is in progress while it is held.
    pub fn open_exclusive(root: &Path) -> Result<Cache, CacheError> {
        Cache::open_with(root, true)
    }

    fn open_with(root: &Path, exclusive: bool) -> Result<Cache, CacheError> {
        for sub in [Dir::Objects, Dir::Trees, Dir::Records, Dir::Refs, Dir::Locks, Dir::Tmp] {
            let dir = root.join(sub.rel());
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let lock_path = root.join(Dir::Locks.rel()).join("cache.lock");
        let lock = File::options().create(true).append(true).open(&lock_path).map_err(io_err(&lock_path))?;
        if exclusive { lock.lock() } else { lock.lock_shared() }.map_err(io_err(&lock_path))?;
        Ok(Cache { root: root.to_path_buf(), stats: StatCache::load(&root.join("statcache.bin")), _shared: lock, recompute: false })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of one of the cache's sub-folders.
    pub fn dir(&self, dir: Dir) -> PathBuf {
        self.root.join(dir.rel())
    }

    /// Whether steps must recompute everything, bypassing their private accelerators
    /// (the prepare step's pixel and part memos): set by `maskflow verify`.
    pub fn recomputing(&self) -> bool {
        self.recompute
    }

    pub fn set_recomputing(&mut self, on: bool) {
        self.recompute = on;
    }

    pub fn stats(&mut self) -> &mut StatCache {
        &mut self.stats
    }

    /// Persists the stat cache; called once at the end of a command.
    pub fn flush(&mut self) -> Result<(), CacheError> {
        let path = self.root.join("statcache.bin");
        self.stats.save().map_err(io_err(&path))
    }

    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir(Dir::Objects).join(&hex[..2]).join(&hex[2..])
    }

    pub fn tree_path(&self, manifest: &Digest) -> PathBuf {
        self.dir(Dir::Trees).join(manifest.hex())
    }

    pub fn record_path(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.dir(Dir::Records).join(&hex[..2]).join(format!("{}.json", &hex[2..]))
    }

    /// A fresh private directory under `cache/tmp/` for a step to build outputs in.
    pub fn temp_dir(&self, label: &str) -> Result<PathBuf, CacheError> {
        let dir = fsutil::temp_path_for(&self.dir(Dir::Tmp).join(label));
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Stores bytes as an object; returns its output description.
    pub fn put_bytes(&mut self, bytes: &[u8]) -> Result<Output, CacheError> {
        let digest = Digest::of(bytes);
        let path = self.object_path(&digest);
        if self.check_blob(&path, &digest) != OutputState::Ok {
            fsutil::write_atomic(&path, bytes).map_err(io_err(&path))?;
            self.trust(&path, digest);
        }
        Ok(Output { digest, size: bytes.len() as u64, tree: false })
    }

    /// Moves a finished file (e.g. from `temp_dir`) into the object store.
    pub fn put_file(&mut self, src: &Path) -> Result<Output, CacheError> {
        let digest = Digest::of_file(src).map_err(io_err(src))?;
        let size = fs::metadata(src).map_err(io_err(src))?.len();
        let path = self.object_path(&digest);
        if self.check_blob(&path, &digest) == OutputState::Ok {
            let _ = fs::remove_file(src);
        } else {
            File::open(src).and_then(|f| f.sync_all()).map_err(io_err(src))?;
            fsutil::rename_into_place(src, &path).map_err(io_err(&path))?;
            self.trust(&path, digest);
        }
        Ok(Output { digest, size, tree: false })
    }

    /// Moves a finished directory into `trees/`, keyed by the digest of its manifest (which
    /// is stored as a blob). Returns the tree output.
    pub fn put_tree(&mut self, src: &Path) -> Result<Output, CacheError> {
        let manifest = manifest::Manifest::scan(src, &mut self.stats)
            .map_err(|e| CacheError::Io { path: src.to_path_buf(), message: e.to_string() })?;
        let out = self.put_bytes(manifest.to_text().as_bytes())?;
        let dest = self.tree_path(&out.digest);
        let tree = Output { tree: true, ..out };
        if dest.exists() {
            // Keep an existing tree only if it is intact; a damaged one is moved aside so
            // the fresh copy can take its place.
            if self.check_output(&tree) == OutputState::Ok {
                let _ = fs::remove_dir_all(src);
                return Ok(tree);
            }
            self.quarantine(&dest);
        }
        fsutil::rename_into_place(src, &dest).map_err(io_err(&dest))?;
        Ok(tree)
    }

    /// Reads and verifies a blob.
    pub fn read_blob(&mut self, digest: &Digest) -> Result<Vec<u8>, CacheError> {
        let path = self.object_path(digest);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CacheError::Missing { path: path.clone() },
            _ => CacheError::Io { path: path.clone(), message: e.to_string() },
        })?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(CacheError::Corrupt { path, reason: format!("content hashes to {}", actual.short()) });
        }
        self.trust(&self.object_path(digest), actual);
        Ok(bytes)
    }

    /// The path of a verified tree (its manifest checked against the files, through the stat cache).
    pub fn tree_dir(&mut self, out: &Output) -> Result<PathBuf, CacheError> {
        match self.check_output(out) {
            OutputState::Ok => Ok(self.tree_path(&out.digest)),
            OutputState::Missing(path) => Err(CacheError::Missing { path }),
            OutputState::Corrupt(path, reason) => Err(CacheError::Corrupt { path, reason }),
        }
    }

    /// Checks that an output exists and matches its digest, re-reading only files whose
    /// stamps changed since they were last verified.
    pub fn check_output(&mut self, out: &Output) -> OutputState {
        let path = self.object_path(&out.digest);
        let state = self.check_blob(&path, &out.digest);
        if state != OutputState::Ok || !out.tree {
            return state;
        }
        let Ok(text) = fs::read_to_string(&path) else { return OutputState::Missing(path) };
        let Some(expected) = manifest::Manifest::from_text(&text) else {
            return OutputState::Corrupt(path, "unreadable manifest".into());
        };
        let dir = self.tree_path(&out.digest);
        if !dir.is_dir() {
            return OutputState::Missing(dir);
        }
        match manifest::Manifest::scan(&dir, &mut self.stats) {
            Ok(actual) if actual == expected => OutputState::Ok,
            Ok(actual) => {
                let diff = manifest::Manifest::diff(&expected, &actual);
                let first = diff.changed.iter().chain(&diff.added).chain(&diff.removed).next().cloned().unwrap_or_default();
                OutputState::Corrupt(dir.join(first), diff.summary())
            }
            Err(e) => OutputState::Corrupt(dir, e.to_string()),
        }
    }

    fn check_blob(&mut self, path: &Path, digest: &Digest) -> OutputState {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(_) => return OutputState::Missing(path.to_path_buf()),
        };
        if self.stats.lookup(&meta) == Some(*digest) {
            return OutputState::Ok;
        }
        match self.stats.digest(path, &meta) {
            Ok(d) if d == *digest => OutputState::Ok,
            Ok(d) => OutputState::Corrupt(path.to_path_buf(), format!("content hashes to {}", d.short())),
            Err(e) => OutputState::Corrupt(path.to_path_buf(), e.to_string()),
        }
    }

    fn trust(&mut self, path: &Path, digest: Digest) {
        if let Ok(meta) = fs::metadata(path) {
            self.stats.remember(&meta, digest);
        }
    }

    /// Moves a corrupt file aside (to `tmp/`) so a recomputation can put a good one in place.
    pub fn quarantine(&mut self, path: &Path) {
        if let Ok(meta) = fs::symlink_metadata(path) {
            self.stats.forget(&meta);
        }
        let aside = fsutil::temp_path_for(&self.dir(Dir::Tmp).join("corrupt"));
        let _ = fs::rename(path, aside);
    }

    /// Reads the record for `key`. A record that does not parse or whose key object does not
    /// hash to its name is reported as corrupt.
    pub fn read_record(&self, key: &Digest) -> Result<Option<Record>, CacheError> {
        let path = self.record_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { path, message: e.to_string() }),
        };
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| CacheError::Corrupt { path: path.clone(), reason: format!("unreadable record: {e}") })?;
        let rehashed =
            if record.key_text.is_empty() { crate::canonical::digest(&record.key_object) } else { Digest::of(record.key_text.as_bytes()) };
        if record.key != *key || rehashed != *key {
            return Err(CacheError::Corrupt { path, reason: "record does not match its key".into() });
        }
        Ok(Some(record))
    }

    pub fn write_record(&self, record: &Record) -> Result<(), CacheError> {
        let path = self.record_path(&record.key);
        let bytes = serde_json::to_vec_pretty(record).expect("records serialise");
        fsutil::write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    /// Every record in the cache (unreadable ones reported as errors).
    pub fn all_records(&self) -> Vec<Result<Record, CacheError>> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(self.dir(Dir::Records)).sort_by_file_name().into_iter().flatten() {
            if !entry.file_type().is_file() || entry.path().extension().is_none_or(|e| e != "json") {
                continue;
            }
            let name = format!(
                "{}{}",
                entry.path().parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy()).unwrap_or_default(),
                entry.path().file_stem().map(|s| s.to_string_lossy()).unwrap_or_default()
            );
            match Digest::from_hex(&name) {
                Some(key) => match self.read_record(&key) {
                    Ok(Some(r)) => out.push(Ok(r)),
                    Ok(None) => {}
                    Err(e) => out.push(Err(e)),
                },
                None => out.push(Err(CacheError::Corrupt { path: entry.path().into(), reason: "not a record name".into() })),
            }
        }
        out
    }

    /// Takes the exclusive lock of one step key: a second process computing the same step
    /// waits here, then finds the record the first one wrote.
    pub fn lock_step(&self, key: &Digest) -> Result<File, CacheError> {
        let path = self.dir(Dir::Locks).join(format!("{}.lock", key.short()));
        let file = File::options().create(true).append(true).open(&path).map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(file)
    }

    /// The last key object of each step of one pipeline (for explanations), by step name.
    pub fn read_refs(&self, pipeline: &str) -> BTreeMap<String, RefEntry> {
        fs::read(self.refs_path(pipeline))
            .ok()
            .and_then(|b| serde_json::from_slice::<RefsFile>(&b).ok())
            .map(|r| r.steps)
            .unwrap_or_default()
    }

    /// Updates some step refs of a pipeline, under a lock so concurrent runs merge.
    pub fn update_refs(&self, pipeline: &str, steps: &BTreeMap<String, RefEntry>) -> Result<(), CacheError> {
        let path = self.refs_path(pipeline);
        let lock_path = self.dir(Dir::Locks).join("refs.lock");
        let lock = File::options().create(true).append(true).open(&lock_path).map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let mut refs = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<RefsFile>(&b).ok())
            .unwrap_or(RefsFile { pipeline: pipeline.to_string(), steps: BTreeMap::new() });
        if steps.iter().all(|(k, v)| refs.steps.get(k) == Some(v)) {
            return Ok(()); // nothing new: skip the write and its fsyncs (the no-op run path)
        }
        refs.steps.extend(steps.iter().map(|(k, v)| (k.clone(), v.clone())));
        let bytes = serde_json::to_vec_pretty(&refs).expect("refs serialise");
        fsutil::write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    fn refs_path(&self, pipeline: &str) -> PathBuf {
        self.dir(Dir::Refs).join(format!("{}.json", Digest::of(pipeline.as_bytes()).short()))
    }
}

#[derive(Serialize, Deserialize)]
struct RefsFile {
    pipeline: String,
    steps: BTreeMap<String, RefEntry>,
}

/// The key a step had the last time a pipeline ran it. The key object is kept here (not
/// only in the record) so that "why did this rerun" still works after `gc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefEntry {
    pub key: Digest,
    pub key_object: serde_json::Value,
}
