//! Depthwise convolution on f32 planes: forward, input gradient and weight gradient.
//!
//! Layout: `x` `[N, C, H, W]` as `N·C` planes; plane `p` uses the `k × k` filter of channel
//! `p % C`. Padding is `k / 2` zeros on every side, dilation 1. Each output row takes its `k²`
//! taps as row-wise multiply-adds over the columns where the tap lands inside the image, so the
//! borders need no per-pixel test. The forward and the input gradient run one rayon task per
//! group of planes; the weight gradient one per channel (or group of eight channels), summing
//! its planes in batch order, so results do not depend on the thread count. Planes narrower
//! than a register block go through the forward eight at a time, interleaved (see
//! [`interleaved`]); the weight gradient and the stride-2 input gradient take eight channels at
//! a time at every plane size when the channel count is a multiple of eight (see
//! [`grouped_weight_grad`] and [`input_grad_grouped`]). Each keeps the bits of the plane kernel.

use std::ops::Range;

/// Geometry of one square convolution with padding `k / 2`: depthwise here, dense in `dense.rs`
/// (where `channels` are the input channels).
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub out_height: usize,
    pub out_width: usize,
}

impl Geometry {
    pub fn new(x: [usize; 4], kernel: usize, stride: usize) -> Geometry {
        let [batch, channels, height, width] = x;
        let pad = kernel / 2;
        let out = |size: usize| (size + 2 * pad).saturating_sub(kernel) / stride + 1;
        Geometry { batch, channels, height, width, kernel, stride, out_height: out(height), out_width: out(width) }
    }

    fn pad(&self) -> usize {
        self.kernel / 2
    }

    pub fn in_plane(&self) -> usize {
        self.height * self.width
    }

    pub fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Length, along an axis of input size `size`, of a zero-padded copy of the input from which
    /// `outputs` outputs (from 0) read every tap without a bounds test: the image and `k / 2`
    /// zeros each side, or more where the last output's taps reach further (a kernel wider than
    /// the image, or outputs computed past the end in whole blocks).
    fn padded_len(&self, size: usize, outputs: usize) -> usize {
        (size + 2 * self.pad()).max((outputs.max(1) - 1) * self.stride + self.kernel)
    }

    /// Output positions `o` (along an axis of input size `size`, output size `out`) where tap
    /// `t` reads inside the image: `0 ≤ o·stride + t − pad < size`.
    fn valid(&self, t: usize, size: usize, out: usize) -> Range<usize> {
        let (s, pad) = (self.stride, self.pad());
        let lo = if t >= pad { 0 } else { (pad - t).div_ceil(s) };
        let hi = if size + pad <= t { 0 } else { ((size + pad - t - 1) / s + 1).min(out) };
        // Empty when the tap never lands inside (a kernel wider than a small image).
        lo.min(hi)..hi
    }

    pub(super) fn rows(&self, ky: usize) -> Range<usize> {
        self.valid(ky, self.height, self.out_height)
    }

    pub(super) fn cols(&self, kx: usize) -> Range<usize> {
        self.valid(kx, self.width, self.out_width)
    }

    /// Input index of output position `o` under tap `t` (`o` from [`Self::valid`]).
    pub(super) fn input(&self, o: usize, t: usize) -> usize {
        o * self.stride + t - self.pad()
    }
}

dispatch!(fn forward_plane(g: &Geometry, x: &[f32], filter: &[f32], out: &mut [f32], scratch: &mut PlaneScratch) -> () => forward_plane_impl);
dispatch!(fn input_grad_plane(g: &Geometry, grad: &[f32], filter: &[f32], dx: &mut [f32]) -> () => input_grad_plane_impl);
dispatch!(fn weight_grad_plane(g: &Geometry, x: &[f32], grad: &[f32], dw: &mut [f64], scratch: &mut Scratch) -> () => weight_grad_plane_impl);

/// `out` (one output plane) = the convolution of `x` (one input plane) by `filter`.
///
/// The plane is first copied into a zero-bordered scratch plane (see [`Padded`]), so every
/// output is an interior one: outputs go in blocks of [`BLOCK`] (half that for narrow planes)
/// whose sums stay in registers
/// across all `k²` taps, added in (ky, kx) order from zero.
#[inline(always)]
fn forward_plane_impl(g: &Geometry, x: &[f32], filter: &[f32], out: &mut [f32], scratch: &mut PlaneScratch) {
    // Narrow planes (the last stages at small inputs) take half blocks, not to compute
    // mostly padding.
    match (g.stride, g.kernel, g.out_width <= BLOCK / 2) {
        (1, 3, false) => forward_plane_strided::<1, 3, BLOCK>(g, x, filter, out, scratch),
        (1, 5, false) => forward_plane_strided::<1, 5, BLOCK>(g, x, filter, out, scratch),
        (2, 3, false) => forward_plane_strided::<2, 3, BLOCK>(g, x, filter, out, scratch),
        (2, 5, false) => forward_plane_strided::<2, 5, BLOCK>(g, x, filter, out, scratch),
        (1, 3, true) => forward_plane_strided::<1, 3, { BLOCK / 2 }>(g, x, filter, out, scratch),
        (1, 5, true) => forward_plane_strided::<1, 5, { BLOCK / 2 }>(g, x, filter, out, scratch),
        (2, 3, true) => forward_plane_strided::<2, 3, { BLOCK / 2 }>(g, x, filter, out, scratch),
        (2, 5, true) => forward_plane_strided::<2, 5, { BLOCK / 2 }>(g, x, filter, out, scratch),
        _ => forward_plane_strided::<0, 0, BLOCK>(g, x, filter, out, scratch),
    }
}

/// Outputs per register block: two AVX registers.
const BLOCK: usize = 16;

/// [`forward_plane_impl`] with the stride and kernel size constants (EfficientNet's four
/// cases, so the tap loops unroll), or read from `g` when `S` and `K` are 0.
#[inline(always)]
fn forward_plane_strided<const S: usize, const K: usize, const B: usize>(
    g: &Geometry,
    x: &[f32],
    filter: &[f32],
    out: &mut [f32],
    scratch: &mut PlaneScratch,
) {
    let s = if S == 0 { g.stride } else { S };
    let k = if K == 0 { g.kernel } else { K };
    let ow = g.out_width;
    // Stride 2 (a constant) reads the rows split into even and odd columns, so each tap's `B`
    // inputs are contiguous (vector loads instead of a gather). The values and the order of
    // the additions are the same either way.
    let split = S == 2;
    let padded = Padded::new(g, x, B, split, scratch);
    // Rows go [`ROWS`] at a time: each output's sum is one chain of `k²` dependent adds, so
    // one row's two registers would wait on add latency; four rows' eight chains keep the
    // adders busy. Each output still adds its taps in (ky, kx) order from zero.
    let full = g.out_height - g.out_height % ROWS;
    for oy in (0..full).step_by(ROWS) {
        output_rows::<S, K, B, ROWS>(g, &padded, filter, s, k, oy, &mut out[oy * ow..(oy + ROWS) * ow]);
    }
    for oy in full..g.out_height {
        output_rows::<S, K, B, 1>(g, &padded, filter, s, k, oy, &mut out[oy * ow..(oy + 1) * ow]);
    }
}

