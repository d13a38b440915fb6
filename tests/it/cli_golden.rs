//! The exact output of `run`, `plan`, `check`, `diff` and `gc`: stdout, stderr and exit status
//! of each command, against `tests/golden/cli/*.txt`, with durations, run ids and the temp
//! dir normalised (see `common::Ran::transcript`). Step keys are not normalised: the plan
//! transcripts pin them, so a change that moves a cache key shows here.
//!
//! Regenerate with `UPDATE_GOLDEN=1 cargo test --release --test it cli_golden`, then read the
//! diff: every changed line is a change users see.

use crate::common;
use common::{Session, Space, TINY, assert_golden};

fn tiny_with_predict(space: &Space) {
    space.write("p.mf", &format!("{TINY}predict {{}}\n"));
}

#[test]
fn plan_run_rerun_and_a_changed_seed() {
    let s = Space::new();
    tiny_with_predict(&s);
    let mut t = Session::new(&s);
    t.run(&["plan", "p.mf"]);
    t.run(&["run", "p.mf"]);
    t.run(&["run", "p.mf"]);
    t.run(&["plan", "p.mf", "--set", "split.seed=7"]);
    t.run(&["run", "p.mf", "--set", "split.seed=7", "--until", "split"]);
    t.run(&["run", "p.mf", "--until", "no_such_step"]);
    assert_golden("plan_run", &t.text);
}

#[test]
fn check_reports_every_error_with_a_caret() {
    let s = Space::new();
    s.write("good.mf", TINY);
    s.write(
        "bad.mf",
        "data synthetic { persons = -3 }\nsplit by person { val = 1.5; stratify = [gender, height] }\nmodel tiny_cnn { heds = 2 }\n",
    );
    let mut t = Session::new(&s);
    t.run(&["check", "good.mf"]);
    t.run(&["check", "good.mf", "bad.mf"]);
    t.run(&["check", "good.mf", "--set", "train.epochs=0"]);
    t.run(&["run", "bad.mf"]);
    assert_golden("check", &t.text);
}

#[test]
fn diff_before_and_after_both_have_results() {
    let s = Space::new();
    tiny_with_predict(&s);
    s.write("q.mf", &format!("{}predict {{}}\n", TINY.replace("epochs = 1", "epochs = 2").replace("seed = 42", "seed = 7")));
    let mut t = Session::new(&s);
    t.run(&["diff", "p.mf", "q.mf"]);
    t.run(&["run", "p.mf"]);
    t.run(&["run", "q.mf"]);
    t.run(&["diff", "p.mf", "q.mf"]);
    t.run(&["diff", "p.mf", "missing.mf"]);
    assert_golden("diff", &t.text);
}

#[test]
fn gc_removes_garbage_and_says_why_it_refuses() {
    let s = Space::new();
    s.write("p.mf", TINY);
    let mut t = Session::new(&s);
    t.run(&["run", "p.mf", "--until", "prepare"]);
    t.run(&["run", "p.mf", "--until", "prepare", "--set", "prepare.size=12x16"]);
    t.run(&["gc", "p.mf", "--dry-run"]);
    t.run(&["gc", "p.mf"]);
    t.run(&["gc", "p.mf"]);
    s.write("bad.mf", "data synthetic { persons = -1 }\n");
    t.run(&["gc", "p.mf", "bad.mf"]);
    t.run(&["gc"]);
    assert_golden("gc", &t.text);
}
