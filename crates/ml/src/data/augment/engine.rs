//! The lazy engine: runs an op list on one image, keeping crops, resizes, a mirror and
//! pointwise ops pending until a later op needs them resolved, then writes the CHW tensor.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::fused;
use super::geometry::{center_crop, hflip, random_erasing_box, random_resized_box, resize};
use super::ops::{AugError, AugOp, output_size, validate_ops};
use super::pixels::{Img, Pixels, Rect, as_uninit, planes, write_f32_planes, zeroed};
use super::point::{PointOp, apply_point_ops};
use super::rotate::rotate;
use crate::rng::SplitMix64;

/// A validated op list.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmenter {
    ops: Vec<AugOp>,
}

impl Augmenter {
    pub fn new(ops: Vec<AugOp>) -> Result<Self, AugError> {
        validate_ops(&ops)?;
        Ok(Augmenter { ops })
    }

    pub fn ops(&self) -> &[AugOp] {
        &self.ops
    }

    pub fn output_size(&self, w: usize, h: usize) -> (usize, usize) {
        output_size(&self.ops, w, h)
    }

    /// Runs the ops on `src` (HWC `u8`, `w × h`), writing CHW `f32` into `out`, with all
    /// random draws from `SplitMix64::new(seed)`.
    pub fn apply(&self, src: &[u8], w: usize, h: usize, seed: u64, out: &mut [f32]) -> Result<(), AugError> {
        augment_into(&[&self.ops], src, w, h, &mut SplitMix64::new(seed), out)
    }
}

/// Runs the op lists of `chain` one after the other (already validated as one list) on
/// `src` and writes the CHW result into `out`.
pub fn augment_into(chain: &[&[AugOp]], src: &[u8], w: usize, h: usize, rng: &mut SplitMix64, out: &mut [f32]) -> Result<(), AugError> {
    augment_into_uninit(chain, src, w, h, rng, as_uninit(out)).map(|_| ())
}

/// [`augment_into`] for a buffer not yet initialised (a batch being assembled): every value
/// is written, and the initialised buffer is returned. Saves zeroing 600 KB per 224×224
/// sample that the ops overwrite anyway.
pub fn augment_into_uninit<'o>(
    chain: &[&[AugOp]],
    src: &[u8],
    w: usize,
    h: usize,
    rng: &mut SplitMix64,
    out: &'o mut [MaybeUninit<f32>],
) -> Result<&'o mut [f32], AugError> {
    if src.len() != w * h * 3 {
        return Err(AugError::InputSize { width: w, height: h, expected: w * h * 3, found: src.len() });
    }
    let (ow, oh) = output_size(chain.iter().flat_map(|ops| ops.iter()), w, h);
    if out.len() != ow * oh * 3 {
        return Err(AugError::OutputSize { expected: ow * oh * 3, found: out.len() });
    }
    let mut work =
        Work { img: Img { w, h, px: Pixels::U8(Cow::Borrowed(src)) }, view: None, flip: false, point: Vec::new(), erase: Vec::new() };
    for op in chain.iter().flat_map(|ops| ops.iter()) {
        work.apply(op, rng)?;
    }
    work.emit_chw(out)
}

/// A pending crop of the stored image (left, top, width, height in its pixels), to be
/// resized to `w × h`.
#[derive(Debug, Clone, Copy)]
struct View {
    crop: (f64, f64, f64, f64),
    w: usize,
    h: usize,
}

/// The image plus the geometry, mirror, pointwise ops and erasures not yet applied to it
/// (in that order).
struct Work<'a> {
    img: Img<'a>,
    view: Option<View>,
    /// Mirror left-right after `view`. Only deferred while no pointwise op or erasure is
    /// pending, so the order above holds; the fused emitter then reads the source
    /// mirrored instead of copying it.
    flip: bool,
    point: Vec<PointOp>,
    erase: Vec<Rect>,
}

impl<'a> Work<'a> {
    /// The size of the image as the ops see it (after any pending crop/resize).
    fn size(&self) -> (usize, usize) {
        match &self.view {
            Some(v) => (v.w, v.h),
            None => (self.img.w, self.img.h),
        }
    }

    /// Crops the current (virtual) image to `b` and resizes that box to `w × h`, lazily:
    /// the box is mapped back onto the stored image so that chains such as resize →
    /// random-resized-crop or resize → centre-crop cost one resampling.
    fn crop_resize(&mut self, b: (f64, f64, f64, f64), w: usize, h: usize) -> Result<(), AugError> {
        if self.flip {
            // The box is in mirrored coordinates: settle the mirror before composing.
            self.resolve_geometry()?;
        }
        let (cw, ch) = self.size();
        let base = match &self.view {
            Some(v) => v.crop,
            None => (0.0, 0.0, self.img.w as f64, self.img.h as f64),
        };
        let (sx, sy) = (base.2 / cw as f64, base.3 / ch as f64);
        self.view = Some(View { crop: (base.0 + b.0 * sx, base.1 + b.1 * sy, b.2 * sx, b.3 * sy), w, h });
        Ok(())
    }

