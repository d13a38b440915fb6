//! Depthwise convolution on f32 planes: forward, input gradient and weight gradient.
//!
//! Layout: `x` `[N, C, H, W]` as `N·C` planes; plane `p` uses the `k × k` filter of channel
//! `p % C`. Padding is `k / 2` zeros on every side, dilation 1. Each output row takes its `k²`
//! taps as row-wise multiply-adds over the columns where the tap lands inside the image, so the
//! borders need no per-pixel test. The forward and the input gradient run one rayon task per
//! group of planes; the weight gradient one per channel, summing its planes in batch order, so
//! results do not depend on the thread count.

use std::ops::Range;

/// Geometry of one depthwise convolution.
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

    /// Output positions `o` (along an axis of input size `size`, output size `out`) where tap
    /// `t` reads inside the image: `0 ≤ o·stride + t − pad < size`.
    fn valid(&self, t: usize, size: usize, out: usize) -> Range<usize> {
        let (s, pad) = (self.stride, self.pad());
        let lo = if t >= pad { 0 } else { (pad - t).div_ceil(s) };
        let hi = if size + pad <= t { 0 } else { ((size + pad - t - 1) / s + 1).min(out) };
        // Empty when the tap never lands inside (a kernel wider than a small image).
        lo.min(hi)..hi
    }

    fn rows(&self, ky: usize) -> Range<usize> {
        self.valid(ky, self.height, self.out_height)
    }

    fn cols(&self, kx: usize) -> Range<usize> {
        self.valid(kx, self.width, self.out_width)
    }

    /// Input index of output position `o` under tap `t` (`o` from [`Self::valid`]).
    fn input(&self, o: usize, t: usize) -> usize {
        o * self.stride + t - self.pad()
    }
}

dispatch!(fn forward_plane(g: &Geometry, x: &[f32], filter: &[f32], out: &mut [f32]) -> () => forward_plane_impl);
dispatch!(fn input_grad_plane(g: &Geometry, grad: &[f32], filter: &[f32], dx: &mut [f32]) -> () => input_grad_plane_impl);
dispatch!(fn weight_grad_plane(g: &Geometry, x: &[f32], grad: &[f32], dw: &mut [f64]) -> () => weight_grad_plane_impl);

/// `out` (one output plane, zeroed) += the convolution of `x` (one input plane) by `filter`.
#[inline(always)]
fn forward_plane_impl(g: &Geometry, x: &[f32], filter: &[f32], out: &mut [f32]) {
    let (k, w, ow) = (g.kernel, g.width, g.out_width);
    for oy in 0..g.out_height {
        let out_row = &mut out[oy * ow..(oy + 1) * ow];
        for ky in 0..k {
            if !g.rows(ky).contains(&oy) {
                continue;
            }
            let in_row = &x[g.input(oy, ky) * w..][..w];
            for kx in 0..k {
                let cols = g.cols(kx);
                if cols.is_empty() {
                    continue;
                }
                let a = filter[ky * k + kx];
                let dst = &mut out_row[cols.clone()];
                let start = g.input(cols.start, kx);
                if g.stride == 1 {
                    for (o, &v) in dst.iter_mut().zip(&in_row[start..start + cols.len()]) {
                        *o += a * v;
                    }
                } else {
                    for (j, o) in dst.iter_mut().enumerate() {
                        *o += a * in_row[start + j * g.stride];
                    }
                }
            }
        }
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

/// `dw[tap]` += Σ over the plane of `grad · x` under that tap (row sums in f32, added in f64).
#[inline(always)]
fn weight_grad_plane_impl(g: &Geometry, x: &[f32], grad: &[f32], dw: &mut [f64]) {
    const LANES: usize = 8;
    let (k, w, ow) = (g.kernel, g.width, g.out_width);
    for ky in 0..k {
        for kx in 0..k {
            let cols = g.cols(kx);
            if cols.is_empty() {
                continue;
            }
            let start = g.input(cols.start, kx);
            let mut total = 0.0f64;
            for oy in g.rows(ky) {
                let grad_row = &grad[oy * ow..(oy + 1) * ow][cols.clone()];
                let in_row = &x[g.input(oy, ky) * w..][..w];
                let mut lanes = [0.0f32; LANES];
                if g.stride == 1 {
                    let in_row = &in_row[start..start + cols.len()];
                    let mut gb = grad_row.chunks_exact(LANES);
                    let mut xb = in_row.chunks_exact(LANES);
                    for (gs, xs) in (&mut gb).zip(&mut xb) {
                        for i in 0..LANES {
                            lanes[i] += gs[i] * xs[i];
                        }
                    }
                    for (i, (&a, &b)) in gb.remainder().iter().zip(xb.remainder()).enumerate() {
                        lanes[i] += a * b;
                    }
                } else {
                    for (j, &a) in grad_row.iter().enumerate() {
                        lanes[j % LANES] += a * in_row[start + j * g.stride];
                    }
                }
                total += lanes.iter().map(|&v| v as f64).sum::<f64>();
            }
            dw[ky * k + kx] += total;
        }
    }
}

/// Fewest output values worth a rayon task of their own.
const MIN_TASK_ELEMS: usize = 1 << 14;

/// The forward: `x` `[N, C, H, W]`, `weight` `[C, 1, k, k]` → `[N, C, H_out, W_out]`.
pub fn forward(g: &Geometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let kk = g.kernel * g.kernel;
    zeroed_planes(g.batch * g.channels, g.out_plane(), |p, dst| {
        let c = p % g.channels;
        forward_plane(g, &x[p * g.in_plane()..][..g.in_plane()], &weight[c * kk..][..kk], dst);
    })
}

/// `planes` planes of `plane` values, each zeroed and then passed to `fill(index, plane)` in a
/// rayon task. The zeros are written by the task rather than by `calloc`: a fresh page whose
/// first access is the read of a `+=` is mapped to the shared zero page and faults again on
/// the write, with a TLB shootdown across cores, which cost 15% of a training step.
fn zeroed_planes(planes: usize, plane: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let total = planes * plane;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    if plane > 0 {
        let per_task = MIN_TASK_ELEMS.div_ceil(plane);
        out.spare_capacity_mut()[..total].par_chunks_mut(per_task * plane).enumerate().for_each(|(task, chunk)| {
            for (i, dst) in chunk.chunks_mut(plane).enumerate() {
                dst.fill(std::mem::MaybeUninit::new(0.0));
                // SAFETY: every value of `dst` was just initialised.
                let dst = unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                fill(task * per_task + i, dst);
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
    zeroed_planes(g.batch * g.channels, g.in_plane(), |p, dst| {
        let c = p % g.channels;
        input_grad_plane(g, &grad[p * g.out_plane()..][..g.out_plane()], &weight[c * kk..][..kk], dst);
    })
}

/// The weight gradient, `[C, 1, k, k]`.
pub fn weight_grad(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let kk = g.kernel * g.kernel;
    let per_task = MIN_TASK_ELEMS.div_ceil((g.batch * g.out_plane() * kk).max(1));
    (0..g.channels)
        .into_par_iter()
        .with_min_len(per_task)
        .flat_map_iter(|c| {
            let mut dw = vec![0.0f64; kk];
            for n in 0..g.batch {
                let p = n * g.channels + c;
                weight_grad_plane(g, &x[p * g.in_plane()..][..g.in_plane()], &grad[p * g.out_plane()..][..g.out_plane()], &mut dw);
            }
            dw.into_iter().map(|v| v as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
