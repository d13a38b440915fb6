//! Pointwise ops (jitter's three factors and normalise) once their random factors are drawn.
//!
//! The per-value arithmetic lives here, shared by the plane-at-a-time general path below and
//! the fused emitter, so that the two can only differ in order and layout (which the
//! equivalence test in `fused` checks), never in a formula. Jitter clamps to [0, 1] after each
//! factor.

use super::pixels::planes;

/// A pointwise op with its random factor drawn.
#[derive(Debug, Clone, Copy)]
pub(super) enum PointOp {
    Brightness(f32),
    /// Factor; the grey mean is computed when the op is evaluated.
    Contrast(f32),
    Saturation(f32),
    Normalize {
        mean: [f32; 3],
        inv_std: [f32; 3],
    },
}

/// Mean of a plane, summed in 16 lanes so that the loop vectorises (and stays deterministic).
fn plane_mean(v: &[f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mut acc = [0.0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..16 {
            acc[k] += c[k];
        }
    }
    (acc.iter().sum::<f32>() + tail) / v.len() as f32
}

/// Applies pointwise ops in order, in place on CHW planes, one vectorisable pass each.
/// Jitter clamps to [0, 1] after each factor, as torchvision does on float tensors.
pub(super) fn apply_point_ops(ops: &[PointOp], out: &mut [f32], plane: usize) {
    let [r, g, b] = planes(out, plane);
    for op in ops {
        match *op {
            PointOp::Brightness(f) => {
                for ch in [&mut *r, &mut *g, &mut *b] {
                    for v in ch.iter_mut() {
                        *v = brightness(*v, f);
                    }
                }
            }
            PointOp::Contrast(f) => {
                let offset = contrast_offset([plane_mean(r), plane_mean(g), plane_mean(b)], f);
                for ch in [&mut *r, &mut *g, &mut *b] {
                    for v in ch.iter_mut() {
                        *v = contrast(*v, f, offset);
                    }
                }
            }
            PointOp::Saturation(f) => {
                for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                    [*r, *g, *b] = saturation([*r, *g, *b], f);
                }
            }
            PointOp::Normalize { mean, inv_std } => {
                for (c, ch) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
                    for v in ch.iter_mut() {
                        *v = normalize(*v, mean[c], inv_std[c]);
                    }
                }
            }
        }
    }
}

/// ITU-R 601 grey, with torchvision's weights.
#[inline(always)]
fn grey([r, g, b]: [f32; 3]) -> f32 {
    0.2989 * r + 0.587 * g + 0.114 * b
}

#[inline(always)]
pub(super) fn brightness(v: f32, factor: f32) -> f32 {
    (v * factor).clamp(0.0, 1.0)
}

/// `mean * (1 - factor)` for per-channel means `means`: what contrast adds to `v * factor`.
#[inline(always)]
pub(super) fn contrast_offset(means: [f32; 3], factor: f32) -> f32 {
    grey(means) * (1.0 - factor)
}

#[inline(always)]
pub(super) fn contrast(v: f32, factor: f32, offset: f32) -> f32 {
    (v * factor + offset).clamp(0.0, 1.0)
}

#[inline(always)]
pub(super) fn saturation(rgb: [f32; 3], factor: f32) -> [f32; 3] {
    let grey = grey(rgb) * (1.0 - factor);
    rgb.map(|v| (v * factor + grey).clamp(0.0, 1.0))
}

#[inline(always)]
pub(super) fn normalize(v: f32, mean: f32, inv_std: f32) -> f32 {
    (v - mean) * inv_std
}
