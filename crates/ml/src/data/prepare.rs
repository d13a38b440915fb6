//! Decode once, resize once: source images → HWC `u8` pixels at the working resolution,
//! cached per image and assembled into a [`Shard`](super::shard::Shard).
//!
//! Constraints kept here:
//! - the pixels of an image are a pure function of (file bytes, [`PrepareParams`]); the cache
//!   key is blake3 over (file digest, params digest, [`PREPARE_ALGORITHM`]), so a change to one
//!   image re-decodes that image only, and a change of decoder or resampler changes every key;
//! - every failure names the file (zero-byte, truncated, undecodable, unexpected size);
//! - JPEGs whose working resolution is at most half the (cropped) source are decoded at
//!   reduced DCT scale (1/2, 1/4, 1/8 with `jpeg-decoder`), which skips most of the IDCT and
//!   colour work; the scale chosen is the smallest that still leaves at least the working
//!   resolution in both axes, so the final resize only ever shrinks.
//!
//! Geometry: the crop box is taken in source pixels, then stretched to `width × height`
//! with an antialiased bilinear filter (PIL / torchvision `Resize` semantics).

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::layout::BadImagePolicy;
use super::resample;
use super::shard::{ShardError, ShardWriter};
use crate::fsutil::{AtomicFile, Durability};

/// Names the decode + resample algorithm; part of every cache key.
pub const PREPARE_ALGORITHM: &str = "maskflow-prepare/1 jpeg-dct-scale fir-bilinear";

/// The face box as fractions of the source frame: `(left, top, width, height)`.
///
/// In the competition's 384×512 portraits the face sits at the upper centre; this box is
/// x ∈ [48, 336), y ∈ [51.2, 384) there, i.e. a 288×332.8 region that keeps the chin
/// and the mask and drops the shoulders and most of the background.
pub const FACE_BOX: (f64, f64, f64, f64) = (0.125, 0.1, 0.75, 0.65);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Crop {
    /// The whole frame.
    None,
    /// A centred `w × h` box in source pixels (an error when the source is smaller).
    Center { w: u32, h: u32 },
    /// The fixed upper-centre [`FACE_BOX`].
    Face,
}

/// What `prepare` produces: `width × height` RGB, cropped first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrepareParams {
    pub width: u32,
    pub height: u32,
    pub crop: Crop,
    /// When set, a source image of any other `(width, height)` is an error.
    pub source_size: Option<(u32, u32)>,
}

impl PrepareParams {
    pub fn new(width: u32, height: u32, crop: Crop) -> Self {
        PrepareParams { width, height, crop, source_size: None }
    }

    /// Bytes of one prepared image.
    pub fn image_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// blake3 over a canonical encoding of the params and [`PREPARE_ALGORITHM`].
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(PREPARE_ALGORITHM.as_bytes());
        h.update(&self.width.to_le_bytes());
        h.update(&self.height.to_le_bytes());
        match self.crop {
            Crop::None => h.update(b"crop:none"),
            Crop::Center { w, h: ch } => {
                h.update(b"crop:center");
                h.update(&w.to_le_bytes());
                h.update(&ch.to_le_bytes())
            }
            Crop::Face => h.update(b"crop:face"),
        };
        match self.source_size {
            None => h.update(b"source:any"),
            Some((w, sh)) => {
                h.update(b"source:");
                h.update(&w.to_le_bytes());
                h.update(&sh.to_le_bytes())
            }
        };
        *h.finalize().as_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("`{path}`: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}`: empty file (0 bytes)")]
    Empty { path: PathBuf },
    #[error("`{path}`: truncated JPEG (no end-of-image marker)")]
    Truncated { path: PathBuf },
    #[error("`{path}`: not a JPEG or PNG image")]
    UnknownFormat { path: PathBuf },
    #[error("`{path}`: cannot decode: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("`{path}`: image is {}x{}, expected {}x{}", found.0, found.1, expected.0, expected.1)]
    UnexpectedSize { path: PathBuf, expected: (u32, u32), found: (u32, u32) },
    #[error("`{path}`: crop {}x{} does not fit the {}x{} image", crop.0, crop.1, found.0, found.1)]
    CropTooLarge { path: PathBuf, crop: (u32, u32), found: (u32, u32) },
    #[error("invalid prepare size {width}x{height}")]
    InvalidSize { width: u32, height: u32 },
    #[error("`{path}`: pixel cache: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Shard(#[from] ShardError),
}

impl PrepareError {
    /// Whether the error is the source image's (unreadable, undecodable, the wrong size), as
    /// opposed to a failure to store the result.
    fn is_bad_image(&self) -> bool {
        !matches!(self, PrepareError::Cache { .. } | PrepareError::Shard(_) | PrepareError::InvalidSize { .. })
    }
}

