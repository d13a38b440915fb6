//! A full disk, simulated at every write: with `MASKFLOW_FAULT_WRITE_FAILS_AFTER=N` the
//! (N+1)-th atomic write of the process fails with ENOSPC (see `crates/ml/src/fsutil.rs`). For
//! every N until a run needs no more writes, the run must fail cleanly (non-zero exit, no panic,
//! a message naming the path and the cause), leave a cache that verifies, and a normal rerun
//! must complete with the same results as a run that never failed. The real binary, in temp
//! dirs; a tmpfs variant runs too where the test may mount one.

use std::collections::BTreeMap;

use crate::common;
use common::TINY;
use common::{Ran, Space, table_row};

const ENOSPC: &str = "No space left on device (os error 28)";

/// How the prepare step names a pixel-cache entry it could not write.
const PIXEL_ENTRY: &str = ": pixel cache: ";

/// Inside a stretch of pixel-cache entries, the sweep tries every this-many-th write.
const ENTRY_STRIDE: usize = 32;

fn run_failing_after(s: &Space, until: &str, n: usize) -> Ran {
    s.run_env(&["run", "p.mf", "--until", until], &[("MASKFLOW_FAULT_WRITE_FAILS_AFTER", &n.to_string())])
}

/// What a successful run leaves in the cache: every record's name and outputs (digests).
fn results(s: &Space) -> Vec<(String, serde_json::Value)> {
    let mut records: Vec<(String, serde_json::Value)> = walkdir::WalkDir::new(s.path("cache/records"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let record: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            (e.path().strip_prefix(s.dir.path()).unwrap().display().to_string(), record["outputs"].clone())
        })
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records
}

