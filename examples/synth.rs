//! Generates a synthetic dataset, reports how long it took, prints its label table and
//! draws its label charts to `OUT-stats.svg`.
//!
//! `cargo run --release --example synth -- OUT [PERSONS] [EVAL_PERSONS] [SEED]`
//! (set `RAYON_NUM_THREADS` to pin the thread count).

use std::path::PathBuf;
use std::time::Instant;

use maskflow::data::labels::DEFAULT_AGE_BINS;
use maskflow::data::layout::{BadImagePolicy, read_train};
use maskflow::data::stats::{render_table, stats};
use maskflow::data::synth::{SynthParams, generate};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "synth-out".into()));
    let mut params = SynthParams::default();
    if let Some(n) = args.next() {
        params.persons = n.parse()?;
    }
    if let Some(n) = args.next() {
        params.eval_persons = n.parse()?;
    }
    if let Some(n) = args.next() {
        params.seed = n.parse()?;
    }
    let threads = rayon::current_num_threads();
    let start = Instant::now();
    let summary = generate(&params, &out)?;
    let seconds = start.elapsed().as_secs_f64();
    let images = summary.train_images + summary.eval_images;
    println!("{summary:?}");
    println!(
        "{images} images ({}x{}) in {seconds:.2} s on {threads} threads: {:.0} images/s, {:.1} MB",
        params.width,
        params.height,
        images as f64 / seconds,
        summary.bytes as f64 / 1e6
    );

    let index = read_train(&out.join("train"), BadImagePolicy::Error)?;
    let stats = stats(&index, DEFAULT_AGE_BINS);
    print!("{}", render_table(&stats));
    let mut svg = out.clone().into_os_string();
    svg.push("-stats.svg");
    std::fs::write(PathBuf::from(svg), maskflow::charts::stats::svg_of(&stats)?)?;
    Ok(())
}
