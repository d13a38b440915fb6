//! A dataset's label distributions as labelled bar charts: images per class (coloured by mask
//! state), persons per age (coloured by age class), and persons per gender and per age class.

use super::{FONT, GENDER_NAMES, MASK_NAMES, age_names, class_name, svg};
use crate::data::labels::{NUM_CLASSES, age_class, class_digits};
use crate::data::stats::Stats;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

const MASK_COLOURS: [RGBColor; 3] = [RGBColor(66, 133, 244), RGBColor(244, 160, 0), RGBColor(219, 68, 55)];
const GENDER_COLOURS: [RGBColor; 2] = [RGBColor(70, 120, 200), RGBColor(210, 90, 140)];
const AGE_COLOURS: [RGBColor; 3] = [RGBColor(110, 190, 120), RGBColor(60, 140, 80), RGBColor(20, 80, 40)];

/// One bar: its label under the axis, its height and colour.
struct Bar {
    label: String,
    value: usize,
    colour: RGBColor,
}

/// A bar chart with a count above each bar (when they fit) and `x_desc`/`y_desc` axis titles.
fn bars(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    bars: &[Bar],
    rotate: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = bars.len() as i32;
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(8)
        .x_label_area_size(if rotate { 110 } else { 40 })
        .y_label_area_size(60)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..max)?;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) if (0..n).contains(i) && rotate => super::turned(&bars[*i as usize].label),
        SegmentValue::CenterOf(i) if (0..n).contains(i) => bars[*i as usize].label.clone(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(bars.len())
        .x_label_formatter(&label)
        .label_style((FONT, 11))
        .x_label_style((FONT, 11).into_font().transform(if rotate { FontTransform::Rotate90 } else { FontTransform::None }))
        .axis_desc_style((FONT, 13))
        .draw()?;
    let counts_fit = n <= 30;
    for (i, b) in bars.iter().enumerate() {
        let x = i as i32;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(SegmentValue::Exact(x), 0.0), (SegmentValue::Exact(x + 1), b.value as f64)],
            b.colour.filled(),
        )))?;
        if counts_fit {
            let style =
                (FONT, 10).into_font().color(&BLACK).pos(text_anchor::Pos::new(text_anchor::HPos::Center, text_anchor::VPos::Bottom));
            chart.draw_series(std::iter::once(Text::new(
                b.value.to_string(),
                (SegmentValue::CenterOf(x), b.value as f64 + max * 0.01),
                style,
            )))?;
        }
    }
    Ok(())
}

pub fn svg_of(stats: &Stats) -> Result<String> {
    let classes: Vec<Bar> = (0..NUM_CLASSES)
        .map(|c| Bar {
            label: class_name(c, stats.age_bins),
            value: stats.class_images[c],
            colour: MASK_COLOURS[class_digits(c as u32).0 as usize],
        })
        .collect();
    let min_age = stats.ages.keys().next().copied().unwrap_or(0);
    let max_age = stats.ages.keys().next_back().copied().unwrap_or(0);
    let ages: Vec<Bar> = (min_age..=max_age)
        .map(|age| Bar {
            label: if age % 10 == 0 { age.to_string() } else { String::new() },
            value: stats.ages.get(&age).copied().unwrap_or(0),
            colour: AGE_COLOURS[usize::from(age_class(age, stats.age_bins))],
        })
        .collect();
    let age_names = age_names(stats.age_bins);
    let people: Vec<Bar> = (0..2)
        .map(|g| Bar { label: GENDER_NAMES[g].to_string(), value: stats.gender_persons[g], colour: GENDER_COLOURS[g] })
        .chain((0..3).map(|a| Bar { label: age_names[a].clone(), value: stats.age_class_persons[a], colour: AGE_COLOURS[a] }))
        .collect();
    let legend = format!("images per class ({} images; colour: mask {})", stats.images, MASK_NAMES.join(" / "));
    svg((1100, 760), |root| {
        let (top, bottom) = root.split_vertically(400);
        bars(&top, &legend, "class (mask·gender·age)", "images", &classes, true)?;
        let (left, right) = bottom.split_horizontally(700);
        bars(&left, &format!("persons per age ({} persons)", stats.persons), "age (years)", "persons", &ages, false)?;
        bars(&right, "persons per gender and age class", "gender, age class", "persons", &people, false)?;
        Ok(())
    })
}