/// Output rows per register block of the forward.
const ROWS: usize = 4;

/// `R` output rows from `oy` (`out` holds them), in blocks of `B` columns.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_rows<const S: usize, const K: usize, const B: usize, const R: usize>(
    g: &Geometry,
    padded: &Padded,
    filter: &[f32],
    s: usize,
    k: usize,
    oy: usize,
    out: &mut [f32],
) {
    let ow = g.out_width;
    let split = S == 2;
    for ox in (0..ow).step_by(B) {
        let mut acc = [[0.0f32; B]; R];
        for ky in 0..k {
            for kx in 0..k {
                let a = filter[ky * k + kx];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let in_row = padded.row((oy + r) * s + ky);
                    if split {
                        let src = &in_row[(kx & 1) * padded.half + ox + (kx >> 1)..][..B];
                        for i in 0..B {
                            acc[i] += a * src[i];
                        }
                    } else {
                        let src = &in_row[ox * s + kx..][..(B - 1) * s + 1];
                        for i in 0..B {
                            acc[i] += a * src[i * s];
                        }
                    }
                }
            }
        }
        let n = B.min(ow - ox);
        for (r, acc) in acc.iter().enumerate() {
            out[r * ow + ox..][..n].copy_from_slice(&acc[..n]);
        }
    }
}

/// A plane copied into a scratch buffer with `k / 2` zero rows and columns before
/// it, and zeros after it far enough that a full block of outputs at any column reads inside
/// the buffer. Split, each row holds the padded row's even columns, then (from `half`) its odd
/// ones: padded column `c` is at `(c & 1)·half + c / 2`.
struct Padded<'a> {
    data: &'a [f32],
    width: usize,
    half: usize,
}

/// A rayon task's buffer for [`Padded`] planes, kept across its planes: every plane of one
/// geometry writes the same interior positions, so the zero border is written once, when the
/// layout changes, instead of a memset per plane.
#[derive(Default)]
pub(super) struct PlaneScratch {
    values: Vec<f32>,
    /// (row width, rows, split) of the layout `values` holds.
    layout: (usize, usize, bool),
}

impl Padded<'_> {
    /// Copies `x` into `scratch`.
    #[inline(always)]
    fn new<'s>(g: &Geometry, x: &[f32], block: usize, split: bool, scratch: &'s mut PlaneScratch) -> Padded<'s> {
        let pad = g.pad();
        let blocks = g.out_width.div_ceil(block);
        let mut width = g.padded_len(g.width, blocks * block);
        let height = g.padded_len(g.height, g.out_height);
        if split {
            // Each half is as long as a split read needs: `blocks·block + k / 2` values.
            width = width.div_ceil(2) * 2;
        }
        let half = width / 2;
        if scratch.layout != (width, height, split) || scratch.values.len() != width * height {
            scratch.values.clear();
            scratch.values.resize(width * height, 0.0);
            scratch.layout = (width, height, split);
        }
        let data = &mut scratch.values;
        for (y, row) in x.chunks_exact(g.width).enumerate() {
            let dst = &mut data[(y + pad) * width..][..width];
            if split {
                // Input column `i` is padded column `i + pad`. With `pad` even, the row's even
                // columns land in the even half from `pad / 2`; with `pad` odd, in the odd half.
                let (even, odd) = dst.split_at_mut(half);
                let h = pad / 2;
                if pad.is_multiple_of(2) {
                    deinterleave(row, &mut even[h..], &mut odd[h..]);
                } else {
                    deinterleave(row, &mut odd[h..], &mut even[h + 1..]);
                }
            } else {
                dst[pad..][..g.width].copy_from_slice(row);
            }
        }
        Padded { data, width, half }
    }

    #[inline(always)]
    fn row(&self, y: usize) -> &[f32] {
        &self.data[y * self.width..][..self.width]
    }
}

/// `first[j] = src[2j]` and `second[j] = src[2j + 1]`. Written as whole pairs, without a
/// branch per value, so it vectorises: the copy of a stride-2 layer's input (one value per
/// quarter output) was about a fifth of the depthwise forward's time as a per-value branch.
#[inline(always)]
fn deinterleave(src: &[f32], first: &mut [f32], second: &mut [f32]) {
    let pairs = src.len() / 2;
    let (first_pairs, second_pairs) = (&mut first[..pairs], &mut second[..pairs]);
    for (j, pair) in src.chunks_exact(2).enumerate() {
        first_pairs[j] = pair[0];
        second_pairs[j] = pair[1];
    }
    if src.len() % 2 == 1 {
        first[pairs] = src[src.len() - 1];
    }
}

/// `dx` (one input plane, zeroed) += the gradient reaching it from `grad` (one output plane).
#[inline(always)]
fn input_grad_plane_impl(g: &Geometry, grad: &[f32], filter: &[f32], dx: &mut [f32]) {
    let (k, w, ow) = (g.kernel, g.width, g.out_width);
    for oy in 0..g.out_height {
        let grad_row = &grad[oy * ow..(oy + 1) * ow];
        for ky in 0..k {
            if !g.rows(ky).contains(&oy) {
                continue;
            }
            let dx_row = &mut dx[g.input(oy, ky) * w..][..w];
            for kx in 0..k {
                let cols = g.cols(kx);
                if cols.is_empty() {
                    continue;
                }
                let a = filter[ky * k + kx];
                let src = &grad_row[cols.clone()];
                let start = g.input(cols.start, kx);
                if g.stride == 1 {
                    for (d, &v) in dx_row[start..start + cols.len()].iter_mut().zip(src) {
                        *d += a * v;
                    }
                } else {
                    for (j, &v) in src.iter().enumerate() {
                        dx_row[start + j * g.stride] += a * v;
                    }
                }
            }
        }
    }
}

/// `dw[tap]` += Σ over the plane of `grad · x` under that tap. For each tap row, the `k` column
/// taps accumulate in registers over blocks of [`WBLOCK`] outputs across the whole plane (f32
/// lanes), and go into `dw` in f64 once per plane.
#[inline(always)]
fn weight_grad_plane_impl(g: &Geometry, x: &[f32], grad: &[f32], dw: &mut [f64], scratch: &mut Scratch) {
    match (g.stride, g.kernel) {
        (1, 3) => weight_grad_plane_strided::<1, 3>(g, x, grad, dw, scratch),
        (1, 5) => weight_grad_plane_strided::<1, 5>(g, x, grad, dw, scratch),
        (2, 3) => weight_grad_plane_strided::<2, 3>(g, x, grad, dw, scratch),
        (2, 5) => weight_grad_plane_strided::<2, 5>(g, x, grad, dw, scratch),
        _ => weight_grad_plane_strided::<0, 0>(g, x, grad, dw, scratch),
    }
}

