//! Bilinear resizing of HWC `u8` images: the shard's `prepare` and the augment engine's
//! `resize` both come here.
//!
//! `fast_image_resize` resizes `u8` images in two passes, vertical first. Each pass sums `i16`
//! weights times pixel bytes in `i32`, starting from half a unit, shifts right by the weights'
//! precision and clamps to a byte. Its horizontal pass for 3-channel pixels computes one output
//! pixel of four rows at a time and stores it three bytes at a time: at 384 → 380 (b4_focal's
//! `resize 380`) it was 0.27 of the resize's 0.34 ms on this machine kind, the vertical pass
//! 0.08.
//!
//! So [`resize_u8`] keeps the crate's vertical pass and does the horizontal pass itself, two
//! output pixels per AVX2 register: one 16-byte load holds a window of up to five pixels, a
//! `pshufb` per pair of taps spreads them into `i16` pairs per channel, `pmaddwd` multiplies
//! and adds each pair, and eight finished pixels are packed and stored as 24 bytes at once. The
//! whole resize went from 0.34 to 0.19 ms (one thread, best of 100).
//!
//! The bytes are the crate's: [`Weights::bilinear`] takes the same `f64` steps as its weight
//! table (`precompute_coefficients`, then `Normalizer16`'s precision and rounding to `i16`), and
//! a sum of integers does not depend on the order of its terms. A test compares against the
//! crate's own two passes over thousands of sizes and crop boxes. Windows wider than five
//! pixels (downscales beyond about 2×), crops the crate would refuse and CPUs without AVX2 go
//! to the crate whole.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

thread_local! {
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
    /// The vertical pass's output, kept between images.
    static VERTICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A crop box: left, top, width, height, in source pixels (fractions allowed).
pub(crate) type Crop = (f64, f64, f64, f64);

/// Resizes the `crop` box of `src` (HWC `u8`, `sw × sh`) to `w × h` into `out` (`w * h * 3`
/// bytes): bilinear, the kernel widened when downscaling, as `fast_image_resize`'s
/// `ResizeAlg::Convolution(FilterType::Bilinear)`, with the same bytes. Errors: a box not
/// inside the image, or the crate's (a buffer too short).
pub(crate) fn resize_u8(src: &[u8], (sw, sh): (usize, usize), crop: Crop, (w, h): (usize, usize), out: &mut [u8]) -> Result<(), String> {
    // The crate refuses boxes past the right or bottom edge, but not those starting left of or
    // above the image, on which its AVX2 horizontal pass reads out of bounds (6.1: a
    // segmentation fault, found by the test below). Nothing here makes such boxes; they are
    // refused all the same.
    let (left, top, cw, ch) = crop;
    if !(left >= 0.0 && top >= 0.0 && cw.is_finite() && ch.is_finite()) {
        return Err(format!("crop box {crop:?} is not inside the {sw}×{sh} image"));
    }
    if !split(src, (sw, sh), crop, (w, h), out)? {
        resize_whole(src, (sw, sh), crop, (w, h), out)?;
    }
    Ok(())
}

fn bilinear(crop: Crop) -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(crop.0, crop.1, crop.2, crop.3)
}

/// [`resize_u8`] by `fast_image_resize` alone.
fn resize_whole(src: &[u8], (sw, sh): (usize, usize), crop: Crop, (w, h): (usize, usize), out: &mut [u8]) -> Result<(), String> {
    let src = ImageRef::new(sw as u32, sh as u32, src, PixelType::U8x3).map_err(|e| e.to_string())?;
    let mut dst = Image::from_slice_u8(w as u32, h as u32, out, PixelType::U8x3).map_err(|e| e.to_string())?;
    RESIZER.with(|r| r.borrow_mut().resize(&src, &mut dst, &bilinear(crop))).map_err(|e| e.to_string())
}

