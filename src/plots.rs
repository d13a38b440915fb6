//! Charts: the evaluate step's 18×18 confusion matrix and training curves, and `data stats`'s
//! label distributions.

use crate::data::labels::{NUM_CLASSES, age_class, class_digits};
use crate::data::stats::Stats;
use crate::draw::{INK, Rect, draw_number, draw_number_in, fill, line, text_width};
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

const CELL: u32 = 34;
const MARGIN: u32 = 40;

/// Rows are true classes, columns predicted; a cell's shade is its share of the row, and
/// the count is printed in it.
pub fn confusion_png(matrix: &[[u64; NUM_CLASSES]; NUM_CLASSES], path: &Path) -> Result<()> {
    let side = MARGIN + NUM_CLASSES as u32 * CELL + 8;
    let mut img = RgbImage::from_pixel(side, side, Rgb([255, 255, 255]));
    for (t, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        draw_number(&mut img, MARGIN / 2, MARGIN + t as u32 * CELL + CELL / 2 - 5, t as u64);
        for (p, &count) in row.iter().enumerate() {
            let share = count as f64 / total as f64;
            let shade = (255.0 * (1.0 - share)) as u8;
            let colour = if t == p { Rgb([shade, 255 - (255 - shade) / 3, shade]) } else { Rgb([255, shade, shade]) };
            let r = Rect::new(MARGIN + p as u32 * CELL, MARGIN + t as u32 * CELL, CELL - 1, CELL - 1);
            fill(&mut img, r, colour);
            if count > 0 {
                let ink = if share > 0.6 { Rgb([255, 255, 255]) } else { INK };
                draw_number_in(&mut img, r.x + CELL / 2, r.y + CELL / 2 - 5, count, ink);
            }
        }
    }
    for p in 0..NUM_CLASSES as u32 {
        draw_number(&mut img, MARGIN + p * CELL + CELL / 2, MARGIN / 2 - 5, p as u64);
    }
    img.save(path).with_context(|| format!("{}: cannot write", path.display()))
}

/// Train loss (grey, scaled to its maximum) and val macro-F1 (green, 0..1) per epoch.
pub fn curves_png(history: &[crate::train::EpochRecord], path: &Path) -> Result<()> {
    let (w, h) = (640u32, 360u32);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let plot = Rect::new(50, 20, w - 70, h - 60);
    fill(&mut img, Rect::new(plot.x, plot.y + plot.h, plot.w, 1), INK);
    fill(&mut img, Rect::new(plot.x, plot.y, 1, plot.h), INK);
    let n = history.len().max(2) - 1;
    let x_of = |i: usize| plot.x as i64 + (i as f64 / n as f64 * plot.w as f64) as i64;
    let y_of = |v: f64| (plot.y + plot.h) as i64 - (v.clamp(0.0, 1.0) * plot.h as f64) as i64;
    let max_loss = history.iter().map(|e| e.train_loss).fold(f64::MIN_POSITIVE, f64::max);
    for pair in history.windows(2).enumerate() {
        let (i, [a, b]) = pair else { continue };
        line(&mut img, (x_of(i), y_of(a.train_loss / max_loss)), (x_of(i + 1), y_of(b.train_loss / max_loss)), Rgb([120, 120, 120]), 2);
        line(&mut img, (x_of(i), y_of(a.val_f1)), (x_of(i + 1), y_of(b.val_f1)), Rgb([30, 150, 60]), 2);
    }
    for (i, e) in history.iter().enumerate() {
        draw_number(&mut img, x_of(i) as u32, plot.y + plot.h + 8, (e.epoch + 1) as u64);
        fill(&mut img, Rect::new(x_of(i) as u32 - 2, y_of(e.val_f1) as u32 - 2, 5, 5), Rgb([30, 150, 60]));
    }
    for tick in [0u64, 50, 100] {
        draw_number(&mut img, 25, y_of(tick as f64 / 100.0) as u32 - 5, tick);
    }
    img.save(path).with_context(|| format!("{}: cannot write", path.display()))
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 640;
const MASK_COLOURS: [Rgb<u8>; 3] = [Rgb([66, 133, 244]), Rgb([244, 160, 0]), Rgb([219, 68, 55])];
const GENDER_COLOURS: [Rgb<u8>; 2] = [Rgb([70, 120, 200]), Rgb([210, 90, 140])];
const AGE_COLOURS: [Rgb<u8>; 3] = [Rgb([110, 190, 120]), Rgb([60, 140, 80]), Rgb([20, 80, 40])];

/// Writes bar charts: images per class (coloured by mask state) on top; persons per age,
/// per gender and per age class below. Counts are printed above bars in a small digit font.
pub fn stats_png(stats: &Stats, path: &Path) -> Result<()> {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));

    let classes: Vec<Bar> = (0..NUM_CLASSES)
        .map(|class| Bar {
            value: stats.class_images[class],
            colour: MASK_COLOURS[class_digits(class as u32).0 as usize],
            label: Some(class as u64),
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

    img.save_with_format(path, image::ImageFormat::Png).with_context(|| format!("{}: cannot write", path.display()))
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