/// Outputs per block in the weight gradient: one AVX register per column tap.
const WBLOCK: usize = 8;
/// Largest kernel the register-blocked weight gradient takes (EfficientNet's is 5).
const MAX_KERNEL: usize = 7;

/// Buffers a rayon task reuses across its planes.
#[derive(Default)]
struct Scratch {
    padded: PlaneScratch,
    rows: Vec<f32>,
}

/// [`weight_grad_plane_impl`] with constant stride and kernel size, as in the forward.
#[inline(always)]
fn weight_grad_plane_strided<const S: usize, const K: usize>(g: &Geometry, x: &[f32], grad: &[f32], dw: &mut [f64], scratch: &mut Scratch) {
    let s = if S == 0 { g.stride } else { S };
    let k = if K == 0 { g.kernel } else { K };
    let (oh, ow) = (g.out_height, g.out_width);
    assert!(k <= MAX_KERNEL, "depthwise kernels up to {MAX_KERNEL} wide, got {k}");
    let blocks = ow.div_ceil(WBLOCK);
    let row_len = blocks * WBLOCK;
    // The gradient rows, zero-filled to whole blocks (zeros add nothing to the sums).
    let grad_rows = &mut scratch.rows;
    grad_rows.clear();
    grad_rows.resize(oh * row_len, 0.0);
    for (dst, src) in grad_rows.chunks_exact_mut(row_len).zip(grad.chunks_exact(ow)) {
        dst[..ow].copy_from_slice(src);
    }
    let padded = Padded::new(g, x, WBLOCK, false, &mut scratch.padded);
    for ky in 0..k {
        let mut acc = [[0.0f32; WBLOCK]; MAX_KERNEL];
        for oy in 0..oh {
            let in_row = padded.row(oy * s + ky);
            let grad_row = &grad_rows[oy * row_len..][..row_len];
            for b in 0..blocks {
                let ox = b * WBLOCK;
                let gs = &grad_row[ox..ox + WBLOCK];
                for (kx, lanes) in acc.iter_mut().enumerate().take(k) {
                    let src = &in_row[ox * s + kx..][..(WBLOCK - 1) * s + 1];
                    for i in 0..WBLOCK {
                        lanes[i] += gs[i] * src[i * s];
                    }
                }
            }
        }
        for (kx, lanes) in acc.iter().enumerate().take(k) {
            dw[ky * k + kx] += lanes.iter().map(|&v| v as f64).sum::<f64>();
        }
    }
}

/// Fewest output values worth a rayon task of their own.
const MIN_TASK_ELEMS: usize = 1 << 14;

/// The forward: `x` `[N, C, H, W]`, `weight` `[C, 1, k, k]` → `[N, C, H_out, W_out]`.
pub fn forward(g: &Geometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    if interleaved(g) {
        return forward_then(g, x, weight, |_, plane, out| {
            for (o, &v) in out.iter_mut().zip(plane) {
                o.write(v);
            }
        });
    }
    let kk = g.kernel * g.kernel;
    zeroed_planes(g.batch * g.channels, g.out_plane(), |p, dst, scratch| {
        let c = p % g.channels;
        forward_plane(g, &x[p * g.in_plane()..][..g.in_plane()], &weight[c * kk..][..kk], dst, scratch);
    })
}

/// The forward with an epilogue: each output plane is computed into a scratch plane and handed,
/// while it is still in cache, to `finish(plane index, plane, output plane)`, which must write
/// every value of the output plane. Eval mode's BatchNorm + SiLU runs there, saving a pass
/// over the activation in memory.
pub fn forward_then(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    finish: impl Fn(usize, &[f32], &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let (kk, plane, planes) = (g.kernel * g.kernel, g.out_plane(), g.batch * g.channels);
    let total = planes * plane;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    if plane > 0 && interleaved(g) {
        let per_task = MIN_TASK_ELEMS.div_ceil(plane).next_multiple_of(GROUP);
        let filters = GroupFilters::new(g, weight);
        out.spare_capacity_mut()[..total].par_chunks_mut(per_task * plane).enumerate().for_each(|(task, chunk)| {
            let (mut computed, mut scratch) = (vec![0.0f32; GROUP * plane], GroupScratch::default());
            for (group, dsts) in chunk.chunks_mut(GROUP * plane).enumerate() {
                let first = task * per_task + group * GROUP;
                let count = dsts.len() / plane;
                forward_group(g, x, &filters, first..first + count, &mut computed, &mut scratch);
                for (i, dst) in dsts.chunks_mut(plane).enumerate() {
                    finish(first + i, &computed[i * plane..][..plane], dst);
                }
            }
        });
    } else if plane > 0 {
        let per_task = MIN_TASK_ELEMS.div_ceil(plane);
        out.spare_capacity_mut()[..total].par_chunks_mut(per_task * plane).enumerate().for_each(|(task, chunk)| {
            let (mut computed, mut scratch) = (vec![0.0f32; plane], PlaneScratch::default());
            for (i, dst) in chunk.chunks_mut(plane).enumerate() {
                let p = task * per_task + i;
                let c = p % g.channels;
                forward_plane(g, &x[p * g.in_plane()..][..g.in_plane()], &weight[c * kk..][..kk], &mut computed, &mut scratch);
                finish(p, &computed, dst);
            }
        });
    }
    // SAFETY: `finish` wrote every value of every plane.
    unsafe { out.set_len(total) };
    out
}

/// Planes per interleaved group: one AVX register holds the same position of each.
const GROUP: usize = 8;
/// Output positions per register block of the interleaved kernel: eight independent sums (eight
/// AVX registers), enough to hide the add latency, which four were not (a 14×14 plane with
/// k 3 was slower interleaved than through the plane kernel). Positions are taken in row-major
/// order across rows, so a block is full whatever the plane's width.
const GROUP_PIXELS: usize = 8;

/// Whether the forward takes planes [`GROUP`] at a time, interleaved: for planes narrower
/// than a register block of the plane kernel, whose blocks would be mostly padding and whose
/// per-plane costs (the padded copy, the row setup) outweigh the arithmetic. B0's last four
/// stages at 128×96 have 12, 6 and 3 columns.
fn interleaved(g: &Geometry) -> bool {
    g.out_width < BLOCK
}

/// The filters as the interleaved kernel reads them, tap-major (`[tap][lane]`).
struct GroupFilters<'a> {
    weight: &'a [f32],
    /// With a channel count that is a multiple of [`GROUP`], every group is [`GROUP`] whole
    /// channels from a multiple of it: their filters, interleaved once per call, group after
    /// group. Otherwise each group gathers its own.
    aligned: Option<Vec<[f32; GROUP]>>,
}

