//! `maskflow gc` keeps what listed pipelines reference and removes the rest.

use crate::common;
use common::Space;

const PIPE: &str =
    "data synthetic { persons = 12; eval_persons = 2; seed = 5; size = 48x64 }\nprepare { size = 12x16 }\nmodel tiny_cnn {}\n";

fn count_files(dir: &std::path::Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().flatten().filter(|e| e.file_type().is_file()).count()
}

#[test]
fn gc_removes_unreferenced_entries_and_keeps_live_ones() {
    let s = Space::new();
    s.write("p.mf", PIPE);
    s.run(&["run", "p.mf", "--until", "prepare"]).ok();
    // A variant with another split seed and prepare size: its entries become garbage once the
    // pipeline no longer names it.
    s.run(&["run", "p.mf", "--until", "prepare", "--set", "split.seed=9", "--set", "prepare.size=6x8"]).ok();
    let pixels_before = count_files(&s.path("cache/pixels"));
    let out = s.run(&["gc", "p.mf"]);
    assert!(out.ok().starts_with("removed "), "{}", out.stdout);
    // The live pipeline is still all hits, and the cache verifies.
    let again = s.run(&["run", "p.mf", "--until", "prepare"]);
    assert_eq!(again.step_lines(), ["hit source", "hit prepare"]);
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
    // The other prepare size's per-image pixels and shard-part memos are gone; the live ones
    // stay (one memo per shard part: train and eval).
    let pixels_after = count_files(&s.path("cache/pixels"));
    assert_eq!(pixels_after * 2, pixels_before, "{pixels_before} → {pixels_after}");
    assert_eq!(count_files(&s.path("cache/pixels/parts")), 2);
    // Planning the removed variant again shows it must rerun.
    let plan = s.run(&["plan", "p.mf", "--set", "prepare.size=6x8"]);
    assert!(plan.ok().contains("miss prepare"), "{}", plan.stdout);
}

#[test]
fn gc_refuses_when_a_pipeline_does_not_load() {
    let s = Space::new();
    s.write("p.mf", PIPE);
    s.run(&["run", "p.mf", "--until", "source"]).ok();
    s.write("bad.mf", "data synthetic { persons = -1 }\n");
    let out = s.run(&["gc", "p.mf", "bad.mf"]);
    out.fails();
    assert_eq!(s.run(&["run", "p.mf", "--until", "source"]).step_lines(), ["hit source"]);
}