/// A decoded RGB image (HWC `u8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbPixels {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// A decode at reduced scale: `source` is the full-resolution size, `pixels` what came out
/// (`source / scale`, rounded up).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub source: (u32, u32),
    pub scale: u32,
    pub pixels: RgbPixels,
}

/// Reads, decodes, crops and resizes one image.
pub fn prepare_image(path: &Path, params: &PrepareParams) -> Result<Vec<u8>, PrepareError> {
    let bytes = std::fs::read(path).map_err(|source| PrepareError::Read { path: path.to_path_buf(), source })?;
    prepare_bytes(&bytes, path, params)
}

/// [`prepare_image`] on bytes already in memory; `path` is only used in errors.
pub fn prepare_bytes(bytes: &[u8], path: &Path, params: &PrepareParams) -> Result<Vec<u8>, PrepareError> {
    if params.width == 0 || params.height == 0 {
        return Err(PrepareError::InvalidSize { width: params.width, height: params.height });
    }
    let target = (params.width, params.height);
    let decoded = decode_rgb(bytes, path, |src| {
        let (_, _, w, h) = crop_box(params.crop, src);
        // The smallest scale that keeps the crop box at least `target` in both axes.
        largest_valid_scale((w, h), target)
    })?;
    let src = decoded.source;
    if let Some(expected) = params.source_size
        && expected != src
    {
        return Err(PrepareError::UnexpectedSize { path: path.to_path_buf(), expected, found: src });
    }
    if let Crop::Center { w, h } = params.crop
        && (w > src.0 || h > src.1 || w == 0 || h == 0)
    {
        return Err(PrepareError::CropTooLarge { path: path.to_path_buf(), crop: (w, h), found: src });
    }
    let (left, top, w, h) = crop_box(params.crop, src);
    // Map the source-pixel box onto the decoded (possibly reduced) image.
    let sx = decoded.pixels.width as f64 / src.0 as f64;
    let sy = decoded.pixels.height as f64 / src.1 as f64;
    let cropped = CropBox { left: left * sx, top: top * sy, width: w * sx, height: h * sy };
    resize_rgb(&decoded.pixels, cropped, params.width, params.height)
        .map_err(|message| PrepareError::Decode { path: path.to_path_buf(), message })
}

/// A box in pixels of some image (fractional edges allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl CropBox {
    pub fn full(width: u32, height: u32) -> Self {
        CropBox { left: 0.0, top: 0.0, width: width as f64, height: height as f64 }
    }
}

/// The crop box in source pixels: `(left, top, width, height)`.
fn crop_box(crop: Crop, (sw, sh): (u32, u32)) -> (f64, f64, f64, f64) {
    let (sw, sh) = (sw as f64, sh as f64);
    match crop {
        Crop::None => (0.0, 0.0, sw, sh),
        Crop::Center { w, h } => {
            let (w, h) = ((w as f64).min(sw), (h as f64).min(sh));
            (((sw - w) / 2.0).floor(), ((sh - h) / 2.0).floor(), w, h)
        }
        Crop::Face => {
            let (l, t, w, h) = FACE_BOX;
            (l * sw, t * sh, w * sw, h * sh)
        }
    }
}

/// The largest DCT reduction `d ∈ {1, 2, 4, 8}` with `region / d ≥ target` in both axes.
fn largest_valid_scale(region: (f64, f64), target: (u32, u32)) -> u32 {
    [8u32, 4, 2].into_iter().find(|&d| region.0 / d as f64 >= target.0 as f64 && region.1 / d as f64 >= target.1 as f64).unwrap_or(1)
}