impl GroupFilters<'_> {
    fn new<'a>(g: &Geometry, weight: &'a [f32]) -> GroupFilters<'a> {
        let kk = g.kernel * g.kernel;
        let aligned = g.channels.is_multiple_of(GROUP).then(|| {
            let mut taps = vec![[0.0; GROUP]; g.channels * kk / GROUP];
            for (c, filter) in weight.chunks_exact(kk).enumerate() {
                for (tap, &w) in taps[(c / GROUP) * kk..][..kk].iter_mut().zip(filter) {
                    tap[c % GROUP] = w;
                }
            }
            taps
        });
        GroupFilters { weight, aligned }
    }

    /// The taps of the group of planes from `first`, built in `scratch` when not aligned.
    fn of<'s>(&'s self, g: &Geometry, planes: Range<usize>, scratch: &'s mut Vec<[f32; GROUP]>) -> &'s [[f32; GROUP]] {
        let kk = g.kernel * g.kernel;
        if let Some(taps) = &self.aligned {
            return &taps[(planes.start % g.channels / GROUP) * kk..][..kk];
        }
        // Lanes past the last plane keep what they held: their outputs are never read.
        scratch.resize(kk, [0.0; GROUP]);
        for (lane, p) in planes.enumerate() {
            let c = p % g.channels;
            for (tap, &w) in scratch.iter_mut().zip(&self.weight[c * kk..][..kk]) {
                tap[lane] = w;
            }
        }
        scratch
    }
}

/// A rayon task's buffers for [`forward_group`], kept across its groups: like
/// [`PlaneScratch`], the zero border of the padded input is written once per layout.
#[derive(Default)]
struct GroupScratch {
    /// The padded input, position-major: `input[y·width + x][lane]`.
    input: Vec<[f32; GROUP]>,
    /// (padded width, padded rows) of `input`.
    layout: (usize, usize),
    /// A group's filters when they are not [`GroupFilters::aligned`].
    filters: Vec<[f32; GROUP]>,
    /// The input gradient's sums, position-major.
    sums: Vec<[f32; GROUP]>,
    /// The outputs, position-major; in the weight gradient, the output gradient, its rows
    /// zero-filled to whole blocks of [`WBLOCK`] columns.
    output: Vec<[f32; GROUP]>,
}

impl GroupScratch {
    /// The planes `planes` of `x` interleaved into `input`, with the zero border and the
    /// extent that `out_columns` outputs per row read from (`Geometry::padded_len`): returns
    /// the padded row length. Inlined into the AVX2 kernels that call it, so its transposes
    /// are too.
    #[inline(always)]
    fn interleave_padded(&mut self, g: &Geometry, x: &[f32], planes: Range<usize>, out_columns: usize) -> usize {
        let (width, height) = (g.padded_len(g.width, out_columns), g.padded_len(g.height, g.out_height));
        if self.layout != (width, height) || self.input.len() != width * height {
            self.input.clear();
            self.input.resize(width * height, [0.0; GROUP]);
            self.layout = (width, height);
        }
        interleave(x, planes, (g.height, g.width), g.pad(), width, &mut self.input);
        width
    }
}

dispatch!(fn forward_group(g: &Geometry, x: &[f32], filters: &GroupFilters, planes: Range<usize>, computed: &mut [f32], scratch: &mut GroupScratch) -> () => forward_group_impl);

/// The planes `planes` (at most [`GROUP`]) convolved together, lane `i` of each register the
/// plane `planes.start + i`, into `computed` (`[GROUP, H_out·W_out]`, the first
/// `planes.len()` planes written). Each output adds the same `k²` products in the same
/// (ky, kx) order from zero as [`forward_plane`] does (taps on the zero border included), so
/// both give the same bits.
/// Compiled as a whole for AVX2, so the lane copies' transposes are AVX shuffles too.
#[inline(always)]
fn forward_group_impl(
    g: &Geometry,
    x: &[f32],
    filters: &GroupFilters,
    planes: Range<usize>,
    computed: &mut [f32],
    scratch: &mut GroupScratch,
) {
    let width = scratch.interleave_padded(g, x, planes.clone(), g.out_width);
    let taps = filters.of(g, planes.clone(), &mut scratch.filters);
    scratch.output.resize(g.out_plane(), [0.0; GROUP]);
    group_outputs(g, &scratch.input, width, taps, &mut scratch.output);
    deinterleave_output(&scratch.output, planes.len(), computed);
}

/// Copies the planes `planes` of `x` (`rows × cols` values each) into `input`, plane
/// `planes.start + i` in lane `i`, value (y, c) at position `(y + pad)·width + pad + c` (the
/// interior of a padded layout; with `pad` 0 and `width` = `cols`, a plain interleave). A whole
/// group goes eight values at a time: eight planes' next eight values (in row-major order)
/// transposed, so each position is one vector store. Lanes past the last plane of a short
/// group keep what they held: their outputs are never read.
#[inline(always)]
fn interleave(x: &[f32], planes: Range<usize>, (rows, cols): (usize, usize), pad: usize, width: usize, input: &mut [[f32; GROUP]]) {
    let size = rows * cols;
    let at = |i: usize| (i / cols + pad) * width + pad + i % cols;
    let mut done = 0;
    if planes.len() == GROUP {
        let sources: [&[f32]; GROUP] = std::array::from_fn(|l| &x[(planes.start + l) * size..][..size]);
        done = size - size % GROUP;
        let (mut y, mut col) = (0, 0);
        for i in (0..done).step_by(GROUP) {
            let block: [[f32; GROUP]; GROUP] = std::array::from_fn(|l| sources[l][i..i + GROUP].try_into().unwrap());
            for position in transpose(&block) {
                input[(y + pad) * width + pad + col] = position;
                col += 1;
                if col == cols {
                    (y, col) = (y + 1, 0);
                }
            }
        }
    }
    for (lane, p) in planes.enumerate() {
        let plane = &x[p * size..][..size];
        for (i, &v) in plane.iter().enumerate().skip(done) {
            input[at(i)][lane] = v;
        }
    }
}

/// `computed[lane·plane + q] = output[q][lane]` for the first `lanes` lanes, eight positions
/// at a time through a transpose when the group is whole.
#[inline(always)]
fn deinterleave_output(output: &[[f32; GROUP]], lanes: usize, computed: &mut [f32]) {
    let plane = output.len();
    let mut done = 0;
    if lanes == GROUP {
        done = plane - plane % GROUP;
        for q in (0..done).step_by(GROUP) {
            let block: &[[f32; GROUP]; GROUP] = output[q..q + GROUP].try_into().unwrap();
            for (lane, values) in transpose(block).iter().enumerate() {
                computed[lane * plane + q..][..GROUP].copy_from_slice(values);
            }
        }
    }
    for (lane, dst) in computed.chunks_exact_mut(plane).take(lanes).enumerate() {
        for (d, v) in dst[done..].iter_mut().zip(&output[done..]) {
            *d = v[lane];
        }
    }
}

/// `t[j][i] = m[i][j]`: 24 AVX shuffles where the CPU has AVX (LLVM does not find them in the
/// plain loop, which it compiles to 64 scalar moves through the stack), the plain loop
/// otherwise. Only values move, so both give the same bits.
#[inline(always)]
fn transpose(m: &[[f32; GROUP]; GROUP]) -> [[f32; GROUP]; GROUP] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports AVX (checked just above).
        return unsafe { transpose_avx(m) };
    }
    std::array::from_fn(|j| std::array::from_fn(|i| m[i][j]))
}

