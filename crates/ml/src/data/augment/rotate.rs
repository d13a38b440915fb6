//! Bilinear rotation about the image centre, zero fill, on HWC pixels of any channel type.
//!
//! Why not the obvious per-pixel closure: on a baseline x86-64 build `floor` and `round` are
//! libm calls (SSE4.1 has the instructions, the baseline does not), a `dyn Fn` per tap kept
//! the compiler from specialising, and nothing vectorised: `pipelines/b4_focal.mf`'s train ops
//! (resize 380, flip, rotate, jitter, normalise) loaded at 235 img/s. Here pixels go in chunks
//! of 8 whose maths is vector code; a chunk with all taps inside the image skips the bounds
//! checks, others (the border) keep them per tap; with AVX2 the whole loop is compiled a
//! second time so that `floor` and `trunc` are instructions (`round_to_u8` rounds through
//! `trunc`: `f32::round`, half away from zero, has no instruction and stays a libm call).
//!
//! With AVX2, `u8` images (the epoch-time case: a shard image after its resize) take
//! [`x86::rotate_u8`] instead: the inverse map is computed four lanes at a time in `f64`, and
//! each output pixel's taps arrive as two 8-byte gathers (pixels x0 and x0 + 1 of rows y0 and
//! y0 + 1) instead of twelve scalar loads. That made a 380×380 rotation about 3× faster
//! (1.2 ms against 3.6 ms on this machine kind, one thread). The taps' bytes are picked out of
//! the gathered words with one `pshufb` per channel, the inverse map's `cos * dx` and
//! `sin * dx` are computed once per column rather than per pixel, and chunks go two at a time,
//! both chunks' gathers issued before either's arithmetic so that the second's load latency
//! overlaps the first's work: 0.72 ms for the same rotation (mirrored, best of 50, one thread).
//!
//! A pending mirror (`hflip` just before the rotation, as in b4_focal's ops) is read, not
//! copied: the mirrored image's pixel `x` is the stored image's pixel `w - 1 - x`, so its taps
//! x0 and x0 + 1 are the stored pixels `w - 1 - x0` and `w - 2 - x0`, which one 8-byte read
//! starting at `w - 2 - x0` still covers, in the other order. The weights and the order the
//! taps are added in are those of the mirrored image, so the values are those of a mirror
//! copied first (a test checks this).
//!
//! The arithmetic per output value is unchanged (a test compares against the first version bit
//! for bit): the inverse map in `f64`, weights in `f32`, taps added in the order (x0, y0),
//! (x1, y0), (x0, y1), (x1, y1), each as `v * wx * wy`, and `f32::round` (half away from zero)
//! before the clamp to `u8`.

use std::borrow::Cow;

use super::pixels::{Img, Pixels, image_bytes};

/// Rotates counter-clockwise by `degrees` about the image centre (bilinear, zero fill), after
/// mirroring it left-right when `flip`.
pub(super) fn rotate<'a>(img: &Img<'_>, degrees: f64, flip: bool) -> Img<'a> {
    let px = match &img.px {
        #[cfg(target_arch = "x86_64")]
        Pixels::U8(b) if x86::fits(img.w, img.h) && std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: the CPU supports AVX2 (checked just above).
            Pixels::U8(Cow::Owned(unsafe { x86::rotate_u8(b, img.w, img.h, degrees, flip) }))
        }
        Pixels::U8(b) => Pixels::U8(Cow::Owned(run(b, img.w, img.h, degrees, flip))),
        Pixels::F32(v) => Pixels::F32(run(v, img.w, img.h, degrees, flip)),
    };
    Img { w: img.w, h: img.h, px }
}

/// Rotates `src` (HWC, 3 channels, `w × h`, mirrored when `flip`) counter-clockwise by
/// `degrees`.
fn run<T: Channel>(src: &[T], w: usize, h: usize, degrees: f64, flip: bool) -> Vec<T> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { run_avx2(src, w, h, degrees, flip) };
    }
    run_with(src, w, h, degrees, flip)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2<T: Channel>(src: &[T], w: usize, h: usize, degrees: f64, flip: bool) -> Vec<T> {
    run_with(src, w, h, degrees, flip)
}

