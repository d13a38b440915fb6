//! The stat cache: file identity and timestamps → blake3 digest, so unchanged files are
//! never re-read.
//!
//! An entry is keyed by `(device, inode)` and trusted only while size, mtime and ctime (all
//! in nanoseconds) still match. Keying by inode rather than path means a moved dataset
//! folder is not re-hashed; checking ctime catches a same-size edit whose mtime was put
//! back (ctime cannot be set by a user), which DVC's state DB misses. A fresh clone has new
//! inodes and is hashed once.
//!
//! The file is a flat little-endian table (`statcache.bin`), loaded in one read and written
//! atomically; a damaged file is discarded, which only costs re-hashing.

use crate::digest::Digest;
use crate::fsutil;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"MFSTAT01";
const ENTRY_LEN: usize = 8 * 6 + 32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct FileId {
    dev: u64,
    ino: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

pub struct StatCache {
    path: PathBuf,
    entries: HashMap<FileId, (Stamp, Digest)>,
    dirty: bool,
    /// Files whose content was actually read and hashed through this cache.
    pub hashed: usize,
}

impl StatCache {
    pub fn load(path: &Path) -> StatCache {
        let entries = std::fs::read(path).ok().and_then(|bytes| parse(&bytes)).unwrap_or_default();
        StatCache { path: path.to_path_buf(), entries, dirty: false, hashed: 0 }
    }

    /// The digest of `path`, from the cache when its stamp still matches, else by hashing it.
    pub fn digest(&mut self, path: &Path, meta: &Metadata) -> std::io::Result<Digest> {
        let id = FileId { dev: meta.dev(), ino: meta.ino() };
        let stamp = Stamp::of(meta);
        if let Some((old, digest)) = self.entries.get(&id)
            && *old == stamp
        {
            return Ok(*digest);
        }
        let digest = Digest::of_file(path)?;
        self.hashed += 1;
        self.remember_stamp(id, stamp, digest);
        Ok(digest)
    }

    /// The cached digest if the stamp matches; never reads the file.
    pub fn lookup(&self, meta: &Metadata) -> Option<Digest> {
        let id = FileId { dev: meta.dev(), ino: meta.ino() };
        match self.entries.get(&id) {
            Some((old, digest)) if *old == Stamp::of(meta) => Some(*digest),
            _ => None,
        }
    }

    /// Records that the file described by `meta` was verified to hold `digest`.
    pub fn remember(&mut self, meta: &Metadata, digest: Digest) {
        self.remember_stamp(FileId { dev: meta.dev(), ino: meta.ino() }, Stamp::of(meta), digest);
    }

    fn remember_stamp(&mut self, id: FileId, stamp: Stamp, digest: Digest) {
        if self.entries.get(&id) != Some(&(stamp, digest)) {
            self.entries.insert(id, (stamp, digest));
            self.dirty = true;
        }
    }

    pub fn forget(&mut self, meta: &Metadata) {
        if self.entries.remove(&FileId { dev: meta.dev(), ino: meta.ino() }).is_some() {
            self.dirty = true;
        }
    }

    /// Hashes the given files in parallel (those whose stamps miss), then returns all digests
    /// in input order.
    pub fn digest_many(&mut self, files: &[(PathBuf, Metadata)]) -> Vec<std::io::Result<Digest>> {
        use rayon::prelude::*;
        let cached: Vec<Option<Digest>> = files.iter().map(|(_, m)| self.lookup(m)).collect();
        let computed: Vec<Option<std::io::Result<Digest>>> = files
            .par_iter()
            .zip(cached.par_iter())
            .map(|((path, _), hit)| if hit.is_some() { None } else { Some(Digest::of_file(path)) })
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for (((_, meta), hit), fresh) in files.iter().zip(cached).zip(computed) {
            match (hit, fresh) {
                (Some(d), _) => out.push(Ok(d)),
                (None, Some(Ok(d))) => {
                    self.hashed += 1;
                    self.remember(meta, d);
                    out.push(Ok(d));
                }
                (None, Some(Err(e))) => out.push(Err(e)),
                (None, None) => unreachable!("a miss is always computed"),
            }
        }
        out
    }

    /// Writes the table if anything changed. Losing a concurrent writer's additions is
    /// harmless: they are re-hashed next time.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(16 + self.entries.len() * ENTRY_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (id, (stamp, digest)) in &self.entries {
            for v in [id.dev, id.ino, stamp.size, stamp.mtime_ns as u64, stamp.ctime_ns as u64, 0] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(&digest.0);
        }
        fsutil::write_atomic(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Option<HashMap<FileId, (Stamp, Digest)>> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return None;
    }
    let n = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    let body = &bytes[16..];
    if body.len() != n.checked_mul(ENTRY_LEN)? {
        return None;
    }
    let mut map = HashMap::with_capacity(n);
    for chunk in body.chunks_exact(ENTRY_LEN) {
        let word = |i: usize| u64::from_le_bytes(chunk[i * 8..i * 8 + 8].try_into().unwrap());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&chunk[48..80]);
        map.insert(
            FileId { dev: word(0), ino: word(1) },
            (Stamp { size: word(2), mtime_ns: word(3) as i64, ctime_ns: word(4) as i64 }, Digest(digest)),
        );
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_file_is_not_rehashed_and_edit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.jpg");
        std::fs::write(&file, b"aaaa").unwrap();
        let table = dir.path().join("statcache.bin");
        let mut sc = StatCache::load(&table);
        let d1 = sc.digest(&file, &std::fs::metadata(&file).unwrap()).unwrap();
        sc.save().unwrap();
        let mut sc = StatCache::load(&table);
        assert_eq!(sc.digest(&file, &std::fs::metadata(&file).unwrap()).unwrap(), d1);
        assert_eq!(sc.hashed, 0);
        // Same size, different bytes: ctime moves even if mtime were restored.
        std::fs::write(&file, b"bbbb").unwrap();
        let d2 = sc.digest(&file, &std::fs::metadata(&file).unwrap()).unwrap();
        assert_ne!(d1, d2);
        assert_eq!(sc.hashed, 1);
    }

    #[test]
    fn damaged_table_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("statcache.bin");
        std::fs::write(&table, b"MFSTAT01\x05\0\0\0\0\0\0\0garbage").unwrap();
        assert!(StatCache::load(&table).entries.is_empty());
    }
}
