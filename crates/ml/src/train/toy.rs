//! An in-memory [`BatchSource`] with a learnable pattern, for tests and quick starts.
//!
//! Each sample is noise plus a class-specific pattern: the mean brightness of each colour
//! channel in each image quadrant encodes the class, so tiny models learn it in a few steps.
//! Everything is a pure function of `(seed, epoch, index)` via [`splitmix64`], as the
//! `BatchSource` contract requires.

use crate::batch::{Batch, BatchSource};
use crate::data::labels::NUM_CLASSES;
use crate::rng::splitmix64;

/// Synthetic images whose class is visible in per-quadrant channel means.
#[derive(Debug, Clone)]
pub struct PatternSource {
    pub samples: usize,
    pub batch_size: usize,
    pub height: usize,
    pub width: usize,
    pub seed: u64,
    /// Reshuffle the sample order every epoch (a training source) or not (validation).
    pub shuffle: bool,
    /// Pattern strength relative to unit noise.
    pub signal: f32,
}

impl PatternSource {
    pub fn new(samples: usize, batch_size: usize, seed: u64) -> Self {
        PatternSource { samples, batch_size: batch_size.max(1), height: 16, width: 16, seed, shuffle: true, signal: 1.5 }
    }

    /// The class of sample `i` (pseudo-random, roughly uniform over the 18 classes).
    pub fn label(&self, i: usize) -> u32 {
        (splitmix64(self.seed ^ (i as u64).wrapping_mul(0x9e37)) % NUM_CLASSES as u64) as u32
    }

    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.samples).collect();
        if self.shuffle {
            let mut state = self.seed ^ (epoch as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f);
            for i in (1..order.len()).rev() {
                state = splitmix64(state);
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
        }
        order
    }

    fn image(&self, sample: usize, epoch: usize, out: &mut Vec<f32>) {
        let class = self.label(sample) as usize;
        let (h, w) = (self.height, self.width);
        // 12 cells (3 channels × 4 quadrants); the class sets a distinct on/off code.
        let code = pattern_code(class);
        let mut state = splitmix64(self.seed ^ ((sample as u64) << 20) ^ epoch as u64);
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let quadrant = (y * 2 / h) * 2 + x * 2 / w;
                    let on = code[c * 4 + quadrant];
                    state = splitmix64(state);
                    let noise = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                    out.push(noise + if on { self.signal } else { -self.signal });
                }
            }
        }
    }
}

/// A 12-bit code per class with pairwise Hamming distance ≥ 2 (class index plus parity bits).
fn pattern_code(class: usize) -> [bool; 12] {
    let mut code = [false; 12];
    for (b, slot) in code.iter_mut().enumerate().take(5) {
        *slot = (class >> b) & 1 == 1;
    }
    for b in 0..5 {
        code[5 + b] = !code[b];
    }
    code[10] = class.count_ones() % 2 == 1;
    code[11] = class.is_multiple_of(3);
    code
}

impl BatchSource for PatternSource {
    fn num_batches(&self, _epoch: usize) -> usize {
        self.samples.div_ceil(self.batch_size)
    }

    fn batch(&self, epoch: usize, index: usize) -> Batch {
        let order = self.order(epoch);
        let start = (index * self.batch_size).min(order.len());
        let end = (start + self.batch_size).min(order.len());
        let samples: Vec<usize> = order[start..end].to_vec();
        let mut images = Vec::with_capacity(samples.len() * 3 * self.height * self.width);
        let mut targets = vec![0.0f32; samples.len() * NUM_CLASSES];
        let mut labels = Vec::with_capacity(samples.len());
        for (row, &s) in samples.iter().enumerate() {
            self.image(s, epoch, &mut images);
            let label = self.label(s);
            targets[row * NUM_CLASSES + label as usize] = 1.0;
            labels.push(label);
        }
        Batch { images, n: samples.len(), height: self.height, width: self.width, targets, labels, samples }
    }

    fn num_samples(&self) -> usize {
        self.samples
    }
}
