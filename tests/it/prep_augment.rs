//! Per-sample ops and batch-level mixing.

use maskflow::batch::Batch;
use maskflow::data::augment::{AugError, AugOp, Augmenter, augment_into};
use maskflow::data::labels::NUM_CLASSES;
use maskflow::data::mix::{MixParams, Mixed, apply_mix, draw_mix, mix_batch};
use maskflow::rng::SplitMix64;

const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const STD: [f64; 3] = [0.229, 0.224, 0.225];

fn test_image(w: usize, h: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    (0..w * h * 3).map(|_| rng.below(256) as u8).collect()
}

fn run(ops: Vec<AugOp>, src: &[u8], w: usize, h: usize, seed: u64) -> (Vec<f32>, (usize, usize)) {
    let aug = Augmenter::new(ops).unwrap();
    let (ow, oh) = aug.output_size(w, h);
    let mut out = vec![f32::NAN; 3 * ow * oh];
    aug.apply(src, w, h, seed, &mut out).unwrap();
    (out, (ow, oh))
}

/// Value of channel `c` at `(x, y)` of a CHW tensor.
fn at(t: &[f32], w: usize, h: usize, c: usize, x: usize, y: usize) -> f32 {
    t[c * w * h + y * w + x]
}

#[test]
fn hflip_twice_is_identity_and_once_mirrors() {
    let (w, h) = (7, 5);
    let src = test_image(w, h, 1);
    let (plain, _) = run(vec![], &src, w, h, 0);
    let (twice, _) = run(vec![AugOp::Hflip { p: 1.0 }, AugOp::Hflip { p: 1.0 }], &src, w, h, 0);
    assert_eq!(plain, twice);
    let (once, _) = run(vec![AugOp::Hflip { p: 1.0 }], &src, w, h, 0);
    assert_ne!(plain, once);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                assert_eq!(at(&once, w, h, c, x, y), at(&plain, w, h, c, w - 1 - x, y));
            }
        }
    }
    let (never, _) = run(vec![AugOp::Hflip { p: 0.0 }], &src, w, h, 0);
    assert_eq!(plain, never);
}

#[test]
fn to_tensor_and_normalise_numbers() {
    // Two pixels: (0, 128, 255) and (51, 102, 204).
    let src = [0u8, 128, 255, 51, 102, 204];
    let (plain, _) = run(vec![], &src, 2, 1, 0);
    assert_eq!(plain, vec![0.0, 0.2, 128.0 / 255.0, 0.4, 1.0, 0.8]);
    let (norm, _) = run(vec![AugOp::Normalize { mean: MEAN, std: STD }], &src, 2, 1, 0);
    for c in 0..3 {
        for i in 0..2 {
            let v = src[i * 3 + c] as f64 / 255.0;
            let expected = ((v - MEAN[c]) / STD[c]) as f32;
            assert!((norm[c * 2 + i] - expected).abs() < 1e-5, "c{c} i{i}");
        }
    }
    // Normalising after a geometric op (the non-LUT path) gives the same numbers.
    let (norm_flip, _) = run(vec![AugOp::Normalize { mean: MEAN, std: STD }, AugOp::Hflip { p: 1.0 }], &src, 2, 1, 0);
    for c in 0..3 {
        assert!((norm_flip[c * 2] - norm[c * 2 + 1]).abs() < 1e-6);
    }
}

#[test]
fn same_seed_same_tensor_other_seed_other_tensor() {
    let (w, h) = (40, 30);
    let src = test_image(w, h, 2);
    let ops = vec![
        AugOp::RandomResizedCrop { width: 24, height: 24, scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0] },
        AugOp::Hflip { p: 0.5 },
        AugOp::Rotate { degrees: 15.0, random: true },
        AugOp::Jitter { brightness: 0.2, contrast: 0.2, saturation: 0.2 },
        AugOp::Normalize { mean: MEAN, std: STD },
        AugOp::RandomErasing { p: 0.5, scale: [0.02, 0.33], ratio: [0.3, 3.3] },
    ];
    let (a, size) = run(ops.clone(), &src, w, h, 42);
    assert_eq!(size, (24, 24));
    let (b, _) = run(ops.clone(), &src, w, h, 42);
    assert_eq!(a, b);
    let (c, _) = run(ops, &src, w, h, 43);
    assert_ne!(a, c);
}

