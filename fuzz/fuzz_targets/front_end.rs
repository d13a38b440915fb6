//! libFuzzer target for the `.mf` front end: the input bytes are a pipeline file.
//!
//! They take the path a file read from disk takes (`lang::load_source`: UTF-8 check, parse,
//! `extends` merge, sweep expansion, check, lowering), with the bases the seed corpus extends
//! present next to it. Nothing may panic; diagnostics are fine, and are rendered, since the
//! renderer slices the source by their spans. A second oracle is the formatter: whatever
//! parses is formatted, and the canonical text must parse again, be a fixed point of `fmt`,
//! keep every comment, and load to the same variants (the same IR) or fail as the original did.
//!
//! Run: `cargo +nightly fuzz run front_end fuzz/grown/front_end fuzz/corpus/front_end`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use maskflow::lang;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Files the seeds `extends`, at the paths they name relative to the input.
const BASES: &[(&str, &[u8])] = &[
    ("base.mf", include_bytes!("../../pipelines/base.mf")),
    ("b0_base.mf", include_bytes!("../../pipelines/b0_base.mf")),
    ("inc/cycle_a.mf", include_bytes!("../../tests/golden/diag/inc/cycle_a.mf")),
    ("inc/cycle_b.mf", include_bytes!("../../tests/golden/diag/inc/cycle_b.mf")),
];

/// The input's path: in a directory holding [`BASES`]; the input itself is never written.
fn input_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("maskflow-fuzz-front-end-{}", std::process::id()));
        for (name, bytes) in BASES {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("a base has a directory")).expect("create the bases' directory");
            std::fs::write(&path, bytes).expect("write a base");
        }
        dir.join("input.mf")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = input_path();
    let loaded = lang::load_source(path, data.to_vec(), &[]);
    if let Err(d) = &loaded {
        let _ = d.render();
    }
    let text = match lang::format_source(path, data.to_vec()) {
        Ok(text) => text,
        Err(d) => {
            let _ = d.render();
            return;
        }
    };
    let again = match lang::format_source(path, text.clone().into_bytes()) {
        Ok(again) => again,
        Err(d) => panic!("fmt output does not parse:\n{}\n--- fmt output:\n{text}", d.render()),
    };
    assert_eq!(again, text, "fmt is not a fixed point");
    // Every comment survives (several on one statement are joined on one line).
    if let Ok(input) = std::str::from_utf8(data)
        && let Ok(scanned) = lang::scan::scan(lang::source::FileId(0), input)
    {
        for c in &scanned.comments {
            let line = format!("#{}", c.text.trim_end());
            assert!(text.contains(&line), "fmt lost the comment {line:?}\n--- fmt output:\n{text}");
        }
    }
    let reloaded = lang::load_source(path, text.clone().into_bytes(), &[]);
    match (&loaded, &reloaded) {
        (Ok(a), Ok(b)) => assert!(a.variants == b.variants, "fmt changed the meaning:\n--- fmt output:\n{text}"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(d)) => panic!("fmt output fails to load:\n{}\n--- fmt output:\n{text}", d.render()),
        (Err(d), Ok(_)) => panic!("only the fmt output loads; the input failed with:\n{}\n--- fmt output:\n{text}", d.render()),
    }
});