/// [`resize_u8`] as the crate's vertical pass, then [`horizontal`]; `false` (nothing written)
/// where that does not apply: no AVX2, no horizontal pass, windows wider than [`MAX_TAPS`], or
/// a crop box or buffer the crate handles itself (an empty box, or its errors).
fn split(src: &[u8], (sw, sh): (usize, usize), crop: Crop, (w, h): (usize, usize), out: &mut [u8]) -> Result<bool, String> {
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = false;
    let (left, top, cw, ch) = crop;
    let inside = left >= 0.0 && top >= 0.0 && cw > 0.0 && ch > 0.0 && left + cw <= sw as f64 && top + ch <= sh as f64;
    let sizes = w > 0 && h > 0 && src.len() >= sw * sh * 3 && out.len() >= w * h * 3;
    // The crate's tests for each pass.
    let horizontal_pass = w as f64 != cw || left != left.round();
    let vertical_pass = h as f64 != ch || top != top.round();
    if !avx2 || !inside || !sizes || !horizontal_pass {
        return Ok(false);
    }
    let Some(mut weights) = Weights::bilinear(sw, left, left + cw, w) else {
        return Ok(false);
    };
    if !vertical_pass {
        // The crate's horizontal pass alone reads rows top..top + h as they are.
        horizontal(&src[top as usize * sw * 3..], sw * 3, h, &weights, out);
        return Ok(true);
    }
    // The crate's vertical pass alone, over whole columns first..end: its weights depend on the
    // rows only, so its bytes are those its two-pass resize would feed its horizontal pass.
    let (first, end) = (weights.first(), weights.end());
    weights.shift_left(first);
    let columns = end - first;
    VERTICAL.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.len() < columns * h * 3 {
            scratch.resize(columns * h * 3, 0);
        }
        resize_whole(src, (sw, sh), (first as f64, top, columns as f64, ch), (columns, h), &mut scratch[..])?;
        // Past the first `columns * h * 3` bytes, `scratch` holds an earlier image's bytes:
        // the 16-byte loads of the last pixels may read them, with weight zero.
        horizontal(&scratch, columns * 3, h, &weights, out);
        Ok(true)
    })
}

/// The most taps (source pixels) one output pixel may have here: 15 bytes of a 16-byte load.
const MAX_TAPS: usize = 5;

/// One pass's weights along one axis, as `fast_image_resize` builds them for its bilinear
/// filter: per output pixel, the first source pixel of its window and up to [`MAX_TAPS`]
/// `i16` weights (zero past the window), with sums shifted right by `precision`.
struct Weights {
    precision: u32,
    starts: Vec<usize>,
    /// Each window's size: the weights past it are zero.
    sizes: Vec<usize>,
    taps: Vec<[i16; MAX_TAPS]>,
}