/// The 8 × 8 transpose in three rounds of shuffles: pairs of rows interleaved, then pairs of
/// pairs, then the 128-bit halves exchanged.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn transpose_avx(m: &[[f32; GROUP]; GROUP]) -> [[f32; GROUP]; GROUP] {
    use std::arch::x86_64::*;
    // SAFETY (loads and stores): each row is 8 `f32`, one unaligned 256-bit access.
    let r: [__m256; GROUP] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(m[i].as_ptr()) });
    // Rows 2i and 2i + 1 interleaved: (a0 b0 a1 b1 | a4 b4 a5 b5) and (a2 b2 a3 b3 | a6 b6 a7 b7).
    let lo: [__m256; 4] = std::array::from_fn(|i| _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]));
    let hi: [__m256; 4] = std::array::from_fn(|i| _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]));
    // Four rows' columns j and j + 4 per register: (a_j b_j c_j d_j | a_j+4 b_j+4 c_j+4 d_j+4).
    let quads = |i: usize| {
        [
            _mm256_shuffle_ps::<0x44>(lo[i], lo[i + 1]),
            _mm256_shuffle_ps::<0xEE>(lo[i], lo[i + 1]),
            _mm256_shuffle_ps::<0x44>(hi[i], hi[i + 1]),
            _mm256_shuffle_ps::<0xEE>(hi[i], hi[i + 1]),
        ]
    };
    let (top, bottom) = (quads(0), quads(2));
    let mut t = [[0.0f32; GROUP]; GROUP];
    for j in 0..4 {
        let (low, high) = (_mm256_permute2f128_ps::<0x20>(top[j], bottom[j]), _mm256_permute2f128_ps::<0x31>(top[j], bottom[j]));
        unsafe {
            _mm256_storeu_ps(t[j].as_mut_ptr(), low);
            _mm256_storeu_ps(t[j + 4].as_mut_ptr(), high);
        }
    }
    t
}

#[inline(always)]
fn group_outputs(g: &Geometry, input: &[[f32; GROUP]], width: usize, filters: &[[f32; GROUP]], output: &mut [[f32; GROUP]]) {
    match (g.stride, g.kernel) {
        (1, 3) => group_outputs_strided::<1, 3>(g, input, width, filters, output),
        (1, 5) => group_outputs_strided::<1, 5>(g, input, width, filters, output),
        (2, 3) => group_outputs_strided::<2, 3>(g, input, width, filters, output),
        (2, 5) => group_outputs_strided::<2, 5>(g, input, width, filters, output),
        _ => group_outputs_strided::<0, 0>(g, input, width, filters, output),
    }
}

/// [`group_outputs`] with constant stride and kernel size, as in the plane kernel.
/// Positions go [`GROUP_PIXELS`] at a time in row-major order; the last block is moved back to
/// end at the last position, recomputing a few outputs (with the same bits) rather than
/// leaving a remainder.
#[inline(always)]
fn group_outputs_strided<const S: usize, const K: usize>(
    g: &Geometry,
    input: &[[f32; GROUP]],
    width: usize,
    filters: &[[f32; GROUP]],
    output: &mut [[f32; GROUP]],
) {
    let s = if S == 0 { g.stride } else { S };
    let k = if K == 0 { g.kernel } else { K };
    let window = Window { width, stride: s, kernel: k, out_width: g.out_width };
    let positions = output.len();
    if positions < GROUP_PIXELS {
        for q in 0..positions {
            group_pixels::<1>(input, &window, filters, q, &mut output[q..q + 1]);
        }
        return;
    }
    for first in (0..positions).step_by(GROUP_PIXELS) {
        let first = first.min(positions - GROUP_PIXELS);
        group_pixels::<GROUP_PIXELS>(input, &window, filters, first, &mut output[first..first + GROUP_PIXELS]);
    }
}

/// Where an output position's taps are in the interleaved padded input.
struct Window {
    /// Padded input row length.
    width: usize,
    stride: usize,
    kernel: usize,
    out_width: usize,
}

/// `P` outputs from row-major position `first`, every lane at once.
#[inline(always)]
fn group_pixels<const P: usize>(input: &[[f32; GROUP]], window: &Window, filters: &[[f32; GROUP]], first: usize, out: &mut [[f32; GROUP]]) {
    let &Window { width, stride, kernel: k, out_width } = window;
    // Each position's k × k window, from its first tap: all the same length, so one bounds
    // test per tap serves every position.
    let span = (k - 1) * width + k;
    let mut windows: [&[[f32; GROUP]]; P] = [&[]; P];
    let (mut oy, mut ox) = (first / out_width, first % out_width);
    for w in &mut windows {
        *w = &input[(oy * width + ox) * stride..][..span];
        ox += 1;
        if ox == out_width {
            (oy, ox) = (oy + 1, 0);
        }
    }
    let mut acc = [[0.0f32; GROUP]; P];
    for ky in 0..k {
        for kx in 0..k {
            let a = filters[ky * k + kx];
            let tap = ky * width + kx;
            for (acc, w) in acc.iter_mut().zip(&windows) {
                let v = w[tap];
                for l in 0..GROUP {
                    acc[l] += a[l] * v[l];
                }
            }
        }
    }
    out.copy_from_slice(&acc);
}

/// `planes` planes of `plane` values, each zeroed and then passed to `fill(index, plane)` in a
/// rayon task. The zeros are written by the task rather than by `calloc`: a fresh page whose
/// first access is the read of a `+=` is mapped to the shared zero page and faults again on
/// the write, with a TLB shootdown across cores (kernel time for those faults was about 15% of
/// a B0 training-step profile). The forward overwrites the zeros; the input gradient adds.
fn zeroed_planes(planes: usize, plane: usize, fill: impl Fn(usize, &mut [f32], &mut PlaneScratch) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let total = planes * plane;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    if plane > 0 {
        let per_task = MIN_TASK_ELEMS.div_ceil(plane);
        out.spare_capacity_mut()[..total].par_chunks_mut(per_task * plane).enumerate().for_each(|(task, chunk)| {
            let mut scratch = PlaneScratch::default();
            for (i, dst) in chunk.chunks_mut(plane).enumerate() {
                dst.fill(std::mem::MaybeUninit::new(0.0));
                // SAFETY: every value of `dst` was just initialised.
                let dst = unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                fill(task * per_task + i, dst, &mut scratch);
            }
        });
    }
    // SAFETY: every plane was initialised above.
    unsafe { out.set_len(total) };
    out
}

