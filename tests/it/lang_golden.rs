//! Golden tests for the `.mf` front end.
//!
//! - `tests/golden/diag/NAME.mf` must fail to load; its rendered diagnostics must equal
//!   `NAME.stderr`. An optional `NAME.set` holds `--set` overrides, one per line.
//! - `tests/golden/fmt/NAME.mf` formats to `NAME.out`, and formatting is idempotent.
//!
//! Regenerate the expected files with `UPDATE_GOLDEN=1 cargo test --release --test it lang_golden`.

use maskflow::lang;
use std::fs;
use std::path::{Path, PathBuf};

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

fn inputs(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("golden dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "mf"))
        .collect();
    files.sort();
    files
}

/// Compares or (with UPDATE_GOLDEN=1) rewrites; returns a failure description.
fn check(expected_path: &Path, actual: &str) -> Option<String> {
    if update() {
        fs::write(expected_path, actual).expect("write golden");
        return None;
    }
    let expected = fs::read_to_string(expected_path).unwrap_or_default();
    (expected != actual).then(|| format!("--- {} (expected)\n{expected}\n--- actual\n{actual}\n", expected_path.display()))
}

#[test]
fn diagnostics_match_golden_files() {
    let files = inputs("tests/golden/diag");
    assert!(files.len() >= 30, "expected at least 30 malformed inputs, found {}", files.len());
    let mut failures = Vec::new();
    for path in files {
        let sets: Vec<String> = fs::read_to_string(path.with_extension("set"))
            .map(|s| s.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let rendered = match lang::load(&path, &sets) {
            Ok(_) => {
                failures.push(format!("{}: loaded without errors", path.display()));
                continue;
            }
            Err(d) => {
                assert!(!d.is_empty());
                d.render()
            }
        };
        failures.extend(check(&path.with_extension("stderr"), &rendered));
    }
    assert!(failures.is_empty(), "{} golden mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn fmt_matches_golden_files_and_is_idempotent() {
    let files = inputs("tests/golden/fmt");
    assert!(!files.is_empty());
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for path in files {
        let formatted = match lang::format_file(&path) {
            Ok(s) => s,
            Err(d) => {
                failures.push(format!("{}: {}", path.display(), d.render()));
                continue;
            }
        };
        failures.extend(check(&path.with_extension("out"), &formatted));
        let again_path = tmp.path().join(path.file_name().expect("name"));
        fs::write(&again_path, &formatted).expect("write");
        let again = lang::format_file(&again_path).map_err(|d| d.render());
        if again.as_deref() != Ok(formatted.as_str()) {
            failures.push(format!("{}: formatting is not idempotent:\n{again:?}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
