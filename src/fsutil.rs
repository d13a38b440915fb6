//! Crash-safe file writes: a reader sees either the old file or the complete new one.
//!
//! Every write goes to a temporary file in the destination's directory, is fsynced, then
//! renamed over the destination, and the directory is fsynced so the rename survives a crash.
//!
//! Fault injection (tests only; see `docs/reliability.md`): with
//! `MASKFLOW_FAULT_WRITE_FAILS_AFTER=N` in the environment, the first N atomic writes or moves
//! of this process succeed and every later one fails as a full disk would (`ENOSPC`), after
//! leaving a partly written temporary file behind for the cleanup path to remove. This is how
//! the "full disk leaves the cache consistent" promise is tested where no small filesystem
//! can be mounted.

use std::fs::{self, File};
use std::io::{self, Write};
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

/// Writes `bytes` to `dest` atomically, creating parent directories.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_path_for(dest);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        if let Err(e) = injected_fault() {
            // A full disk typically takes part of the data before refusing the rest.
            file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(e);
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, dest)?;
        sync_dir(dest.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
}
