//! The engine's working image (HWC pixels, `u8` or `f32`) and helpers for the CHW output
//! buffer.

use std::borrow::Cow;
use std::mem::MaybeUninit;

pub(super) enum Pixels<'a> {
    /// HWC bytes standing for `v / 255`.
    U8(Cow<'a, [u8]>),
    /// HWC values on the tensor scale.
    F32(Vec<f32>),
}

/// An image in the engine: `w × h` HWC pixels, borrowed from the shard until an op rewrites them.
pub(super) struct Img<'a> {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) px: Pixels<'a>,
}

/// A box of whole pixels: left, top, width, height.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rect {
    pub(super) x: usize,
    pub(super) y: usize,
    pub(super) w: usize,
    pub(super) h: usize,
}

/// Splits a CHW buffer into its three planes.
pub(super) fn planes(out: &mut [f32], plane: usize) -> [&mut [f32]; 3] {
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    [r, g, &mut b[..plane]]
}

/// Writes HWC values (already on the tensor scale) as CHW planes.
pub(super) fn write_f32_planes(v: &[f32], out: &mut [f32]) {
    let [r, g, b] = planes(out, v.len() / 3);
    let dst = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
    for (((r, g), b), s) in dst.zip(v.chunks_exact(3)) {
        *r = s[0];
        *g = s[1];
        *b = s[2];
    }
}

/// Views initialised values as possibly-uninitialised ones, for writers that take either.
pub(super) fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the writers behind `MaybeUninit` only ever store valid `f32`s, so
    // the slice stays initialised for the caller.
    unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Zero-fills `out` and returns it as initialised values.
pub(super) fn zeroed(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for v in out.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was just written, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}
