//! A small harness that drives the real `maskflow` binary in a temporary directory, in the
//! style of just's and n2's integration tests: write files, run, expect exact output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A tiny pipeline the CLI tests share: 30 synthetic persons at 48x64, cheap up to `prepare`.
pub const TINY: &str = "\
# a tiny pipeline for tests
data synthetic { persons = 30; eval_persons = 4; seed = 3; size = 48x64 }
split by person { val = 0.2; stratify = [gender]; seed = 42 }
prepare { size = 24x32 }
model tiny_cnn {}
train { epochs = 1; batch = 8 }
";

pub struct Space {
    pub dir: tempfile::TempDir,
}

pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.status, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        &self.stdout
    }

    #[track_caller]
    pub fn fails(&self) -> &str {
        assert_ne!(self.status, 0, "expected failure\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert!(self.status != 101, "the binary panicked:\n{}", self.stderr);
        &self.stderr
    }

    /// Stdout lines, with the trailing summary line (which carries timings) removed.
    pub fn step_lines(&self) -> Vec<String> {
        self.stdout.lines().filter(|l| !l.contains(" steps: ")).map(str::to_string).collect()
    }
}

impl Space {
    pub fn new() -> Space {
        Space { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> &Space {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let out: Output = Command::new(env!("CARGO_BIN_EXE_maskflow"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("MASKFLOW_CACHE")
            .env_remove("MASKFLOW_SAVED")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .output()
            .expect("run maskflow");
        Ran {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Writes a small synthetic dataset in the competition layout under `dir` (via `maskflow synth`).
pub fn synth(space: &Space, out: &str, persons: u32, eval_persons: u32) {
    space
        .run(&[
            "synth",
            "--persons",
            &persons.to_string(),
            "--eval-persons",
            &eval_persons.to_string(),
            "--seed",
            "1",
            "--size",
            "48x64",
            "--out",
            out,
        ])
        .ok();
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
