//! Geometry on working images: torchvision's random boxes (`RandomResizedCrop`,
//! `RandomErasing`), SIMD crop-and-resize (`u8` images through `data::resample`), centre crop
//! with zero padding, and mirroring.
//! Rotation has its own module, `rotate`.

use std::borrow::Cow;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::ops::AugError;
use super::pixels::{Img, Pixels, Rect, image_bytes};
use crate::data::resample;
use crate::rng::SplitMix64;

/// torchvision `RandomResizedCrop.get_params`.
pub(super) fn random_resized_box(w: usize, h: usize, scale: [f64; 2], ratio: [f64; 2], rng: &mut SplitMix64) -> Rect {
    let area = (w * h) as f64;
    let (log_lo, log_hi) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale[0], scale[1]);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let y = rng.below((h - ch + 1) as u64) as usize;
            let x = rng.below((w - cw + 1) as u64) as usize;
            return Rect { x, y, w: cw, h: ch };
        }
    }
    // Fallback: the largest centred box within the ratio range.
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio[0] {
        (w, ((w as f64 / ratio[0]).round() as usize).clamp(1, h))
    } else if in_ratio > ratio[1] {
        (((h as f64 * ratio[1]).round() as usize).clamp(1, w), h)
    } else {
        (w, h)
    };
    Rect { x: (w - cw) / 2, y: (h - ch) / 2, w: cw, h: ch }
}

/// torchvision `RandomErasing.get_params` (the box, once the coin flip said erase).
pub(super) fn random_erasing_box(w: usize, h: usize, scale: [f64; 2], ratio: [f64; 2], rng: &mut SplitMix64) -> Option<Rect> {
    let area = (w * h) as f64;
    let (log_lo, log_hi) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale[0], scale[1]);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let eh = (target * aspect).sqrt().round() as usize;
        let ew = (target / aspect).sqrt().round() as usize;
        if 0 < eh && eh < h && 0 < ew && ew < w {
            let y = rng.below((h - eh + 1) as u64) as usize;
            let x = rng.below((w - ew + 1) as u64) as usize;
            return Some(Rect { x, y, w: ew, h: eh });
        }
    }
    None
}

thread_local! {
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: every byte pattern is a valid u8, the length covers exactly the f32 slice,
    // and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Resizes the `crop` box (left, top, width, height) of `img` to `w × h` (bilinear, with the
/// kernel widened when downscaling).
pub(super) fn resize<'a>(img: &Img<'_>, crop: (f64, f64, f64, f64), w: usize, h: usize) -> Result<Img<'a>, AugError> {
    let px = match &img.px {
        Pixels::U8(bytes) => {
            let mut out = image_bytes(w * h * 3);
            resample::resize_u8(bytes, (img.w, img.h), crop, (w, h), &mut out).map_err(AugError::Resize)?;
            Pixels::U8(Cow::Owned(out))
        }
        Pixels::F32(v) => {
            let err = |e: &dyn std::fmt::Display| AugError::Resize(e.to_string());
            let options =
                ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(crop.0, crop.1, crop.2, crop.3);
            let src = ImageRef::new(img.w as u32, img.h as u32, f32_bytes(v), PixelType::F32x3).map_err(|e| err(&e))?;
            let mut dst = Image::new(w as u32, h as u32, PixelType::F32x3);
            RESIZER.with(|r| r.borrow_mut().resize(&src, &mut dst, &options)).map_err(|e| err(&e))?;
            let out = dst.into_vec();
            Pixels::F32(out.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
    };
    Ok(Img { w, h, px })
}

pub(super) fn center_crop<'a>(img: &Img<'_>, w: usize, h: usize) -> Img<'a> {
    // Offsets of the crop in the source (may be negative: zero padding).
    let x0 = (img.w as isize - w as isize).div_euclid(2);
    let y0 = (img.h as isize - h as isize).div_euclid(2);
    fn copy<T: Copy + Default>(src: &[T], sw: usize, sh: usize, w: usize, h: usize, x0: isize, y0: isize) -> Vec<T> {
        let mut out = vec![T::default(); w * h * 3];
        let xs = x0.max(0) as usize;
        let xe = ((x0 + w as isize).min(sw as isize)).max(0) as usize;
        if xe <= xs {
            return out;
        }
        let dx = (xs as isize - x0) as usize;
        for y in 0..h {
            let sy = y as isize + y0;
            if sy < 0 || sy >= sh as isize {
                continue;
            }
            let s = (sy as usize * sw + xs) * 3;
            let d = (y * w + dx) * 3;
            let len = (xe - xs) * 3;
            out[d..d + len].copy_from_slice(&src[s..s + len]);
        }
        out
    }
    let px = match &img.px {
        Pixels::U8(b) => Pixels::U8(Cow::Owned(copy(b, img.w, img.h, w, h, x0, y0))),
        Pixels::F32(v) => Pixels::F32(copy(v, img.w, img.h, w, h, x0, y0)),
    };
    Img { w, h, px }
}

pub(super) fn hflip(img: &mut Img<'_>) {
    let w = img.w;
    match &mut img.px {
        // A borrowed (shard) image: write the mirror straight into a new buffer.
        Pixels::U8(Cow::Borrowed(src)) => {
            let mut out = image_bytes(src.len());
            for (dst, row) in out.chunks_exact_mut(w * 3).zip(src.chunks_exact(w * 3)) {
                let (dst, _) = dst.as_chunks_mut::<3>();
                let (px, _) = row.as_chunks::<3>();
                for (d, s) in dst.iter_mut().zip(px.iter().rev()) {
                    *d = *s;
                }
            }
            img.px = Pixels::U8(Cow::Owned(out));
        }
        Pixels::U8(Cow::Owned(v)) => {
            for row in v.chunks_exact_mut(w * 3) {
                row.as_chunks_mut::<3>().0.reverse();
            }
        }
        Pixels::F32(v) => {
            for row in v.chunks_exact_mut(w * 3) {
                row.as_chunks_mut::<3>().0.reverse();
            }
        }
    }
}
