//! Dense (ungrouped) `k × k` convolution on f32 as column matrices: `im2col` lays the input out
//! so that the forward and both gradients are each one matrix product over the whole batch,
//! and `col2im` sums the input gradient back into planes.
//!
//! Why: flex runs a dense convolution's backward as a transposed convolution and a weight
//! convolution over strided, permuted copies (`StridedIter`, `to_contiguous`); in a profile of
//! `tiny_cnn` training those copies were over half the step and the products under a fifth.
//! Here the three products are `W · cols` (forward), `g · colsᵀ` (weight gradient) and
//! `Wᵀ · g` (column gradient), with `g` the output gradient as `[C_out, N·P]`.
//!
//! Layout of the columns: `[C·k·k, N·P]`, row `(c, ky, kx)`, column `(n, oy, ox)` (`P` the
//! output plane), holding `x[n, c, oy·s + ky − k/2, ox·s + kx − k/2]` and zero outside the
//! image. Both passes split by rows or planes and write disjoint memory; `col2im` adds each
//! plane's taps in (c, ky, kx, oy, ox) order, so results do not depend on the thread count, and
//! no FMA is involved, so the AVX2 and portable builds agree.

use rayon::prelude::*;

use super::depthwise::Geometry;

/// Smallest output slice (values) worth a rayon task of its own.
const MIN_TASK_ELEMS: usize = 1 << 14;

/// Rows of the column matrix: one per input channel and tap.
pub fn col_rows(g: &Geometry) -> usize {
    g.channels * g.kernel * g.kernel
}

/// `x` (`[N, C, H, W]`) as the column matrix `[C·k·k, N·P]`.
pub fn im2col(g: &Geometry, x: &[f32]) -> Vec<f32> {
    match g.stride {
        1 => im2col_strided::<1>(g, x),
        2 => im2col_strided::<2>(g, x),
        _ => im2col_strided::<0>(g, x),
    }
}

/// [`im2col`] with the stride a constant (`S` = 0: read from `g`), so the strided reads of
/// the common cases compile to shifts.
///
/// Tasks take whole images, and each image one input plane at a time: the plane stays in L1
/// while its `k²` taps are copied out. (Splitting by rows instead read every plane `k²` times
/// from memory; that copy was a sixth of a `tiny_cnn` training step.)
fn im2col_strided<const S: usize>(g: &Geometry, x: &[f32]) -> Vec<f32> {
    let (kk, plane, out_plane) = (g.kernel * g.kernel, g.in_plane(), g.out_plane());
    let row_len = g.batch * out_plane;
    let mut cols = vec![0.0f32; col_rows(g) * row_len];
    if cols.is_empty() {
        return cols;
    }
    let taps: Vec<Tap<S>> = (0..kk).map(|t| Tap::new(g, t)).collect();
    let images_per_task = MIN_TASK_ELEMS.div_ceil(col_rows(g) * out_plane);
    let out = SharedOut(cols.as_mut_ptr());
    (0..g.batch.div_ceil(images_per_task)).into_par_iter().for_each(|task| {
        for n in task * images_per_task..((task + 1) * images_per_task).min(g.batch) {
            for c in 0..g.channels {
                let src = &x[(n * g.channels + c) * plane..][..plane];
                for (t, tap) in taps.iter().enumerate() {
                    // SAFETY: the segment (row (c, t), image n) lies inside `cols` (row < C·k²,
                    // n < N), and only the task that owns image `n` touches it.
                    let dst = unsafe { out.segment((c * kk + t) * row_len + n * out_plane, out_plane) };
                    tap.for_each(|i, o| dst[o] = src[i]);
                }
            }
        }
    });
    cols
}

/// An output buffer (`cols` here, the 1×1 output in `pointwise.rs`), written through by tasks
/// that own disjoint segments of it.
pub(super) struct SharedOut(pub(super) *mut f32);

// SAFETY: tasks only write segments no other task touches (see `segment`'s callers).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `start + len` is within the buffer, and no one else reads or writes those values while
    /// the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn segment(&self, start: usize, len: usize) -> &mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }

    /// [`Self::segment`] of a buffer not yet initialised there, to be written.
    ///
    /// # Safety
    /// As [`Self::segment`]: within the buffer's capacity, and no one else's while it lives.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn uninit_segment(&self, start: usize, len: usize) -> &mut [std::mem::MaybeUninit<f32>] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start).cast(), len) }
    }
}

/// The input gradient `[N, C, H, W]` from the column gradient `[C·k·k, N·P]`: each input
/// value sums the column entries [`im2col`] copied it to.
pub fn col2im(g: &Geometry, dcols: &[f32]) -> Vec<f32> {
    match g.stride {
        1 => col2im_strided::<1>(g, dcols),
        2 => col2im_strided::<2>(g, dcols),
        _ => col2im_strided::<0>(g, dcols),
    }
}

