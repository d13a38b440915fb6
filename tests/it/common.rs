//! A small harness that drives the real `maskflow` binary in a temporary directory, in the
//! style of just's and n2's integration tests: write files, run, expect exact output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

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

    /// `maskflow ARGS` in this space, with only `env` of maskflow's own settings: none the
    /// developer's shell may hold (a cache, a remote, keys) leaks into a test.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_maskflow"));
        command.args(args).current_dir(self.dir.path()).env("NO_COLOR", "1");
        for (name, _) in std::env::vars() {
            if name.starts_with("MASKFLOW_") {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().copied());
        command
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let out: Output = self.command(args, env).output().expect("run maskflow");
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

/// Serialises the tests that draw from burn-flex's one process-wide RNG.
///
/// `Backend::seed` stores the RNG and every random op (weight initialisation, dropout masks,
/// `Tensor::random`) takes from it. All integration tests share one process, so a test that
/// builds a model or trains holds this guard: no other test's draw can fall between its seed
/// and its use. A test that panicked while holding it leaves the RNG re-seedable, so the
/// poisoned lock is taken over.
pub fn burn_rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prints one row of a reliability table (`docs/reliability.md`), which
/// `scripts/reliability.sh` collects from the test output: `@row TABLE | TEST | CELLS… |`.
pub fn table_row(table: &str, cells: &[&str]) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    // A leading newline: libtest may have printed "test <name> ... " on the current line.
    println!("\n@row {table} | {test} | {} |", cells.join(" | "));
}

impl Ran {
    /// The whole outcome as one text, with what differs between runs of the same commands
    /// made the same: the temp dir's path becomes `$DIR`, durations (`0.42s`) `<T>s`, and run
    /// ids (`20261129-174501`, `-2`) `<RUN-ID>`.
    pub fn transcript(&self, space: &Space, command: &str) -> String {
        let dir = space.dir.path().to_string_lossy().into_owned();
        let text = format!("$ maskflow {command}\nexit {}\n--- stdout\n{}--- stderr\n{}", self.status, self.stdout, self.stderr);
        normalise(&text.replace(&dir, "$DIR"))
    }
}

/// Replaces durations and run ids (see [`Ran::transcript`]).
fn normalise(text: &str) -> String {
    let b = text.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let starts_number = b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if starts_number {
            let n = digits(i);
            // A run id: 8 digits, `-`, 6 digits, and an optional `-N` collision suffix.
            if n == 8 && b.get(i + 8) == Some(&b'-') && digits(i + 9) == 6 {
                let mut end = i + 15;
                if b.get(end) == Some(&b'-') && digits(end + 1) > 0 {
                    end += 1 + digits(end + 1);
                }
                out.push_str("<RUN-ID>");
                i = end;
                continue;
            }
            // A duration: digits, `.`, digits, `s`, not followed by a letter.
            if b.get(i + n) == Some(&b'.') {
                let f = digits(i + n + 1);
                let end = i + n + 1 + f;
                if f > 0 && b.get(end) == Some(&b's') && !b.get(end + 1).is_some_and(|c| c.is_ascii_alphanumeric()) {
                    out.push_str("<T>s");
                    i = end + 1;
                    continue;
                }
            }
        }
        let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Compares `actual` with `tests/golden/cli/<name>.txt`; `UPDATE_GOLDEN=1` rewrites the file.
#[track_caller]
pub fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cli").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    if expected != actual {
        let first =
            expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output (first at line {}; UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

/// Runs commands in `space` and keeps their transcripts, for one golden file.
pub struct Session<'a> {
    pub space: &'a Space,
    pub text: String,
}

impl<'a> Session<'a> {
    pub fn new(space: &'a Space) -> Session<'a> {
        Session { space, text: String::new() }
    }

    /// Runs `maskflow ARGS` and appends its transcript.
    pub fn run(&mut self, args: &[&str]) -> Ran {
        let ran = self.space.run(args);
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(&ran.transcript(self.space, &args.join(" ")));
        ran
    }
}

/// The timm fixture's two 64×64 inputs (`tests/fixtures/timm`) with their mirror images
/// left-right, upside down and both: 8 images, labels `5 i mod 18` (the batch of
/// `scripts/make_grad_fixture.py`). B0's last stage is 2×2 here, so its training-mode
/// BatchNorm normalises each channel over 32 values; larger inputs cost minutes on lavapipe.
pub fn timm_fixture_batch() -> maskflow::batch::Batch {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm/efficientnet_b0_18_io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor("input").unwrap();
    let [n, c, h, w] = view.shape()[..] else { panic!("input is [N, 3, H, W]") };
    assert_eq!(c, 3);
    let input: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let (h2, w2) = (h, w);
    let mut images = Vec::with_capacity(4 * n * 3 * h2 * w2);
    for (flip_y, flip_x) in [(false, false), (false, true), (true, false), (true, true)] {
        for plane in input.chunks_exact(h * w) {
            for y in 0..h2 {
                let sy = if flip_y { h - 1 - y } else { y };
                for x in 0..w2 {
                    let sx = if flip_x { w - 1 - x } else { x };
                    images.push(plane[sy * w + sx]);
                }
            }
        }
    }
    let labels: Vec<u32> = (0..4 * n as u32).map(|i| (i * 5) % maskflow::data::labels::NUM_CLASSES as u32).collect();
    let mut targets = vec![0.0f32; labels.len() * maskflow::data::labels::NUM_CLASSES];
    for (i, &l) in labels.iter().enumerate() {
        targets[i * maskflow::data::labels::NUM_CLASSES + l as usize] = 1.0;
    }
    maskflow::batch::Batch { images, n: 4 * n, height: h2, width: w2, targets, samples: (0..labels.len()).collect(), labels }
}