/// Decodes a JPEG or PNG to RGB. `choose_scale` gets the source size and returns the DCT
/// reduction wanted (1, 2, 4 or 8); it applies to JPEGs only, other formats decode in full.
pub fn decode_rgb(bytes: &[u8], path: &Path, choose_scale: impl FnOnce((u32, u32)) -> u32) -> Result<Decoded, PrepareError> {
    let decode_err = |message: String| PrepareError::Decode { path: path.to_path_buf(), message };
    if bytes.is_empty() {
        return Err(PrepareError::Empty { path: path.to_path_buf() });
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        if !jpeg_has_end_marker(bytes) {
            return Err(PrepareError::Truncated { path: path.to_path_buf() });
        }
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        decoder.read_info().map_err(|e| decode_err(e.to_string()))?;
        let info = decoder.info().ok_or_else(|| decode_err("no image header".into()))?;
        let source = (info.width as u32, info.height as u32);
        let scale = choose_scale(source);
        if scale > 1 && info.pixel_format != jpeg_decoder::PixelFormat::CMYK32 {
            let want = (source.0.div_ceil(scale), source.1.div_ceil(scale));
            let got = decoder.scale(want.0 as u16, want.1 as u16).map_err(|e| decode_err(e.to_string()))?;
            if (got.0 as u32, got.1 as u32) == want {
                let raw = decoder.decode().map_err(|e| decode_err(e.to_string()))?;
                let data = match info.pixel_format {
                    jpeg_decoder::PixelFormat::RGB24 => raw,
                    jpeg_decoder::PixelFormat::L8 => raw.iter().flat_map(|&v| [v, v, v]).collect(),
                    // 16-bit lossless JPEGs: keep the high byte (big-endian samples).
                    jpeg_decoder::PixelFormat::L16 => raw.chunks_exact(2).flat_map(|v| [v[0], v[0], v[0]]).collect(),
                    jpeg_decoder::PixelFormat::CMYK32 => unreachable!("excluded above"),
                };
                if data.len() != want.0 as usize * want.1 as usize * 3 {
                    return Err(decode_err("decoder returned a short image".into()));
                }
                return Ok(Decoded { source, scale, pixels: RgbPixels { width: want.0, height: want.1, data } });
            }
        }
        // Full-resolution decode through `image` (zune-jpeg: the faster full decoder).
        let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).map_err(|e| decode_err(e.to_string()))?;
        return Ok(full_decode(source, img));
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).map_err(|e| decode_err(e.to_string()))?;
        let source = (img.width(), img.height());
        return Ok(full_decode(source, img));
    }
    Err(PrepareError::UnknownFormat { path: path.to_path_buf() })
}

fn full_decode(source: (u32, u32), img: image::DynamicImage) -> Decoded {
    let rgb = img.into_rgb8();
    Decoded { source, scale: 1, pixels: RgbPixels { width: rgb.width(), height: rgb.height(), data: rgb.into_raw() } }
}

/// Whether the entropy-coded data after the first start-of-scan is followed by an EOI marker.
///
/// Lenient decoders fill a truncated scan with grey; we want an error instead. Marker
/// segments before SOS are skipped by their lengths (an EXIF thumbnail carries its own EOI),
/// and inside entropy-coded data `FF D9` can only be the real end marker (data `FF` bytes
/// are stuffed as `FF 00`).
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let mut at = 2; // after SOI
    loop {
        // Skip fill bytes before a marker.
        while at < bytes.len() && bytes[at] == 0xFF && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if at + 4 > bytes.len() || bytes[at] != 0xFF {
            return false;
        }
        let marker = bytes[at + 1];
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        if marker == 0xDA {
            let scan = &bytes[(at + 2 + len).min(bytes.len())..];
            return scan.windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        if len < 2 {
            return false;
        }
        at += 2 + len;
    }
}

/// Resizes the `crop` box of `src` to `width × height` (antialiased bilinear).
pub fn resize_rgb(src: &RgbPixels, crop: CropBox, width: u32, height: u32) -> Result<Vec<u8>, String> {
    let full = CropBox::full(src.width, src.height);
    if crop == full && (src.width, src.height) == (width, height) {
        return Ok(src.data.clone());
    }
    let mut out = vec![0; width as usize * height as usize * 3];
    let (source, size) = ((src.width as usize, src.height as usize), (width as usize, height as usize));
    resample::resize_u8(&src.data, source, (crop.left, crop.top, crop.width, crop.height), size, &mut out)?;
    Ok(out)
}

/// Per-image prepared pixels, content-addressed.
///
/// An entry is `pixels ‖ blake3(pixels)` under `dir/<2 hex>/<64 hex>`; it is written
/// through a temporary file and a rename ([`AtomicFile`]: never seen half-written by a
/// concurrent reader) and verified on read, so a torn or corrupted entry reads as a miss.
#[derive(Debug, Clone)]
pub struct PixelCache {
    dir: PathBuf,
}