/// Output pixels computed together: the inverse map, weights and sums run as 8-lane vector
/// code, and only the tap loads stay scalar.
const CHUNK: usize = 8;

#[inline(always)]
fn run_with<T: Channel>(src: &[T], w: usize, h: usize, degrees: f64, flip: bool) -> Vec<T> {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let (wf, hf) = (w as f64, h as f64);
    let mut out = vec![T::default(); w * h * 3];
    for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
        let dy = y as f64 + 0.5 - cy;
        // Inverse map: destination → source (y grows downwards).
        let map = |x: usize| {
            let dx = x as f64 + 0.5 - cx;
            (cos * dx - sin * dy + cx - 0.5, sin * dx + cos * dy + cy - 0.5)
        };
        let mut x = 0;
        while x + CHUNK <= w {
            let mut sx = [0.0f64; CHUNK];
            let mut sy = [0.0f64; CHUNK];
            for i in 0..CHUNK {
                (sx[i], sy[i]) = map(x + i);
            }
            let x0 = sx.map(f64::floor);
            let y0 = sy.map(f64::floor);
            let fx: [f32; CHUNK] = std::array::from_fn(|i| (sx[i] - x0[i]) as f32);
            let fy: [f32; CHUNK] = std::array::from_fn(|i| (sy[i] - y0[i]) as f32);
            let interior = (0..CHUNK).all(|i| x0[i] >= 0.0 && y0[i] >= 0.0 && x0[i] + 1.0 < wf && y0[i] + 1.0 < hf);
            if !interior {
                for i in 0..CHUNK {
                    let acc = border_pixel(src, w, wf, hf, flip, (x0[i], y0[i]), (fx[i], fy[i]));
                    for (d, a) in row[(x + i) * 3..][..3].iter_mut().zip(acc) {
                        *d = T::store(a);
                    }
                }
                x += CHUNK;
                continue;
            }
            // Through i32 (both are in the image here): f64 → usize does not vectorise.
            let (xi, yi) = (x0.map(|v| v as i32), y0.map(|v| v as i32));
            // The stored pixel left of the pair x0, x0 + 1 (mirrored: w - 2 - x0, w - 1 - x0).
            let left = |x: i32| if flip { w - 2 - x as usize } else { x as usize };
            let base: [usize; CHUNK] = std::array::from_fn(|i| (yi[i] as usize * w + left(xi[i])) * 3);
            let gx: [f32; CHUNK] = fx.map(|f| 1.0 - f);
            let gy: [f32; CHUNK] = fy.map(|f| 1.0 - f);
            // Taps in the order (x0, y0), (x1, y0), (x0, y1), (x1, y1); mirrored, x0 is the right one.
            let (x0_at, x1_at) = if flip { (3, 0) } else { (0, 3) };
            let taps = [(x0_at, &gx, &gy), (x1_at, &fx, &gy), (3 * w + x0_at, &gx, &fy), (3 * w + x1_at, &fx, &fy)];
            for c in 0..3 {
                let mut acc = [0.0f32; CHUNK];
                for &(offset, wx, wy) in &taps {
                    let v: [f32; CHUNK] = std::array::from_fn(|i| src[base[i] + offset + c].load());
                    for i in 0..CHUNK {
                        acc[i] += v[i] * wx[i] * wy[i];
                    }
                }
                for i in 0..CHUNK {
                    row[(x + i) * 3 + c] = T::store(acc[i]);
                }
            }
            x += CHUNK;
        }
        row_tail(src, w, flip, row, x, map);
    }
    out
}

