//! Per-sample augmentation: an ordered list of [`AugOp`]s turns one HWC `u8` image into
//! one CHW `f32` tensor.
//!
//! Constraints kept here:
//! - every random draw comes from a [`SplitMix64`] seeded by the caller (the loader derives
//!   it from `(seed, epoch, sample)` with [`sample_seed`]), and ops draw in list order, so a
//!   sample's tensor never depends on thread count or on which other samples ran;
//! - semantics follow torchvision (`RandomResizedCrop`, `ColorJitter` with a random order of
//!   its three factors and clamping to [0, 1], `Normalize`, `RandomErasing` with value 0);
//! - work is lazy: consecutive resizes and crops (resize → random-resized-crop, resize →
//!   centre-crop) collapse into one crop box and one SIMD resampling of the `u8` pixels; a
//!   flip is remembered rather than copied; jitter and normalise wait as pointwise ops.
//!   Pending work is only materialised when a later op needs it (e.g. a resize after a flip
//!   or after jitter, whose contrast mean depends on the whole image);
//! - the common end, `u8` pixels with a pending flip and pointwise ops, goes through
//!   `fused`: one pass that writes each output value once (two with a contrast), bit-identical
//!   to the general path (planes, then one pass per op), which the `f32` case still takes;
//! - the output may be uninitialised memory ([`augment_into_uninit`]): batches are not zeroed
//!   first.
//!
//! Values: a `u8` image stands for `v / 255`; jitter works on that [0, 1] scale, so it must
//! come before `Normalize` ([`Augmenter::new`] rejects the other order).

use std::borrow::Cow;
use std::mem::MaybeUninit;

mod fused;
mod rotate;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// One per-sample op. Sizes are `width × height` in pixels; angles in degrees
/// (positive = counter-clockwise); probabilities in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub enum AugOp {
    /// Stretch to exactly `width × height`.
    Resize { width: u32, height: u32 },
    /// torchvision `RandomResizedCrop`: a box of `scale` × area and aspect `ratio`
    /// (log-uniform), resized to `width × height`.
    RandomResizedCrop { width: u32, height: u32, scale: [f64; 2], ratio: [f64; 2] },
    /// A centred `width × height` box (zero-padded where the image is smaller).
    CenterCrop { width: u32, height: u32 },
    /// Mirror left-right with probability `p`.
    Hflip { p: f64 },
    /// Rotate by a uniform angle in [-degrees, degrees], or by exactly `degrees` when
    /// `random` is false; bilinear, same size, corners filled with 0.
    Rotate { degrees: f64, random: bool },
    /// Factors drawn uniformly from [max(0, 1 - x), 1 + x] and applied in a random order.
    Jitter { brightness: f64, contrast: f64, saturation: f64 },
    /// `(v - mean) / std` per channel.
    Normalize { mean: [f64; 3], std: [f64; 3] },
    /// torchvision `RandomErasing` (value 0): with probability `p`, zero a box of `scale` ×
    /// area and aspect `ratio`.
    RandomErasing { p: f64, scale: [f64; 2], ratio: [f64; 2] },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugError {
    #[error("augment op {index} (`{op}`): {reason}")]
    InvalidOp { index: usize, op: &'static str, reason: String },
    #[error("input image has {found} bytes, {width}x{height}x3 needs {expected}")]
    InputSize { width: usize, height: usize, expected: usize, found: usize },
    #[error("output buffer has {found} values, the pipeline produces {expected}")]
    OutputSize { expected: usize, found: usize },
    #[error("resize failed: {0}")]
    Resize(String),
}

impl AugOp {
    pub fn name(&self) -> &'static str {
        match self {
            AugOp::Resize { .. } => "resize",
            AugOp::RandomResizedCrop { .. } => "random_resized_crop",
            AugOp::CenterCrop { .. } => "center_crop",
            AugOp::Hflip { .. } => "hflip",
            AugOp::Rotate { .. } => "rotate",
            AugOp::Jitter { .. } => "jitter",
            AugOp::Normalize { .. } => "normalize",
            AugOp::RandomErasing { .. } => "random_erasing",
        }
    }

    /// The size this op turns a `w × h` image into.
    pub fn output_size(&self, w: usize, h: usize) -> (usize, usize) {
        match *self {
            AugOp::Resize { width, height } | AugOp::RandomResizedCrop { width, height, .. } | AugOp::CenterCrop { width, height } => {
                (width as usize, height as usize)
            }
            _ => (w, h),
        }
    }

    fn check(&self) -> Result<(), String> {
        let prob = |p: f64| {
            if (0.0..=1.0).contains(&p) { Ok(()) } else { Err(format!("probability {p} is outside [0, 1]")) }
        };
        let range = |what: &str, r: [f64; 2], positive: bool| {
            let ok = r[0].is_finite() && r[1].is_finite() && r[0] <= r[1];
            if !ok || (positive && r[0] <= 0.0) || r[0] < 0.0 {
                Err(format!("{what} [{}, {}] is not a valid range", r[0], r[1]))
            } else {
                Ok(())
            }
        };
        match *self {
            AugOp::Resize { width, height } | AugOp::RandomResizedCrop { width, height, .. } | AugOp::CenterCrop { width, height }
                if width == 0 || height == 0 =>
            {
                Err(format!("empty size {width}x{height}"))
            }
            AugOp::RandomResizedCrop { scale, ratio, .. } => {
                range("scale", scale, true)?;
                range("ratio", ratio, true)
            }
            AugOp::Hflip { p } => prob(p),
            AugOp::Rotate { degrees, .. } if !degrees.is_finite() => Err(format!("angle {degrees} is not finite")),
            AugOp::Jitter { brightness, contrast, saturation } => {
                for (name, x) in [("brightness", brightness), ("contrast", contrast), ("saturation", saturation)] {
                    if !(x.is_finite() && x >= 0.0) {
                        return Err(format!("{name} {x} must be a finite value ≥ 0"));
                    }
                }
                Ok(())
            }
            AugOp::Normalize { mean, std } => {
                if mean.iter().chain(&std).any(|v| !v.is_finite()) || std.contains(&0.0) {
                    Err("mean and std must be finite and std non-zero".into())
                } else {
                    Ok(())
                }
            }
            AugOp::RandomErasing { p, scale, ratio } => {
                prob(p)?;
                range("scale", scale, true)?;
                range("ratio", ratio, true)
            }
            _ => Ok(()),
        }
    }
}

