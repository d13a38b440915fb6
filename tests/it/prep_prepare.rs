//! Decoding, the per-image pixel cache, incremental shard builds and the shard format.

use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use maskflow::data::layout::BadImagePolicy;
use maskflow::data::prepare::{
    Crop, PixelCache, PrepareError, PrepareParams, build_shard, build_shard_with, decode_rgb, prepare_bytes, prepare_image,
};
use maskflow::data::shard::{Shard, ShardError, ShardWriter};

/// Smooth pseudo-random content: a few sinusoids whose phases depend on `seed`.
fn smooth_image(width: u32, height: u32, seed: u32) -> image::RgbImage {
    let s = seed as f32;
    image::RgbImage::from_fn(width, height, |x, y| {
        let (x, y) = (x as f32, y as f32);
        let v = |k: f32| {
            let a = (x * 0.07 * (1.0 + k * 0.3) + s * 1.3 + k).sin();
            let b = (y * 0.05 * (1.0 + k * 0.2) + s * 0.7 * k).cos();
            (127.5 + 120.0 * a * b) as u8
        };
        image::Rgb([v(0.0), v(1.0), v(2.0)])
    })
}

fn jpeg_bytes(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).encode_image(img).expect("encode jpeg");
    out
}

fn png_bytes(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encode png");
    out.into_inner()
}

fn write(path: &Path, bytes: &[u8]) -> (PathBuf, [u8; 32]) {
    std::fs::write(path, bytes).expect("write test image");
    (path.to_path_buf(), *blake3::hash(bytes).as_bytes())
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / a.len() as f64
}

#[test]
fn prepare_resizes_crops_and_checks_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(&dir.path().join("a.jpg"), &jpeg_bytes(&smooth_image(64, 80, 1)));

    let px = prepare_image(&path, &PrepareParams::new(16, 20, Crop::None)).unwrap();
    assert_eq!(px.len(), 16 * 20 * 3);
    let px = prepare_image(&path, &PrepareParams::new(8, 8, Crop::Center { w: 32, h: 32 })).unwrap();
    assert_eq!(px.len(), 8 * 8 * 3);
    let px = prepare_image(&path, &PrepareParams::new(12, 10, Crop::Face)).unwrap();
    assert_eq!(px.len(), 12 * 10 * 3);

    let err = prepare_image(&path, &PrepareParams::new(8, 8, Crop::Center { w: 65, h: 10 })).unwrap_err();
    assert!(matches!(err, PrepareError::CropTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("a.jpg"), "{err}");

    let mut params = PrepareParams::new(8, 8, Crop::None);
    params.source_size = Some((384, 512));
    let err = prepare_image(&path, &params).unwrap_err();
    assert!(matches!(err, PrepareError::UnexpectedSize { found: (64, 80), .. }), "{err}");
    assert!(err.to_string().contains("a.jpg"), "{err}");
    params.source_size = Some((64, 80));
    assert!(prepare_image(&path, &params).is_ok());
}

#[test]
fn center_crop_takes_the_middle() {
    // A PNG (lossless) with a distinct colour per quadrant-ish region: crop without resize.
    let img = image::RgbImage::from_fn(6, 4, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]));
    let px = prepare_bytes(&png_bytes(&img), Path::new("c.png"), &PrepareParams::new(2, 2, Crop::Center { w: 2, h: 2 })).unwrap();
    // Centre 2x2 of 6x4 starts at (2, 1).
    assert_eq!(px, vec![20, 10, 7, 30, 10, 7, 20, 20, 7, 30, 20, 7]);
}

#[test]
fn png_at_native_size_is_exact() {
    let img = smooth_image(10, 7, 3);
    let px = prepare_bytes(&png_bytes(&img), Path::new("x.png"), &PrepareParams::new(10, 7, Crop::None)).unwrap();
    assert_eq!(px, img.into_raw());
}

#[test]
fn reduced_dct_decode_is_used_and_close_to_full_decode() {
    let img = smooth_image(96, 128, 5);
    let bytes = jpeg_bytes(&img);
    let quarter = decode_rgb(&bytes, Path::new("q.jpg"), |_| 4).unwrap();
    assert_eq!((quarter.scale, quarter.pixels.width, quarter.pixels.height), (4, 24, 32));
    assert_eq!(quarter.source, (96, 128));

    // prepare at a quarter of the size picks the 1/4 decode; compare against full decode
    // followed by the same resize.
    let params = PrepareParams::new(24, 32, Crop::None);
    let fast = prepare_bytes(&bytes, Path::new("q.jpg"), &params).unwrap();
    assert_eq!(fast, quarter.pixels.data, "1/4 decode at exactly the target needs no resize");
    let full = decode_rgb(&bytes, Path::new("q.jpg"), |_| 1).unwrap();
    assert_eq!(full.scale, 1);
    let slow = maskflow::data::prepare::resize_rgb(&full.pixels, maskflow::data::prepare::CropBox::full(96, 128), 24, 32).unwrap();
    let diff = mean_abs_diff(&fast, &slow);
    assert!(diff < 4.0, "mean abs difference {diff}");
}

