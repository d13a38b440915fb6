//! Confusion matrices: rows are true classes, columns predicted; a cell's colour is its share
//! of the row and its count is written in it. The 18-class matrix has the per-class F1 beside
//! each row, and the mask, gender and age matrices (the 18 classes summed per task) stand next
//! to it. [`difference_svg`] draws B − A of two matrices in a diverging scale.

use super::{FONT, GENDER_NAMES, MASK_NAMES, age_names, class_name, svg};
use crate::data::labels::{AgeBins, NUM_CLASSES, class_digits};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

pub type Matrix = [[u64; NUM_CLASSES]; NUM_CLASSES];

/// The matrix of one task: classes summed by `digit` (0 mask, 1 gender, 2 age).
pub fn task_matrix(m: &Matrix, digit: usize) -> Vec<Vec<u64>> {
    let n = [3, 2, 3][digit];
    let of = |c: usize| {
        let d = class_digits(c as u32);
        [d.0, d.1, d.2][digit] as usize
    };
    let mut out = vec![vec![0u64; n]; n];
    for (t, row) in m.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            out[of(t)][of(p)] += count;
        }
    }
    out
}

/// A blue whose depth is `share` (0–1).
fn share_colour(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let mix = |lo: f64, hi: f64| (lo + (hi - lo) * s).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 69.0), mix(255.0, 148.0))
}

/// Draws `rows × rows` cells with `labels` on both axes into `area`. `colour` maps a cell
/// (row, column, count) to its fill and `text` to its label.
fn heatmap(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    labels: &[String],
    counts: &[Vec<i64>],
    colour: &dyn Fn(usize, usize) -> RGBColor,
    label_area: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = labels.len() as i32;
    let small = labels.len() > 6;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(6)
        .x_label_area_size(label_area)
        .y_label_area_size(label_area)
        .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())?;
    let name = |v: &SegmentValue<i32>, flip: bool| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if (0..n).contains(i) => {
            let i = if flip { n - 1 - *i } else { *i };
            if small && !flip { super::turned(&labels[i as usize]) } else { labels[i as usize].clone() }
        }
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_labels(labels.len())
        .y_labels(labels.len())
        .x_label_formatter(&|v| name(v, false))
        .y_label_formatter(&|v| name(v, true))
        .x_label_style((FONT, if small { 11 } else { 13 }).into_font().transform(if small {
            FontTransform::Rotate90
        } else {
            FontTransform::None
        }))
        .y_label_style((FONT, if small { 11 } else { 13 }))
        .axis_desc_style((FONT, 14))
        .draw()?;
    for (t, row) in counts.iter().enumerate() {
        let y = n - 1 - t as i32;
        for (p, &count) in row.iter().enumerate() {
            let x = p as i32;
            let fill = colour(t, p);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(SegmentValue::Exact(x), SegmentValue::Exact(y)), (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1))],
                fill.filled(),
            )))?;
            if count != 0 {
                let dark = (fill.0 as u32 + fill.1 as u32 + fill.2 as u32) < 360;
                let ink = if dark { WHITE } else { BLACK };
                let style = (FONT, if small { 11 } else { 14 })
                    .into_font()
                    .color(&ink)
                    .pos(text_anchor::Pos::new(text_anchor::HPos::Center, text_anchor::VPos::Center));
                chart.draw_series(std::iter::once(Text::new(
                    count.to_string(),
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    style,
                )))?;
            }
        }
    }
    Ok(())
}

fn row_shares(m: &[Vec<u64>]) -> impl Fn(usize, usize) -> RGBColor + '_ {
    move |t, p| {
        let total: u64 = m[t].iter().sum();
        share_colour(if total == 0 { 0.0 } else { m[t][p] as f64 / total as f64 })
    }
}

fn signed(m: &[Vec<u64>]) -> Vec<Vec<i64>> {
    m.iter().map(|r| r.iter().map(|&c| c as i64).collect()).collect()
}