impl PixelCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PixelCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of one image under some params: blake3(file digest ‖ params digest).
    pub fn key(image_digest: &[u8; 32], params: &PrepareParams) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(image_digest);
        h.update(&params.digest());
        *h.finalize().as_bytes()
    }

    pub fn entry_path(&self, key: &[u8; 32]) -> PathBuf {
        let hex = blake3::Hash::from_bytes(*key).to_hex();
        self.dir.join(&hex[..2]).join(hex.as_str())
    }

    /// The pixels stored under `key`, when present and intact.
    pub fn get(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let mut bytes = std::fs::read(self.entry_path(key)).ok()?;
        if bytes.len() < 32 {
            return None;
        }
        let split = bytes.len() - 32;
        if blake3::hash(&bytes[..split]).as_bytes() != &bytes[split..] {
            return None;
        }
        bytes.truncate(split);
        Some(bytes)
    }

    /// Stores `pixels` under `key` (atomically; concurrent writers of one key are harmless).
    pub fn put(&self, key: &[u8; 32], pixels: &[u8]) -> Result<(), PrepareError> {
        let path = self.entry_path(key);
        let cache_err = |source| PrepareError::Cache { path: path.clone(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(cache_err)?;
        }
        let digest = blake3::hash(pixels);
        let mut file = AtomicFile::create(&path).map_err(cache_err)?;
        file.write_all(pixels).and_then(|()| file.write_all(digest.as_bytes())).map_err(cache_err)?;
        // No fsync: entries are verified on read, so one torn by a crash is a miss, and
        // a sync per image would cost more than decoding it.
        file.commit(Durability::VerifiedOnRead).map_err(cache_err)
    }
}

#[derive(Debug, Default)]
pub struct ShardStats {
    /// Images decoded in this run (cache misses).
    pub decoded: usize,
    /// Images taken from the pixel cache.
    pub reused: usize,
    /// Input index of each shard image, in shard order (all inputs unless some were skipped).
    pub kept: Vec<usize>,
    /// Input index and error of each image left out (only with [`BadImagePolicy::Skip`]).
    pub skipped: Vec<(usize, PrepareError)>,
}

/// Source images per shard part. A one-image change rewrites one part: at 224x224 that is
/// 150 MB of a 2.8 GB train shard; small enough to keep a rerun short, large enough that a
/// competition-sized split is a few dozen files.
pub const IMAGES_PER_PART: usize = 1024;

/// What a shard part is made from: the prepare parameters and its source images' digests,
/// in order. Equal recipes give byte-identical parts, so a part can be reused by recipe.
pub fn part_recipe(images: &[(PathBuf, [u8; 32])], params: &PrepareParams) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"maskflow shard part 1\0");
    h.update(&params.digest());
    h.update(&(images.len() as u64).to_le_bytes());
    for (_, digest) in images {
        h.update(digest);
    }
    *h.finalize().as_bytes()
}

/// Images handled per parallel round: bounds memory while keeping both cores busy.
const CHUNK: usize = 64;

/// Builds the shard at `out` from per-image cache entries, decoding only missing ones.
pub fn build_shard(
    images: &[(PathBuf, [u8; 32])],
    params: &PrepareParams,
    cache: &PixelCache,
    out: &Path,
) -> Result<ShardStats, PrepareError> {
    build_shard_with(images, params, cache, out, BadImagePolicy::Error)
}

/// [`build_shard`] with a policy for images that fail to prepare: stop at the first (in input
/// order), or leave them out of the shard and report them in [`ShardStats::skipped`]. A
/// failure to write the pixel cache or the shard is never skipped: it is not the image's.
pub fn build_shard_with(
    images: &[(PathBuf, [u8; 32])],
    params: &PrepareParams,
    cache: &PixelCache,
    out: &Path,
    on_bad: BadImagePolicy,
) -> Result<ShardStats, PrepareError> {
    if params.width == 0 || params.height == 0 {
        return Err(PrepareError::InvalidSize { width: params.width, height: params.height });
    }
    let expected_len = params.image_len();
    let mut stats = ShardStats::default();
    let mut writer = ShardWriter::create(out, params.height as usize, params.width as usize, 3)?;
    // (input index, (pixels, whether they were decoded rather than reused)).
    type Prepared = (usize, Result<(Vec<u8>, bool), PrepareError>);
    let mut results: Vec<Prepared> = Vec::new();
    for (chunk_index, chunk) in images.chunks(CHUNK).enumerate() {
        chunk
            .par_iter()
            .enumerate()
            .map(|(i, (path, digest))| {
                let key = PixelCache::key(digest, params);
                let row = match cache.get(&key) {
                    Some(pixels) if pixels.len() == expected_len => Ok((pixels, false)),
                    _ => prepare_image(path, params).and_then(|pixels| {
                        cache.put(&key, &pixels)?;
                        Ok((pixels, true))
                    }),
                };
                (chunk_index * CHUNK + i, row)
            })
            .collect_into_vec(&mut results);
        for (index, result) in results.drain(..) {
            match result {
                Ok((pixels, decoded)) => {
                    if decoded {
                        stats.decoded += 1;
                    } else {
                        stats.reused += 1;
                    }
                    stats.kept.push(index);
                    writer.push(&pixels)?;
                }
                Err(e) if on_bad == BadImagePolicy::Skip && e.is_bad_image() => stats.skipped.push((index, e)),
                Err(e) => return Err(e),
            }
        }
    }
    writer.finish()?;
    Ok(stats)
}