/// Output pixels `from..w` of a row (fewer than a chunk), each through [`border_pixel`].
#[inline(always)]
fn row_tail<T: Channel>(src: &[T], w: usize, flip: bool, row: &mut [T], from: usize, map: impl Fn(usize) -> (f64, f64)) {
    // `src` is the whole `w × h` image (and `w > 0`: the row exists).
    let h = src.len() / (3 * w);
    for x in from..w {
        let (sx, sy) = map(x);
        let (x0, y0) = (sx.floor(), sy.floor());
        let acc = border_pixel(src, w, w as f64, h as f64, flip, (x0, y0), ((sx - x0) as f32, (sy - y0) as f32));
        for (d, a) in row[x * 3..][..3].iter_mut().zip(acc) {
            *d = T::store(a);
        }
    }
}

/// A stored channel value: how a tap is read as `f32`, and how an accumulated `f32` is
/// stored back (`u8` rounds and clamps; `f32` is kept as it is).
trait Channel: Copy + Default {
    fn load(self) -> f32;
    fn store(acc: f32) -> Self;
}

impl Channel for u8 {
    #[inline(always)]
    fn load(self) -> f32 {
        self as f32
    }

    #[inline(always)]
    fn store(acc: f32) -> u8 {
        round_to_u8(acc)
    }
}

impl Channel for f32 {
    #[inline(always)]
    fn load(self) -> f32 {
        self
    }

    #[inline(always)]
    fn store(acc: f32) -> f32 {
        acc
    }
}

/// `f32` accumulated value to a byte as the `u8` path stores it: `c.round()` (half away from
/// zero), clamped to [0, 255]. Written through `trunc` because `f32::round` is a libm call on
/// x86-64 (2% of b4_focal's loader, from the border pixels), while `trunc` is an instruction
/// wherever SSE4.1 is enabled. Equal for every `f32` (a test checks): for `c >= 0`, `c - trunc(c)`
/// is exact and the `.5` case goes up, as `round` does; any `c < 0` or NaN clamps to 0 either way.
#[inline(always)]
fn round_to_u8(c: f32) -> u8 {
    let t = c.trunc();
    let r = if c - t >= 0.5 { t + 1.0 } else { t };
    r.clamp(0.0, 255.0) as u8
}

/// One output pixel with a per-tap bounds check (a tap outside the image adds nothing), of
/// `src` mirrored when `flip`.
#[inline(always)]
fn border_pixel<T: Channel>(src: &[T], w: usize, wf: f64, hf: f64, flip: bool, (x0, y0): (f64, f64), (fx, fy): (f32, f32)) -> [f32; 3] {
    let taps = [(0.0, 0.0, 1.0 - fx, 1.0 - fy), (1.0, 0.0, fx, 1.0 - fy), (0.0, 1.0, 1.0 - fx, fy), (1.0, 1.0, fx, fy)];
    let mut acc = [0.0f32; 3];
    for (ox, oy, wx, wy) in taps {
        let (px, py) = (x0 + ox, y0 + oy);
        if px < 0.0 || py < 0.0 || px >= wf || py >= hf {
            continue;
        }
        let column = if flip { w - 1 - px as usize } else { px as usize };
        let o = (py as usize * w + column) * 3;
        for c in 0..3 {
            acc[c] += src[o + c].load() * wx * wy;
        }
    }
    acc
}

