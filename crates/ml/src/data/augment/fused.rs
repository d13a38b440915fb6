//! The epoch-time hot path: HWC `u8` pixels (a shard image, or a resized crop of one) to CHW
//! `f32` planes, with an optional mirror and every pending pointwise op applied on the way, in
//! one pass that writes each output value once.
//!
//! Why a separate kernel: the general path writes the planes, then makes one pass over them per
//! op (brightness, contrast, saturation, normalise), then a copy for a mirror. At 224×224 that
//! is six trips through 600 KB, and the de-interleaving table lookups do not vectorise. Here
//! pixels go through in blocks of [`LANES`]: a block is de-interleaved into three small arrays,
//! then each half of it (8 lanes per channel, three AVX registers) runs through every op and is
//! stored without leaving registers (the compiler vectorises the fixed-size loops).
//! A contrast op needs the grey mean of the image as it stands just before it, so the ops
//! split there: the pass before a contrast sums what it writes, and a second pass takes the
//! planes up again (still in L2 at 224×224) once the mean is known.
//!
//! The results are bit-identical to the general path (a test checks this): the same `f32`
//! operations in the same order per value, `v / 255` correctly rounded as the table has it, and
//! the contrast means summed in `plane_mean`'s 16-lane order. With AVX2 and FMA present the
//! same code is compiled a second time for them, with a shuffle-based block load; FMA is used
//! only inside that load's exact `v / 255` (no division), never to contract the ops, so both
//! builds agree.

use std::mem::MaybeUninit;

use super::point::{self, PointOp};

/// Pixels per block; equal to `plane_mean`'s lane count, so means are summed in its order.
const LANES: usize = 16;

/// Lanes the ops run on at a time: one AVX register per channel.
const HALF: usize = LANES / 2;

/// How far ahead of the current block the source is prefetched, in bytes: over a row of a
/// 224-wide image, so a mirrored row (read backwards) is in cache before it starts.
const PREFETCH_AHEAD: usize = 1024;

/// One block of pixels as three channel arrays on the tensor scale.
struct Block {
    c: [[f32; LANES]; 3],
}

/// A pointwise op ready to run: contrast carries its offset, `mean * (1 - factor)`.
#[derive(Clone, Copy)]
enum Ready {
    Brightness(f32),
    Contrast { factor: f32, offset: f32 },
    Saturation(f32),
    Normalize { mean: [f32; 3], inv_std: [f32; 3] },
}

/// Writes `src` (HWC, `w × h`, mirrored left-right when `flip`) with `ops` applied as CHW
/// planes into `out` (`3 * w * h` values), every value once at least, and returns `out` as
/// initialised.
pub(super) fn emit<'o>(src: &[u8], w: usize, h: usize, flip: bool, ops: &[PointOp], out: &'o mut [MaybeUninit<f32>]) -> &'o mut [f32] {
    debug_assert_eq!(src.len(), w * h * 3);
    debug_assert_eq!(out.len(), w * h * 3);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        unsafe { x86::emit_avx2(src, w, h, flip, ops, out) };
    } else {
        emit_with::<ScalarLoad>(src, w, h, flip, ops, out);
    }
    #[cfg(not(target_arch = "x86_64"))]
    emit_with::<ScalarLoad>(src, w, h, flip, ops, out);
    // SAFETY: `emit_with`'s first pass stores every value of the three planes, which are
    // `out` split in three.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// The portable build of [`emit`], for testing it on machines that take the AVX2 one.
#[cfg(test)]
fn emit_portable<'o>(src: &[u8], w: usize, h: usize, flip: bool, ops: &[PointOp], out: &'o mut [MaybeUninit<f32>]) -> &'o mut [f32] {
    emit_with::<ScalarLoad>(src, w, h, flip, ops, out);
    // SAFETY: as in `emit`.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// How a full block of 16 consecutive source pixels (48 bytes) becomes three channel arrays,
/// optionally in reverse pixel order.
trait LoadBlock {
    fn load(bytes: &[u8; 3 * LANES], reverse: bool, block: &mut Block);

