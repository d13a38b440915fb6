//! Label distributions of a training index: counts and a text table (the chart is drawn by the
//! application, from [`Stats`]).
//!
//! Constraint kept here: statistics are computed from the same [`label_samples`] the trainer
//! sees, so a chart can never disagree with the labels actually trained on (fixes included).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::labels::{AGE_CLASSES, AgeBins, GENDER_CLASSES, Gender, MASK_CLASSES, MaskState, NUM_CLASSES, age_class, split_class};
use super::layout::TrainIndex;
use super::relabel::label_samples;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub age_bins: AgeBins,
    pub persons: usize,
    pub images: usize,
    /// Problems the reader skipped.
    pub skipped: usize,
    /// Persons per gender, indexed by [`Gender::index`].
    pub gender_persons: [usize; GENDER_CLASSES],
    /// Persons per age class.
    pub age_class_persons: [usize; AGE_CLASSES],
    /// Persons per exact age.
    pub ages: BTreeMap<u32, usize>,
    /// Images per mask state, indexed by [`MaskState::index`].
    pub mask_images: [usize; MASK_CLASSES],
    /// Images per class.
    pub class_images: [usize; NUM_CLASSES],
}

pub fn stats(index: &TrainIndex, age_bins: AgeBins) -> Stats {
    let mut s = Stats {
        age_bins,
        persons: index.persons.len(),
        images: index.images.len(),
        skipped: index.skipped.len(),
        gender_persons: [0; GENDER_CLASSES],
        age_class_persons: [0; AGE_CLASSES],
        ages: BTreeMap::new(),
        mask_images: [0; MASK_CLASSES],
        class_images: [0; NUM_CLASSES],
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
pub fn age_class_names(bins: AgeBins) -> [String; AGE_CLASSES] {
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
    line("age", (0..AGE_CLASSES).map(|c| (ages[c].clone(), stats.age_class_persons[c])).collect(), stats.persons);
    line("mask", MaskState::ALL.map(|m| (m.as_str().to_owned(), stats.mask_images[usize::from(m.index())])).to_vec(), stats.images);
    let _ = writeln!(out, "{:>5}  {:<9}  {:<6}  {:<6}  {:>7}  {:>6}", "class", "mask", "gender", "age", "images", "share");
    for class in 0..NUM_CLASSES as u8 {
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