/// The AVX2 rotation of `u8` images: gathered taps, vector maths, the same values as `run`.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{border_pixel, round_to_u8};

    /// Output pixels per step: two `f64` vectors of the inverse map, one `f32` vector of taps.
    const CHUNK: usize = 8;

    /// `pshufb` masks that take channel `c`'s byte of each 32-bit lane (one pixel's r, g, b and
    /// a spare byte) and zero-extend it: `CHANNELS[c]`, -1 (0x80) for the zeroed bytes.
    const CHANNELS: [[i8; 32]; 3] = {
        let mut m = [[-1i8; 32]; 3];
        let mut c = 0;
        while c < 3 {
            let mut lane = 0;
            while lane < 8 {
                // `pshufb` indexes within each 16-byte half.
                m[c][4 * lane] = (4 * (lane % 4) + c) as i8;
                lane += 1;
            }
            c += 1;
        }
        m
    };

    /// Whether byte offsets into a `w × h` image (plus a row and 8 bytes) fit the gathers'
    /// `i32` indices.
    pub(super) fn fits(w: usize, h: usize) -> bool {
        (w * h * 3).checked_add(3 * w + 8).is_some_and(|n| n < i32::MAX as usize)
    }

    /// Rotates `src` (HWC `u8`, `w × h`, [`fits`], mirrored when `flip`) counter-clockwise by
    /// `degrees`, as `super::run` does with `round_to_u8`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rotate_u8(src: &[u8], w: usize, h: usize, degrees: f64, flip: bool) -> Vec<u8> {
        let (sin, cos) = degrees.to_radians().sin_cos();
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        let (wf, hf) = (w as f64, h as f64);
        let mut out = super::image_bytes(w * h * 3);
        // An 8-byte gather at offset `o` of the lower tap row reads up to `o + 3w + 8`.
        let last = _mm256_set1_epi32(src.len() as i32 - 3 * w as i32 - 8);
        let stride = _mm_set1_epi32(3 * w as i32);
        let row_bytes = _mm256_set1_epi32(3 * w as i32);
        let (zero, half, one, top) = (_mm256_setzero_ps(), _mm256_set1_ps(0.5), _mm256_set1_ps(1.0), _mm256_set1_ps(255.0));
        // SAFETY: each mask is 32 bytes; unaligned loads.
        let channels = CHANNELS.map(|mask| unsafe { _mm256_loadu_si256(mask.as_ptr().cast()) });
        // The last x0 and y0 whose pair of taps is inside the image; with one column or row
        // there is no such pair (`pairs`). Mirrored, the pair x0, x0 + 1 starts at stored
        // pixel w - 2 - x0 (`super::run_with`).
        let pairs = w >= 2 && h >= 2;
        let (x_last, y_last) = (_mm256_set1_epi32(w as i32 - 2), _mm256_set1_epi32(h as i32 - 2));
        // Per 128-bit lane: pixel p's r, g, b (bytes 4p..4p + 3) packed into 12 bytes.
        #[rustfmt::skip]
        let pack = _mm256_setr_epi8(
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
        );
        // The inverse map's products with dx (the same for every row), per column.
        let dx = |x: usize| x as f64 + 0.5 - cx;
        let cos_dx: Vec<f64> = (0..w).map(|x| cos * dx(x)).collect();
        let sin_dx: Vec<f64> = (0..w).map(|x| sin * dx(x)).collect();
        // A chunk's four tap vectors (gathered) to its 24 output bytes, packed in a 32-byte
        // array (bytes 0..12 and 16..28).
        let finish = |[top_lo, top_hi, bottom_lo, bottom_hi]: [__m256i; 4], chunk: &Chunk| {
            let Chunk { fx, fy, .. } = *chunk;
            // The low 32 bits of each 64-bit lane (one pixel's r, g, b), in pixel order.
            let narrow = |a: __m256i, b: __m256i| {
                let m = _mm256_castps_si256(_mm256_shuffle_ps::<0b10_00_10_00>(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b)));
                _mm256_permute4x64_epi64::<0b11_01_10_00>(m)
            };
            // The left and right pixel of each pair; mirrored, x0 is the right one.
            let pair = |lo: __m256i, hi: __m256i| {
                let (left, right) = (narrow(lo, hi), narrow(_mm256_srli_epi64::<24>(lo), _mm256_srli_epi64::<24>(hi)));
                if flip { (right, left) } else { (left, right) }
            };
            let ((top0, top1), (bottom0, bottom1)) = (pair(top_lo, top_hi), pair(bottom_lo, bottom_hi));
            let taps = [
                (top0, _mm256_sub_ps(one, fx), _mm256_sub_ps(one, fy)),
                (top1, fx, _mm256_sub_ps(one, fy)),
                (bottom0, _mm256_sub_ps(one, fx), fy),
                (bottom1, fx, fy),
            ];
            let mut packed = _mm256_setzero_si256();
            for (c, channel) in channels.iter().enumerate() {
                let shift = _mm_cvtsi32_si128(8 * c as i32);
                let mut acc = zero;
                for &(t, wx, wy) in &taps {
                    let v = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(t, *channel));
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(v, wx), wy));
                }
                // `round_to_u8` on values >= 0: truncate, then up by one from .5.
                let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(acc);
                let up = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_sub_ps(acc, t), half), one);
                let r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(t, up), zero), top);
                packed = _mm256_or_si256(packed, _mm256_sll_epi32(_mm256_cvttps_epi32(r), shift));
            }
            let mut bytes = [0u8; 32];
            // SAFETY: a 32-byte store into a 32-byte array.
            unsafe { _mm256_storeu_si256(bytes.as_mut_ptr().cast(), _mm256_shuffle_epi8(packed, pack)) };
            bytes
        };
        // One chunk at output pixel `x` of `row`: gathered when inside, else per tap with
        // bounds checks (the border, or the image's last pixel).
        let chunk = |row: &mut [u8], x: usize, chunk: &Chunk| {
            if chunk.inside {
                // SAFETY: the chunk is inside (its offsets checked against `last`).
                put(row, x, finish(unsafe { gather(src, chunk.base, stride) }, chunk));
                return;
            }
            let (mut fxs, mut fys, mut x0s, mut y0s) = ([0.0f32; CHUNK], [0.0f32; CHUNK], [0.0f64; CHUNK], [0.0f64; CHUNK]);
            // SAFETY: each store writes 8 `f32` or 4 `f64` inside its array.
            unsafe {
                _mm256_storeu_ps(fxs.as_mut_ptr(), chunk.fx);
                _mm256_storeu_ps(fys.as_mut_ptr(), chunk.fy);
                _mm256_storeu_pd(x0s.as_mut_ptr(), chunk.x0[0]);
                _mm256_storeu_pd(x0s.as_mut_ptr().add(4), chunk.x0[1]);
                _mm256_storeu_pd(y0s.as_mut_ptr(), chunk.y0[0]);
                _mm256_storeu_pd(y0s.as_mut_ptr().add(4), chunk.y0[1]);
            }
            for i in 0..CHUNK {
                let acc = border_pixel(src, w, wf, hf, flip, (x0s[i], y0s[i]), (fxs[i], fys[i]));
                for (d, a) in row[(x + i) * 3..][..3].iter_mut().zip(acc) {
                    *d = round_to_u8(a);
                }
            }
        };
        for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
            let dy = y as f64 + 0.5 - cy;
            let (sin_dy, cos_dy) = (sin * dy, cos * dy);
            let map = |x: usize| {
                let dx = x as f64 + 0.5 - cx;
                (cos * dx - sin * dy + cx - 0.5, sin * dx + cos * dy + cy - 0.5)
            };
            // One chunk's geometry: its weights, its gather offsets, and whether all its taps
            // are inside the image (`inside`); the floors for the border path.
            let prepare = |x: usize| {
                let (sx0, sy0, x00, y00) = map4(&cos_dx[x..x + 4], &sin_dx[x..x + 4], (cx, cy), (sin_dy, cos_dy));
                let (sx1, sy1, x01, y01) = map4(&cos_dx[x + 4..x + 8], &sin_dx[x + 4..x + 8], (cx, cy), (sin_dy, cos_dy));
                let fx = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(sx1, x01)), _mm256_cvtpd_ps(_mm256_sub_pd(sx0, x00)));
                let fy = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(sy1, y01)), _mm256_cvtpd_ps(_mm256_sub_pd(sy0, y00)));
                // The floors are whole numbers; one outside i32 becomes i32::MIN, which fails
                // the range checks below like any other value outside the image.
                let xi = _mm256_set_m128i(_mm256_cvttpd_epi32(x01), _mm256_cvttpd_epi32(x00));
                let yi = _mm256_set_m128i(_mm256_cvttpd_epi32(y01), _mm256_cvttpd_epi32(y00));
                let left = if flip { _mm256_sub_epi32(x_last, xi) } else { xi };
                let base = _mm256_add_epi32(_mm256_mullo_epi32(yi, row_bytes), _mm256_add_epi32(left, _mm256_add_epi32(left, left)));
                // All taps inside: 0 <= x0 <= w - 2 and 0 <= y0 <= h - 2 (unsigned, so negative
                // values fail too), and the 8-byte reads end inside `src` (`last`).
                let within = |v: __m256i, max: __m256i| _mm256_cmpeq_epi32(_mm256_min_epu32(v, max), v);
                let checks = _mm256_and_si256(
                    _mm256_and_si256(within(xi, x_last), within(yi, y_last)),
                    _mm256_cmpeq_epi32(_mm256_min_epi32(base, last), base),
                );
                let inside = pairs && _mm256_movemask_epi8(checks) == -1;
                Chunk { fx, fy, base, inside, x0: [x00, x01], y0: [y00, y01] }
            };
            let mut x = 0;
            // Two chunks at a time when both are inside: both chunks' gathers go out before
            // either's arithmetic, so that the second's load latency overlaps the first's work.
            while x + 2 * CHUNK <= w {
                let (a, b) = (prepare(x), prepare(x + CHUNK));
                if a.inside && b.inside {
                    // SAFETY: both chunks are inside (their offsets checked against `last`).
                    let (taps_a, taps_b) = unsafe { (gather(src, a.base, stride), gather(src, b.base, stride)) };
                    put(row, x, finish(taps_a, &a));
                    put(row, x + CHUNK, finish(taps_b, &b));
                } else {
                    chunk(row, x, &a);
                    chunk(row, x + CHUNK, &b);
                }
                x += 2 * CHUNK;
            }
            while x + CHUNK <= w {
                chunk(row, x, &prepare(x));
                x += CHUNK;
            }
            super::row_tail(src, w, flip, row, x, map);
        }
        out
    }

    /// One chunk of output pixels, prepared: weights, the byte offsets of its upper taps,
    /// whether every tap is inside the image, and the floors (for the border path).
    struct Chunk {
        fx: __m256,
        fy: __m256,
        base: __m256i,
        inside: bool,
        x0: [__m256d; 2],
        y0: [__m256d; 2],
    }

    /// The pairs of taps of a chunk's eight pixels, eight bytes each (pixels x0 and x0 + 1),
    /// four pixels a gather: the upper row's (pixels 0..4, 4..8), then the lower row's.
    ///
    /// # Safety
    /// AVX2; every offset in `base`, and each plus `stride` (a row), has 8 bytes of `src` after it.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn gather(src: &[u8], base: __m256i, stride: __m128i) -> [__m256i; 4] {
        let p = src.as_ptr().cast::<i64>();
        let (lo, hi) = (_mm256_castsi256_si128(base), _mm256_extracti128_si256::<1>(base));
        // SAFETY: in bounds, as the caller guarantees.
        unsafe {
            [
                _mm256_i32gather_epi64::<1>(p, lo),
                _mm256_i32gather_epi64::<1>(p, hi),
                _mm256_i32gather_epi64::<1>(p, _mm_add_epi32(lo, stride)),
                _mm256_i32gather_epi64::<1>(p, _mm_add_epi32(hi, stride)),
            ]
        }
    }

    /// Stores a chunk's 24 bytes (`finish`'s bytes 0..12 and 16..28) at output pixel `x`.
    #[inline(always)]
    fn put(row: &mut [u8], x: usize, bytes: [u8; 32]) {
        row[x * 3..][..12].copy_from_slice(&bytes[..12]);
        row[x * 3 + 12..][..12].copy_from_slice(&bytes[16..28]);
    }

    /// `map(x + i)` for `i` in 0..4 from those columns' `cos * dx` and `sin * dx` (four each),
    /// in the same `f64` operations, and the floors: (sx, sy, floor(sx), floor(sy)).
    #[target_feature(enable = "avx2")]
    fn map4(cos_dx: &[f64], sin_dx: &[f64], (cx, cy): (f64, f64), (sin_dy, cos_dy): (f64, f64)) -> (__m256d, __m256d, __m256d, __m256d) {
        assert!(cos_dx.len() == 4 && sin_dx.len() == 4);
        // SAFETY: four `f64`s each (asserted); unaligned loads.
        let (cos_dx, sin_dx) = unsafe { (_mm256_loadu_pd(cos_dx.as_ptr()), _mm256_loadu_pd(sin_dx.as_ptr())) };
        let half = _mm256_set1_pd(0.5);
        let sx = _mm256_sub_pd(_mm256_add_pd(_mm256_sub_pd(cos_dx, _mm256_set1_pd(sin_dy)), _mm256_set1_pd(cx)), half);
        let sy = _mm256_sub_pd(_mm256_add_pd(_mm256_add_pd(sin_dx, _mm256_set1_pd(cos_dy)), _mm256_set1_pd(cy)), half);
        (sx, sy, _mm256_floor_pd(sx), _mm256_floor_pd(sy))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::borrow::Cow;

    use super::{rotate, round_to_u8, run};
    use crate::data::augment::geometry::hflip;
    use crate::data::augment::pixels::{Img, Pixels};
    use crate::rng::SplitMix64;

    /// The first, straightforward rotation (per-pixel closures), kept as the reference that
    /// `run` must match bit for bit.
    pub(in crate::data::augment) fn rotate_reference<'a>(img: &Img<'_>, degrees: f64) -> Img<'a> {
        let (w, h) = (img.w, img.h);
        let (sin, cos) = degrees.to_radians().sin_cos();
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        let sample = |x: usize, y: usize, get: &dyn Fn(usize, usize) -> [f32; 3]| -> [f32; 3] {
            let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            // Inverse map: destination → source (y grows downwards).
            let sx = cos * dx - sin * dy + cx - 0.5;
            let sy = sin * dx + cos * dy + cy - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            let mut acc = [0.0f32; 3];
            for (oy, wy) in [(0.0, 1.0 - fy), (1.0, fy)] {
                for (ox, wx) in [(0.0, 1.0 - fx), (1.0, fx)] {
                    let (px, py) = (x0 + ox, y0 + oy);
                    if px < 0.0 || py < 0.0 || px >= w as f64 || py >= h as f64 {
                        continue;
                    }
                    let v = get(px as usize, py as usize);
                    for c in 0..3 {
                        acc[c] += v[c] * wx * wy;
                    }
                }
            }
            acc
        };
        let px = match &img.px {
            Pixels::U8(b) => {
                let get = |x: usize, y: usize| {
                    let i = (y * w + x) * 3;
                    [b[i] as f32, b[i + 1] as f32, b[i + 2] as f32]
                };
                let mut out = Vec::with_capacity(w * h * 3);
                for y in 0..h {
                    for x in 0..w {
                        let v = sample(x, y, &get);
                        out.extend(v.map(|c| c.round().clamp(0.0, 255.0) as u8));
                    }
                }
                Pixels::U8(Cow::Owned(out))
            }
            Pixels::F32(v) => {
                let get = |x: usize, y: usize| {
                    let i = (y * w + x) * 3;
                    [v[i], v[i + 1], v[i + 2]]
                };
                let mut out = Vec::with_capacity(w * h * 3);
                for y in 0..h {
                    for x in 0..w {
                        out.extend(sample(x, y, &get));
                    }
                }
                Pixels::F32(out)
            }
        };
        Img { w, h, px }
    }

    #[test]
    fn rotation_matches_the_first_version_bit_for_bit() {
        let mut rng = SplitMix64::new(11);
        for (w, h) in [(1, 1), (2, 3), (7, 5), (9, 2), (31, 17), (64, 64), (40, 90), (17, 300), (380, 380)] {
            let bytes: Vec<u8> = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
            let floats: Vec<f32> = (0..w * h * 3).map(|_| rng.next_f64() as f32).collect();
            for degrees in [0.25, -3.0, 10.0, 45.0, 90.0, -137.5, rng.uniform(-180.0, 180.0)] {
                let images = [Img { w, h, px: Pixels::U8(Cow::Borrowed(&bytes)) }, Img { w, h, px: Pixels::F32(floats.clone()) }];
                for img in &images {
                    for flip in [false, true] {
                        // The reference mirrors a copy first, then rotates it.
                        let mut mirrored = Img { w, h, px: copy(&img.px) };
                        if flip {
                            hflip(&mut mirrored);
                        }
                        let (got, want) = (rotate(img, degrees, flip), rotate_reference(&mirrored, degrees));
                        let same = match (&got.px, &want.px) {
                            (Pixels::U8(a), Pixels::U8(b)) => a == b,
                            (Pixels::F32(a), Pixels::F32(b)) => a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()),
                            _ => false,
                        };
                        assert!(same, "{w}x{h} by {degrees} degrees, flip {flip}");
                        // `u8` images take the gathers where the CPU has AVX2: the generic
                        // chunks (what other CPUs run) must give the same bytes.
                        if let (Pixels::U8(src), Pixels::U8(want)) = (&img.px, &want.px) {
                            let generic = run(&src[..], w, h, degrees, flip);
                            assert!(generic == **want, "{w}x{h} by {degrees} degrees, flip {flip}, generic u8 path");
                        }
                    }
                }
            }
        }
    }

    fn copy<'a>(px: &Pixels<'_>) -> Pixels<'a> {
        match px {
            Pixels::U8(b) => Pixels::U8(Cow::Owned(b.to_vec())),
            Pixels::F32(v) => Pixels::F32(v.clone()),
        }
    }

    #[test]
    fn rounding_to_bytes_is_f32_round_then_clamp() {
        let round = |c: f32| c.round().clamp(0.0, 255.0) as u8;
        // Every multiple of 1/4096 over the byte range and past it, each with its two
        // neighbouring floats (around the .5 boundaries among them), then special values.
        let steps = (-4 * 4096..=260 * 4096).map(|i| i as f32 / 4096.0);
        let near = steps.flat_map(|c| [c, f32::from_bits(c.to_bits().wrapping_sub(1)), f32::from_bits(c.to_bits() + 1)]);
        let special = [0.0, -0.0, 0.5, 254.5, 255.5, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE];
        for c in near.chain(special) {
            assert_eq!(round_to_u8(c), round(c), "{c:e} ({:#x})", c.to_bits());
        }
    }

    #[test]
    fn a_quarter_turn_moves_pixels_where_a_quarter_turn_should() {
        // Counter-clockwise by 90 degrees: source (x, y) lands at (y, w - 1 - x) on a square.
        let n = 6;
        let src: Vec<u8> = (0..n * n * 3).map(|i| (i * 5 % 251) as u8).collect();
        let img = Img { w: n, h: n, px: Pixels::U8(Cow::Borrowed(&src)) };
        let rotated = rotate(&img, 90.0, false);
        let Pixels::U8(out) = &rotated.px else { panic!("u8 in, u8 out") };
        for y in 0..n {
            for x in 0..n {
                let (dx, dy) = (y, n - 1 - x);
                assert_eq!(out[(dy * n + dx) * 3..][..3], src[(y * n + x) * 3..][..3], "source pixel ({x}, {y})");
            }
        }
    }
}