    fn apply(&mut self, op: &AugOp, rng: &mut SplitMix64) -> Result<(), AugError> {
        match *op {
            AugOp::Resize { width, height } => {
                self.materialize_point()?;
                let (cw, ch) = self.size();
                let full = (0.0, 0.0, cw as f64, ch as f64);
                self.crop_resize(full, width as usize, height as usize)?;
            }
            AugOp::RandomResizedCrop { width, height, scale, ratio } => {
                let (cw, ch) = self.size();
                let b = random_resized_box(cw, ch, scale, ratio, rng);
                self.materialize_point()?;
                let crop = (b.x as f64, b.y as f64, b.w as f64, b.h as f64);
                self.crop_resize(crop, width as usize, height as usize)?;
            }
            AugOp::CenterCrop { width, height } => {
                self.materialize_point()?;
                let (cw, ch) = self.size();
                let (w, h) = (width as usize, height as usize);
                if w <= cw && h <= ch {
                    let (x, y) = ((cw - w) / 2, (ch - h) / 2);
                    self.crop_resize((x as f64, y as f64, w as f64, h as f64), w, h)?;
                } else {
                    self.materialize()?;
                    self.img = center_crop(&self.img, w, h);
                }
            }
            AugOp::Hflip { p } => {
                if rng.next_f64() < p {
                    if self.point.is_empty() && self.erase.is_empty() {
                        self.flip = !self.flip;
                    } else {
                        self.materialize()?;
                        hflip(&mut self.img);
                    }
                }
            }
            AugOp::Rotate { degrees, random } => {
                let angle = if random { rng.uniform(-degrees, degrees) } else { degrees };
                if angle != 0.0 {
                    self.resolve_view()?;
                    // Pending pointwise ops or erasures (which come after a pending mirror)
                    // are applied first, mirror included; otherwise a pending mirror is read
                    // by the rotation rather than copied first.
                    self.materialize_point()?;
                    self.img = rotate(&self.img, angle, std::mem::take(&mut self.flip));
                }
            }
            AugOp::Jitter { brightness, contrast, saturation } => {
                if !self.erase.is_empty() {
                    self.materialize()?;
                }
                // torchvision draws the order first, then the factors.
                let mut order = [0usize, 1, 2];
                for i in (1..3).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let factor = |x: f64, rng: &mut SplitMix64| (x > 0.0).then(|| rng.uniform((1.0 - x).max(0.0), 1.0 + x) as f32);
                let factors = [
                    factor(brightness, rng).map(PointOp::Brightness),
                    factor(contrast, rng).map(PointOp::Contrast),
                    factor(saturation, rng).map(PointOp::Saturation),
                ];
                self.point.extend(order.iter().filter_map(|&i| factors[i]));
            }
            AugOp::Normalize { mean, std } => {
                if !self.erase.is_empty() {
                    self.materialize()?;
                }
                self.point.push(PointOp::Normalize { mean: mean.map(|m| m as f32), inv_std: std.map(|s| (1.0 / s) as f32) });
            }
            AugOp::RandomErasing { p, scale, ratio } => {
                let (cw, ch) = self.size();
                if rng.next_f64() < p
                    && let Some(rect) = random_erasing_box(cw, ch, scale, ratio, rng)
                {
                    self.erase.push(rect);
                }
            }
        }
        Ok(())
    }

    /// Runs the pending crop/resize and mirror, if any.
    fn resolve_geometry(&mut self) -> Result<(), AugError> {
        self.resolve_view()?;
        if std::mem::take(&mut self.flip) {
            hflip(&mut self.img);
        }
        Ok(())
    }

    /// Runs the pending crop/resize, if any.
    fn resolve_view(&mut self) -> Result<(), AugError> {
        if let Some(v) = self.view.take() {
            let full = (0.0, 0.0, self.img.w as f64, self.img.h as f64);
            if v.crop != full || (v.w, v.h) != (self.img.w, self.img.h) {
                self.img = resize(&self.img, v.crop, v.w, v.h)?;
            }
        }
        Ok(())
    }

    /// Applies pending pointwise ops and erasures (when there are any).
    fn materialize_point(&mut self) -> Result<(), AugError> {
        if self.point.is_empty() && self.erase.is_empty() {
            return Ok(());
        }
        self.materialize()
    }

    /// Runs everything pending, leaving a stored image of the current size.
    fn materialize(&mut self) -> Result<(), AugError> {
        self.resolve_geometry()?;
        if self.point.is_empty() && self.erase.is_empty() {
            return Ok(());
        }
        let plane = self.img.w * self.img.h;
        let mut chw = vec![0.0f32; 3 * plane];
        self.emit_chw(as_uninit(&mut chw))?;
        let [r, g, b] = planes(&mut chw, plane);
        let mut hwc = Vec::with_capacity(3 * plane);
        for ((r, g), b) in r.iter().zip(g.iter()).zip(b.iter()) {
            hwc.extend_from_slice(&[*r, *g, *b]);
        }
        self.img.px = Pixels::F32(hwc);
        self.point.clear();
        self.erase.clear();
        Ok(())
    }

