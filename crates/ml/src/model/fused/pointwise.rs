//! Eval-mode 1×1 convolution on f32 with its epilogue (the BatchNorm affine, SiLU, a residual)
//! applied to each output block while it is still in cache, and a squeeze-excite gate applied
//! inside the block.
//!
//! Why: a 1×1 convolution is a product `W · xₙ` per image (`[C_out, C_in]` by `[C_in, P]`).
//! Run as burn's batched matmul, its whole `[N, C_out, P]` output goes to memory, and the
//! BatchNorm + SiLU that follows (and, after a projection, the residual add) reads it back and
//! writes it again: in a profile of B0 inference that pass was a sixth of the time. Here each
//! task computes one block of columns of one image, `[C_out, B]` with `B` chosen so the block
//! fits in L2, and hands its rows to the epilogue straight away. A projection after a
//! squeeze-excite gate `g` (per image and input channel) applies it inside the block, to the
//! smaller operand: `(W ⊙ g) · x` in the early layers (few channels, wide planes), the gated
//! input block in the late ones; either way in cache, instead of a pass over the widest
//! activation in memory.
//!
//! Bits: gemm splits the `C_in` sum into blocks that depend on `C_in` and the cache sizes only,
//! never on the number of columns, so a column block gives the same values as the whole image
//! (a test checks this against burn's matmul on B0's shapes). Tasks write disjoint blocks, so
//! results do not depend on the thread count. A gate folded into the weights rounds differently
//! from the gated input (`(w·g)·x` against `w·(g·x)`), within an f32 rounding per product; which
//! of the two a block uses depends on the shapes only.

use rayon::prelude::*;

use super::dense::SharedOut;

/// Output values per block: 128 KiB, an eighth of this machine's L2, so the block, the
/// weights and the input columns stay there while the epilogue runs.
const BLOCK_VALUES: usize = 1 << 15;
/// Fewest columns per block: narrower products lose gemm's register blocking.
const MIN_BLOCK_COLUMNS: usize = 64;

/// The weights of a 1×1 convolution, `[C_out, C_in]`.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// The same for every image.
    Shared(&'a [f32]),
    /// Image `n` uses `weight[o, i] · gate[n, i]`: a squeeze-excite gate (`[N, C_in]`) on the
    /// input channels. Each block applies it to the smaller operand: the weights when there
    /// are no more output channels than block columns (`(W ⊙ g) · x`, within rounding of
    /// gating the input), else the block's input (`W · (g ⊙ x)`, the bits of the ops in turn).
    Gated { weight: &'a [f32], gate: &'a [f32] },
}

/// `[N, C_in, P]` by the weights → `[N, C_out, P]`, every output row segment passed to
/// `finish(image, channel, columns, values)` right after its block is computed; `finish` may
/// rewrite the values in place.
pub fn forward_then(
    x: &[f32],
    [batch, cin, plane]: [usize; 3],
    weights: Weights,
    cout: usize,
    finish: impl Fn(usize, usize, std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    assert_eq!(x.len(), batch * cin * plane, "x is [N, C_in, P]");
    let (weight, gate) = match weights {
        Weights::Shared(weight) => (weight, None),
        Weights::Gated { weight, gate } => {
            assert_eq!(gate.len(), batch * cin, "the gate is [N, C_in]");
            (weight, Some(gate))
        }
    };
    assert_eq!(weight.len(), cout * cin, "weight is [C_out, C_in]");
    let total = batch * cout * plane;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let width = block_width(cout, plane);
    let blocks = plane.div_ceil(width);
    let dst = SharedOut(out.as_mut_ptr());
    (0..batch * blocks).into_par_iter().for_each_init(Vec::new, |gated: &mut Vec<f32>, task| {
        let (n, b) = (task / blocks, task % blocks);
        let columns = b * width..((b + 1) * width).min(plane);
        let (start, len) = (n * cout * plane + columns.start, columns.len());
        let image = &x[n * cin * plane..][..cin * plane];
        // The weights `[C_out, C_in]` and the block's input `[C_in, len]` (rows `rhs_stride`
        // apart), one of them gated.
        let (lhs, rhs, rhs_stride): (&[f32], &[f32], usize) = match gate.map(|g| &g[n * cin..][..cin]) {
            None => (weight, &image[columns.start..], plane),
            // Written row by row into a sized buffer, so the products vectorise (`extend`
            // over a flattened iterator went one value at a time).
            Some(g) if cout <= len => {
                gated.resize(cout * cin, 0.0);
                for (dst, row) in gated.chunks_exact_mut(cin).zip(weight.chunks_exact(cin)) {
                    for ((d, &w), &g) in dst.iter_mut().zip(row).zip(g) {
                        *d = w * g;
                    }
                }
                (&gated[..], &image[columns.start..], plane)
            }
            Some(g) => {
                gated.resize(cin * len, 0.0);
                for ((dst, row), &g) in gated.chunks_exact_mut(len).zip(image.chunks(plane)).zip(g) {
                    for (d, &v) in dst.iter_mut().zip(&row[columns.clone()]) {
                        *d = v * g;
                    }
                }
                (weight, &gated[..], len)
            }
        };
        debug_assert!(lhs.len() >= cout * cin && rhs.len() >= (cin.max(1) - 1) * rhs_stride + len);
        // SAFETY: gemm writes rows `start + co·plane .. + len` for co < C_out: inside `out`
        // (n < N, columns < P), and this task's block only; it reads `lhs` (C_out rows of
        // C_in) and `rhs` (C_in rows of `len`, `rhs_stride` apart), both inside their slices.
        unsafe {
            gemm::gemm(
                cout,
                len,
                cin,
                dst.0.add(start),
                1,
                plane as isize,
                false,
                lhs.as_ptr(),
                1,
                cin as isize,
                rhs.as_ptr(),
                1,
                rhs_stride as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for co in 0..cout {
            // SAFETY: row co of this task's block, written just above and touched by no other task.
            let row = unsafe { dst.segment(start + co * plane, len) };
            finish(n, co, columns.clone(), row);
        }
    });
    // SAFETY: the blocks cover every column of every image, and gemm wrote all C_out rows of each.
    unsafe { out.set_len(total) };
    out
}

/// Columns per block: [`BLOCK_VALUES`] over the rows, at least [`MIN_BLOCK_COLUMNS`], a
/// multiple of 16, and balanced so the last block is not a sliver.
fn block_width(cout: usize, plane: usize) -> usize {
    let widest = (BLOCK_VALUES / cout.max(1)).max(MIN_BLOCK_COLUMNS);
    let blocks = plane.div_ceil(widest).max(1);
    plane.div_ceil(blocks).next_multiple_of(16).min(plane)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_plane_and_fit_the_target() {
        for (cout, plane) in [(16, 12544), (96, 12544), (1280, 49), (24, 3136), (1, 5), (4000, 100)] {
            let w = block_width(cout, plane);
            assert!(w >= 1 && w <= plane, "{cout} {plane}: {w}");
            assert!(w == plane || w.is_multiple_of(16), "{cout} {plane}: {w}");
            assert!(w * cout <= 2 * BLOCK_VALUES || w <= MIN_BLOCK_COLUMNS + 16, "{cout} {plane}: {w}");
        }
    }
}