/// Pixel-cache entries in the space's cache: files under `cache/pixels/`, except the
/// shard-part memos (`pixels/parts/`) and temporary files.
fn pixel_entries(s: &Space) -> usize {
    let parts = s.path("cache/pixels/parts");
    walkdir::WalkDir::new(s.path("cache/pixels"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && !e.path().starts_with(&parts) && !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

/// How a run whose disk filled failed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    stderr: String,
    /// When the failed write was a pixel-cache entry: the writes of other kinds that
    /// succeeded before it (the same for every entry of one stretch of entries).
    entry_after: Option<usize>,
}

/// A run up to `until` whose disk fills at write `n`: it must fail cleanly, leave a cache that
/// verifies, and a rerun must give `expected`. `None` when the run needed no more than `n`
/// writes, and so succeeded.
fn fill_the_disk_at(until: &str, n: usize, expected: &[(String, serde_json::Value)]) -> Option<Failure> {
    let s = Space::new();
    s.write("p.mf", TINY);
    let run = run_failing_after(&s, until, n);
    if run.status == 0 {
        return None;
    }
    let stderr = run.fails().to_string();
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "write {n}: {stderr}");
    assert!(stderr.contains(ENOSPC), "write {n}: the cause is not named:\n{stderr}");
    // The message names the file that could not be written.
    assert!(stderr.contains("cache/") || stderr.contains("p.mf.lock") || stderr.contains("saved/"), "write {n}: no path named:\n{stderr}");
    // Counted before the rerun adds the missing entries: the first `n` writes all succeeded.
    let entry_after = stderr
        .contains(PIXEL_ENTRY)
        .then(|| n.checked_sub(pixel_entries(&s)).unwrap_or_else(|| panic!("write {n}: more pixel-cache entries than successful writes")));
    let verify = s.run(&["cache", "verify"]);
    assert_eq!(verify.ok().trim(), "cache ok", "write {n}: the failed run left a broken cache");
    s.run(&["run", "p.mf", "--until", until]).ok();
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
    assert_eq!(results(&s), expected, "write {n}: the rerun differs from an uninterrupted run");
    Some(Failure { stderr, entry_after })
}

/// Fills the disk at write 0, 1, 2, … of a run up to `until`, checking each run
/// ([`fill_the_disk_at`]), until a run needs no more writes. Returns the failures by write and
/// the number of writes a whole run makes.
///
/// Each write tried costs four runs of the binary, and prepare writes one pixel-cache entry per
/// image (hundreds, all alike), so inside a stretch of entries only every `stride`-th write is
/// tried, while every write of another kind (shards, their moves into the store, memos,
/// records) is tried. A stretch's first entry is reached in order; at its end a bisection
/// finds the first write after it, so its last entry and everything that follows are tried
/// too. Entries of one stretch are told apart from those of the next by the writes of other
/// kinds made before them.
fn fill_the_disk(until: &str, stride: usize) -> (BTreeMap<usize, Failure>, usize) {
    let reference = Space::new();
    reference.write("p.mf", TINY);
    reference.run(&["run", "p.mf", "--until", until]).ok();
    let expected = results(&reference);

    let mut tried: BTreeMap<usize, Option<Failure>> = BTreeMap::new();
    let mut at = |n: usize| tried.entry(n).or_insert_with(|| fill_the_disk_at(until, n, &expected)).clone();
    let mut n = 0;
    while let Some(failure) = at(n) {
        n = match failure.entry_after {
            None => n + 1,
            Some(others) => {
                let same_stretch = |f: &Option<Failure>| f.as_ref().and_then(|f| f.entry_after) == Some(others);
                let ahead = n + stride;
                if same_stretch(&at(ahead)) {
                    ahead
                } else {
                    // Entries up to `lo`, something else at `hi`.
                    let (mut lo, mut hi) = (n, ahead);
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2;
                        if same_stretch(&at(mid)) {
                            lo = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    hi
                }
            }
        };
    }
    let failures = tried.into_iter().filter_map(|(n, f)| Some((n, f?))).collect();
    (failures, n)
}

/// Prints one row for the table in docs/reliability.md (collected by scripts/reliability.sh).
#[test]
fn a_disk_that_fills_at_any_write_up_to_split_fails_cleanly() {
    // Source (a tree), relabel and split (JSON blobs), records, refs, stat cache, lockfile.
    let (failures, writes) = fill_the_disk("split", 1);
    assert_eq!(failures.len(), writes, "every write must have been interrupted once");
    assert!(writes >= 10, "only {writes} writes were interrupted");
    table_row("faults", &["`run --until split`", &writes.to_string(), "all exit 1 naming the path and ENOSPC; cache ok; rerun equal"]);
}

/// Prints one row for the table in docs/reliability.md (collected by scripts/reliability.sh).
#[test]
fn a_disk_that_fills_at_any_write_up_to_prepare_fails_cleanly() {
    // Past split, prepare writes a pixel-cache entry per image (238 in TINY), then per split its
    // shard, the shard's move into the store and a part memo; then its outputs and record.
    let (failures, writes) = fill_the_disk("prepare", ENTRY_STRIDE);
    let named = |what: &str| failures.values().filter(|f| f.stderr.contains(what)).count();
    let entries = named(PIXEL_ENTRY);
    assert!(entries >= 6, "only {entries} pixel-cache entries were interrupted (of {writes} writes)");
    assert!(named("train.shard") >= 1 && named("eval.shard") >= 1, "both shards' writes must be interrupted");
    assert!(writes > 238 && failures.len() < writes, "{} of {writes} writes tried", failures.len());
    table_row(
        "faults",
        &[
            "`run --until prepare`",
            &format!("{} of {writes}", failures.len()),
            &format!(
                "every write but the pixel-cache entries, and {entries} of those (one in {ENTRY_STRIDE}, each stretch's first and last); \
                 all exit 1 naming the path and ENOSPC; cache ok; rerun equal"
            ),
        ],
    );
}

#[test]
fn the_first_failed_write_names_its_path() {
    // The first write of a fresh run is the synthetic dataset's manifest blob.
    let s = Space::new();
    s.write("p.mf", TINY);
    let run = run_failing_after(&s, "split", 0);
    let first = run.fails().lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("error: step `source` failed"), "{first}");
    assert!(run.stderr.contains("cache: cache/objects/"), "{}", run.stderr);
    assert!(run.stderr.contains(ENOSPC), "{}", run.stderr);
}

/// A real full filesystem: a 256 KiB tmpfs mounted as the cache. Mounting needs root in a
/// container that allows it (CI runs as root and can); where `mount` is refused the test
/// fails and says so, unless `MASKFLOW_SKIP_MOUNT=1` skips it explicitly.
#[test]
fn a_real_full_tmpfs_fails_cleanly() {
    if std::env::var_os("MASKFLOW_SKIP_MOUNT").is_some() {
        table_row("faults", &["tmpfs of 256 KiB", "-", "skipped: MASKFLOW_SKIP_MOUNT is set"]);
        return;
    }
    let s = Space::new();
    s.write("p.mf", TINY);
    let cache = s.path("small");
    std::fs::create_dir_all(&cache).unwrap();
    let mount = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"]).arg(&cache).output();
    match &mount {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`mount -t tmpfs` was refused ({}: {}); run as root where mounting is allowed, or set MASKFLOW_SKIP_MOUNT=1",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run `mount` ({e}); set MASKFLOW_SKIP_MOUNT=1 to skip this test explicitly"),
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(cache.clone());
    let run = s.run(&["--cache", "small", "run", "p.mf", "--until", "prepare"]);
    let stderr = run.fails();
    assert!(stderr.contains(ENOSPC), "{stderr}");
    assert!(stderr.contains("small/"), "{stderr}");
    assert_eq!(s.run(&["--cache", "small", "cache", "verify"]).ok().trim(), "cache ok");
    table_row(
        "faults",
        &[
            "real tmpfs of 256 KiB as the cache",
            "-",
            &format!("exit {}; `` {} ``; cache ok", run.status, stderr.lines().next().unwrap_or_default()),
        ],
    );
}
