//! A full disk, simulated at every write: with `MASKFLOW_FAULT_WRITE_FAILS_AFTER=N` the
//! (N+1)-th atomic write of the process fails with ENOSPC (see `src/fsutil.rs`). For every N
//! until a run needs no more writes, the run must fail cleanly (non-zero exit, no panic, a
//! message naming the path and the cause), leave a cache that verifies, and a normal rerun
//! must complete with the same results as a run that never failed. The real binary, in temp
//! dirs; a tmpfs variant runs too where the test may mount one.

mod common;
use common::TINY;
use common::{Ran, Space};

const ENOSPC: &str = "No space left on device (os error 28)";

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

/// For every write a run up to `until` makes, a run whose disk fills at that write.
fn fill_the_disk_at_every_write(until: &str) -> usize {
    let reference = Space::new();
    reference.write("p.mf", TINY);
    reference.run(&["run", "p.mf", "--until", until]).ok();
    let expected = results(&reference);

    let mut failed = 0;
    for n in 0..200 {
        let s = Space::new();
        s.write("p.mf", TINY);
        let run = run_failing_after(&s, until, n);
        if run.status == 0 {
            break;
        }
        let stderr = run.fails();
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "write {n}: {stderr}");
        assert!(stderr.contains(ENOSPC), "write {n}: the cause is not named:\n{stderr}");
        // The message names the file that could not be written.
        assert!(
            stderr.contains("cache/") || stderr.contains("p.mf.lock") || stderr.contains("saved/"),
            "write {n}: no path named:\n{stderr}"
        );
        let verify = s.run(&["cache", "verify"]);
        assert_eq!(verify.ok().trim(), "cache ok", "write {n}: the failed run left a broken cache");
        s.run(&["run", "p.mf", "--until", until]).ok();
        assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
        assert_eq!(results(&s), expected, "write {n}: the rerun differs from an uninterrupted run");
        failed += 1;
    }
    table_row(
        "faults",
        &[&format!("`run --until {until}`"), &failed.to_string(), "all exit 1 naming the path and ENOSPC; cache ok; rerun equal"],
    );
    failed
}

/// Prints one row for the table in docs/reliability.md (collected by scripts/reliability.sh).
fn table_row(table: &str, cells: &[&str]) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    // A leading newline: libtest may have printed "test <name> ... " on the current line.
    println!("\n@row {table} | {test} | {} |", cells.join(" | "));
}

#[test]
fn a_disk_that_fills_at_any_write_up_to_split_fails_cleanly() {
    // Source (a tree), relabel and split (JSON blobs), records, refs, stat cache, lockfile.
    let failed = fill_the_disk_at_every_write("split");
    assert!(failed >= 10, "only {failed} writes were interrupted");
}

#[test]
fn a_disk_that_fills_at_any_write_up_to_prepare_fails_cleanly() {
    // Prepare's shards are moved into the store rather than written.
    let failed = fill_the_disk_at_every_write("prepare");
    assert!(failed >= 6, "only {failed} writes were interrupted");
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

/// A real full filesystem, where the test may mount a 1 MiB tmpfs (root in a container that
/// allows it); skipped otherwise, with a note.
#[test]
fn a_real_full_tmpfs_fails_cleanly() {
    let s = Space::new();
    s.write("p.mf", TINY);
    let cache = s.path("small");
    std::fs::create_dir_all(&cache).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&cache)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        table_row("faults", &["tmpfs of 256 KiB", "-", "skipped: mount refused"]);
        return;
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
