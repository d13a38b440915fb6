//! Concurrent `maskflow run`s sharing one cache: all finish, each step is computed by exactly
//! one of them (the others wait on its per-key lock and reuse the record), and the cache
//! verifies afterwards. The real binary, in temp dirs.

use crate::common;
use common::Space;
use common::TINY;
use common::table_row;
use std::process::{Command, Stdio};

/// Starts every run at once, waits for all, asserts each succeeded; returns their stdouts joined.
fn run_all_at_once(s: &Space, pipelines: &[&str], until: &str) -> String {
    let children: Vec<_> = pipelines
        .iter()
        .map(|p| {
            Command::new(env!("CARGO_BIN_EXE_maskflow"))
                .args(["run", p, "--until", until])
                .current_dir(s.dir.path())
                .env_remove("MASKFLOW_CACHE")
                .env_remove("MASKFLOW_SAVED")
                .env("NO_COLOR", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn maskflow")
        })
        .collect();
    let mut all = String::new();
    for (p, child) in pipelines.iter().zip(children) {
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "run of {p} failed ({:?}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        all.push_str(&stdout);
    }
    let counts: Vec<String> = ["source", "relabel", "split", "prepare"]
        .iter()
        .filter(|step| all.contains(&format!(" {step}")))
        .map(|step| format!("{step} ×{}", runs_of(&all, step)))
        .collect();
    table_row(
        "concurrency",
        &[&format!("{} × `run --until {until}` ({})", pipelines.len(), pipelines.join(", ")), "all exit 0", &counts.join(", ")],
    );
    all
}

/// Prints one row for the table in docs/reliability.md (collected by scripts/reliability.sh).
fn runs_of(out: &str, step: &str) -> usize {
    out.lines().filter(|l| l.starts_with(&format!("run {step}:"))).count()
}

#[test]
fn four_concurrent_runs_of_one_pipeline_compute_each_step_once() {
    let s = Space::new();
    s.write("p.mf", TINY);
    let out = run_all_at_once(&s, &["p.mf"; 4], "split");
    for step in ["source", "relabel", "split"] {
        assert_eq!(runs_of(&out, step), 1, "{step} computed {} times:\n{out}", runs_of(&out, step));
        let reused = out.lines().filter(|l| l.starts_with(&format!("hit {step}"))).count();
        assert_eq!(reused, 3, "{out}");
    }
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
    // Four saved runs, none lost to a name race.
    let saved = std::fs::read_dir(s.path("saved/p")).unwrap().flatten().filter(|e| e.file_name() != "latest").count();
    assert_eq!(saved, 4);
}

#[test]
fn two_pipelines_times_two_runs_share_what_they_have_in_common() {
    // `q` differs from `p` only in the split seed: source and relabel are shared, split is not.
    let s = Space::new();
    s.write("p.mf", TINY);
    s.write("q.mf", &TINY.replace("seed = 42", "seed = 7"));
    let out = run_all_at_once(&s, &["p.mf", "q.mf", "p.mf", "q.mf"], "split");
    assert_eq!(runs_of(&out, "source"), 1, "{out}");
    assert_eq!(runs_of(&out, "relabel"), 1, "{out}");
    assert_eq!(runs_of(&out, "split"), 2, "{out}");
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
    // Afterwards each pipeline is all hits.
    for p in ["p.mf", "q.mf"] {
        let again = s.run(&["run", p, "--until", "split"]);
        assert!(again.step_lines().iter().all(|l| l.starts_with("hit ")), "{}", again.stdout);
    }
}

#[test]
fn two_pipelines_differing_in_prepare_share_the_source() {
    // Prepare writes shards (files moved into the store) rather than JSON blobs.
    let s = Space::new();
    s.write("p.mf", TINY);
    s.write("q.mf", &TINY.replace("prepare { size = 24x32 }", "prepare { size = 12x16 }"));
    let out = run_all_at_once(&s, &["p.mf", "q.mf", "p.mf", "q.mf"], "prepare");
    assert_eq!(runs_of(&out, "source"), 1, "{out}");
    assert_eq!(runs_of(&out, "prepare"), 2, "{out}");
    assert_eq!(s.run(&["cache", "verify"]).ok().trim(), "cache ok");
}
