//! Batch-level CutMix and MixUp over a [`Batch`].
//!
//! Constraints kept here:
//! - the draws (which mix, λ, the box, the partner shift) are a pure function of
//!   `(seed, epoch, batch index)`, never of thread count or of the batch contents;
//! - targets stay probability rows: `λ·t_i + (1 − λ)·t_partner`, with CutMix's λ corrected
//!   to the pasted box's true area (as timm does), so each row still sums to 1;
//! - sample `i` is mixed with sample `(i + shift) mod n` for a drawn `shift ∈ [1, n)`, so every
//!   sample gets a partner other than itself (when `n > 1`).

use rayon::prelude::*;

use super::labels::NUM_CLASSES;
use crate::batch::Batch;
use crate::rng::{SplitMix64, hash_seed};

/// Per-batch probabilities and Beta(α, α) parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixParams {
    /// Probability that a batch gets CutMix.
    pub cutmix: f64,
    /// Probability that a batch gets MixUp (checked after CutMix; at most one applies).
    pub mixup: f64,
    pub cutmix_alpha: f64,
    pub mixup_alpha: f64,
}

impl MixParams {
    /// No mixing.
    pub const NONE: MixParams = MixParams { cutmix: 0.0, mixup: 0.0, cutmix_alpha: 1.0, mixup_alpha: 0.8 };

    /// timm's default α (CutMix 1.0, MixUp 0.8) with the given probabilities.
    pub fn new(cutmix: f64, mixup: f64) -> Self {
        MixParams { cutmix, mixup, ..Self::NONE }
    }

    pub fn is_none(&self) -> bool {
        self.cutmix <= 0.0 && self.mixup <= 0.0
    }
}

/// What [`mix_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mixed {
    None,
    /// Sample `i` took box `(x, y, w, h)` from sample `(i + shift) % n`; `lambda` is the
    /// share of its own pixels left.
    CutMix {
        lambda: f64,
        shift: usize,
        x: usize,
        y: usize,
        w: usize,
        h: usize,
    },
    /// Sample `i` became `λ·own + (1 − λ)·sample (i + shift) % n`.
    MixUp {
        lambda: f64,
        shift: usize,
    },
}

/// Draws the mix for one batch of `n` `width × height` images.
pub fn draw_mix(params: &MixParams, seed: u64, epoch: u64, batch_index: u64, n: usize, width: usize, height: usize) -> Mixed {
    if n < 2 || params.is_none() {
        return Mixed::None;
    }
    let mut rng = SplitMix64::new(hash_seed(&[2, seed, epoch, batch_index]));
    let u = rng.next_f64();
    let shift = 1 + rng.below(n as u64 - 1) as usize;
    if u < params.cutmix {
        let lambda = beta(&mut rng, params.cutmix_alpha);
        // Box of area (1 − λ)·W·H centred at a uniform point, clipped to the image.
        let cut = (1.0 - lambda).sqrt();
        let (cw, ch) = (width as f64 * cut, height as f64 * cut);
        let cx = rng.below(width as u64) as f64;
        let cy = rng.below(height as u64) as f64;
        let clip = |v: f64, hi: usize| v.round().clamp(0.0, hi as f64) as usize;
        let (x0, x1) = (clip(cx - cw / 2.0, width), clip(cx + cw / 2.0, width));
        let (y0, y1) = (clip(cy - ch / 2.0, height), clip(cy + ch / 2.0, height));
        let (w, h) = (x1 - x0, y1 - y0);
        let lambda = 1.0 - (w * h) as f64 / (width * height) as f64;
        Mixed::CutMix { lambda, shift, x: x0, y: y0, w, h }
    } else if u < params.cutmix + params.mixup {
        Mixed::MixUp { lambda: beta(&mut rng, params.mixup_alpha), shift }
    } else {
        Mixed::None
    }
}

/// Applies CutMix or MixUp to `batch` in place (draws as in [`draw_mix`]).
pub fn mix_batch(batch: &mut Batch, params: &MixParams, seed: u64, epoch: u64, batch_index: u64) -> Mixed {
    let mixed = draw_mix(params, seed, epoch, batch_index, batch.n, batch.width, batch.height);
    apply_mix(batch, mixed);
    mixed
}