    /// A hint that `src[at..]` will be read soon (ignored past the end).
    #[inline(always)]
    fn prefetch(_src: &[u8], _at: usize) {}
}

/// Portable: byte by byte.
struct ScalarLoad;

impl LoadBlock for ScalarLoad {
    #[inline(always)]
    fn load(s: &[u8; 3 * LANES], reverse: bool, block: &mut Block) {
        for i in 0..LANES {
            let j = if reverse { LANES - 1 - i } else { i };
            for c in 0..3 {
                block.c[c][i] = s[3 * j + c] as f32 / 255.0;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Block, LANES, LoadBlock, MaybeUninit, PointOp, emit_with};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn emit_avx2(src: &[u8], w: usize, h: usize, flip: bool, ops: &[PointOp], out: &mut [MaybeUninit<f32>]) {
        emit_with::<ShuffleLoad>(src, w, h, flip, ops, out);
    }

    /// `pshufb` masks that gather channel `c` of 16 pixels (in order, or reversed) from the
    /// three 16-byte registers holding 48 interleaved bytes: `MASKS[reverse][c][register]`,
    /// 0x80 where a lane comes from another register.
    const MASKS: [[[[u8; 16]; 3]; 3]; 2] = {
        let mut m = [[[[0x80u8; 16]; 3]; 3]; 2];
        let mut reverse = 0;
        while reverse < 2 {
            let mut c = 0;
            while c < 3 {
                let mut i = 0;
                while i < LANES {
                    let j = if reverse == 1 { LANES - 1 - i } else { i };
                    let byte = 3 * j + c;
                    m[reverse][c][byte / 16][i] = (byte % 16) as u8;
                    i += 1;
                }
                c += 1;
            }
            reverse += 1;
        }
        m
    };

    struct ShuffleLoad;

    impl LoadBlock for ShuffleLoad {
        #[inline(always)]
        fn load(bytes: &[u8; 3 * LANES], reverse: bool, block: &mut Block) {
            // SAFETY: only instantiated inside `emit_avx2`, which requires AVX2 and FMA.
            unsafe { load_avx2(bytes, reverse, block) }
        }

        #[inline(always)]
        fn prefetch(src: &[u8], at: usize) {
            if at < src.len() {
                // SAFETY: a prefetch of an in-bounds address; it has no other effect.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(src.as_ptr().add(at).cast()) };
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn load_avx2(bytes: &[u8; 3 * LANES], reverse: bool, block: &mut Block) {
        let p = bytes.as_ptr().cast::<__m128i>();
        // SAFETY: `bytes` is 48 bytes long; unaligned loads.
        let regs = unsafe { [_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)), _mm_loadu_si128(p.add(2))] };
        let masks = &MASKS[reverse as usize];
        // v / 255 without a division (a third of this kernel's time): q = v * RN(1/255), then
        // one Markstein correction with the exact FMA residual v - 255 q. For the 256 possible
        // v this gives the correctly rounded quotient, i.e. exactly `v as f32 / 255.0` (a test
        // checks all of them); the FMAs stay inside this conversion.
        let unit = |v: __m256| {
            let (k, d) = (_mm256_set1_ps(1.0 / 255.0), _mm256_set1_ps(255.0));
            let q = _mm256_mul_ps(v, k);
            _mm256_fmadd_ps(_mm256_fnmadd_ps(q, d, v), k, q)
        };
        for (c, out) in block.c.iter_mut().enumerate() {
            let mut lanes = _mm_setzero_si128();
            for (k, reg) in regs.iter().enumerate() {
                // SAFETY: each mask is 16 bytes; unaligned load.
                let mask = unsafe { _mm_loadu_si128(masks[c][k].as_ptr().cast()) };
                lanes = _mm_or_si128(lanes, _mm_shuffle_epi8(*reg, mask));
            }
            // u8 → i32 → f32, then divided by 255 exactly as the scalar `v as f32 / 255.0`.
            let lo = unit(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lanes)));
            let hi = unit(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(lanes))));
            // SAFETY: `out` holds 16 f32s; unaligned stores.
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr(), lo);
                _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
            }
        }
    }
}