/// Checks each op and their order (jitter works on [0, 1] values, so not after normalise).
pub fn validate_ops<'a>(ops: impl IntoIterator<Item = &'a AugOp>) -> Result<(), AugError> {
    let mut normalised = false;
    for (index, op) in ops.into_iter().enumerate() {
        let invalid = |reason: String| AugError::InvalidOp { index, op: op.name(), reason };
        op.check().map_err(invalid)?;
        match op {
            AugOp::Normalize { .. } => normalised = true,
            AugOp::Jitter { .. } if normalised => {
                return Err(invalid("jitter must come before normalize".into()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The output size of `ops` on a `w × h` input.
pub fn output_size<'a>(ops: impl IntoIterator<Item = &'a AugOp>, w: usize, h: usize) -> (usize, usize) {
    ops.into_iter().fold((w, h), |(w, h), op| op.output_size(w, h))
}

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

/// Views initialised values as possibly-uninitialised ones, for writers that take either.
fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the writers behind `MaybeUninit` only ever store valid `f32`s, so
    // the slice stays initialised for the caller.
    unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Zero-fills `out` and returns it as initialised values.
fn zeroed(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for v in out.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was just written, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

// ------------------------------------------------------------------------------ rng

/// splitmix64: a tiny counter-based generator; good enough for augmentation draws and
/// trivially reproducible.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Hashes a tuple of integers into one seed (order-sensitive).
pub fn hash_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x6D61_736B_666C_6F77, |h, &p| mix64(h ^ mix64(p.wrapping_add(GOLDEN))))
}

/// The RNG seed of one sample's augmentation in one epoch.
pub fn sample_seed(seed: u64, epoch: u64, sample: u64) -> u64 {
    hash_seed(&[1, seed, epoch, sample])
}

// ------------------------------------------------------------------------------ images

enum Pixels<'a> {
    /// HWC bytes standing for `v / 255`.
    U8(Cow<'a, [u8]>),
    /// HWC values on the tensor scale.
    F32(Vec<f32>),
}

struct Img<'a> {
    w: usize,
    h: usize,
    px: Pixels<'a>,
}

/// A pointwise op with its random factor drawn.
#[derive(Debug, Clone, Copy)]
enum PointOp {
    Brightness(f32),
    /// Factor; the grey mean is computed when the op is evaluated.
    Contrast(f32),
    Saturation(f32),
    Normalize {
        mean: [f32; 3],
        inv_std: [f32; 3],
    },
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
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

/// Splits a CHW buffer into its three planes.
fn planes(out: &mut [f32], plane: usize) -> [&mut [f32]; 3] {
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    [r, g, &mut b[..plane]]
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

/// Writes HWC values (already on the tensor scale) as CHW planes.
fn write_f32_planes(v: &[f32], out: &mut [f32]) {
    let [r, g, b] = planes(out, v.len() / 3);
    let dst = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
    for (((r, g), b), s) in dst.zip(v.chunks_exact(3)) {
        *r = s[0];
        *g = s[1];
        *b = s[2];
    }
}

/// Applies pointwise ops in order, in place on CHW planes, one vectorisable pass each.
/// Jitter clamps to [0, 1] after each factor, as torchvision does on float tensors.
fn apply_point_ops(ops: &[PointOp], out: &mut [f32], plane: usize) {
    let [r, g, b] = planes(out, plane);
    for op in ops {
        match *op {
            PointOp::Brightness(f) => {
                for ch in [&mut *r, &mut *g, &mut *b] {
                    for v in ch.iter_mut() {
                        *v = point::brightness(*v, f);
                    }
                }
            }
            PointOp::Contrast(f) => {
                let offset = point::contrast_offset([plane_mean(r), plane_mean(g), plane_mean(b)], f);
                for ch in [&mut *r, &mut *g, &mut *b] {
                    for v in ch.iter_mut() {
                        *v = point::contrast(*v, f, offset);
                    }
                }
            }
            PointOp::Saturation(f) => {
                for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                    [*r, *g, *b] = point::saturation([*r, *g, *b], f);
                }
            }
            PointOp::Normalize { mean, inv_std } => {
                for (c, ch) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
                    for v in ch.iter_mut() {
                        *v = point::normalize(*v, mean[c], inv_std[c]);
                    }
                }
            }
        }
    }
}

/// The per-value arithmetic of the pointwise ops, shared by the plane-at-a-time path above and
/// the fused emitter, so that the two can only differ in order and layout (which the
/// equivalence test checks), never in a formula. Jitter clamps to [0, 1] after each factor.
mod point {
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
                    self.materialize()?;
                    self.img = rotate(&self.img, angle);
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

/// torchvision `RandomResizedCrop.get_params`.
fn random_resized_box(w: usize, h: usize, scale: [f64; 2], ratio: [f64; 2], rng: &mut SplitMix64) -> Rect {
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
fn random_erasing_box(w: usize, h: usize, scale: [f64; 2], ratio: [f64; 2], rng: &mut SplitMix64) -> Option<Rect> {
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

/// Resizes the `crop` box (left, top, width, height) of `img` to `w × h`.
fn resize<'a>(img: &Img<'_>, crop: (f64, f64, f64, f64), w: usize, h: usize) -> Result<Img<'a>, AugError> {
    let err = |e: &dyn std::fmt::Display| AugError::Resize(e.to_string());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(crop.0, crop.1, crop.2, crop.3);
    let (bytes, pixel_type) = match &img.px {
        Pixels::U8(b) => (&b[..], PixelType::U8x3),
        Pixels::F32(v) => (f32_bytes(v), PixelType::F32x3),
    };
    let src = ImageRef::new(img.w as u32, img.h as u32, bytes, pixel_type).map_err(|e| err(&e))?;
    let mut dst = Image::new(w as u32, h as u32, pixel_type);
    RESIZER.with(|r| r.borrow_mut().resize(&src, &mut dst, &options)).map_err(|e| err(&e))?;
    let out = dst.into_vec();
    let px = match pixel_type {
        PixelType::U8x3 => Pixels::U8(Cow::Owned(out)),
        _ => Pixels::F32(out.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect()),
    };
    Ok(Img { w, h, px })
}

fn center_crop<'a>(img: &Img<'_>, w: usize, h: usize) -> Img<'a> {
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

fn hflip(img: &mut Img<'_>) {
    let w = img.w;
    match &mut img.px {
        // A borrowed (shard) image: write the mirror straight into a new buffer.
        Pixels::U8(Cow::Borrowed(src)) => {
            let mut out = vec![0u8; src.len()];
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

/// Rotates counter-clockwise by `degrees` about the image centre (bilinear, zero fill).
fn rotate<'a>(img: &Img<'_>, degrees: f64) -> Img<'a> {
    let px = match &img.px {
        Pixels::U8(b) => {
            Pixels::U8(Cow::Owned(rotate::run(b, img.w, img.h, degrees, |v: u8| v as f32, |c: f32| c.round().clamp(0.0, 255.0) as u8)))
        }
        Pixels::F32(v) => Pixels::F32(rotate::run(v, img.w, img.h, degrees, |v: f32| v, |c: f32| c)),
    };
    Img { w: img.w, h: img.h, px }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first, straightforward rotation (per-pixel closures), kept as the reference that
    /// `rotate::run` must match bit for bit.
    fn rotate_reference<'a>(img: &Img<'_>, degrees: f64) -> Img<'a> {
        let (w, h) = (img.w, img.h);
        let (sin, cos) = degrees.to_radians().sin_cos();
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        let sample = |x: usize, y: usize, get: &dyn Fn(usize, usize) -> [f32; 3]| -> [f32; 3] {
            let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            // Inverse map: destination → source (y grows downwards).
            let sx = cos * dx - sin * dy + cx - 0.5;
            let sy = sin * dx + cos * dy + cy - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            let mut acc = [0.0f32; 3];
            for (oy, wy) in [(0.0, 1.0 - fy), (1.0, fy)] {
                for (ox, wx) in [(0.0, 1.0 - fx), (1.0, fx)] {
                    let (px, py) = (x0 + ox, y0 + oy);
                    if px < 0.0 || py < 0.0 || px >= w as f64 || py >= h as f64 {
                        continue;
                    }
                    let v = get(px as usize, py as usize);
                    for c in 0..3 {
                        acc[c] += v[c] * wx * wy;
                    }
                }
            }
            acc
        };
        let px = match &img.px {
            Pixels::U8(b) => {
                let get = |x: usize, y: usize| {
                    let i = (y * w + x) * 3;
                    [b[i] as f32, b[i + 1] as f32, b[i + 2] as f32]
                };
                let mut out = Vec::with_capacity(w * h * 3);
                for y in 0..h {
                    for x in 0..w {
                        let v = sample(x, y, &get);
                        out.extend(v.map(|c| c.round().clamp(0.0, 255.0) as u8));
                    }
                }
                Pixels::U8(Cow::Owned(out))
            }
            Pixels::F32(v) => {
                let get = |x: usize, y: usize| {
                    let i = (y * w + x) * 3;
                    [v[i], v[i + 1], v[i + 2]]
                };
                let mut out = Vec::with_capacity(w * h * 3);
                for y in 0..h {
                    for x in 0..w {
                        out.extend(sample(x, y, &get));
                    }
                }
                Pixels::F32(out)
            }
        };
        Img { w, h, px }
    }

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
    const EMITTERS: [(&str, Emit); 2] = [("dispatched", fused::emit), ("portable", fused::emit_portable)];

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
    fn rotation_matches_the_first_version_bit_for_bit() {
        let mut rng = SplitMix64::new(11);
        for (w, h) in [(1, 1), (2, 3), (7, 5), (31, 17), (64, 64), (40, 90)] {
            let bytes: Vec<u8> = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
            let floats: Vec<f32> = (0..w * h * 3).map(|_| rng.next_f64() as f32).collect();
            for degrees in [0.25, -3.0, 10.0, 45.0, 90.0, -137.5, rng.uniform(-180.0, 180.0)] {
                let images = [Img { w, h, px: Pixels::U8(Cow::Borrowed(&bytes)) }, Img { w, h, px: Pixels::F32(floats.clone()) }];
                for img in &images {
                    let (got, want) = (rotate(img, degrees), rotate_reference(img, degrees));
                    let same = match (&got.px, &want.px) {
                        (Pixels::U8(a), Pixels::U8(b)) => a == b,
                        (Pixels::F32(a), Pixels::F32(b)) => a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()),
                        _ => false,
                    };
                    assert!(same, "{w}x{h} by {degrees} degrees");
                }
            }
        }
    }

    #[test]
    fn a_quarter_turn_moves_pixels_where_a_quarter_turn_should() {
        // Counter-clockwise by 90 degrees: source (x, y) lands at (y, w - 1 - x) on a square.
        let n = 6;
        let src: Vec<u8> = (0..n * n * 3).map(|i| (i * 5 % 251) as u8).collect();
        let img = Img { w: n, h: n, px: Pixels::U8(Cow::Borrowed(&src)) };
        let Pixels::U8(out) = rotate(&img, 90.0).px else { panic!("u8 in, u8 out") };
        for y in 0..n {
            for x in 0..n {
                let (dx, dy) = (y, n - 1 - x);
                assert_eq!(out[(dy * n + dx) * 3..][..3], src[(y * n + x) * 3..][..3], "source pixel ({x}, {y})");
            }
        }
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
