//! Minimal raster drawing for the PNG charts maskflow writes (data stats, confusion
//! matrices, training curves): filled rectangles, lines and a 3×5 digit font. Enough for
//! readable charts without a font or plotting dependency.

use image::{Rgb, RgbImage};

pub const INK: Rgb<u8> = Rgb([40, 40, 40]);

#[derive(Clone, Copy, Debug)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub fn new(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }
}

pub fn fill(img: &mut RgbImage, r: Rect, colour: Rgb<u8>) {
    for y in r.y..(r.y + r.h).min(img.height()) {
        for x in r.x..(r.x + r.w).min(img.width()) {
            img.put_pixel(x, y, colour);
        }
    }
}

/// A straight line (Bresenham), `thick` pixels wide.
pub fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: Rgb<u8>, thick: u32) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        if x >= 0 && y >= 0 {
            fill(img, Rect::new(x as u32, y as u32, thick, thick), colour);
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// 3×5 digit glyphs, one row per byte (bit 2 is the leftmost column).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];
/// Pixels per glyph dot.
const DOT: u32 = 2;

pub fn text_width(n: u64) -> u32 {
    n.to_string().len() as u32 * 4 * DOT
}

/// Draws `n` centred on `cx`, top at `y`.
pub fn draw_number(img: &mut RgbImage, cx: u32, y: u32, n: u64) {
    draw_number_in(img, cx, y, n, INK);
}

pub fn draw_number_in(img: &mut RgbImage, cx: u32, y: u32, n: u64, colour: Rgb<u8>) {
    let text = n.to_string();
    let mut x = cx.saturating_sub(text_width(n) / 2);
    for digit in text.bytes().map(|b| usize::from(b - b'0')) {
        for (row, bits) in DIGITS[digit].iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) != 0 {
                    fill(img, Rect::new(x + col * DOT, y + row as u32 * DOT, DOT, DOT), colour);
                }
            }
        }
        x += 4 * DOT;
    }
}
