//! What a comparison page draws: per-class F1 of A and B as paired bars sorted by change, and
//! the paired-bootstrap interval of the macro-F1 change against zero.

use super::{FONT, class_name, svg};
use crate::data::labels::AgeBins;
use anyhow::Result;
use plotters::prelude::*;

const A_COLOUR: RGBColor = RGBColor(120, 140, 170);
const B_COLOUR: RGBColor = RGBColor(230, 120, 20);

/// Per-class F1 of A and B (`a[c]`, `b[c]`), classes sorted by B − A, largest drop first.
pub fn per_class_svg(a: &[f64], b: &[f64], a_label: &str, b_label: &str, bins: AgeBins) -> Result<String> {
    let mut order: Vec<usize> = (0..a.len().min(b.len())).collect();
    order.sort_by(|&x, &y| (b[x] - a[x]).total_cmp(&(b[y] - a[y])).then(x.cmp(&y)));
    let n = order.len() as i32;
    let names: Vec<String> = order.iter().map(|&c| class_name(c, bins)).collect();
    svg((1100, 480), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("per-class F1, sorted by change (B − A)", (FONT, 16))
            .margin(8)
            .x_label_area_size(110)
            .y_label_area_size(55)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..1.05)?;
        let label = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) if (0..n).contains(i) => super::turned(&names[*i as usize]),
            _ => String::new(),
        };
        let mut legend: Vec<(String, RGBColor)> = Vec::new();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("class (mask·gender·age)")
            .y_desc("F1")
            .x_labels(order.len())
            .x_label_formatter(&label)
            .label_style((FONT, 11))
            .x_label_style((FONT, 11).into_font().transform(FontTransform::Rotate90))
            .axis_desc_style((FONT, 13))
            .draw()?;
        // Two bars per class, A in the left half of its slot and B in the right half, placed
        // through the chart's own mapping from (class, F1) to pixels.
        for (label, colour, values, right) in [(a_label, A_COLOUR, a, false), (b_label, B_COLOUR, b, true)] {
            let rects: Vec<Rectangle<(i32, i32)>> = order
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let (x0, y0) = chart.backend_coord(&(SegmentValue::Exact(i as i32), 0.0));
                    let (x1, y1) = chart.backend_coord(&(SegmentValue::Exact(i as i32 + 1), values[c].clamp(0.0, 1.0)));
                    let w = x1 - x0;
                    let (l, r) = if right { (x0 + w / 2, x1 - w / 10) } else { (x0 + w / 10, x0 + w / 2) };
                    Rectangle::new([(l, y1), (r, y0)], colour.filled())
                })
                .collect();
            for rect in &rects {
                root.draw(rect)?;
            }
            legend.push((label.to_string(), colour));
        }
        for (k, (label, colour)) in legend.iter().enumerate() {
            let y = 40 + 20 * k as i32;
            root.draw(&Rectangle::new([(80, y - 6), (94, y + 6)], colour.filled()))?;
            root.draw(&Text::new(label.clone(), (100, y - 7), (FONT, 13).into_font()))?;
        }
        Ok(())
    })
}

/// The macro-F1 change with its 95% interval, drawn against zero.
pub fn interval_svg(delta: f64, lo: f64, hi: f64, verdict: &str) -> Result<String> {
    let reach = [delta, lo, hi].iter().map(|v| v.abs()).fold(0.01f64, f64::max) * 1.3;
    svg((900, 170), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("macro-F1 change B − A: {delta:+.4}, 95% interval [{lo:+.4}, {hi:+.4}]: {verdict}"), (FONT, 15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(10)
            .build_cartesian_2d(-reach..reach, 0.0..1.0)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("macro-F1 change (B − A)")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (0.0, 1.0)], BLACK.stroke_width(1))))?;
        let colour = if lo > 0.0 {
            RGBColor(30, 150, 60)
        } else if hi < 0.0 {
            RGBColor(200, 40, 40)
        } else {
            RGBColor(110, 110, 110)
        };
        chart.draw_series(std::iter::once(PathElement::new(vec![(lo, 0.5), (hi, 0.5)], colour.stroke_width(4))))?;
        for end in [lo, hi] {
            chart.draw_series(std::iter::once(PathElement::new(vec![(end, 0.35), (end, 0.65)], colour.stroke_width(2))))?;
        }
        chart.draw_series(std::iter::once(Circle::new((delta, 0.5), 6, colour.filled())))?;
        Ok(())
    })
}

/// One effect of `maskflow ablate` as a small interval against zero, on a scale of ±`span`
/// shared by every effect of a report: green when it helps, red when it hurts, grey within noise.
pub fn effect_svg(delta: f64, low: f64, high: f64, span: f64, verdict: crate::report::metrics::Verdict) -> Result<String> {
    use crate::report::metrics::Verdict;
    let colour = match verdict {
        Verdict::Better => RGBColor(0x1a, 0x7f, 0x37),
        Verdict::Worse => RGBColor(0xcf, 0x22, 0x2e),
        Verdict::WithinNoise => RGBColor(0x6e, 0x77, 0x81),
    };
    svg((360, 34), |root| {
        let mut chart = ChartBuilder::on(root).margin_left(10).margin_right(10).build_cartesian_2d(-span..span, 0.0..1.0)?;
        chart.draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.05), (0.0, 0.95)], BLACK.stroke_width(1))))?;
        chart.draw_series(std::iter::once(PathElement::new(vec![(low, 0.5), (high, 0.5)], colour.stroke_width(4))))?;
        chart.draw_series(std::iter::once(Circle::new((delta, 0.5), 5, colour.filled())))?;
        chart.draw_series(std::iter::once(Text::new(format!("{delta:+.4}"), (-span, 0.95), (FONT, 10).into_font())))?;
        Ok(())
    })
}
