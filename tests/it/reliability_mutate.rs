//! Mutation fuzzing of the language front end on stable Rust (cargo fuzz needs nightly and a
//! sanitizer rebuild of every dependency, burn included): seeded mutations of every `.mf` in
//! `pipelines/` and the diagnostic catalogue go through `lang::load` (parse, merge, sweep,
//! check, lower) and `lang::format_file`; none may panic. The short run is a normal test; the
//! long one is `MUTATIONS=1000000 cargo test --release --test it reliability_mutate -- --ignored`.

use std::path::{Path, PathBuf};

/// splitmix64: a seeded counter-based generator, so a failing case replays from its index.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that reach deeper into the grammar than random bytes do.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "=",
    ";",
    ",",
    "\n",
    "#",
    "-",
    ".",
    "x",
    "1e999",
    "-1",
    "0",
    "1.5",
    "1e-30",
    "sweep[",
    "sweep[]",
    "extends \"base.mf\"\n",
    "extends \"p.mf\"\n",
    "data",
    "split by person",
    "prepare",
    "model",
    "train",
    "predict",
    "loss focal",
    "augment train",
    "oversample where age == 2",
    "epochs",
    "val",
    "lr",
    "size = 24x32",
    "center(",
    "adamw(",
    "\u{feff}",
    "\u{0}",
    "\u{ff}",
    "é",
    "[[[[[[[[",
    "deg",
    "true",
    "null",
];

fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["pipelines", "tests/golden/diag", "tests/golden/fmt"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "mf") {
                files.push((path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "the seed corpus is missing");
    files
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = corpus[rng.below(corpus.len())].1.clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.splice(at..at, t.iter().copied());
            }
            2 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            3 if !bytes.is_empty() => {
                let start = rng.below(bytes.len());
                let end = (start + 1 + rng.below(64)).min(bytes.len());
                let piece = bytes[start..end].to_vec();
                bytes.splice(at..at, piece);
            }
            4 => {
                // Splice in a line of another file.
                let other = &corpus[rng.below(corpus.len())].1;
                let lines: Vec<&[u8]> = other.split(|b| *b == b'\n').collect();
                let line = lines[rng.below(lines.len())];
                bytes.splice(at..at, line.iter().copied().chain([b'\n']));
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

/// Inputs that loaded, inputs diagnosed, and the panics (mutation index, message, bytes).
type Tally = (usize, usize, Vec<(usize, String, Vec<u8>)>);

/// Runs `n` mutations from `seed`; returns how many loaded, failed with diagnostics, and the
/// panics (with the input that caused them).
fn run(seed: u64, n: usize) -> Tally {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    // Bases the corpus extends, so `extends` resolves as it does in pipelines/.
    for (name, bytes) in &corpus {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let target: PathBuf = dir.path().join("p.mf");
    let mut rng = Rng(seed);
    let (mut ok, mut diagnosed, mut panics) = (0, 0, Vec::new());
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..n {
        let input = mutate(&mut rng, &corpus);
        std::fs::write(&target, &input).unwrap();
        let result = std::panic::catch_unwind(|| {
            let loaded = maskflow::lang::load(&target, &[]).is_ok();
            let _ = maskflow::lang::format_file(&target);
            loaded
        });
        match result {
            Ok(true) => ok += 1,
            Ok(false) => diagnosed += 1,
            Err(e) => {
                let message =
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                panics.push((i, message, input));
            }
        }
    }
    let _ = std::panic::take_hook();
    (ok, diagnosed, panics)
}

/// In a thread with the main thread's stack size, as the binary would run it.
fn run_on_big_stack(seed: u64, n: usize) -> Tally {
    std::thread::Builder::new().stack_size(8 << 20).spawn(move || run(seed, n)).unwrap().join().unwrap()
}

fn report(n: usize, (ok, diagnosed, panics): &Tally) {
    println!(
        "\n@row fuzz | mutations of pipelines/ and the catalogue | {n} | {ok} loaded, {diagnosed} diagnosed, {} panics |",
        panics.len()
    );
    for (i, message, input) in panics.iter().take(3) {
        eprintln!("mutation {i} panicked: {message}\ninput: {:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn mutated_pipelines_never_panic_the_front_end() {
    let n = 3000;
    let result = run_on_big_stack(1, n);
    report(n, &result);
    assert!(result.2.is_empty(), "{} of {n} mutations panicked", result.2.len());
    assert!(result.0 > 0 && result.1 > 0, "the mutations should reach both outcomes: {} ok, {} diagnosed", result.0, result.1);
}

#[test]
#[ignore = "long: MUTATIONS=1000000 cargo test --release --test it reliability_mutate -- --ignored"]
fn many_mutated_pipelines_never_panic_the_front_end() {
    let n: usize = std::env::var("MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let result = run_on_big_stack(2, n);
    report(n, &result);
    assert!(result.2.is_empty(), "{} of {n} mutations panicked", result.2.len());
}

/// Minimal reproducers of what `cargo fuzz` found (`fuzz/fuzz_targets/front_end.rs`), each put
/// through that target's oracle: no panic; text that formats, formats to text that parses, is
/// a fixed point of `fmt`, and loads to the same variants (or fails as the input did).
const CARGO_FUZZ_FINDINGS: &[(&str, &[u8])] = &[
    // A lone `\r` ends a comment for pest but did not for the comment scanner: `fmt` wrote the
    // statement after it into the comment and then again on its own.
    ("a lone CR ends a comment", b"data synthetic {\n    # eval persons\rseed = 1\n}\nmodel tiny_cnn {}\n"),
];

#[test]
fn cargo_fuzz_findings_stay_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.mf");
    for (what, input) in CARGO_FUZZ_FINDINGS {
        let loaded = maskflow::lang::load_source(&path, input.to_vec(), &[]);
        let text = match maskflow::lang::format_source(&path, input.to_vec()) {
            Ok(text) => text,
            Err(d) => panic!("{what}: fmt fails:\n{}", d.render()),
        };
        let again = maskflow::lang::format_source(&path, text.clone().into_bytes());
        assert_eq!(again.as_deref().map_err(|d| d.render()), Ok(text.as_str()), "{what}: fmt is not a fixed point");
        match (loaded, maskflow::lang::load_source(&path, text.clone().into_bytes(), &[])) {
            (Ok(a), Ok(b)) => assert_eq!(a.variants, b.variants, "{what}: fmt changed the meaning:\n{text}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{what}: the input loads: {}, its fmt output loads: {}\n{text}", a.is_ok(), b.is_ok()),
        }
    }
}

/// A fuzzer (or a user) can name an endless file: `extends "/dev/zero"` read until memory ran
/// out. Files are read up to a cap.
#[cfg(unix)]
#[test]
fn extending_an_endless_file_is_an_error() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.mf");
    let err = maskflow::lang::load_source(&path, b"extends \"/dev/zero\"\ndata synthetic {}\nmodel tiny_cnn {}\n".to_vec(), &[])
        .expect_err("an endless base cannot load");
    let text = err.render();
    assert!(text.contains("`/dev/zero` is larger than 16 MiB"), "{text}");
    assert!(text.contains("1 | extends \"/dev/zero\""), "the error points at the `extends` line: {text}");
}