fn col2im_strided<const S: usize>(g: &Geometry, dcols: &[f32]) -> Vec<f32> {
    let (k, plane, out_plane) = (g.kernel, g.in_plane(), g.out_plane());
    let row_len = g.batch * out_plane;
    let mut dx = vec![0.0f32; g.batch * g.channels * plane];
    if plane == 0 {
        return dx;
    }
    let taps: Vec<Tap<S>> = (0..k * k).map(|t| Tap::new(g, t)).collect();
    let planes_per_task = MIN_TASK_ELEMS.div_ceil(plane);
    dx.par_chunks_mut(planes_per_task * plane).enumerate().for_each(|(task, chunk)| {
        for (i, dst) in chunk.chunks_mut(plane).enumerate() {
            let p = task * planes_per_task + i;
            let (n, c) = (p / g.channels, p % g.channels);
            for (t, tap) in taps.iter().enumerate() {
                let src = &dcols[(c * k * k + t) * row_len + n * out_plane..][..out_plane];
                tap.for_each(|i, o| dst[i] += src[o]);
            }
        }
    });
    dx
}

/// Where one kernel tap `(ky, kx)` reads: the output positions that land inside the image,
/// as a rectangle of `rows × cols`, with the first pair of (input, output) plane indices and
/// the steps between rows and columns (`S` is the stride when not 0).
#[derive(Clone, Copy)]
struct Tap<const S: usize> {
    rows: usize,
    cols: usize,
    first_in: usize,
    first_out: usize,
    in_row_step: usize,
    out_row_step: usize,
    stride: usize,
}

impl<const S: usize> Tap<S> {
    fn new(g: &Geometry, tap: usize) -> Tap<S> {
        let (ky, kx) = (tap / g.kernel, tap % g.kernel);
        let (oys, oxs) = (g.rows(ky), g.cols(kx));
        let (rows, cols) = (oys.len(), oxs.len());
        let (first_in, first_out) = if rows == 0 || cols == 0 {
            (0, 0)
        } else {
            (g.input(oys.start, ky) * g.width + g.input(oxs.start, kx), oys.start * g.out_width + oxs.start)
        };
        Tap { rows, cols, first_in, first_out, in_row_step: g.stride * g.width, out_row_step: g.out_width, stride: g.stride }
    }

    /// Calls `f(input index, output index)` for every position of the rectangle, row by row.
    /// Short rows are the norm (a 4-wide output plane at 48×64), so the loop carries indices
    /// rather than re-slicing per row.
    #[inline(always)]
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let stride = if S == 0 { self.stride } else { S };
        let (mut row_in, mut row_out) = (self.first_in, self.first_out);
        for _ in 0..self.rows {
            for j in 0..self.cols {
                f(row_in + j * stride, row_out + j);
            }
            row_in += self.in_row_step;
            row_out += self.out_row_step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column entry against its definition, at borders and with a kernel wider than the
    /// image; and `col2im` as the adjoint of `im2col`: ⟨im2col(x), d⟩ = ⟨x, col2im(d)⟩.
    #[test]
    fn columns_follow_the_definition_and_col2im_is_their_adjoint() {
        for (shape, k, s) in [([2, 3, 7, 6], 3, 2), ([1, 2, 5, 5], 3, 1), ([2, 1, 4, 9], 5, 2), ([1, 2, 1, 2], 3, 2)] {
            let g = Geometry::new(shape, k, s);
            let x: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| (i as f32 * 0.37).sin()).collect();
            let cols = im2col(&g, &x);
            let (pad, row_len) = ((k / 2) as isize, g.batch * g.out_plane());
            for r in 0..col_rows(&g) {
                let (c, ky, kx) = (r / (k * k), (r / k % k) as isize, (r % k) as isize);
                for col in 0..row_len {
                    let (n, oy, ox) = (col / g.out_plane(), (col % g.out_plane() / g.out_width) as isize, (col % g.out_width) as isize);
                    let (iy, ix) = (oy * s as isize + ky - pad, ox * s as isize + kx - pad);
                    let inside = (0..g.height as isize).contains(&iy) && (0..g.width as isize).contains(&ix);
                    let want = if inside { x[((n * g.channels + c) * g.height + iy as usize) * g.width + ix as usize] } else { 0.0 };
                    assert_eq!(cols[r * row_len + col], want, "{shape:?} k{k} s{s} row {r} col {col}");
                }
            }
            let d: Vec<f32> = (0..cols.len()).map(|i| (i as f32 * 0.11).cos()).collect();
            let lhs: f64 = cols.iter().zip(&d).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = x.iter().zip(&col2im(&g, &d)).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!((lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()), "{shape:?} k{k} s{s}: {lhs} vs {rhs}");
        }
    }
}
