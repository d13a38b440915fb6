//! Charts for people, drawn by plotters as SVG: the browser renders the text, so no font file
//! travels with maskflow, and a page embeds the chart inline (one self-contained file).
//!
//! - [`curves`]: training curves (losses, val macro-F1 on a second axis, the best epoch, the
//!   learning rate below), for one run or overlaid for a sweep's variants and folds;
//! - [`confusion`]: the 18-class confusion matrix with class names and per-class F1, and the
//!   three per-task matrices;
//! - [`stats`]: a dataset's class, gender and age distributions;
//! - [`compare`]: what a diff page shows: per-class F1 of two runs, the paired-bootstrap
//!   interval against zero, and the difference of their confusion matrices.
//!
//! Every chart is a pure function of its data (no time, no randomness): the evaluate step
//! stores its charts in the cache, and `verify` compares them bit for bit.

pub mod compare;
pub mod confusion;
pub mod curves;
pub mod stats;

use crate::data::labels::{AgeBins, class_digits};
use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Draws into an SVG of `size` and returns its text.
pub(crate) fn svg<F>(size: (u32, u32), draw: F) -> Result<String>
where
    F: FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), Box<dyn std::error::Error>>,
{
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("drawing a chart: {e}"))?;
        draw(&root).map_err(|e| anyhow!("drawing a chart: {e}"))?;
        root.present().map_err(|e| anyhow!("drawing a chart: {e}"))?;
    }
    Ok(out)
}

/// Mask states, genders and age classes in words, as the competition names them.
pub const MASK_NAMES: [&str; 3] = ["wear", "incorrect", "normal"];
pub const GENDER_NAMES: [&str; 2] = ["M", "F"];

/// The three age classes for `bins` (`<30`, `30–59`, `≥60`).
pub fn age_names(bins: AgeBins) -> [String; 3] {
    [format!("<{}", bins[0]), format!("{}–{}", bins[0], bins[1] - 1), format!("≥{}", bins[1])]
}

/// A class in words: `wear·F·<30`.
pub fn class_name(class: usize, bins: AgeBins) -> String {
    let (m, g, a) = class_digits(class as u32);
    format!("{}·{}·{}", MASK_NAMES[m as usize], GENDER_NAMES[g as usize], age_names(bins)[a as usize])
}

/// A colour per run of an overlay, distinguishable and in a fixed order.
pub(crate) fn run_colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

pub(crate) const FONT: &str = "sans-serif";

/// A label for an axis whose labels are turned 90°: plotters centres a turned label on its
/// tick, so half of it would run off the top of the label area; leading no-break spaces
/// (which SVG keeps) push the words below the tick.
pub(crate) fn turned(label: &str) -> String {
    let pad = "\u{a0}".repeat(label.chars().count() * 2);
    format!("{pad}{label}")
}

/// HTML-escaped text, for the pages that embed the charts.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG inlined in a page as `<figure class="chart" id=ID>`, its XML declaration dropped, so
/// the page stays one self-contained file.
pub fn inline(svg: &str, id: &str) -> String {
    format!("<figure class=\"chart\" id=\"{}\">{}</figure>\n", escape(id), strip_xml_declaration(svg))
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_read_as_words() {
        assert_eq!(class_name(0, [30, 60]), "wear·M·<30");
        assert_eq!(class_name(4, [30, 60]), "wear·F·30–59");
        assert_eq!(class_name(17, [30, 60]), "normal·F·≥60");
    }
}