/// The input gradient, `[N, C, H, W]`, from the output gradient `grad`.
pub fn input_grad(g: &Geometry, grad: &[f32], weight: &[f32]) -> Vec<f32> {
    let kk = g.kernel * g.kernel;
    if g.stride == 1 {
        // With stride 1 and padding k/2 (k odd), the input gradient is the forward convolution
        // of `grad` by the filter turned half a turn.
        let flipped: Vec<f32> = weight.chunks(kk).flat_map(|f| f.iter().rev().copied()).collect();
        if g.kernel % 2 == 1 && g.out_height == g.height && g.out_width == g.width {
            return forward(g, grad, &flipped);
        }
    }
    if g.channels.is_multiple_of(GROUP) {
        return input_grad_grouped(g, grad, weight);
    }
    input_grad_planes(g, grad, weight)
}

/// The input gradient one plane at a time.
fn input_grad_planes(g: &Geometry, grad: &[f32], weight: &[f32]) -> Vec<f32> {
    let kk = g.kernel * g.kernel;
    zeroed_planes(g.batch * g.channels, g.in_plane(), |p, dst, _| {
        let c = p % g.channels;
        input_grad_plane(g, &grad[p * g.out_plane()..][..g.out_plane()], &weight[c * kk..][..kk], dst);
    })
}

/// The input gradient [`GROUP`] planes at a time (whole groups of channels), interleaved: the
/// plane kernel's scatter to every other input column is one value at a time; here each
/// product is a vector of eight planes. The same products are added to each input value in
/// the same order from zero, so the bits are the plane kernel's.
fn input_grad_grouped(g: &Geometry, grad: &[f32], weight: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let (plane, planes) = (g.in_plane(), g.batch * g.channels);
    let mut out = vec![0.0f32; planes * plane];
    if plane == 0 {
        return out;
    }
    let per_task = MIN_TASK_ELEMS.div_ceil(plane).next_multiple_of(GROUP);
    let filters = GroupFilters::new(g, weight);
    out.par_chunks_mut(per_task * plane).enumerate().for_each(|(task, chunk)| {
        let mut scratch = GroupScratch::default();
        for (group, dsts) in chunk.chunks_mut(GROUP * plane).enumerate() {
            let first = task * per_task + group * GROUP;
            input_grad_group(g, grad, &filters, first..first + GROUP, dsts, &mut scratch);
        }
    });
    out
}

dispatch!(fn input_grad_group(g: &Geometry, grad: &[f32], filters: &GroupFilters, planes: Range<usize>, dx: &mut [f32], scratch: &mut GroupScratch) -> () => input_grad_group_impl);

/// `dx` (the planes `planes`, a whole group) = their input gradient: [`input_grad_plane_impl`]
/// with every value a vector of the group's planes, accumulated in `scratch.sums`.
#[inline(always)]
fn input_grad_group_impl(
    g: &Geometry,
    grad: &[f32],
    filters: &GroupFilters,
    planes: Range<usize>,
    dx: &mut [f32],
    scratch: &mut GroupScratch,
) {
    let (k, w, ow) = (g.kernel, g.width, g.out_width);
    scratch.output.resize(g.out_plane(), [0.0; GROUP]);
    interleave(grad, planes.clone(), (g.out_height, ow), 0, ow, &mut scratch.output);
    scratch.sums.clear();
    scratch.sums.resize(g.in_plane(), [0.0; GROUP]);
    let taps = filters.of(g, planes, &mut scratch.filters);
    let (grads, sums) = (&scratch.output, &mut scratch.sums);
    for oy in 0..g.out_height {
        let grad_row = &grads[oy * ow..(oy + 1) * ow];
        for ky in 0..k {
            if !g.rows(ky).contains(&oy) {
                continue;
            }
            let dx_row = &mut sums[g.input(oy, ky) * w..][..w];
            for kx in 0..k {
                let cols = g.cols(kx);
                if cols.is_empty() {
                    continue;
                }
                let a = taps[ky * k + kx];
                let start = g.input(cols.start, kx);
                for (j, v) in grad_row[cols].iter().enumerate() {
                    let d = &mut dx_row[start + j * g.stride];
                    for l in 0..GROUP {
                        d[l] += a[l] * v[l];
                    }
                }
            }
        }
    }
    deinterleave_output(sums, GROUP, dx);
}

/// The weight gradient, `[C, 1, k, k]`.
pub fn weight_grad(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    if grouped_weight_grad(g) {
        return weight_grad_grouped(g, x, grad);
    }
    weight_grad_planes(g, x, grad)
}

/// The weight gradient one channel at a time, plane by plane.
fn weight_grad_planes(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let kk = g.kernel * g.kernel;
    let per_task = MIN_TASK_ELEMS.div_ceil((g.batch * g.out_plane() * kk).max(1));
    (0..g.channels)
        .into_par_iter()
        .with_min_len(per_task)
        .flat_map_iter(|c| {
            let mut dw = vec![0.0f64; kk];
            let mut scratch = Scratch::default();
            for n in 0..g.batch {
                let p = n * g.channels + c;
                let (x, grad) = (&x[p * g.in_plane()..][..g.in_plane()], &grad[p * g.out_plane()..][..g.out_plane()]);
                weight_grad_plane(g, x, grad, &mut dw, &mut scratch);
            }
            dw.into_iter().map(|v| v as f32)
        })
        .collect()
}

/// Whether the weight gradient takes [`weight_grad_grouped`]: whole groups of channels (every
/// B0/B4 layer) and EfficientNet's strides and kernel sizes (its sums are sized by the kernel,
/// in registers).
fn grouped_weight_grad(g: &Geometry) -> bool {
    g.channels.is_multiple_of(GROUP) && matches!((g.stride, g.kernel), (1 | 2, 3 | 5))
}

/// The weight gradient [`GROUP`] channels at a time, interleaved as in the forward's narrow
/// planes. Against the plane kernel, with the same bits: each product is a full vector
/// whatever the plane's width (the plane kernel's blocks of [`WBLOCK`] columns are mostly
/// padding on B0's last stages at 128×96, 12, 6 and 3 columns), and the sums stay in
/// registers across the whole plane. One rayon task per run of groups, each summing its
/// planes in batch order, so the thread count does not change the bits.
fn weight_grad_grouped(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let kk = g.kernel * g.kernel;
    let per_task = MIN_TASK_ELEMS.div_ceil((g.batch * g.out_plane() * kk * GROUP).max(1));
    (0..g.channels / GROUP)
        .into_par_iter()
        .with_min_len(per_task)
        .flat_map_iter(|group| {
            let mut dw = vec![[0.0f64; GROUP]; kk];
            let mut scratch = GroupScratch::default();
            for n in 0..g.batch {
                let first = n * g.channels + group * GROUP;
                weight_grad_group(g, x, grad, first..first + GROUP, &mut dw, &mut scratch);
            }
            let channels: Vec<f32> = (0..GROUP).flat_map(|lane| dw.iter().map(move |tap| tap[lane] as f32)).collect();
            channels
        })
        .collect()
}

dispatch!(fn weight_grad_group(g: &Geometry, x: &[f32], grad: &[f32], planes: Range<usize>, dw: &mut [[f64; GROUP]], scratch: &mut GroupScratch) -> () => weight_grad_group_impl);

