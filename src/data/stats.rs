//! Label distributions of a training index: counts, a text table and a bar-chart PNG.
//!
//! Constraint kept here: statistics are computed from the same [`label_samples`] the trainer
//! sees, so a chart can never disagree with the labels actually trained on (fixes included).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::draw::{INK, Rect, draw_number, fill, text_width};
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use super::labels::{AgeBins, Gender, MaskState, NUM_CLASSES, age_class, split_class};
use super::layout::{DataError, TrainIndex};
use super::relabel::label_samples;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub age_bins: AgeBins,
    pub persons: usize,
    pub images: usize,
    /// Problems the reader skipped.
    pub skipped: usize,
    /// Persons per gender, indexed by [`Gender::index`].
    pub gender_persons: [usize; 2],
    /// Persons per age class.
    pub age_class_persons: [usize; 3],
    /// Persons per exact age.
    pub ages: BTreeMap<u32, usize>,
    /// Images per mask state, indexed by [`MaskState::index`].
    pub mask_images: [usize; 3],
    /// Images per class.
    pub class_images: [usize; NUM_CLASSES as usize],
}

pub fn stats(index: &TrainIndex, age_bins: AgeBins) -> Stats {
    let mut s = Stats {
        age_bins,
        persons: index.persons.len(),
        images: index.images.len(),
        skipped: index.skipped.len(),
        gender_persons: [0; 2],
        age_class_persons: [0; 3],
        ages: BTreeMap::new(),
        mask_images: [0; 3],
        class_images: [0; NUM_CLASSES as usize],
    };
    for person in &index.persons {
        s.gender_persons[usize::from(person.gender.index())] += 1;
        s.age_class_persons[usize::from(age_class(person.age, age_bins))] += 1;
        *s.ages.entry(person.age).or_default() += 1;
    }
    for sample in label_samples(index, age_bins) {
        s.mask_images[usize::from(sample.mask.index())] += 1;
        s.class_images[usize::from(sample.class)] += 1;
    }
    s
}

/// Names of the age classes under `bins`, e.g. `<30`, `30-59`, `>=60`.
pub fn age_class_names(bins: AgeBins) -> [String; 3] {
    [format!("<{}", bins[0]), format!("{}-{}", bins[0], bins[1].saturating_sub(1)), format!(">={}", bins[1])]
}

fn percent(count: usize, total: usize) -> f64 {
    if total == 0 { 0.0 } else { 100.0 * count as f64 / total as f64 }
}

/// A plain-text report: totals, the gender / age / mask shares and one row per class.
pub fn render_table(stats: &Stats) -> String {
    let ages = age_class_names(stats.age_bins);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "persons {}  images {}  skipped {}", stats.persons, stats.images, stats.skipped);
    let mut line = |title: &str, cells: Vec<(String, usize)>, total: usize| {
        let _ = write!(out, "{title:<8}");
        for (name, count) in cells {
            let _ = write!(out, "  {name} {count} ({:.1}%)", percent(count, total));
        }
        let _ = writeln!(out);
    };
    line("gender", Gender::ALL.map(|g| (g.as_str().to_owned(), stats.gender_persons[usize::from(g.index())])).to_vec(), stats.persons);
    line("age", (0..3).map(|c| (ages[c].clone(), stats.age_class_persons[c])).collect(), stats.persons);
    line("mask", MaskState::ALL.map(|m| (m.as_str().to_owned(), stats.mask_images[usize::from(m.index())])).to_vec(), stats.images);
    let _ = writeln!(out, "{:>5}  {:<9}  {:<6}  {:<6}  {:>7}  {:>6}", "class", "mask", "gender", "age", "images", "share");
    for class in 0..NUM_CLASSES {
        let Some((mask, gender, age)) = split_class(class) else {
            continue;
        };
        let count = stats.class_images[usize::from(class)];
        let _ = writeln!(
            out,
            "{class:>5}  {:<9}  {:<6}  {:<6}  {count:>7}  {:>5.1}%",
            mask.as_str(),
            gender.as_str(),
            ages[usize::from(age)],
            percent(count, stats.images)
        );
    }
    out
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 640;
const MASK_COLOURS: [Rgb<u8>; 3] = [Rgb([66, 133, 244]), Rgb([244, 160, 0]), Rgb([219, 68, 55])];
const GENDER_COLOURS: [Rgb<u8>; 2] = [Rgb([70, 120, 200]), Rgb([210, 90, 140])];
const AGE_COLOURS: [Rgb<u8>; 3] = [Rgb([110, 190, 120]), Rgb([60, 140, 80]), Rgb([20, 80, 40])];

/// Writes bar charts: images per class (coloured by mask state) on top; persons per age,
/// per gender and per age class below. Counts are printed above bars in a small digit font.
pub fn write_png(stats: &Stats, path: &Path) -> Result<(), DataError> {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));

    let classes: Vec<Bar> = (0..NUM_CLASSES)
        .map(|class| Bar {
            value: stats.class_images[usize::from(class)],
            colour: MASK_COLOURS[usize::from(class / 6)],
            label: Some(u64::from(class)),
        })
        .collect();
    draw_bars(&mut img, Rect::new(20, 20, WIDTH - 40, 280), &classes);

    let max_age = stats.ages.keys().next_back().copied().unwrap_or(0);
    let min_age = stats.ages.keys().next().copied().unwrap_or(0);
    let ages: Vec<Bar> = (min_age..=max_age)
        .map(|age| Bar {
            value: stats.ages.get(&age).copied().unwrap_or(0),
            colour: AGE_COLOURS[usize::from(age_class(age, stats.age_bins))],
            label: (age % 10 == 0).then_some(u64::from(age)),
        })
        .collect();
    draw_bars(&mut img, Rect::new(20, 340, 560, 280), &ages);

    let people: Vec<Bar> = (0..2)
        .map(|g| Bar { value: stats.gender_persons[g], colour: GENDER_COLOURS[g], label: None })
        .chain((0..3).map(|c| Bar { value: stats.age_class_persons[c], colour: AGE_COLOURS[c], label: None }))
        .collect();
    draw_bars(&mut img, Rect::new(620, 340, WIDTH - 640, 280), &people);

    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| DataError::Io { path: path.to_owned(), source: std::io::Error::other(e) })
}

struct Bar {
    value: usize,
    colour: Rgb<u8>,
    /// A number printed under the bar.
    label: Option<u64>,
}

/// Draws bars scaled to the largest value inside `area`, leaving room for the digits.
fn draw_bars(img: &mut RgbImage, area: Rect, bars: &[Bar]) {
    const TEXT: u32 = 14;
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let n = bars.len().max(1) as u32;
    let slot = (area.w / n).max(1);
    let plot_h = area.h.saturating_sub(2 * TEXT);
    let base = area.y + TEXT + plot_h;
    fill(img, Rect::new(area.x, base, area.w, 1), INK);
    // Counts are printed for all bars or for none, so a missing number never looks like zero.
    let counts_fit = bars.iter().all(|b| text_width(b.value as u64) <= slot);
    for (i, bar) in bars.iter().enumerate() {
        let x = area.x + i as u32 * slot;
        let h = (plot_h as u64 * bar.value as u64 / max as u64) as u32;
        let gap = (slot / 6).max(if slot > 2 { 1 } else { 0 });
        fill(img, Rect::new(x + gap, base - h, slot - 2 * gap, h), bar.colour);
        if counts_fit {
            draw_number(img, x + slot / 2, base - h - TEXT + 2, bar.value as u64);
        }
        if let Some(label) = bar.label {
            draw_number(img, x + slot / 2, base + 4, label);
        }
    }
}
