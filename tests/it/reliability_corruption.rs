//! Corruption catalogue: damage one cache entry at a time and check that it is detected,
//! reported by path (by `maskflow cache verify` and by the run that meets it), and
//! recomputed, after which the cache verifies again. The real binary, in temp dirs.

use crate::common;
use common::Space;
use common::TINY;
use common::table_row;
use std::path::PathBuf;

/// Runs the pipeline up to split, then up to prepare (prepare reads only source, so the two
/// together cover source, relabel, split and prepare); returns both runs' step lines.
fn run_data_steps(s: &Space) -> Vec<String> {
    let mut lines = Vec::new();
    for until in ["split", "prepare"] {
        let run = s.run(&["run", "p.mf", "--until", until]);
        run.ok();
        lines.extend(run.step_lines());
    }
    lines
}

/// A space whose cache holds source → prepare, with `cache verify` passing.
fn prepared() -> Space {
    let s = Space::new();
    s.write("p.mf", TINY);
    run_data_steps(&s);
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
    s
}

/// The key of a step and its record, as JSON.
fn record_of(s: &Space, step: &str) -> (String, serde_json::Value) {
    let explain: serde_json::Value = serde_json::from_str(s.run(&["explain", "p.mf", step]).ok()).expect("explain is JSON");
    let key = explain["key"].as_str().expect("explain names the key").to_string();
    let record = serde_json::from_str(&s.read(&record_rel(&key))).expect("record is JSON");
    (key, record)
}

fn record_rel(key: &str) -> String {
    format!("cache/records/{}/{}.json", &key[..2], &key[2..])
}

/// The cache-relative path (as maskflow prints it) of one output blob of a step.
fn blob_rel(s: &Space, step: &str, output: &str) -> String {
    let (_, record) = record_of(s, step);
    let digest = record["outputs"][output]["digest"].as_str().unwrap_or_else(|| panic!("{step} has no output {output}: {record}"));
    format!("cache/objects/{}/{}", &digest[..2], &digest[2..])
}

/// `cache verify` fails, and its report names `path`.
#[track_caller]
fn verify_fails_naming(s: &Space, path: &str) -> String {
    let verify = s.run(&["cache", "verify"]);
    assert_eq!(verify.status, 1, "verify should fail:\n{}{}", verify.stdout, verify.stderr);
    let line =
        verify.stdout.lines().find(|l| l.contains(path)).unwrap_or_else(|| panic!("verify does not name {path}:\n{}", verify.stdout));
    table_row("corruption_verify", &[&verify.status.to_string(), &format!("`` {line} ``")]);
    line.to_string()
}

/// Reruns the data steps: they succeed, `step` is the only one recomputed (what reads its
/// output has an unchanged key), and its line names `path`. Afterwards the cache verifies
/// and another run is all hits. Returns the line of `step`.
#[track_caller]
fn rerun_recomputes(s: &Space, step: &str, path: &str) -> String {
    let lines = run_data_steps(s);
    let ran: Vec<&String> = lines.iter().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(ran.len(), 1, "exactly one step should rerun: {lines:#?}");
    assert!(ran[0].starts_with(&format!("run {step}:")), "{step} was not rerun: {lines:#?}");
    assert!(ran[0].contains(path), "the rerun line does not name {path}: {}", ran[0]);
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
    let again = run_data_steps(s);
    assert!(again.iter().all(|l| l.starts_with("hit ")), "{again:#?}");
    table_row("corruption_rerun", &[&format!("`` {} ``", ran[0]), "cache ok", "all hits"]);
    ran[0].clone()
}

/// Prints one row for the table in docs/reliability.md (collected by scripts/reliability.sh).
#[test]
fn a_truncated_blob_is_detected_and_recomputed() {
    let s = prepared();
    let rel = blob_rel(&s, "split", "split.json");
    let original = std::fs::read(s.path(&rel)).unwrap();
    std::fs::write(s.path(&rel), &original[..original.len() / 2]).unwrap();
    let line = verify_fails_naming(&s, &rel);
    assert!(line.starts_with(&format!("corrupt object: {rel} (content hashes to ")), "{line}");
    let line = rerun_recomputes(&s, "split", &rel);
    assert!(line.starts_with(&format!("run split: cached output corrupt: {rel} (content hashes to ")), "{line}");
    assert_eq!(std::fs::read(s.path(&rel)).unwrap(), original, "recomputed to the same bytes");
}

#[test]
fn a_flipped_byte_in_a_shard_is_detected_and_recomputed() {
    let s = prepared();
    let rel = blob_rel(&s, "prepare", "train.shard.0000");
    let original = std::fs::read(s.path(&rel)).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(s.path(&rel), &bytes).unwrap();
    let line = verify_fails_naming(&s, &rel);
    assert!(line.starts_with("corrupt object: "), "{line}");
    let line = rerun_recomputes(&s, "prepare", &rel);
    assert!(line.starts_with(&format!("run prepare: cached output corrupt: {rel} (content hashes to ")), "{line}");
    assert_eq!(std::fs::read(s.path(&rel)).unwrap(), original);
}