/// `dw[tap][lane]` += the weight gradient of plane `planes.start + lane` (a whole group).
#[inline(always)]
fn weight_grad_group_impl(
    g: &Geometry,
    x: &[f32],
    grad: &[f32],
    planes: Range<usize>,
    dw: &mut [[f64; GROUP]],
    scratch: &mut GroupScratch,
) {
    // Whole blocks of columns, as the plane kernel computes: the gradient's extra columns are
    // zeros (written once per layout, as the input's border), and the input is wide enough
    // for their taps.
    let row_len = g.out_width.div_ceil(WBLOCK) * WBLOCK;
    let width = scratch.interleave_padded(g, x, planes.clone(), row_len);
    if scratch.output.len() != g.out_height * row_len {
        scratch.output.clear();
        scratch.output.resize(g.out_height * row_len, [0.0; GROUP]);
    }
    interleave(grad, planes, (g.out_height, g.out_width), 0, row_len, &mut scratch.output);
    let (input, grads) = (&scratch.input, &scratch.output);
    match (g.stride, g.kernel) {
        (1, 3) => weight_grad_group_strided::<1, 3>(g, input, width, grads, dw),
        (1, 5) => weight_grad_group_strided::<1, 5>(g, input, width, grads, dw),
        (2, 3) => weight_grad_group_strided::<2, 3>(g, input, width, grads, dw),
        (2, 5) => weight_grad_group_strided::<2, 5>(g, input, width, grads, dw),
        _ => unreachable!("grouped_weight_grad takes strides 1 and 2, kernels 3 and 5"),
    }
}

/// Columns per pass of [`weight_grad_group_strided`]: two columns' `k` column taps are the
/// independent sums in registers (ten for k 5).
const COLUMNS: usize = 2;

