//! Train and eval batch sources over a shard: determinism across thread counts, epoch
//! coverage, oversampling.

use std::path::Path;
use std::sync::Arc;

use maskflow::batch::{Batch, BatchSource};
use maskflow::data::augment::AugOp;
use maskflow::data::labels::NUM_CLASSES;
use maskflow::data::loader::{EvalSource, LoaderError, SampleLabel, SampleRef, TrainConfig, TrainSource, oversample};
use maskflow::data::mix::MixParams;
use maskflow::data::shard::{Shard, ShardWriter};
use maskflow::rng::SplitMix64;

const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const STD: [f64; 3] = [0.229, 0.224, 0.225];

fn make_shard(path: &Path, n: usize, w: usize, h: usize) -> Arc<Shard> {
    let mut writer = ShardWriter::create(path, h, w, 3).unwrap();
    let mut rng = SplitMix64::new(11);
    for _ in 0..n {
        let px: Vec<u8> = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
        writer.push(&px).unwrap();
    }
    writer.finish().unwrap();
    Arc::new(Shard::open(path).unwrap())
}

fn label(i: usize) -> SampleLabel {
    SampleLabel { mask: (i % 3) as u8, gender: (i / 3 % 2) as u8, age: (i / 6 % 3) as u8, years: 20 + i as u32 * 3 }
}

fn samples(n: usize) -> Vec<SampleRef> {
    (0..n).map(|i| SampleRef::new(i, label(i))).collect()
}

fn train_ops() -> Vec<AugOp> {
    vec![
        AugOp::RandomResizedCrop { width: 16, height: 12, scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0] },
        AugOp::Hflip { p: 0.5 },
        AugOp::Rotate { degrees: 10.0, random: true },
        AugOp::Jitter { brightness: 0.2, contrast: 0.2, saturation: 0.2 },
        AugOp::Normalize { mean: MEAN, std: STD },
        AugOp::RandomErasing { p: 0.5, scale: [0.02, 0.33], ratio: [0.3, 3.3] },
    ]
}

fn all_batches(source: &dyn BatchSource, epoch: usize) -> Vec<Batch> {
    (0..source.num_batches(epoch)).map(|b| source.batch(epoch, b)).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

#[test]
fn batches_are_identical_with_one_or_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let shard = make_shard(&dir.path().join("t.shard"), 11, 24, 20);
    let config = TrainConfig { batch_size: 4, seed: 1234, ops: train_ops(), mix: MixParams::new(0.5, 0.5), drop_last: false };
    let source = TrainSource::new(shard, samples(11), config).unwrap();
    let one: Vec<Vec<Batch>> = pool(1).install(|| (0..3).map(|e| all_batches(&source, e)).collect());
    let two: Vec<Vec<Batch>> = pool(2).install(|| (0..3).map(|e| all_batches(&source, e)).collect());
    let bits = |b: &Batch| b.images.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    for (e1, e2) in one.iter().zip(&two) {
        for (b1, b2) in e1.iter().zip(e2) {
            assert_eq!(bits(b1), bits(b2));
            assert_eq!(b1, b2);
        }
    }
    // Epochs differ in order and in augmentation.
    assert_ne!(one[0][0].samples, one[1][0].samples);
    assert_ne!(one[0], one[1]);

    for epoch in &one {
        // Every sample exactly once per epoch; last batch partial.
        let mut seen: Vec<usize> = epoch.iter().flat_map(|b| b.samples.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..11).collect::<Vec<_>>());
        assert_eq!(epoch.iter().map(|b| b.n).collect::<Vec<_>>(), vec![4, 4, 3]);
        for b in epoch {
            assert_eq!((b.width, b.height), (16, 12));
            assert_eq!(b.images.len(), b.n * 3 * 16 * 12);
            for (i, row) in b.targets.chunks_exact(NUM_CLASSES).enumerate() {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                assert_eq!(b.labels[i], label(b.samples[i]).class());
            }
        }
    }
}