#[test]
fn a_missing_object_is_detected_and_recomputed() {
    let s = prepared();
    let rel = blob_rel(&s, "relabel", "labels.json");
    std::fs::remove_file(s.path(&rel)).unwrap();
    let line = verify_fails_naming(&s, &rel);
    assert!(line.starts_with(&format!("missing object: {rel} (output `labels.json` of relabel step ")), "{line}");
    let line = rerun_recomputes(&s, "relabel", &rel);
    assert_eq!(line, format!("run relabel: cached output missing: {rel} — 0 fixes applied, 0 warnings"));
    assert!(s.path(&rel).is_file());
}

#[test]
fn a_half_written_record_is_detected_and_recomputed() {
    let s = prepared();
    let (key, _) = record_of(&s, "split");
    let rel = record_rel(&key);
    let text = s.read(&rel);
    std::fs::write(s.path(&rel), &text[..text.len() / 2]).unwrap();
    let line = verify_fails_naming(&s, &rel);
    assert!(line.starts_with(&format!("bad record: cache: {rel}: corrupt (unreadable record: ")), "{line}");
    let line = rerun_recomputes(&s, "split", &rel);
    assert!(line.starts_with(&format!("run split: cached record unreadable: cache: {rel}: corrupt (unreadable record: ")), "{line}");
    let record: serde_json::Value = serde_json::from_str(&s.read(&rel)).expect("a whole record was written again");
    assert_eq!(record["key"].as_str(), Some(key.as_str()));
}

#[test]
fn a_garbage_record_is_detected_and_recomputed() {
    let s = prepared();
    let (key, _) = record_of(&s, "prepare");
    let rel = record_rel(&key);
    std::fs::write(s.path(&rel), b"\x00\xffnot json at all").unwrap();
    let line = verify_fails_naming(&s, &rel);
    assert!(line.starts_with(&format!("bad record: cache: {rel}: corrupt (unreadable record: ")), "{line}");
    rerun_recomputes(&s, "prepare", &rel);
}

#[test]
fn a_record_for_another_key_is_detected_and_recomputed() {
    // Well-formed JSON in the wrong place: the record of `split` copied over that of `prepare`.
    let s = prepared();
    let (split_key, _) = record_of(&s, "split");
    let (prepare_key, _) = record_of(&s, "prepare");
    let rel = record_rel(&prepare_key);
    std::fs::copy(s.path(&record_rel(&split_key)), s.path(&rel)).unwrap();
    let line = verify_fails_naming(&s, &rel);
    assert_eq!(line, format!("bad record: cache: {rel}: corrupt (record does not match its key)"));
    rerun_recomputes(&s, "prepare", &rel);
}

/// The first image file of the synthetic dataset tree, relative to the space.
fn first_tree_image(s: &Space) -> String {
    let (_, record) = record_of(s, "source");
    let digest = record["outputs"]["dataset"]["digest"].as_str().unwrap();
    let dir = s.path(&format!("cache/trees/{digest}"));
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "jpg"))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    let first = files.first().expect("the dataset has images");
    first.strip_prefix(s.dir.path()).unwrap().display().to_string()
}

#[test]
fn a_missing_tree_file_is_detected_and_recomputed() {
    let s = prepared();
    let rel = first_tree_image(&s);
    let original = std::fs::read(s.path(&rel)).unwrap();
    std::fs::remove_file(s.path(&rel)).unwrap();
    let line = verify_fails_naming(&s, &rel);
    assert_eq!(line, format!("missing tree file: {rel}"));
    let line = rerun_recomputes(&s, "source", &rel);
    assert!(line.starts_with(&format!("run source: cached output corrupt: {rel} (")), "{line}");
    assert_eq!(std::fs::read(s.path(&rel)).unwrap(), original, "the tree is whole again");
}

#[test]
fn a_flipped_byte_in_a_tree_file_is_detected_and_recomputed() {
    let s = prepared();
    let rel = first_tree_image(&s);
    let original = std::fs::read(s.path(&rel)).unwrap();
    let mut bytes = original.clone();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(s.path(&rel), &bytes).unwrap();
    let line = verify_fails_naming(&s, &rel);
    assert_eq!(line, format!("corrupt tree file: {rel}"));
    rerun_recomputes(&s, "source", &rel);
    assert_eq!(std::fs::read(s.path(&rel)).unwrap(), original);
}

#[test]
fn a_temporary_file_left_by_a_killed_write_does_not_fail_verify() {
    // What `fsutil::write_atomic` leaves behind when the process is killed between creating
    // its temporary file and renaming it (seen in the kill trials of scripts/reliability.sh).
    let s = prepared();
    let blob = s.path(&blob_rel(&s, "split", "split.json"));
    let name = blob.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::write(blob.with_file_name(format!(".{name}.tmp-999999-7")), b"{\"partial\": ").unwrap();
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
    let again = run_data_steps(&s);
    assert!(again.iter().all(|l| l.starts_with("hit ")), "{again:#?}");
}