/// Applies an already drawn mix.
pub fn apply_mix(batch: &mut Batch, mixed: Mixed) {
    let (lambda, shift) = match mixed {
        Mixed::None => return,
        Mixed::CutMix { lambda, shift, .. } | Mixed::MixUp { lambda, shift } => (lambda, shift),
    };
    let n = batch.n;
    let (width, height) = (batch.width, batch.height);
    let size = 3 * width * height;
    let partner = |i: usize| (i + shift) % n;
    match mixed {
        Mixed::CutMix { x, y, w, h, .. } => {
            // Copy out every box first (small), then paste the partner's into each image.
            let rows = |i: usize| (0..3).flat_map(move |c| (y..y + h).map(move |row| i * size + c * width * height + row * width + x));
            let mut boxes = Vec::with_capacity(n * 3 * w * h);
            for i in 0..n {
                for at in rows(i) {
                    boxes.extend_from_slice(&batch.images[at..at + w]);
                }
            }
            let box_len = 3 * w * h;
            batch.images.par_chunks_mut(size).enumerate().for_each(|(i, img)| {
                let src = &boxes[partner(i) * box_len..(partner(i) + 1) * box_len];
                for (at, part) in rows(0).zip(src.chunks_exact(w.max(1))) {
                    img[at..at + w].copy_from_slice(part);
                }
            });
        }
        Mixed::MixUp { .. } => {
            // new[i] = λ·old[i] + (1 − λ)·old[partner(i)], walked along each cycle of the
            // shift so that only one image per cycle needs a saved copy.
            let (a, b) = (lambda as f32, (1.0 - lambda) as f32);
            let blend = |dst: &mut [f32], src: &[f32]| {
                dst.par_chunks_mut(4096).zip(src.par_chunks(4096)).for_each(|(d, s)| {
                    for (d, s) in d.iter_mut().zip(s) {
                        *d = a * *d + b * s;
                    }
                });
            };
            let images = &mut batch.images;
            for start in 0..gcd(n, shift) {
                let first = images[start * size..(start + 1) * size].to_vec();
                let mut i = start;
                loop {
                    let j = partner(i);
                    if j == start {
                        blend(&mut images[i * size..(i + 1) * size], &first);
                        break;
                    }
                    let (dst, src) = if i < j {
                        let (lo, hi) = images.split_at_mut(j * size);
                        (&mut lo[i * size..(i + 1) * size], &hi[..size])
                    } else {
                        let (lo, hi) = images.split_at_mut(i * size);
                        (&mut hi[..size], &lo[j * size..(j + 1) * size])
                    };
                    blend(dst, src);
                    i = j;
                }
            }
        }
        Mixed::None => {}
    }
    let targets = batch.targets.clone();
    for i in 0..n {
        let own = &targets[i * NUM_CLASSES..(i + 1) * NUM_CLASSES];
        let other = &targets[partner(i) * NUM_CLASSES..(partner(i) + 1) * NUM_CLASSES];
        let row = &mut batch.targets[i * NUM_CLASSES..(i + 1) * NUM_CLASSES];
        for k in 0..NUM_CLASSES {
            row[k] = (lambda * own[k] as f64 + (1.0 - lambda) * other[k] as f64) as f32;
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Beta(α, α) via two gammas; α ≤ 0 (or NaN) means "no mixing" (λ = 1).
fn beta(rng: &mut SplitMix64, alpha: f64) -> f64 {
    if alpha.is_nan() || alpha <= 0.0 {
        return 1.0;
    }
    let x = gamma(rng, alpha);
    let y = gamma(rng, alpha);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

/// Gamma(k, 1): Marsaglia–Tsang, boosted for k < 1.
fn gamma(rng: &mut SplitMix64, k: f64) -> f64 {
    if k < 1.0 {
        let u = 1.0 - rng.next_f64(); // (0, 1]
        return gamma(rng, k + 1.0) * u.powf(1.0 / k);
    }
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = rng.normal();
        let v = (1.0 + c * z).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.next_f64();
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}
