//! A new user's first hour, as one transcript (`tests/golden/cli/first_hour.txt`): from an
//! empty directory, `init` → `run` (no data yet) → `synth` as the error says → a run on a
//! backend this build lacks → `run` → a copy with one value changed, first with a typo →
//! `diff` → `run` → `diff` with both results. Every wrong turn must say what to do next.
//!
//! Regenerate with `UPDATE_GOLDEN=1 cargo test --release --test it first_hour`.

use crate::common::{Session, Space, assert_golden};
use clap::CommandFactory;

#[test]
fn a_first_hour_from_an_empty_directory() {
    let s = Space::new();
    let mut t = Session::new(&s);
    t.run(&["init"]);
    assert!(s.read(".gitignore").contains("/cache/\n/saved/\n"));
    t.run(&["run", "pipelines/starter.mf"]);
    t.run(&["synth", "--out", "data/mask", "--persons", "200", "--eval-persons", "20", "--size", "96x128"]);
    t.run(&["run", "pipelines/starter.mf", "--set", "train.backend=cuda"]);
    t.run(&["run", "pipelines/starter.mf"]);
    let starter = s.read("pipelines/starter.mf");
    assert!(starter.contains("adamw(lr = 3e-3)"));
    s.write("pipelines/starter_lr.mf", &starter.replace("adamw(lr = 3e-3)", "adamw(lrr = 1e-3)"));
    t.run(&["diff", "pipelines/starter.mf", "pipelines/starter_lr.mf"]);
    s.write("pipelines/starter_lr.mf", &starter.replace("adamw(lr = 3e-3)", "adamw(lr = 1e-3)"));
    t.run(&["diff", "pipelines/starter.mf", "pipelines/starter_lr.mf"]);
    t.run(&["run", "pipelines/starter_lr.mf"]);
    t.run(&["diff", "pipelines/starter.mf", "pipelines/starter_lr.mf"]);
    // A second `init` keeps what is there.
    t.run(&["init"]);
    assert_golden("first_hour", &t.text);
}

/// Every command's `--help` ends with an example, and `completions` writes a script.
#[test]
fn every_help_ends_with_an_example() {
    fn walk(cmd: &mut clap::Command, path: &str, missing: &mut Vec<String>) {
        let help = cmd.render_long_help().to_string();
        let tail: Vec<&str> = help.trim_end().lines().rev().take_while(|l| !l.trim().is_empty()).collect();
        let ok = tail.last().is_some_and(|l| l.trim() == "Example:") && tail.iter().rev().skip(1).all(|l| l.starts_with("  maskflow"));
        if !ok && !cmd.is_hide_set() {
            missing.push(path.to_string());
        }
        for sub in cmd.get_subcommands_mut() {
            if sub.get_name() != "help" {
                let name = format!("{path} {}", sub.get_name());
                walk(sub, &name, missing);
            }
        }
    }
    let mut missing = Vec::new();
    let mut cli = maskflow::cli::Cli::command();
    cli.build();
    walk(&mut cli, "maskflow", &mut missing);
    assert!(missing.is_empty(), "--help without a closing example: {missing:?}");

    let s = Space::new();
    let help = s.run(&["run", "--help"]);
    assert!(help.ok().ends_with("Example:\n  maskflow run pipelines/quickstart.mf --set train.epochs=3 --jobs 2\n"), "{}", help.stdout);
    for shell in ["bash", "zsh", "fish"] {
        let script = s.run(&["completions", shell]);
        assert!(script.ok().contains("starter") || script.stdout.contains("ablate"), "{shell}: {}", script.stdout);
    }
    let bad = s.run(&["completions", "tcsh"]);
    assert!(bad.fails().contains("invalid value 'tcsh'"), "{}", bad.stderr);
}