#[test]
fn center_crop_pads_with_zeros() {
    let src = vec![255u8; 2 * 2 * 3];
    let (out, size) = run(vec![AugOp::CenterCrop { width: 4, height: 4 }], &src, 2, 2, 0);
    assert_eq!(size, (4, 4));
    for y in 0..4 {
        for x in 0..4 {
            let inside = (1..3).contains(&x) && (1..3).contains(&y);
            assert_eq!(at(&out, 4, 4, 0, x, y), if inside { 1.0 } else { 0.0 });
        }
    }
}

#[test]
fn fixed_rotation_by_90_degrees_turns_counter_clockwise() {
    let (w, h) = (4, 4);
    let src = test_image(w, h, 3);
    let (plain, _) = run(vec![], &src, w, h, 0);
    let (rot, _) = run(vec![AugOp::Rotate { degrees: 90.0, random: false }], &src, w, h, 0);
    // Counter-clockwise: the top row comes from the right column, read top to bottom.
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let expected = at(&plain, w, h, c, w - 1 - y, x);
                assert!((at(&rot, w, h, c, x, y) - expected).abs() < 1.5 / 255.0);
            }
        }
    }
}

#[test]
fn jitter_without_range_is_identity_and_stays_in_unit_range() {
    let (w, h) = (9, 9);
    let src = test_image(w, h, 4);
    let (plain, _) = run(vec![], &src, w, h, 0);
    let (none, _) = run(vec![AugOp::Jitter { brightness: 0.0, contrast: 0.0, saturation: 0.0 }], &src, w, h, 5);
    assert_eq!(plain, none);
    let (strong, _) = run(vec![AugOp::Jitter { brightness: 0.9, contrast: 0.9, saturation: 0.9 }], &src, w, h, 5);
    assert_ne!(plain, strong);
    assert!(strong.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn random_erasing_zeroes_one_box() {
    let (w, h) = (20, 20);
    let src = vec![200u8; w * h * 3];
    let (out, _) = run(vec![AugOp::RandomErasing { p: 1.0, scale: [0.1, 0.2], ratio: [0.5, 2.0] }], &src, w, h, 9);
    let zeros = out.iter().filter(|&&v| v == 0.0).count();
    assert!(zeros > 0 && zeros % 3 == 0, "{zeros} zero values");
    let area = zeros / 3;
    assert!(area as f64 >= 0.05 * 400.0 && area as f64 <= 0.3 * 400.0, "area {area}");
}

#[test]
fn invalid_ops_and_orders_are_rejected() {
    let err =
        Augmenter::new(vec![AugOp::Normalize { mean: MEAN, std: STD }, AugOp::Jitter { brightness: 0.1, contrast: 0.0, saturation: 0.0 }])
            .unwrap_err();
    assert!(matches!(err, AugError::InvalidOp { index: 1, .. }), "{err}");
    assert!(Augmenter::new(vec![AugOp::Hflip { p: 1.5 }]).is_err());
    assert!(Augmenter::new(vec![AugOp::Resize { width: 0, height: 4 }]).is_err());
    assert!(Augmenter::new(vec![AugOp::Normalize { mean: MEAN, std: [1.0, 0.0, 1.0] }]).is_err());

    let mut out = vec![0.0; 5];
    let err = augment_into(&[&[]], &[0; 12], 2, 2, &mut SplitMix64::new(0), &mut out).unwrap_err();
    assert!(matches!(err, AugError::OutputSize { .. }));
}

/// A batch of `n` constant images (sample `i` has value `i + 1`), sample `i` of class `classes[i]`.
fn constant_batch(classes: &[u32], w: usize, h: usize) -> Batch {
    let n = classes.len();
    let size = 3 * w * h;
    let images = (0..n).flat_map(|i| std::iter::repeat_n((i + 1) as f32, size)).collect();
    let mut targets = vec![0.0; n * NUM_CLASSES];
    for (i, &c) in classes.iter().enumerate() {
        targets[i * NUM_CLASSES + c as usize] = 1.0;
    }
    Batch { images, n, height: h, width: w, targets, labels: classes.to_vec(), samples: (0..n).collect() }
}

#[test]
fn cutmix_targets_sum_to_one_and_mix_the_right_classes() {
    let classes = [0u32, 5, 11, 17, 3];
    let (w, h) = (16, 12);
    let mut checked = 0;
    for batch_index in 0..20 {
        let mut batch = constant_batch(&classes, w, h);
        let mixed = mix_batch(&mut batch, &MixParams::new(1.0, 0.0), 7, 0, batch_index);
        let Mixed::CutMix { lambda, shift, .. } = mixed else {
            panic!("p = 1 must cut-mix, got {mixed:?}");
        };
        assert!((1..classes.len()).contains(&shift));
        for i in 0..classes.len() {
            let row = &batch.targets[i * NUM_CLASSES..(i + 1) * NUM_CLASSES];
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "row {i} sums to {sum}");
            let partner = (i + shift) % classes.len();
            let own = classes[i] as usize;
            let other = classes[partner] as usize;
            for (k, &v) in row.iter().enumerate() {
                if k != own && k != other {
                    assert_eq!(v, 0.0);
                }
            }
            // λ is the share of the sample's own pixels left.
            let img = &batch.images[i * 3 * w * h..(i + 1) * 3 * w * h];
            let own_px = img.iter().filter(|&&v| v == (i + 1) as f32).count();
            let other_px = img.iter().filter(|&&v| v == (partner + 1) as f32).count();
            assert_eq!(own_px + other_px, img.len());
            assert!((own_px as f64 / img.len() as f64 - lambda).abs() < 1e-9);
            assert!((row[own] as f64 - lambda).abs() < 1e-6);
            if own_px < img.len() {
                checked += 1;
                assert!((row[other] as f64 - (1.0 - lambda)).abs() < 1e-6);
            }
        }
    }
    assert!(checked > 0, "some draws must paste a non-empty box");
}

#[test]
fn mixup_blends_images_and_targets() {
    let classes = [1u32, 2, 3, 4];
    let mut batch = constant_batch(&classes, 3, 2);
    let mixed = mix_batch(&mut batch, &MixParams::new(0.0, 1.0), 1, 2, 3);
    let Mixed::MixUp { lambda, shift } = mixed else {
        panic!("p = 1 must mix up, got {mixed:?}");
    };
    for i in 0..4 {
        let partner = (i + shift) % 4;
        let expected = lambda as f32 * (i + 1) as f32 + (1.0 - lambda) as f32 * (partner + 1) as f32;
        assert!((batch.images[i * 18] - expected).abs() < 1e-5);
        let row = &batch.targets[i * NUM_CLASSES..(i + 1) * NUM_CLASSES];
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((row[classes[i] as usize] as f64 - lambda).abs() < 1e-6);
    }
    // The draw is a pure function of (seed, epoch, batch index).
    assert_eq!(draw_mix(&MixParams::new(0.0, 1.0), 1, 2, 3, 4, 3, 2), mixed);
    let mut other = constant_batch(&classes, 3, 2);
    apply_mix(&mut other, Mixed::None);
    assert_eq!(other, constant_batch(&classes, 3, 2));
}

#[test]
fn center_crop_inside_copies_the_middle_exactly() {
    let (w, h) = (6, 5);
    let src = test_image(w, h, 8);
    let (plain, _) = run(vec![], &src, w, h, 0);
    let (crop, size) = run(vec![AugOp::CenterCrop { width: 2, height: 3 }], &src, w, h, 0);
    assert_eq!(size, (2, 3));
    for c in 0..3 {
        for y in 0..3 {
            for x in 0..2 {
                assert_eq!(at(&crop, 2, 3, c, x, y), at(&plain, w, h, c, x + 2, y + 1));
            }
        }
    }
    // Resize to the same size is the identity; resize → centre crop is one resampling.
    let (same, _) = run(vec![AugOp::Resize { width: 6, height: 5 }], &src, w, h, 0);
    assert_eq!(same, plain);
    let (chain, size) = run(vec![AugOp::Resize { width: 12, height: 10 }, AugOp::CenterCrop { width: 4, height: 4 }], &src, w, h, 0);
    assert_eq!(size, (4, 4));
    assert!(chain.iter().all(|v| (0.0..=1.0).contains(v)));
}