#[test]
fn drop_last_and_num_samples() {
    let dir = tempfile::tempdir().unwrap();
    let shard = make_shard(&dir.path().join("t.shard"), 10, 8, 8);
    let config = TrainConfig { batch_size: 4, seed: 0, ops: vec![], mix: MixParams::NONE, drop_last: true };
    let source = TrainSource::new(shard.clone(), samples(10), config).unwrap();
    assert_eq!(source.num_batches(0), 2);
    assert_eq!(source.num_samples(), 10);
    // Without random ops or mix, a sample's tensor is its shard image / 255.
    let b = source.batch(0, 1);
    for (i, &s) in b.samples.iter().enumerate() {
        let targets = &b.targets[i * NUM_CLASSES..(i + 1) * NUM_CLASSES];
        assert_eq!(targets[label(s).class() as usize], 1.0);
        let hwc = shard.image(s);
        let chw = &b.images[i * 192..(i + 1) * 192];
        for p in 0..64 {
            for c in 0..3 {
                assert_eq!(chw[c * 64 + p], hwc[p * 3 + c] as f32 / 255.0);
            }
        }
    }
}

#[test]
fn eval_source_keeps_order_and_copies_apply_their_transforms() {
    let dir = tempfile::tempdir().unwrap();
    let shard = make_shard(&dir.path().join("e.shard"), 8, 10, 6);
    let base = samples(8);
    // Age class 1: samples 6, 7. Two copies each: one flipped, one rotated.
    let with = vec![vec![AugOp::Hflip { p: 1.0 }], vec![AugOp::Rotate { degrees: 5.0, random: false }]];
    let over = oversample(&base, |l| l.age == 1, 2, &with);
    assert_eq!(over.len(), 12);
    assert_eq!(over[8].shard_index, 6);
    assert_eq!((over[8].copy, over[9].copy), (1, 2));
    assert_eq!(over[8].extra, with[0]);
    assert_eq!(over[9].extra, with[1]);
    assert_eq!(over[10].shard_index, 7);
    // A second rule never copies copies.
    let again = oversample(&over, |l| l.age == 1, 1, &[]);
    assert_eq!(again.len(), 14);
    assert!(again[12..].iter().all(|s| s.copy == 1 && s.extra.is_empty()));

    let ops = vec![AugOp::Normalize { mean: MEAN, std: STD }];
    let source = EvalSource::new(shard, over, 5, ops, 0).unwrap();
    assert_eq!(source.num_batches(0), 3);
    let batches = all_batches(&source, 0);
    let ids: Vec<usize> = batches.iter().flat_map(|b| b.samples.clone()).collect();
    assert_eq!(ids, (0..12).collect::<Vec<_>>());
    assert_eq!(batches[0], source.batch(5, 0), "eval batches ignore the epoch");

    // Copy 8 is sample 6 mirrored.
    let plane = 10 * 6;
    let img = |b: &Batch, i: usize| b.images[i * 3 * plane..(i + 1) * 3 * plane].to_vec();
    let original = img(&batches[1], 1); // id 6
    let flipped = img(&batches[1], 3); // id 8
    for c in 0..3 {
        for y in 0..6 {
            for x in 0..10 {
                assert_eq!(flipped[c * plane + y * 10 + x], original[c * plane + y * 10 + 9 - x]);
            }
        }
    }
    assert_ne!(img(&batches[1], 4), original, "the rotated copy differs");
}

#[test]
fn invalid_samples_are_rejected_when_the_source_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let shard = make_shard(&dir.path().join("x.shard"), 3, 8, 8);
    let config = TrainConfig { batch_size: 2, seed: 0, ops: vec![], mix: MixParams::NONE, drop_last: false };
    let mut bad = samples(3);
    bad[2].shard_index = 3;
    let err = TrainSource::new(shard.clone(), bad, config.clone()).err().unwrap();
    assert!(matches!(err, LoaderError::ShardIndex { sample: 2, .. }), "{err}");

    let mut bad = samples(3);
    bad[1].label.mask = 3;
    let err = TrainSource::new(shard.clone(), bad, config.clone()).err().unwrap();
    assert!(matches!(err, LoaderError::Label { sample: 1, .. }), "{err}");

    let mut bad = samples(3);
    bad[0].extra = vec![AugOp::Resize { width: 4, height: 4 }];
    let err = TrainSource::new(shard.clone(), bad, config.clone()).err().unwrap();
    assert!(matches!(err, LoaderError::OutputSize { sample: 0, .. }), "{err}");

    let zero = TrainConfig { batch_size: 0, ..config.clone() };
    assert!(matches!(TrainSource::new(shard.clone(), samples(3), zero), Err(LoaderError::BatchSize)));
    let mix = TrainConfig { mix: MixParams::new(1.5, 0.0), ..config };
    assert!(matches!(TrainSource::new(shard, samples(3), mix), Err(LoaderError::Mix { .. })));
}
