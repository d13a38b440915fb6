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
/// Dropped, its own bytes go back to this thread's [`image_bytes`].
pub(super) struct Img<'a> {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) px: Pixels<'a>,
}

impl Drop for Img<'_> {
    fn drop(&mut self) {
        if let Pixels::U8(Cow::Owned(bytes)) = &mut self.px {
            give_back(std::mem::take(bytes));
        }
    }
}

/// Byte buffers of dropped working images, kept per thread for the next image.
///
/// Why: at b4_focal's size a working image is 433 KB, and a sample makes two (the resize's and
/// the rotation's). Freed, glibc may return such blocks to the kernel (above its trim
/// threshold, depending on what else the heap holds), and then every sample page-faults its
/// buffers in again: in a timing test of b4_focal's train ops on one thread, 10 k page faults
/// for 50 samples and 1.54 ms a sample, against 1.13 ms with the buffers kept here. (The
/// loader bench's heap happened to keep them: its page faults did not change.)
const KEPT_BUFFERS: usize = 4;

/// Smaller buffers are cheap to allocate and not kept.
const MIN_KEPT_BYTES: usize = 64 * 1024;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A zeroed buffer of `n` bytes for a working image, reusing one this thread gave back
/// (at most [`KEPT_BUFFERS`]: a sample's ops hold two working images at once).
pub(super) fn image_bytes(n: usize) -> Vec<u8> {
    let kept = SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        let fits = spare.iter().position(|b| b.capacity() >= n)?;
        Some(spare.swap_remove(fits))
    });
    match kept {
        Some(mut bytes) => {
            // Zeroed again, so that no byte of an earlier image can reach this one.
            bytes.clear();
            bytes.resize(n, 0);
            bytes
        }
        None => vec![0; n],
    }
}

/// Keeps `bytes` for a later [`image_bytes`] on this thread, if worth it and there is room.
fn give_back(bytes: Vec<u8>) {
    if bytes.capacity() < MIN_KEPT_BYTES {
        return;
    }
    // `try_with`: a thread being torn down has no pool left to give to.
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT_BUFFERS {
            spare.push(bytes);
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A dropped image's bytes come back (the same allocation) for the next image on the
    /// thread, zeroed, at any size up to theirs; borrowed and small bytes are not kept.
    #[test]
    fn dropped_image_bytes_are_reused_zeroed() {
        let n = 2 * MIN_KEPT_BYTES;
        let mut bytes = image_bytes(n);
        bytes.fill(7);
        let at = bytes.as_ptr();
        drop(Img { w: n / 3, h: 1, px: Pixels::U8(Cow::Owned(bytes)) });
        let again = image_bytes(n - 5);
        assert_eq!(again.as_ptr(), at, "the buffer was not reused");
        assert!(again.len() == n - 5 && again.iter().all(|&b| b == 0), "a reused buffer is not zeroed");
        let again = Img { w: (n - 5) / 3, h: 1, px: Pixels::U8(Cow::Owned(again)) };
        let kept = || SPARE.with(|spare| spare.borrow().len());
        let before = kept();
        drop(Img { w: 1, h: 1, px: Pixels::U8(Cow::Owned(vec![1u8; 3])) });
        let borrowed = [1u8; 3];
        drop(Img { w: 1, h: 1, px: Pixels::U8(Cow::Borrowed(&borrowed)) });
        assert_eq!(kept(), before, "a small or borrowed buffer was kept");
        drop(again);
        assert_eq!(kept(), before + 1, "a large owned buffer was not kept");
    }
}