impl Weights {
    /// The weights for resampling the source span `in0..in1` (of `in_size` pixels) to `out_size`
    /// pixels; `None` when some window is empty or wider than [`MAX_TAPS`], or the span is
    /// empty.
    ///
    /// The steps and their order are those of `fast_image_resize` 6.1's
    /// `precompute_coefficients` (with the kernel widened by the scale, as `ResizeAlg::Convolution`
    /// does) and `Normalizer16::new`, so that every weight has the same bits.
    fn bilinear(in_size: usize, in0: f64, in1: f64, out_size: usize) -> Option<Weights> {
        let scale = (in1 - in0) / out_size as f64;
        if in_size == 0 || out_size == 0 || scale.is_nan() || scale <= 0.0 {
            return None;
        }
        let filter_scale = scale.max(1.0);
        let radius = filter_scale; // the bilinear filter's support is 1
        let window = radius.ceil() as usize * 2 + 1;
        let recip_filter_scale = 1.0 / filter_scale;
        let filter = |x: f64| {
            let x = x.abs();
            if x < 1.0 { 1.0 - x } else { 0.0 }
        };
        // One flat list with `window` values per output pixel, as the crate keeps it: its
        // trimming of trailing zero weights walks back through this list.
        let mut values: Vec<f64> = Vec::with_capacity(window * out_size);
        let mut bounds = Vec::with_capacity(out_size);
        for out_x in 0..out_size {
            let in_center = in0 + (out_x as f64 + 0.5) * scale;
            let x_min = (in_center - radius).floor().max(0.0) as usize;
            let x_max = (in_center + radius).ceil().min(in_size as f64) as usize;
            let first = values.len();
            let center = in_center - 0.5;
            let (mut start, mut end) = (x_min, x_max);
            let mut sum = 0.0;
            for x in x_min..x_max {
                let w = filter((x as f64 - center) * recip_filter_scale);
                if x == start && w == 0.0 {
                    start += 1; // no zero weights at the window's start
                } else {
                    values.push(w);
                    sum += w;
                }
            }
            for &w in values.iter().rev() {
                if end <= start || w != 0.0 {
                    break;
                }
                end -= 1; // nor at its end
            }
            if sum != 0.0 {
                values[first..].iter_mut().for_each(|w| *w /= sum);
            }
            values.resize(first + window, 0.0);
            bounds.push((start, end.saturating_sub(start)));
        }
        // The precision: the most bits for which the largest weight still fits an `i16`
        // (the crate stops at 22, leaving room in the `i32` sums).
        let max = values.iter().copied().fold(0.0f64, f64::max);
        let mut precision = 0u32;
        for bits in 0..22 {
            precision = bits;
            if (max * (1u32 << (bits + 1)) as f64).round() as i32 >= 1 << 15 {
                break;
            }
        }
        if precision == 0 {
            return None; // no half unit to start the sums from
        }
        let unit = (1u32 << precision) as f64;
        let mut starts = Vec::with_capacity(out_size);
        let mut sizes = Vec::with_capacity(out_size);
        let mut taps = Vec::with_capacity(out_size);
        for (chunk, &(start, size)) in values.chunks_exact(window).zip(&bounds) {
            if size == 0 || size > MAX_TAPS {
                return None;
            }
            let mut t = [0i16; MAX_TAPS];
            for (t, &v) in t.iter_mut().zip(&chunk[..size]) {
                *t = (v * unit).round() as i16;
            }
            starts.push(start);
            sizes.push(size);
            taps.push(t);
        }
        Some(Weights { precision, starts, sizes, taps })
    }

    /// The first source pixel any window reads.
    fn first(&self) -> usize {
        self.starts[0]
    }

    /// One past the last source pixel any window reads.
    fn end(&self) -> usize {
        self.starts.iter().zip(&self.sizes).map(|(s, n)| s + n).max().unwrap_or(0)
    }

    /// The widest window.
    fn max_size(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(0)
    }

    /// Moves every window `by` pixels to the left: for a source that starts at pixel `by`.
    fn shift_left(&mut self, by: usize) {
        self.starts.iter_mut().for_each(|s| *s -= by);
    }

    /// One output byte: the crate's integer sum, shift and clamp.
    fn byte(&self, row: &[u8], x: usize, channel: usize) -> u8 {
        let start = self.starts[x];
        let mut sum = 1i32 << (self.precision - 1);
        for (t, &w) in self.taps[x][..self.sizes[x]].iter().enumerate() {
            sum += w as i32 * row[3 * (start + t) + channel] as i32;
        }
        (sum >> self.precision).clamp(0, 255) as u8
    }
}