    /// Writes the CHW tensor: planes, then the pending pointwise ops, then erasures.
    fn emit_chw<'o>(&mut self, out: &'o mut [MaybeUninit<f32>]) -> Result<&'o mut [f32], AugError> {
        self.resolve_view()?;
        if matches!(self.img.px, Pixels::F32(_)) {
            // Only the fused emitter reads a mirror on the fly.
            self.resolve_geometry()?;
        }
        let (w, h) = (self.img.w, self.img.h);
        let plane = w * h;
        let out = match &self.img.px {
            // The epoch-time path: shard pixels straight to the tensor, one pass.
            Pixels::U8(bytes) => fused::emit(bytes, w, h, std::mem::take(&mut self.flip), &self.point, out),
            Pixels::F32(v) => {
                let out = zeroed(out);
                write_f32_planes(v, out);
                apply_point_ops(&self.point, out, plane);
                out
            }
        };
        for r in &self.erase {
            for c in 0..3 {
                for y in r.y..r.y + r.h {
                    let row = c * plane + y * w + r.x;
                    out[row..row + r.w].fill(0.0);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::data::augment::rotate::tests::rotate_reference;

    /// The geometry at the head of `ops` done eagerly, one op at a time, with the plain
    /// primitives (a resize of the whole image, a mirror copied, the first rotation); the
    /// rest (pointwise ops, which `fused` checks against the general path) goes to the
    /// engine on the result, with the random draws continuing in order.
    fn eager(ops: &[AugOp], src: &[u8], w: usize, h: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        let mut img = Img { w, h, px: Pixels::U8(Cow::Borrowed(src)) };
        let mut rest = ops;
        while let Some((op, tail)) = rest.split_first() {
            match *op {
                AugOp::Resize { width, height } => {
                    img = resize(&img, (0.0, 0.0, img.w as f64, img.h as f64), width as usize, height as usize).expect("resize");
                }
                AugOp::Hflip { p } => {
                    if rng.next_f64() < p {
                        hflip(&mut img);
                    }
                }
                AugOp::Rotate { degrees, random } => {
                    let angle = if random { rng.uniform(-degrees, degrees) } else { degrees };
                    if angle != 0.0 {
                        img = rotate_reference(&img, angle);
                    }
                }
                _ => break,
            }
            rest = tail;
        }
        let Pixels::U8(bytes) = &img.px else { panic!("the eager geometry of a u8 image stays u8") };
        let (ow, oh) = output_size(rest, img.w, img.h);
        let mut out = vec![f32::NAN; 3 * ow * oh];
        augment_into(&[rest], bytes, img.w, img.h, &mut rng, &mut out).expect("pointwise ops");
        out
    }

    #[test]
    fn lazy_geometry_gives_the_bits_of_eager_ops() {
        const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
        const STD: [f64; 3] = [0.229, 0.224, 0.225];
        let normalize = AugOp::Normalize { mean: MEAN, std: STD };
        let cases = [
            // pipelines/b4_focal.mf's train ops on its 384x384 shard.
            (
                (384, 384),
                vec![
                    AugOp::Resize { width: 380, height: 380 },
                    AugOp::Hflip { p: 0.5 },
                    AugOp::Rotate { degrees: 10.0, random: true },
                    AugOp::Jitter { brightness: 0.2, contrast: 0.2, saturation: 0.0 },
                    normalize.clone(),
                ],
            ),
            ((41, 29), vec![AugOp::Hflip { p: 1.0 }, AugOp::Rotate { degrees: 45.0, random: true }]),
            (
                (64, 48),
                vec![
                    AugOp::Resize { width: 37, height: 31 },
                    AugOp::Hflip { p: 0.5 },
                    AugOp::Rotate { degrees: 30.0, random: true },
                    AugOp::Hflip { p: 0.5 },
                    AugOp::Rotate { degrees: -90.0, random: false },
                    AugOp::Jitter { brightness: 0.3, contrast: 0.3, saturation: 0.3 },
                ],
            ),
            ((9, 300), vec![AugOp::Hflip { p: 0.5 }, AugOp::Rotate { degrees: 180.0, random: true }, normalize]),
        ];
        let mut rng = SplitMix64::new(5);
        for ((w, h), ops) in &cases {
            let (w, h) = (*w, *h);
            let src: Vec<u8> = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
            let (ow, oh) = output_size(ops, w, h);
            for seed in 0..6 {
                let want = eager(ops, &src, w, h, seed);
                let mut got = vec![f32::NAN; 3 * ow * oh];
                augment_into(&[ops], &src, w, h, &mut SplitMix64::new(seed), &mut got).expect("augment");
                let differ = want.iter().zip(&got).position(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(differ, None, "{w}x{h}, seed {seed}, ops {ops:?}");
            }
        }
    }
}