#[inline(always)]
fn emit_with<L: LoadBlock>(src: &[u8], w: usize, h: usize, flip: bool, ops: &[PointOp], out: &mut [MaybeUninit<f32>]) {
    let plane = w * h;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let mut planes = [r, g, b];
    // The ops split at each contrast: one pass per segment. The first pass reads the source;
    // a pass that ends at a contrast also sums the planes it writes, and the next pass picks
    // the planes up again (from L2 at 224x224) with that contrast's offset known.
    let mut segment = Vec::with_capacity(ops.len());
    let mut from_source = true;
    for op in ops {
        match *op {
            PointOp::Brightness(f) => segment.push(Ready::Brightness(f)),
            PointOp::Saturation(f) => segment.push(Ready::Saturation(f)),
            PointOp::Normalize { mean, inv_std } => segment.push(Ready::Normalize { mean, inv_std }),
            PointOp::Contrast(factor) => {
                let means = pass::<L>(src, w, flip, from_source, &segment, true, &mut planes);
                segment.clear();
                segment.push(Ready::Contrast { factor, offset: point::contrast_offset(means, factor) });
                from_source = false;
            }
        }
    }
    pass::<L>(src, w, flip, from_source, &segment, false, &mut planes);
}

/// One pass over the image: each block comes from the source (`from_source`) or from the
/// planes, goes through `ops` and is stored back. The first pass must be from the source: it
/// initialises every value, which later passes read. With `sum`, returns the per-channel means of
/// what was stored, summed exactly as `plane_mean` sums a plane (16 lane accumulators over
/// the full blocks, then the lanes in order, plus the tail added in order).
#[inline(always)]
fn pass<L: LoadBlock>(
    src: &[u8],
    w: usize,
    flip: bool,
    from_source: bool,
    ops: &[Ready],
    sum: bool,
    planes: &mut [&mut [MaybeUninit<f32>]; 3],
) -> [f32; 3] {
    let plane = planes[0].len();
    let mut acc = [[0.0f32; LANES]; 3];
    let mut block = Block { c: [[0.0; LANES]; 3] };
    let full = plane - plane % LANES;
    let mut p = 0;
    while p < full {
        if from_source {
            L::prefetch(src, 3 * p + PREFETCH_AHEAD);
            load::<L>(src, w, p, LANES, flip, &mut block);
        }
        // Half a block at a time (8 lanes per channel, three AVX registers): load, every op,
        // store and sum without the values leaving registers.
        for half in 0..2 {
            let lanes = half * HALF..(half + 1) * HALF;
            let mut c: [[f32; HALF]; 3] = if from_source {
                std::array::from_fn(|ch| block.c[ch][lanes.clone()].try_into().expect("half block"))
            } else {
                std::array::from_fn(|ch| {
                    let stored: &[MaybeUninit<f32>; HALF] = planes[ch][p + lanes.start..p + lanes.end].try_into().expect("half in bounds");
                    // SAFETY: an earlier pass from the source stored every value; same layout.
                    unsafe { std::mem::transmute_copy(stored) }
                })
            };
            run_half(ops, &mut c);
            for (plane, values) in planes.iter_mut().zip(&c) {
                let dst: &mut [MaybeUninit<f32>; HALF] = (&mut plane[p + lanes.start..p + lanes.end]).try_into().expect("half in bounds");
                // SAFETY: `[f32; 8]` and `[MaybeUninit<f32>; 8]` have the same layout. (An
                // element-wise `MaybeUninit::new` compiled to scalar stores.)
                *dst = unsafe { std::mem::transmute_copy(values) };
            }
            if sum {
                for (acc, values) in acc.iter_mut().zip(&c) {
                    for (a, v) in acc[lanes.clone()].iter_mut().zip(values) {
                        *a += v;
                    }
                }
            }
        }
        p += LANES;
    }
    let mut tail = [0.0f32; 3];
    if full < plane {
        let n = plane - full;
        if from_source {
            load::<L>(src, w, full, n, flip, &mut block);
        } else {
            for (values, plane) in block.c.iter_mut().zip(planes.iter()) {
                for (v, stored) in values.iter_mut().zip(&plane[full..]) {
                    // SAFETY: an earlier pass from the source stored every value.
                    *v = unsafe { stored.assume_init() };
                }
            }
        }
        run(ops, &mut block);
        for ((plane, values), t) in planes.iter_mut().zip(&block.c).zip(&mut tail) {
            for (dst, v) in plane[full..].iter_mut().zip(&values[..n]) {
                dst.write(*v);
            }
            *t = values[..n].iter().sum();
        }
    }
    if !sum || plane == 0 {
        return [0.0; 3];
    }
    std::array::from_fn(|c| (acc[c].iter().sum::<f32>() + tail[c]) / plane as f32)
}