/// Resamples `rows` rows of `src` (HWC `u8`, rows `stride` bytes apart, pixel 0 of each row
/// the one the weights call 0) along x into `dst` (`rows` rows of `weights`' output width).
fn horizontal(src: &[u8], stride: usize, rows: usize, weights: &Weights, dst: &mut [u8]) {
    let out_w = weights.starts.len();
    assert!(dst.len() >= rows * out_w * 3, "resample: the output is too short");
    assert!(rows == 0 || (rows - 1) * stride + 3 * weights.end() <= src.len(), "resample: the source is too short");
    let mut done = 0; // output pixels of each row the vector kernel computed
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked just above); the asserts above are the
        // kernel's requirements on the slices' lengths.
        done = unsafe { x86::horizontal(src, stride, rows, weights, dst) };
    }
    for y in 0..rows {
        let row = &src[y * stride..];
        let out = &mut dst[y * out_w * 3..(y + 1) * out_w * 3];
        for x in done..out_w {
            for c in 0..3 {
                out[3 * x + c] = weights.byte(row, x, c);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MAX_TAPS, Weights};

    /// Pairs of taps a window may have: [`MAX_TAPS`] rounded up (the last pair's second tap
    /// is never loaded; its weight is zero).
    const PAIRS: usize = MAX_TAPS.div_ceil(2);

    /// Output pixels per step: four registers of two pixels.
    const CHUNK: usize = 8;

    /// `pshufb` masks, one per pair of taps `(2p, 2p + 1)`: in each 16-byte half (one output
    /// pixel's window), `i16` lanes r, r', g, g', b, b' of the two taps and two zeros. Tap 5
    /// (byte 15 onwards) is never loaded: its weight is always zero.
    const PAIR_MASKS: [[i8; 32]; PAIRS] = {
        let mut m = [[-1i8; 32]; PAIRS];
        let mut p = 0;
        while p < PAIRS {
            let mut lane = 0;
            while lane < 6 {
                let (channel, second) = (lane / 2, lane % 2);
                let byte = 3 * (2 * p + second) + channel;
                if byte < 15 {
                    m[p][2 * lane] = byte as i8;
                    m[p][16 + 2 * lane] = byte as i8;
                }
                lane += 1;
            }
            p += 1;
        }
        m
    };

    /// The bytes r, g, b of each of a 16-byte half's four 32-bit pixels, then four zeros.
    const COMPACT: [i8; 32] = [
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, //
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
    ];

    /// Computes the first `out_w / 8 * 8` output pixels of each row, or fewer where a 16-byte
    /// load on the last row would pass the end of `src`; returns how many (the same for every
    /// row). Requires AVX2 and the slice lengths `super::horizontal` asserts.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal(src: &[u8], stride: usize, rows: usize, weights: &Weights, dst: &mut [u8]) -> usize {
        // SAFETY (all three): the caller's requirements, passed on.
        match weights.max_size().div_ceil(2) {
            0 | 1 => unsafe { horizontal_pairs::<1>(src, stride, rows, weights, dst) },
            2 => unsafe { horizontal_pairs::<2>(src, stride, rows, weights, dst) },
            _ => unsafe { horizontal_pairs::<PAIRS>(src, stride, rows, weights, dst) },
        }
    }

    /// [`horizontal`] with `P` pairs of taps per window (windows of up to `2P` pixels).
    #[target_feature(enable = "avx2")]
    unsafe fn horizontal_pairs<const P: usize>(src: &[u8], stride: usize, rows: usize, weights: &Weights, dst: &mut [u8]) -> usize {
        let out_w = weights.starts.len();
        // Chunks whose every load stays inside `src` on every row.
        let last_row = rows.saturating_sub(1) * stride;
        let chunks = (0..out_w / CHUNK)
            .take_while(|&c| {
                let start = weights.starts[c * CHUNK..(c + 1) * CHUNK].iter().max().copied().unwrap_or(0);
                last_row + 3 * start + 16 <= src.len()
            })
            .count();
        if rows == 0 || chunks == 0 {
            return 0;
        }
        // Each register's weights per pair of taps: `i16` pairs (w, w') four times per half
        // (the fourth `i32` lane's taps are zero bytes).
        let pair = |x: usize, p: usize| {
            let t: &[i16; MAX_TAPS] = &weights.taps[x];
            let second = if 2 * p + 1 < MAX_TAPS { t[2 * p + 1] } else { 0 };
            (t[2 * p] as u16 as i32) | ((second as u16 as i32) << 16)
        };
        let mut pair_weights: Vec<__m256i> = Vec::with_capacity(chunks * CHUNK / 2 * P);
        for two in 0..chunks * CHUNK / 2 {
            for p in 0..P {
                let (a, b) = (pair(2 * two, p), pair(2 * two + 1, p));
                pair_weights.push(_mm256_setr_epi32(a, a, a, a, b, b, b, b));
            }
        }
        // SAFETY (both): each mask is 32 bytes; unaligned loads.
        let masks = PAIR_MASKS.map(|m| unsafe { _mm256_loadu_si256(m.as_ptr().cast()) });
        let compact = unsafe { _mm256_loadu_si256(COMPACT.as_ptr().cast()) };
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let half_unit = _mm256_set1_epi32(1 << (weights.precision - 1));
        let shift = _mm_cvtsi32_si128(weights.precision as i32);
        // Each window's byte offset in its row, by chunk.
        let offsets: Vec<[usize; CHUNK]> =
            weights.starts[..chunks * CHUNK].chunks_exact(CHUNK).map(|c| std::array::from_fn(|i| 3 * c[i])).collect();
        for y in 0..rows {
            let row = &src[y * stride..];
            for (c, (offsets, w)) in offsets.iter().zip(pair_weights.chunks_exact(CHUNK / 2 * P)).enumerate() {
                let mut sums = [half_unit; 4];
                for (r, sum) in sums.iter_mut().enumerate() {
                    // SAFETY: `chunks` keeps `offset + 16` inside `src` on every row.
                    let window = unsafe {
                        let a = _mm_loadu_si128(row.as_ptr().add(offsets[2 * r]).cast());
                        let b = _mm_loadu_si128(row.as_ptr().add(offsets[2 * r + 1]).cast());
                        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(a), b)
                    };
                    for p in 0..P {
                        let taps = _mm256_shuffle_epi8(window, masks[p]);
                        *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(taps, w[r * P + p]));
                    }
                }
                let [s0, s1, s2, s3] = sums.map(|s| _mm256_sra_epi32(s, shift));
                // Halves: (p0 p2 | p1 p3) and (p4 p6 | p5 p7) as i16, then bytes
                // (p0 p2 p4 p6 | p1 p3 p5 p7), then p0..p7 in order, then 12 bytes per half.
                let bytes = _mm256_packus_epi16(_mm256_packs_epi32(s0, s1), _mm256_packs_epi32(s2, s3));
                let rgb = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(bytes, order), compact);
                store(dst, (y * out_w + c * CHUNK) * 3, rgb);
            }
        }
        chunks * CHUNK
    }

    /// Stores a chunk's 24 bytes (packed as 12 per 16-byte half) at `dst[at..]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn store(dst: &mut [u8], at: usize, rgb: __m256i) {
        // The upper half is stored 12 bytes after the lower, over its 4 zeros; the 4 bytes
        // past the chunk belong to the next pixels, written after.
        if at + 28 <= dst.len() {
            // SAFETY: bytes `at..at + 28` are inside `dst`.
            unsafe {
                let out = dst.as_mut_ptr().add(at);
                _mm_storeu_si128(out.cast(), _mm256_castsi256_si128(rgb));
                _mm_storeu_si128(out.add(12).cast(), _mm256_extracti128_si256::<1>(rgb));
            }
        } else {
            let mut spare = [0u8; 32];
            // SAFETY: `spare` has 32 bytes.
            unsafe {
                _mm_storeu_si128(spare.as_mut_ptr().cast(), _mm256_castsi256_si128(rgb));
                _mm_storeu_si128(spare.as_mut_ptr().add(12).cast(), _mm256_extracti128_si256::<1>(rgb));
            }
            dst[at..at + 24].copy_from_slice(&spare[..24]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// A random crop box of a `sw × sh` image and an output size: integer or fractional
    /// edges, and about a third of the time no vertical pass (an integer top, as many rows
    /// out as in), so that both of the split's branches run.
    fn case(rng: &mut SplitMix64, sw: usize, sh: usize, max_out: usize) -> (Crop, usize, usize) {
        let edge = |rng: &mut SplitMix64, size: usize| {
            let start = rng.below(size as u64) as f64;
            let start = if rng.below(2) == 0 { start } else { start * rng.next_f64() };
            let len = (size as f64 - start) * (0.05 + 0.95 * rng.next_f64());
            let len = if rng.below(2) == 0 { len.ceil().min(size as f64 - start) } else { len };
            (start, len.max(0.5).min(size as f64 - start))
        };
        let (left, cw) = edge(rng, sw);
        let (mut top, mut ch) = edge(rng, sh);
        let w = 1 + rng.below(max_out as u64) as usize;
        let mut h = 1 + rng.below(max_out as u64) as usize;
        if rng.below(3) == 0 {
            top = top.floor();
            ch = (1 + rng.below((sh - top as usize) as u64)) as f64;
            h = ch as usize;
        }
        ((left, top, cw, ch), w, h)
    }

    /// [`resize_u8`] gives the bytes of the crate's own two passes: b4_focal's 384 → 380,
    /// random-resized-crop-like boxes to 224, shard-like crops of a 384×512 photo, and small
    /// random images and boxes of every kind, including those the split leaves to the crate
    /// (wider windows, no horizontal pass, boxes outside the image), which must agree too.
    #[test]
    fn split_resize_gives_the_crates_bytes() {
        let mut rng = SplitMix64::new(11);
        let mut cases = vec![
            ((384, 384), (0.0, 0.0, 384.0, 384.0), (380, 380)),
            ((384, 512), (0.0, 64.0, 384.0, 384.0), (384, 384)),
            ((384, 512), (0.0, 0.0, 384.0, 512.0), (96, 128)),
            ((7, 5), (0.0, 0.0, 7.0, 5.0), (9, 3)),
            ((7, 5), (-1.0, 0.0, 7.0, 5.0), (9, 3)),
            ((7, 5), (0.0, -0.5, 7.0, 5.0), (9, 3)),
            ((7, 5), (2.0, 0.0, 7.0, 5.0), (9, 3)),
            ((7, 5), (0.0, 0.5, 7.0, 5.0), (9, 3)),
        ];
        for _ in 0..20 {
            let (cw, ch) = (120 + rng.below(280) as usize, 90 + rng.below(210) as usize);
            let (x, y) = (rng.below((400 - cw + 1) as u64) as f64, rng.below((300 - ch + 1) as u64) as f64);
            cases.push(((400, 300), (x, y, cw as f64, ch as f64), (224, 224)));
        }
        for _ in 0..3000 {
            let (sw, sh) = (1 + rng.below(70) as usize, 1 + rng.below(70) as usize);
            let (crop, w, h) = case(&mut rng, sw, sh, 90);
            cases.push(((sw, sh), crop, (w, h)));
        }
        let mut split_ran = 0;
        for (i, &(source, crop, (w, h))) in cases.iter().enumerate() {
            let bytes: Vec<u8> = match i % 5 {
                0 => vec![255; source.0 * source.1 * 3],
                _ => (0..source.0 * source.1 * 3).map(|_| rng.below(256) as u8).collect(),
            };
            // Outputs start from bytes other than zero: every byte must be written.
            let (mut ours, mut crates) = (vec![7u8; w * h * 3], vec![7u8; w * h * 3]);
            let a = resize_u8(&bytes, source, crop, (w, h), &mut ours);
            if crop.0 < 0.0 || crop.1 < 0.0 {
                assert!(a.is_err(), "case {i}: {source:?} box {crop:?} was not refused");
                continue; // the crate itself would read out of bounds
            }
            let b = resize_whole(&bytes, source, crop, (w, h), &mut crates);
            assert_eq!(a.is_ok(), b.is_ok(), "case {i}: {source:?} box {crop:?} to {w}×{h}: {a:?} against {b:?}");
            if a.is_ok() {
                assert!(ours == crates, "case {i}: {source:?} box {crop:?} to {w}×{h}");
            }
            split_ran += usize::from(split(&bytes, source, crop, (w, h), &mut ours) == Ok(true));
        }
        // The split must be what ran for most cases (on a CPU with AVX2), or this test says
        // little.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert!(split_ran * 2 > cases.len(), "the split resize ran for {split_ran} of {} cases", cases.len());
        }
    }
}
