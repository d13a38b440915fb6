//! The evaluate step's charts: an 18×18 confusion matrix and the training curves.

use crate::draw::{INK, Rect, draw_number, draw_number_in, fill, line};
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

const CELL: u32 = 34;
const MARGIN: u32 = 40;

/// Rows are true classes, columns predicted; a cell's shade is its share of the row, and
/// the count is printed in it.
pub fn confusion_png(matrix: &[[u64; 18]; 18], path: &Path) -> Result<()> {
    let side = MARGIN + 18 * CELL + 8;
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
    for p in 0..18u32 {
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
