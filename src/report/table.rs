//! Aligned text tables, with optional ANSI colour that never affects alignment: widths are
//! measured on the plain text and colour is wrapped around the padded cell.

use std::io::IsTerminal;

/// Colour for stdout: only on a terminal, and never when `NO_COLOR` is set (no-color.org).
pub fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Good,
    Bad,
    Warn,
    Dim,
}

impl Style {
    fn code(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Good => Some("32"),
            Style::Bad => Some("31"),
            Style::Warn => Some("33"),
            Style::Dim => Some("2"),
        }
    }
}

/// Wraps `text` in the colour of `style` when `colour` is on.
pub fn paint(text: &str, style: Style, colour: bool) -> String {
    match (colour, style.code()) {
        (true, Some(code)) => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, style: Style::Plain }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell { text: text.to_string(), style: Style::Plain }
    }
}

pub fn styled(text: impl Into<String>, style: Style) -> Cell {
    Cell { text: text.into(), style }
}

/// Renders rows under a header, columns separated by two spaces, no trailing spaces.
/// Columns whose header starts with `>` are right-aligned (the `>` is not printed).
pub fn render(header: &[&str], rows: &[Vec<Cell>], colour: bool) -> String {
    let cols = header.len();
    let right: Vec<bool> = header.iter().map(|h| h.starts_with('>')).collect();
    let header: Vec<&str> = header.iter().map(|h| h.trim_start_matches('>')).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.text.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<(String, Style)>, out: &mut String| {
        let mut text = String::new();
        for (i, (cell, style)) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            let last = i + 1 == cells.len();
            let padded = if right[i] {
                format!("{}{cell}", " ".repeat(pad))
            } else if last {
                cell.clone()
            } else {
                format!("{cell}{}", " ".repeat(pad))
            };
            text.push_str(&paint(&padded, *style, colour));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| (h.to_string(), Style::Plain)).collect(), &mut out);
    for row in rows {
        let mut cells: Vec<(String, Style)> = row.iter().take(cols).map(|c| (c.text.clone(), c.style)).collect();
        while cells.len() < cols {
            cells.push((String::new(), Style::Plain));
        }
        line(cells, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_plain_text_and_right_columns_pad_left() {
        let rows = vec![vec![Cell::from("a"), Cell::from("1.5")], vec![styled("longer", Style::Good), Cell::from("10.25")]];
        assert_eq!(render(&["name", ">value"], &rows, false), "name    value\na         1.5\nlonger  10.25\n");
        let coloured = render(&["name", ">value"], &rows, true);
        assert!(coloured.contains("\x1b[32mlonger\x1b[0m"), "{coloured:?}");
    }
}