#[test]
fn bad_files_are_errors_that_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let params = PrepareParams::new(8, 8, Crop::None);

    let (empty, _) = write(&dir.path().join("empty.jpg"), &[]);
    let err = prepare_image(&empty, &params).unwrap_err();
    assert!(matches!(err, PrepareError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("empty.jpg"), "{err}");

    let bytes = jpeg_bytes(&smooth_image(64, 64, 2));
    let (cut, _) = write(&dir.path().join("cut.jpg"), &bytes[..bytes.len() / 2]);
    let err = prepare_image(&cut, &params).unwrap_err();
    assert!(matches!(err, PrepareError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("cut.jpg"), "{err}");

    let png = png_bytes(&smooth_image(64, 64, 2));
    let (cut_png, _) = write(&dir.path().join("cut.png"), &png[..png.len() / 2]);
    let err = prepare_image(&cut_png, &params).unwrap_err();
    assert!(matches!(err, PrepareError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("cut.png"), "{err}");

    let (junk, _) = write(&dir.path().join("junk.jpg"), b"not an image at all");
    let err = prepare_image(&junk, &params).unwrap_err();
    assert!(err.to_string().contains("junk.jpg"), "{err}");

    let err = prepare_image(&dir.path().join("missing.jpg"), &params).unwrap_err();
    assert!(matches!(err, PrepareError::Read { .. }), "{err}");
    assert!(err.to_string().contains("missing.jpg"), "{err}");
}

#[test]
fn one_changed_image_is_the_only_one_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = PixelCache::new(dir.path().join("cache"));
    let params = PrepareParams::new(16, 12, Crop::None);
    let mut images: Vec<(PathBuf, [u8; 32])> = (0..6)
        .map(|i| {
            let bytes = jpeg_bytes(&smooth_image(40, 30, i));
            write(&dir.path().join(format!("img{i}.jpg")), &bytes)
        })
        .collect();
    let out = dir.path().join("train.shard");

    let first = build_shard(&images, &params, &cache, &out).unwrap();
    assert_eq!((first.decoded, first.reused), (6, 0));
    let before: Vec<Vec<u8>> = {
        let shard = Shard::open(&out).unwrap();
        (0..shard.len()).map(|i| shard.image(i).to_vec()).collect()
    };

    let again = build_shard(&images, &params, &cache, &out).unwrap();
    assert_eq!((again.decoded, again.reused), (0, 6));

    // Change image 3's pixels: only it is decoded, and only its shard row changes.
    images[3] = write(&images[3].0.clone(), &jpeg_bytes(&smooth_image(40, 30, 99)));
    let third = build_shard(&images, &params, &cache, &out).unwrap();
    assert_eq!((third.decoded, third.reused), (1, 5));
    let shard = Shard::open(&out).unwrap();
    assert_eq!((shard.len(), shard.height(), shard.width(), shard.channels()), (6, 12, 16, 3));
    for (i, old) in before.iter().enumerate() {
        if i == 3 {
            assert_ne!(shard.image(i), &old[..]);
            assert_eq!(shard.image(i), &prepare_image(&images[3].0, &params).unwrap()[..]);
        } else {
            assert_eq!(shard.image(i), &old[..]);
        }
    }

    // Other params: a different key, so everything is decoded again.
    let other = build_shard(&images, &PrepareParams::new(8, 6, Crop::Face), &cache, &out).unwrap();
    assert_eq!((other.decoded, other.reused), (6, 0));
}

#[test]
fn corrupt_cache_entry_reads_as_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cache = PixelCache::new(dir.path());
    let key = PixelCache::key(&[7; 32], &PrepareParams::new(2, 2, Crop::None));
    cache.put(&key, &[1, 2, 3, 4]).unwrap();
    assert_eq!(cache.get(&key), Some(vec![1, 2, 3, 4]));

    let hex = blake3::Hash::from_bytes(key).to_hex();
    let entry = dir.path().join(&hex[..2]).join(hex.as_str());
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[0] ^= 0xFF;
    std::fs::write(&entry, &bytes).unwrap();
    assert_eq!(cache.get(&key), None);
    std::fs::write(&entry, &bytes[..10]).unwrap();
    assert_eq!(cache.get(&key), None);
}

