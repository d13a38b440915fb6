//! Training curves: losses on the left axis, validation macro-F1 on the right (0–1), the best
//! epoch marked, and the learning-rate schedule in a panel below.

use super::{FONT, run_colour, svg};
use crate::train::EpochRecord;
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor;

/// One run's history, as a legend names it.
pub struct Run<'a> {
    pub label: String,
    pub history: &'a [EpochRecord],
}

const GREY: RGBColor = RGBColor(110, 110, 110);
const ORANGE: RGBColor = RGBColor(230, 120, 20);
const GREEN: RGBColor = RGBColor(30, 150, 60);

/// The curves of one run (train loss, val loss, val macro-F1) or, with several runs, each
/// run's val loss (dashed) and val macro-F1 (solid) in its own colour.
pub fn svg_of(runs: &[Run], title: &str) -> Result<String> {
    let epochs = runs.iter().map(|r| r.history.len()).max().unwrap_or(0).max(2);
    let max_loss = runs
        .iter()
        .flat_map(|r| r.history.iter().flat_map(|e| [e.train_loss, e.val_loss]))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let max_lr = runs.iter().flat_map(|r| r.history.iter().map(|e| e.lr)).fold(0.0f64, f64::max).max(1e-12) * 1.1;
    let single = runs.len() == 1;
    svg((900, 560), |root| {
        let (top, bottom) = root.split_vertically(400);
        let x = 1.0..epochs as f64 + 0.001;
        let mut chart = ChartBuilder::on(&top)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d(x.clone(), 0.0..max_loss)?
            .set_secondary_coord(x.clone(), 0.0..1.0);
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .x_labels(epochs.min(12))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .max_light_lines(1)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        chart.configure_secondary_axes().y_desc("val macro-F1").label_style((FONT, 13)).axis_desc_style((FONT, 14)).draw()?;
        let at = |e: &EpochRecord| (e.epoch + 1) as f64;
        for (i, run) in runs.iter().enumerate() {
            let h = run.history;
            let (loss_colour, f1_colour) = if single { (ORANGE, GREEN) } else { (run_colour(i), run_colour(i)) };
            let name = |what: &str| if single { what.to_string() } else { format!("{} · {what}", run.label) };
            if single {
                chart
                    .draw_series(LineSeries::new(h.iter().map(|e| (at(e), e.train_loss)), GREY.stroke_width(2)))?
                    .label("train loss")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREY.stroke_width(2)));
            }
            if h.iter().any(|e| e.val_loss > 0.0) {
                chart
                    .draw_series(DashedLineSeries::new(h.iter().map(|e| (at(e), e.val_loss)), 6, 4, loss_colour.stroke_width(2)))?
                    .label(name("val loss"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)], loss_colour.stroke_width(2))
                    });
            }
            chart
                .draw_secondary_series(LineSeries::new(h.iter().map(|e| (at(e), e.val_f1)), f1_colour.stroke_width(3)))?
                .label(name("val macro-F1"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], f1_colour.stroke_width(3)));
            if let Some(best) = h.iter().filter(|e| e.val_f1.is_finite()).max_by(|a, b| a.val_f1.total_cmp(&b.val_f1)) {
                let label = format!("best: epoch {}, F1 {:.3}", best.epoch + 1, best.val_f1);
                chart.draw_secondary_series(std::iter::once(Circle::new((at(best), best.val_f1), 6, f1_colour.filled())))?;
                if single || runs.len() <= 4 {
                    // Right-aligned in the right half, so the words stay inside the chart.
                    let right_half = at(best) > (epochs as f64 + 1.0) / 2.0;
                    let anchor = if right_half { text_anchor::HPos::Right } else { text_anchor::HPos::Left };
                    let style = (FONT, 13).into_font().color(&f1_colour).pos(text_anchor::Pos::new(anchor, text_anchor::VPos::Top));
                    chart.draw_secondary_series(std::iter::once(Text::new(
                        label,
                        (at(best), (best.val_f1 - 0.04 - 0.05 * i as f64).max(0.08)),
                        style,
                    )))?;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 13))
            .draw()?;

        let mut lr = ChartBuilder::on(&bottom)
            .margin(10)
            .margin_top(0)
            .margin_right(70)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(x.clone(), 0.0..max_lr)?;
        lr.configure_mesh()
            .x_desc("epoch")
            .y_desc("learning rate")
            .x_labels(epochs.min(12))
            .y_labels(3)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| if *v == 0.0 { "0".into() } else { format!("{v:.0e}") })
            .max_light_lines(1)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        for (i, run) in runs.iter().enumerate() {
            let colour = if single { GREY } else { run_colour(i) };
            lr.draw_series(LineSeries::new(run.history.iter().map(|e| (at(e), e.lr)), colour.stroke_width(2)))?;
        }
        Ok(())
    })
}