/// [`weight_grad_plane_strided`]'s sums with every lane a plane: register lane `i` of that
/// kernel (columns `i`, `i + 8`, … of each row, rows in order, the columns past the plane's
/// width with zero gradients) is `lanes[kx][i]` here, summed in the same order, and the eight
/// are added in f64 in lane order as there, so the bits are the plane kernel's.
#[inline(always)]
fn weight_grad_group_strided<const S: usize, const K: usize>(
    g: &Geometry,
    input: &[[f32; GROUP]],
    width: usize,
    grads: &[[f32; GROUP]],
    dw: &mut [[f64; GROUP]],
) {
    let blocks = g.out_width.div_ceil(WBLOCK);
    let row_len = blocks * WBLOCK;
    for ky in 0..K {
        let mut lanes = [[[0.0f32; GROUP]; WBLOCK]; K];
        // Lanes past the width of a plane narrower than a block hold zeros, as there.
        for i in (0..WBLOCK.min(g.out_width)).step_by(COLUMNS) {
            let mut acc = [[[0.0f32; GROUP]; K]; COLUMNS];
            for oy in 0..g.out_height {
                let row = &input[(oy * S + ky) * width..][..width];
                let grad_row = &grads[oy * row_len..][..row_len];
                for b in 0..blocks {
                    let col = b * WBLOCK + i;
                    for (j, acc) in acc.iter_mut().enumerate() {
                        tap_products(acc, grad_row[col + j], &row[(col + j) * S..][..K]);
                    }
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                for kx in 0..K {
                    lanes[kx][i + j] = acc[kx];
                }
            }
        }
        for (kx, lanes) in lanes.iter().enumerate() {
            for (l, sum) in dw[ky * K + kx].iter_mut().enumerate() {
                *sum += lanes.iter().map(|v| v[l] as f64).sum::<f64>();
            }
        }
    }
}

/// `acc[kx] += grad · input[kx]` for each column tap, every lane.
#[inline(always)]
fn tap_products<const K: usize>(acc: &mut [[f32; GROUP]; K], grad: [f32; GROUP], input: &[[f32; GROUP]]) {
    for (acc, v) in acc.iter_mut().zip(input) {
        for l in 0..GROUP {
            acc[l] += grad[l] * v[l];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` input values, varied and exact in f32 (the same ramp in every test).
    fn inputs(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect()
    }

    /// `n` filter taps.
    fn filters(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 3.0).collect()
    }

    /// `n` output-gradient values.
    fn gradients(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 11.0).collect()
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// The definition, one output value at a time.
    fn naive(g: &Geometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
        let (k, pad) = (g.kernel as isize, (g.kernel / 2) as isize);
        let mut out = Vec::new();
        for p in 0..g.batch * g.channels {
            let c = p % g.channels;
            for oy in 0..g.out_height as isize {
                for ox in 0..g.out_width as isize {
                    let mut acc = 0.0f64;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (oy * g.stride as isize + ky - pad, ox * g.stride as isize + kx - pad);
                            if iy >= 0 && ix >= 0 && (iy as usize) < g.height && (ix as usize) < g.width {
                                acc += weight[c * (k * k) as usize + (ky * k + kx) as usize] as f64
                                    * x[p * g.in_plane() + iy as usize * g.width + ix as usize] as f64;
                            }
                        }
                    }
                    out.push(acc as f32);
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_the_definition_at_every_border() {
        for (h, w, k, s) in [
            (7, 9, 3, 1),
            (7, 9, 3, 2),
            (8, 6, 5, 1),
            (8, 6, 5, 2),
            (2, 3, 5, 2),
            (1, 1, 3, 1),
            (4, 4, 3, 2),
            (1, 1, 5, 1),
            (2, 1, 5, 2),
            (1, 3, 5, 1),
        ] {
            let g = Geometry::new([2, 3, h, w], k, s);
            let x: Vec<f32> = (0..2 * 3 * h * w).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let weight: Vec<f32> = (0..3 * k * k).map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0).collect();
            let got = forward(&g, &x, &weight);
            let want = naive(&g, &x, &weight);
            assert_eq!(got.len(), want.len(), "{h}x{w} k{k} s{s}");
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{h}x{w} k{k} s{s}: {a} vs {b}");
            }
        }
    }

    /// Every output is its `k²` taps added in (ky, kx) order from zero, in f32, outside taps
    /// reading zero: the forward's bits are pinned whatever its blocking (rows, columns, split
    /// rows), so eval outputs and trained weights do not move with it.
    #[test]
    fn forward_adds_taps_in_order_from_zero() {
        for (h, w, k, s) in [(57, 45, 3, 1), (57, 45, 3, 2), (30, 33, 5, 1), (30, 33, 5, 2), (7, 9, 5, 2), (5, 3, 3, 1), (2, 2, 7, 1)] {
            let g = Geometry::new([2, 3, h, w], k, s);
            let x = inputs(2 * 3 * h * w);
            let weight = filters(3 * k * k);
            let pad = (k / 2) as isize;
            let mut want = Vec::new();
            for p in 0..2 * 3 {
                let filter = &weight[(p % 3) * k * k..][..k * k];
                for oy in 0..g.out_height as isize {
                    for ox in 0..g.out_width as isize {
                        let mut acc = 0.0f32;
                        for ky in 0..k as isize {
                            for kx in 0..k as isize {
                                let (iy, ix) = (oy * s as isize + ky - pad, ox * s as isize + kx - pad);
                                let inside = iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                                let v = if inside { x[p * h * w + iy as usize * w + ix as usize] } else { 0.0 };
                                acc += filter[(ky * k as isize + kx) as usize] * v;
                            }
                        }
                        want.push(acc.to_bits());
                    }
                }
            }
            let got = bits(&forward(&g, &x, &weight));
            assert_eq!(got, want, "{h}x{w} k{k} s{s}");
        }
    }

    /// Narrow planes go through the interleaved kernel, eight at a time; it must give the bits
    /// of the plane kernel: channel counts that are a multiple of the group (filters
    /// interleaved once) and that are not (groups spanning two images), a last group short of
    /// planes, several rayon tasks, kernels wider than the image, and the generic (k 7) path.
    #[test]
    fn interleaved_groups_give_the_bits_of_the_plane_kernel() {
        for (shape, k, s) in [
            ([3, 13, 16, 12], 5, 1),
            ([3, 13, 16, 12], 3, 2),
            ([2, 11, 8, 6], 3, 1),
            ([2, 11, 8, 6], 5, 2),
            ([3, 1603, 4, 3], 5, 1),
            ([2, 1152, 4, 3], 5, 1),
            ([3, 16, 8, 6], 3, 2),
            ([1, 5, 2, 1], 5, 1),
            ([2, 9, 6, 5], 7, 1),
            ([2, 3, 30, 29], 3, 2),
        ] {
            let g = Geometry::new(shape, k, s);
            assert!(interleaved(&g), "{shape:?} k{k} s{s} must take the interleaved kernel");
            let planes = shape[0] * shape[1];
            let x = inputs(planes * g.in_plane());
            let weight = filters(shape[1] * k * k);
            let mut want = Vec::with_capacity(planes * g.out_plane());
            let mut scratch = PlaneScratch::default();
            for p in 0..planes {
                let mut plane = vec![0.0; g.out_plane()];
                let c = p % g.channels;
                forward_plane(&g, &x[p * g.in_plane()..][..g.in_plane()], &weight[c * k * k..][..k * k], &mut plane, &mut scratch);
                want.extend(plane.iter().map(|v| v.to_bits()));
            }
            let got = bits(&forward(&g, &x, &weight));
            assert_eq!(got, want, "{shape:?} k{k} s{s}");
        }
    }

    /// The grouped weight gradient (whole groups of channels) must give the bits of the
    /// per-channel plane kernel: stride 1 and 2, k 3 and 5, widths under one register block,
    /// over one, odd, and several blocks wide, several rayon tasks.
    #[test]
    fn grouped_weight_gradient_gives_the_bits_of_the_plane_kernel() {
        for (shape, k, s) in [
            ([3, 16, 16, 12], 5, 1),
            ([3, 16, 16, 12], 3, 2),
            ([2, 8, 8, 6], 3, 1),
            ([2, 24, 4, 3], 5, 1),
            ([5, 1152, 4, 3], 5, 1),
            ([1, 8, 2, 1], 5, 1),
            ([2, 16, 30, 29], 3, 2),
            ([2, 8, 9, 11], 5, 2),
            ([2, 8, 40, 37], 5, 1),
            ([3, 16, 57, 45], 3, 2),
        ] {
            let g = Geometry::new(shape, k, s);
            assert!(grouped_weight_grad(&g), "{shape:?} k{k} s{s} must take the grouped kernel");
            let planes = shape[0] * shape[1];
            let x = inputs(planes * g.in_plane());
            let grad = gradients(planes * g.out_plane());
            assert_eq!(bits(&weight_grad(&g, &x, &grad)), bits(&weight_grad_planes(&g, &x, &grad)), "{shape:?} k{k} s{s}");
        }
    }

    /// The grouped input gradient must give the bits of the plane kernel: stride 2 (stride 1
    /// goes through the forward), k 3 and 5, odd and even sizes, kernels wider than the image,
    /// several rayon tasks.
    #[test]
    fn grouped_input_gradient_gives_the_bits_of_the_plane_kernel() {
        for (shape, k) in
            [([2, 8, 9, 11], 3), ([2, 16, 30, 29], 5), ([3, 8, 4, 3], 5), ([2, 8, 1, 2], 5), ([5, 1152, 8, 6], 5), ([2, 24, 57, 45], 3)]
        {
            let g = Geometry::new(shape, k, 2);
            let planes = shape[0] * shape[1];
            let grad = gradients(planes * g.out_plane());
            let weight = filters(shape[1] * k * k);
            assert_eq!(bits(&input_grad(&g, &grad, &weight)), bits(&input_grad_planes(&g, &grad, &weight)), "{shape:?} k{k}");
        }
    }

    /// Stride 2's split rows give the bits of the strided reads (the generic path, `S` = 0),
    /// with one scratch reused across planes of two geometries in turn (its zero border must
    /// follow the layout), odd and even widths, full and half blocks.
    #[test]
    fn split_rows_give_the_bits_of_strided_reads() {
        let mut scratch = PlaneScratch::default();
        for (h, w, k) in [(112, 112, 3), (57, 31, 5), (9, 7, 3), (14, 14, 5), (3, 2, 5), (112, 112, 3)] {
            let g = Geometry::new([1, 1, h, w], k, 2);
            for plane in 0..3 {
                let x: Vec<f32> = (0..h * w).map(|i| (((i + plane * 7) * 37 % 101) as f32 - 50.0) / 25.0).collect();
                let filter: Vec<f32> = (0..k * k).map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0).collect();
                let (mut split, mut strided) = (vec![0.0; g.out_plane()], vec![0.0; g.out_plane()]);
                let mut fresh = PlaneScratch::default();
                if k == 3 {
                    forward_plane_strided::<2, 3, BLOCK>(&g, &x, &filter, &mut split, &mut scratch);
                    forward_plane_strided::<2, 3, { BLOCK / 2 }>(&g, &x, &filter, &mut strided, &mut fresh);
                    assert_eq!(split, strided, "{h}x{w} k{k}: full and half blocks");
                } else {
                    forward_plane_strided::<2, 5, BLOCK>(&g, &x, &filter, &mut split, &mut scratch);
                }
                forward_plane_strided::<0, 0, BLOCK>(&g, &x, &filter, &mut strided, &mut fresh);
                assert_eq!(bits(&split), bits(&strided), "{h}x{w} k{k} plane {plane}");
            }
        }
    }

    #[test]
    fn output_sizes_are_pytorchs() {
        // floor((size + 2·pad − k) / stride) + 1
        let g = Geometry::new([1, 1, 112, 112], 3, 2);
        assert_eq!((g.out_height, g.out_width), (56, 56));
        let g = Geometry::new([1, 1, 15, 7], 5, 2);
        assert_eq!((g.out_height, g.out_width), (8, 4));
        let g = Geometry::new([1, 1, 48, 64], 3, 1);
        assert_eq!((g.out_height, g.out_width), (48, 64));
    }
}