#[test]
fn bad_image_policy_fail_or_skip() {
    let dir = tempfile::tempdir().unwrap();
    let cache = PixelCache::new(dir.path().join("cache"));
    let params = PrepareParams::new(8, 8, Crop::None);
    let images = vec![
        write(&dir.path().join("ok0.jpg"), &jpeg_bytes(&smooth_image(20, 20, 0))),
        write(&dir.path().join("zero.jpg"), &[]),
        write(&dir.path().join("ok2.png"), &png_bytes(&smooth_image(20, 20, 2))),
    ];
    let out = dir.path().join("s.shard");
    let err = build_shard(&images, &params, &cache, &out).unwrap_err();
    assert!(err.to_string().contains("zero.jpg"), "{err}");
    assert!(!out.exists(), "a failed build leaves no shard behind");

    let stats = build_shard_with(&images, &params, &cache, &out, BadImagePolicy::Skip).unwrap();
    assert_eq!(stats.kept, vec![0, 2]);
    assert_eq!(stats.skipped.len(), 1);
    assert_eq!(stats.skipped[0].0, 1);
    assert_eq!(Shard::open(&out).unwrap().len(), 2);
}

#[test]
fn a_pixel_cache_that_cannot_be_written_is_not_a_bad_image() {
    // Skipping is for the images' own faults: a failed cache write would otherwise drop good
    // images from the shard, and the step's output would depend on the disk.
    let dir = tempfile::tempdir().unwrap();
    let blocked = write(&dir.path().join("not-a-dir"), b"a file where the cache's directory should be");
    let cache = PixelCache::new(blocked.0.join("cache"));
    let params = PrepareParams::new(8, 8, Crop::None);
    let images = vec![write(&dir.path().join("ok.jpg"), &jpeg_bytes(&smooth_image(20, 20, 0)))];
    let out = dir.path().join("s.shard");
    let err = build_shard_with(&images, &params, &cache, &out, BadImagePolicy::Skip).unwrap_err();
    assert!(matches!(err, PrepareError::Cache { .. }), "{err}");
    assert!(err.to_string().contains("pixel cache"), "{err}");
    assert!(!out.exists(), "a failed build leaves no shard behind");
}

#[test]
fn shard_round_trip_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.shard");
    let mut writer = ShardWriter::create(&out, 2, 3, 3).unwrap();
    let rows: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i * 10; 18]).collect();
    for row in &rows {
        writer.push(row).unwrap();
    }
    assert!(matches!(writer.push(&[0; 5]), Err(ShardError::ImageSize { .. })));
    assert!(!out.exists(), "nothing at the destination before finish");
    writer.finish().unwrap();

    let shard = Shard::open(&out).unwrap();
    assert_eq!(shard.len(), 4);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(shard.image(i), &row[..]);
    }
    drop(shard);

    let bytes = std::fs::read(&out).unwrap();
    let cut = dir.path().join("cut.shard");
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
    let err = Shard::open(&cut).unwrap_err();
    assert!(matches!(err, ShardError::Length { .. }), "{err}");
    assert!(err.to_string().contains("cut.shard"), "{err}");

    std::fs::write(&cut, &bytes[..10]).unwrap();
    assert!(matches!(Shard::open(&cut), Err(ShardError::Length { .. })));

    let mut foreign = bytes.clone();
    foreign[0] = b'X';
    std::fs::write(&cut, &foreign).unwrap();
    assert!(matches!(Shard::open(&cut), Err(ShardError::BadMagic { .. })));

    // An abandoned writer leaves no file behind.
    let abandoned = dir.path().join("abandoned.shard");
    let writer = ShardWriter::create(&abandoned, 2, 2, 3).unwrap();
    drop(writer);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("abandoned"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn shard_parts_read_as_one_sequence_and_must_agree_on_shape() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, n: u8, w: usize, first: u8| {
        let path = dir.path().join(name);
        let mut writer = ShardWriter::create(&path, 2, w, 3).unwrap();
        for i in 0..n {
            writer.push(&vec![first + i; 2 * w * 3]).unwrap();
        }
        writer.finish().unwrap();
        path
    };
    // Parts of 3, 0 and 2 images: indices run across them, the empty part included.
    let parts = [write("a.shard", 3, 4, 0), write("b.shard", 0, 4, 0), write("c.shard", 2, 4, 100)];
    let shard = Shard::open_parts(&parts).unwrap();
    assert_eq!(shard.len(), 5);
    let firsts: Vec<u8> = (0..5).map(|i| shard.image(i)[0]).collect();
    assert_eq!(firsts, [0, 1, 2, 100, 101]);
    assert!(shard.image(4).iter().all(|&v| v == 101));

    let odd = write("odd.shard", 1, 5, 0);
    let err = Shard::open_parts(&[parts[0].clone(), odd]).unwrap_err().to_string();
    assert!(err.contains("odd.shard") && err.contains("5x2x3") && err.contains("4x2x3"), "{err}");
    assert!(Shard::open_parts(&[]).is_err());
}
