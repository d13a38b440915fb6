//! Crash-safe file writes: a reader sees either the old file or the complete new one.
//!
//! Every write goes to a temporary file in the destination's directory ([`AtomicFile`]), is
//! fsynced, then renamed over the destination, and the directory is fsynced so the rename
//! survives a crash. [`write_atomic`] does this for bytes in memory; streamed files (shards)
//! and pixel-cache entries use [`AtomicFile`] directly; finished files or directories made
//! elsewhere are moved with [`rename_into_place`]. Nothing in the workspace writes a file
//! that must appear whole any other way.
//!
//! Fault injection (tests only; see `docs/reliability.md`): with
//! `MASKFLOW_FAULT_WRITE_FAILS_AFTER=N` in the environment, the first N atomic writes or moves
//! of this process succeed and every later one fails as a full disk would (`ENOSPC`), after
//! its data went to the temporary file, which the cleanup path removes. This is how the "full
//! disk leaves the cache consistent" promise is tested where no small filesystem can be
//! mounted.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The environment variable of the write-failure seam.
pub const FAULT_WRITE_FAILS_AFTER: &str = "MASKFLOW_FAULT_WRITE_FAILS_AFTER";

static WRITES: AtomicU64 = AtomicU64::new(0);

/// Counts one atomic write; fails it when the injection seam says the disk is now full.
fn injected_fault() -> io::Result<()> {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let limit = *LIMIT.get_or_init(|| std::env::var(FAULT_WRITE_FAILS_AFTER).ok().and_then(|v| v.trim().parse().ok()));
    let Some(limit) = limit else { return Ok(()) };
    if WRITES.fetch_add(1, Ordering::Relaxed) >= limit {
        return Err(io::Error::from_raw_os_error(ENOSPC));
    }
    Ok(())
}

/// `ENOSPC` on Linux and the BSDs; its text is "No space left on device".
const ENOSPC: i32 = 28;

/// A temporary path next to `dest`, unique to this process and call.
pub fn temp_path_for(dest: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Writes `bytes` to `dest` atomically and durably, creating parent directories.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut file = AtomicFile::create(dest)?;
    file.write_all(bytes)?;
    file.commit(Durability::Durable)
}

/// What a committed [`AtomicFile`] promises after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The file is fsynced before the rename and the directory after it: the destination
    /// holds the old content or the complete new one.
    Durable,
    /// No fsync: a crash may leave a torn file at the destination. Only for content that is
    /// verified on read (pixel-cache entries), where a sync per file would cost more than
    /// recomputing it.
    VerifiedOnRead,
}

/// A file written beside its destination, which it replaces on [`commit`](Self::commit).
/// Dropped without a commit (an error on the way), it removes itself.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    /// `None` only inside `commit`, which closes it before the rename.
    file: Option<File>,
    committed: bool,
}

impl AtomicFile {
    /// Starts a new file for `dest` (whose directory must exist).
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let tmp = temp_path_for(dest);
        let file = File::create(&tmp)?;
        Ok(AtomicFile { tmp, dest: dest.to_path_buf(), file: Some(file), committed: false })
    }

    /// Where the data goes until the commit.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("an AtomicFile holds its file until commit")
    }

    /// Renames the finished file over the destination (one write for the fault seam).
    pub fn commit(mut self, durability: Durability) -> io::Result<()> {
        injected_fault()?;
        let file = self.file.take().expect("commit runs once");
        if durability == Durability::Durable {
            file.sync_all()?;
        }
        drop(file);
        fs::rename(&self.tmp, &self.dest)?;
        self.committed = true;
        if durability == Durability::Durable {
            sync_dir(self.dest.parent().unwrap_or(Path::new(".")))?;
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file().seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover `.name.tmp-…` file is never read.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Moves a finished temporary file or directory into place atomically.
pub fn rename_into_place(tmp: &Path, dest: &Path) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    injected_fault()?;
    fs::rename(tmp, dest)?;
    sync_dir(dest.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory, so that renames into it survive a crash (best effort: a directory
/// that cannot be opened or synced is left as it is).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories can be opened read-only and fsynced on Unix; elsewhere this is a no-op.
    match File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b.json");
        write_atomic(&dest, b"one").unwrap();
        write_atomic(&dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "temporary files left behind: {names:?}");
    }

    /// A fresh directory and an atomic file in it, `contents` written.
    fn started(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf, AtomicFile) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join(name);
        let mut file = AtomicFile::create(&dest).unwrap();
        file.write_all(contents).unwrap();
        (dir, dest, file)
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing() {
        let (dir, _, file) = started("x.shard", b"partial");
        assert!(file.temp_path().exists());
        drop(file);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_streamed_file_can_be_patched_before_its_commit() {
        let (dir, dest, mut file) = started("x.bin", b"????body");
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(b"head").unwrap();
        file.commit(Durability::VerifiedOnRead).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"headbody");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