/// Loads pixels `p .. p + n` of the output (row-major), on the `[0, 1]` scale.
#[inline(always)]
fn load<L: LoadBlock>(src: &[u8], w: usize, p: usize, n: usize, flip: bool, block: &mut Block) {
    let unit = |v: u8| v as f32 / 255.0;
    let x = p % w;
    if n == LANES && !flip {
        // Unmirrored output pixels are the source pixels in order, across rows too.
        L::load(src[3 * p..3 * (p + LANES)].try_into().expect("block in bounds"), false, block);
    } else if n == LANES && x + LANES <= w {
        // Mirrored, within one row: a contiguous source run read backwards.
        let first = p - x + (w - x - LANES);
        L::load(src[3 * first..3 * (first + LANES)].try_into().expect("block in bounds"), true, block);
    } else {
        for i in 0..n {
            let (y, x) = ((p + i) / w, (p + i) % w);
            let sx = if flip { w - 1 - x } else { x };
            let o = 3 * (y * w + sx);
            for c in 0..3 {
                block.c[c][i] = unit(src[o + c]);
            }
        }
    }
}

/// Runs `ops` on a block (the tail of a plane), half by half.
#[inline(always)]
fn run(ops: &[Ready], block: &mut Block) {
    for half in 0..2 {
        let lanes = half * HALF..(half + 1) * HALF;
        let mut c: [[f32; HALF]; 3] = std::array::from_fn(|ch| block.c[ch][lanes.clone()].try_into().expect("half block"));
        run_half(ops, &mut c);
        for (dst, values) in block.c.iter_mut().zip(&c) {
            dst[lanes.clone()].copy_from_slice(values);
        }
    }
}