/// The 18-class matrix, its per-class F1 (`f1[c]`) beside each row, and the three per-task
/// matrices.
pub fn svg_of(m: &Matrix, f1: &[f64], bins: AgeBins) -> Result<String> {
    let rows: Vec<Vec<u64>> = m.iter().map(|r| r.to_vec()).collect();
    let names: Vec<String> = (0..NUM_CLASSES).map(|c| class_name(c, bins)).collect();
    svg((1320, 780), |root| {
        let (left, right) = root.split_horizontally(1000);
        let (matrix_area, f1_area) = left.split_horizontally(820);
        heatmap(&matrix_area, "18 classes (colour: share of the true row)", &names, &signed(&rows), &row_shares(&rows), 110)?;
        // Per-class F1, one bar per row, on the same rows as the matrix.
        let n = NUM_CLASSES as i32;
        let mut bars = ChartBuilder::on(&f1_area)
            .caption("F1", (FONT, 16))
            .margin(6)
            .x_label_area_size(110)
            .y_label_area_size(0)
            .build_cartesian_2d(0.0..1.0, (0..n - 1).into_segmented())?;
        bars.configure_mesh()
            .disable_mesh()
            .x_labels(3)
            .x_desc("per-class F1")
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 13))
            .draw()?;
        for (c, &score) in f1.iter().enumerate().take(NUM_CLASSES) {
            let y = n - 1 - c as i32;
            bars.draw_series(std::iter::once(Rectangle::new(
                [(0.0, SegmentValue::Exact(y)), (score.clamp(0.0, 1.0), SegmentValue::Exact(y + 1))],
                share_colour(0.25 + 0.75 * score).filled(),
            )))?;
            bars.draw_series(std::iter::once(Text::new(
                format!("{score:.2}"),
                (0.02, SegmentValue::CenterOf(y)),
                (FONT, 11).into_font().color(&BLACK).pos(text_anchor::Pos::new(text_anchor::HPos::Left, text_anchor::VPos::Center)),
            )))?;
        }
        let tasks = right.split_evenly((3, 1));
        let ages = age_names(bins);
        let task_labels: [Vec<String>; 3] =
            [MASK_NAMES.iter().map(|s| s.to_string()).collect(), GENDER_NAMES.iter().map(|s| s.to_string()).collect(), ages.to_vec()];
        for (digit, (area, title)) in tasks.iter().zip(["mask", "gender", "age"]).enumerate() {
            let t = task_matrix(m, digit);
            heatmap(area, title, &task_labels[digit], &signed(&t), &row_shares(&t), 70)?;
        }
        Ok(())
    })
}

/// B − A of two 18-class matrices: red where B has more, blue where it has fewer.
pub fn difference_svg(a: &Matrix, b: &Matrix, bins: AgeBins) -> Result<String> {
    let diff: Vec<Vec<i64>> = (0..NUM_CLASSES).map(|t| (0..NUM_CLASSES).map(|p| b[t][p] as i64 - a[t][p] as i64).collect()).collect();
    let max = diff.iter().flatten().map(|d| d.abs()).max().unwrap_or(0).max(1) as f64;
    let names: Vec<String> = (0..NUM_CLASSES).map(|c| class_name(c, bins)).collect();
    let colour = |t: usize, p: usize| {
        let s = (diff[t][p] as f64 / max).clamp(-1.0, 1.0);
        let fade = |v: f64| (255.0 - 200.0 * v.abs()).round() as u8;
        // On the diagonal more is better (green); off it, more is worse (red).
        let good = if t == p { s > 0.0 } else { s < 0.0 };
        if s == 0.0 {
            WHITE
        } else if good {
            RGBColor(fade(s), 230, fade(s))
        } else {
            RGBColor(240, fade(s), fade(s))
        }
    };
    svg((860, 780), |root| heatmap(root, "confusion B − A (green: better, red: worse)", &names, &diff, &colour, 110))
}