/// Runs `ops` on 8 lanes of each channel, with the arithmetic of `apply_point_ops` (both call
/// `point`). The lanes are three AVX registers; they stay in registers from one op to the next.
#[inline(always)]
fn run_half(ops: &[Ready], c: &mut [[f32; HALF]; 3]) {
    let [r, g, b] = c;
    for op in ops {
        match *op {
            Ready::Brightness(f) => {
                for ch in [&mut *r, &mut *g, &mut *b] {
                    for v in ch.iter_mut() {
                        *v = point::brightness(*v, f);
                    }
                }
            }
            Ready::Contrast { factor, offset } => {
                for ch in [&mut *r, &mut *g, &mut *b] {
                    for v in ch.iter_mut() {
                        *v = point::contrast(*v, factor, offset);
                    }
                }
            }
            Ready::Saturation(f) => {
                for i in 0..HALF {
                    [r[i], g[i], b[i]] = point::saturation([r[i], g[i], b[i]], f);
                }
            }
            Ready::Normalize { mean, inv_std } => {
                for (c, ch) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
                    for v in ch.iter_mut() {
                        *v = point::normalize(*v, mean[c], inv_std[c]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::data::augment::geometry::hflip;
    use crate::data::augment::pixels::{Img, Pixels, as_uninit, planes};
    use crate::data::augment::point::apply_point_ops;
    use crate::rng::SplitMix64;

    /// The general path on a `u8` image: mirror, planes (each byte divided by 255), then one
    /// pass per op.
    fn reference(src: &[u8], w: usize, h: usize, flip: bool, ops: &[PointOp]) -> Vec<f32> {
        let mut img = Img { w, h, px: Pixels::U8(Cow::Borrowed(src)) };
        if flip {
            hflip(&mut img);
        }
        let Pixels::U8(bytes) = &img.px else { unreachable!("a mirrored u8 image stays u8") };
        let mut out = vec![0.0; 3 * w * h];
        let [r, g, b] = planes(&mut out, w * h);
        for (((r, g), b), s) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()).zip(bytes.chunks_exact(3)) {
            (*r, *g, *b) = (s[0] as f32 / 255.0, s[1] as f32 / 255.0, s[2] as f32 / 255.0);
        }
        apply_point_ops(ops, &mut out, w * h);
        out
    }

    type Emit = for<'o> fn(&[u8], usize, usize, bool, &[PointOp], &'o mut [MaybeUninit<f32>]) -> &'o mut [f32];

    /// The build this CPU takes (AVX2 + FMA where present) and the portable one.
    const EMITTERS: [(&str, Emit); 2] = [("dispatched", emit), ("portable", emit_portable)];

    fn random_ops(rng: &mut SplitMix64) -> Vec<PointOp> {
        let mut ops: Vec<PointOp> = (0..rng.below(5))
            .map(|_| {
                let f = rng.uniform(0.3, 1.8) as f32;
                match rng.below(3) {
                    0 => PointOp::Brightness(f),
                    1 => PointOp::Contrast(f),
                    _ => PointOp::Saturation(f),
                }
            })
            .collect();
        if rng.below(2) == 1 {
            ops.push(PointOp::Normalize { mean: [0.485, 0.456, 0.406], inv_std: [1.0 / 0.229, 1.0 / 0.224, 1.0 / 0.225] });
        }
        ops
    }

    #[test]
    fn fused_emitter_is_bit_identical_to_the_general_path() {
        let mut rng = SplitMix64::new(7);
        let sizes = [(1, 1), (7, 5), (16, 1), (17, 3), (15, 2), (33, 9), (64, 48), (224, 224), (96, 128)];
        let mut contrasts = 0;
        for (case, &(w, h)) in sizes.iter().cycle().take(60).enumerate() {
            let src: Vec<u8> = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
            let ops = random_ops(&mut rng);
            contrasts += ops.iter().filter(|op| matches!(op, PointOp::Contrast(_))).count();
            for flip in [false, true] {
                let want = reference(&src, w, h, flip, &ops);
                for (build, emit) in EMITTERS {
                    let mut got = vec![f32::NAN; 3 * w * h];
                    emit(&src, w, h, flip, &ops, as_uninit(&mut got));
                    let differ = want.iter().zip(&got).position(|(a, b)| a.to_bits() != b.to_bits());
                    assert_eq!(differ, None, "case {case}: {build} build, {w}x{h}, flip {flip}, ops {ops:?}");
                }
            }
        }
        assert!(contrasts >= 10, "the cases must exercise contrast means ({contrasts})");
    }

    #[test]
    fn fused_emitter_converts_every_byte_value_exactly() {
        // 16 x 16 pixels whose three channels run through all 256 values (in three orders).
        let src: Vec<u8> = (0..256usize).flat_map(|v| [v as u8, (255 - v) as u8, (v * 7 % 256) as u8]).collect();
        for flip in [false, true] {
            let want = reference(&src, 16, 16, flip, &[]);
            for (build, emit) in EMITTERS {
                let mut got = vec![f32::NAN; 3 * 256];
                emit(&src, 16, 16, flip, &[], as_uninit(&mut got));
                assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{build} build, flip {flip}");
            }
        }
    }
}
