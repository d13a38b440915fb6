//! The uint8 shard: the prepared images of a split in one file or in a few part files (the
//! prepare step writes parts of a fixed number of source images, so that a one-image change
//! rewrites one part), read through memory maps as one sequence.
//!
//! Constraint kept here: a shard on disk is either complete and valid or absent. Writers go
//! through [`fsutil::AtomicFile`](crate::fsutil::AtomicFile) (a temporary file in the same
//! directory, `fsync`, then `rename`); readers validate the header and the exact file length
//! before handing out any pixels, so a truncated or foreign file is an error, never a panic or
//! a short read.
//!
//! Layout (all integers little-endian), header padded to 64 bytes so pixels stay aligned:
//!
//! | offset | size | field                          |
//! |--------|------|--------------------------------|
//! | 0      | 8    | magic `MFSHARD\0`              |
//! | 8      | 4    | format version (1)             |
//! | 12     | 4    | channels `c`                   |
//! | 16     | 8    | image count `n`                |
//! | 24     | 4    | height `h`                     |
//! | 28     | 4    | width `w`                      |
//! | 32     | 32   | reserved, zero                 |
//! | 64     | n·h·w·c | pixels, image-major, HWC `u8` |

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::fsutil::{AtomicFile, Durability};

pub const SHARD_MAGIC: &[u8; 8] = b"MFSHARD\0";
pub const SHARD_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("`{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}`: not a maskflow shard (bad magic)")]
    BadMagic { path: PathBuf },
    #[error("`{path}`: unsupported shard version {version} (expected {SHARD_VERSION})")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("`{path}`: invalid shard header: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("`{path}`: shard is {found} bytes, its header requires {expected} (truncated or corrupt)")]
    Length { path: PathBuf, expected: u64, found: u64 },
    #[error("`{path}`: image {index} has {found} bytes, the shard holds {expected}-byte images")]
    ImageSize { path: PathBuf, index: usize, expected: usize, found: usize },
}

/// Shape of the images a shard holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardShape {
    pub n: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl ShardShape {
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[0..8].copy_from_slice(SHARD_MAGIC);
        header[8..12].copy_from_slice(&SHARD_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&(self.channels as u32).to_le_bytes());
        header[16..24].copy_from_slice(&(self.n as u64).to_le_bytes());
        header[24..28].copy_from_slice(&(self.height as u32).to_le_bytes());
        header[28..32].copy_from_slice(&(self.width as u32).to_le_bytes());
        header
    }

    /// Total file length the header implies, `None` on overflow.
    fn file_len(&self) -> Option<u64> {
        (self.n as u64).checked_mul(self.image_len() as u64)?.checked_add(HEADER_LEN as u64)
    }
}

/// One memory-mapped shard file.
struct Part {
    path: PathBuf,
    map: Mmap,
}

/// A read-only, memory-mapped shard: one or more part files of the same image shape, seen
/// as one sequence of images.
pub struct Shard {
    shape: ShardShape,
    parts: Vec<Part>,
    /// `starts[k]` = index of part k's first image.
    starts: Vec<usize>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("path", &self.path()).field("parts", &self.parts.len()).field("shape", &self.shape).finish()
    }
}

impl Shard {
    /// Opens and validates a shard (magic, version, shape, exact length).
    pub fn open(path: &Path) -> Result<Shard, ShardError> {
        Shard::open_parts(std::slice::from_ref(&path.to_path_buf()))
    }

    /// Opens the part files of one shard, in order. Every part is validated like a whole
    /// shard, and all must hold images of the same shape.
    pub fn open_parts(paths: &[PathBuf]) -> Result<Shard, ShardError> {
        let Some(first) = paths.first() else {
            return Err(ShardError::BadHeader { path: PathBuf::new(), reason: "a shard needs at least one part".into() });
        };
        let mut parts = Vec::with_capacity(paths.len());
        let mut starts = Vec::with_capacity(paths.len());
        let mut shape: Option<ShardShape> = None;
        let mut n = 0usize;
        for path in paths {
            let (part_shape, map) = open_part(path)?;
            if let Some(s) = shape
                && (s.height, s.width, s.channels) != (part_shape.height, part_shape.width, part_shape.channels)
            {
                return Err(ShardError::BadHeader {
                    path: path.clone(),
                    reason: format!(
                        "holds {}x{}x{} images, the shard's first part {} holds {}x{}x{}",
                        part_shape.width,
                        part_shape.height,
                        part_shape.channels,
                        first.display(),
                        s.width,
                        s.height,
                        s.channels
                    ),
                });
            }
            shape = Some(part_shape);
            starts.push(n);
            n += part_shape.n;
            parts.push(Part { path: path.clone(), map });
        }
        let shape = ShardShape { n, ..shape.expect("at least one part") };
        Ok(Shard { shape, parts, starts })
    }

    /// The first part's path (the whole shard's, for a one-file shard).
    pub fn path(&self) -> &Path {
        &self.parts[0].path
    }
    pub fn shape(&self) -> ShardShape {
        self.shape
    }
    pub fn len(&self) -> usize {
        self.shape.n
    }
    pub fn is_empty(&self) -> bool {
        self.shape.n == 0
    }
    pub fn height(&self) -> usize {
        self.shape.height
    }
    pub fn width(&self) -> usize {
        self.shape.width
    }
    pub fn channels(&self) -> usize {
        self.shape.channels
    }

    /// The HWC pixels of image `i`. Panics when `i >= len()` (a caller bug, like slice indexing).
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.shape.n, "shard image {i} out of range (n = {})", self.shape.n);
        // The last part starting at or before `i` holds it: an empty part shares its start
        // with the next part, so it is never the last one at or before a valid index.
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        let len = self.shape.image_len();
        let start = HEADER_LEN + (i - self.starts[k]) * len;
        &self.parts[k].map[start..start + len]
    }
}

/// Maps one shard file and validates its header and exact length.
fn open_part(path: &Path) -> Result<(ShardShape, Mmap), ShardError> {
    let io_err = |source| ShardError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_err)?;
    let found = file.metadata().map_err(io_err)?.len();
    if found < HEADER_LEN as u64 {
        return Err(ShardError::Length { path: path.to_path_buf(), expected: HEADER_LEN as u64, found });
    }
    // SAFETY: the file is opened read-only and shards are only ever replaced by rename,
    // never modified in place, so the mapped bytes do not change under us.
    let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
    let shape = parse_header(path, &map[..HEADER_LEN])?;
    let expected = shape.file_len().ok_or_else(|| ShardError::BadHeader { path: path.to_path_buf(), reason: "size overflows".into() })?;
    if expected != found {
        return Err(ShardError::Length { path: path.to_path_buf(), expected, found });
    }
    Ok((shape, map))
}

fn parse_header(path: &Path, h: &[u8]) -> Result<ShardShape, ShardError> {
    let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    if &h[0..8] != SHARD_MAGIC {
        return Err(ShardError::BadMagic { path: path.to_path_buf() });
    }
    let version = u32_at(8);
    if version != SHARD_VERSION {
        return Err(ShardError::UnsupportedVersion { path: path.to_path_buf(), version });
    }
    let mut n_bytes = [0u8; 8];
    n_bytes.copy_from_slice(&h[16..24]);
    let n = u64::from_le_bytes(n_bytes);
    let shape = ShardShape {
        n: usize::try_from(n)
            .map_err(|_| ShardError::BadHeader { path: path.to_path_buf(), reason: format!("image count {n} too large") })?,
        channels: u32_at(12) as usize,
        height: u32_at(24) as usize,
        width: u32_at(28) as usize,
    };
    if !(1..=4).contains(&shape.channels) {
        return Err(ShardError::BadHeader { path: path.to_path_buf(), reason: format!("{} channels", shape.channels) });
    }
    if shape.height == 0 || shape.width == 0 {
        return Err(ShardError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("empty image size {}x{}", shape.width, shape.height),
        });
    }
    Ok(shape)
}

/// Streams images into a new shard; the shard appears at its path only on [`finish`],
/// which patches the image count into the header.
///
/// Dropping a writer without finishing removes its temporary file.
///
/// [`finish`]: ShardWriter::finish
pub struct ShardWriter {
    out: PathBuf,
    file: BufWriter<AtomicFile>,
    shape: ShardShape,
}

impl ShardWriter {
    /// Starts a shard of `height × width × channels` images.
    pub fn create(out: &Path, height: usize, width: usize, channels: usize) -> Result<ShardWriter, ShardError> {
        if height == 0 || width == 0 || !(1..=4).contains(&channels) {
            return Err(ShardError::BadHeader {
                path: out.to_path_buf(),
                reason: format!("cannot write {width}x{height}x{channels} images"),
            });
        }
        let file = AtomicFile::create(out).map_err(|source| ShardError::Io { path: out.to_path_buf(), source })?;
        let mut writer = ShardWriter {
            out: out.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            shape: ShardShape { n: 0, height, width, channels },
        };
        let header = writer.shape.encode();
        writer.write_all(&header)?;
        Ok(writer)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ShardError> {
        self.file.write_all(bytes).map_err(|source| ShardError::Io { path: self.file.get_ref().temp_path().to_path_buf(), source })
    }

    /// Images pushed so far.
    pub fn len(&self) -> usize {
        self.shape.n
    }

    pub fn is_empty(&self) -> bool {
        self.shape.n == 0
    }

    /// Appends one image (HWC, exactly `h·w·c` bytes).
    pub fn push(&mut self, pixels: &[u8]) -> Result<(), ShardError> {
        let expected = self.shape.image_len();
        if pixels.len() != expected {
            return Err(ShardError::ImageSize { path: self.out.clone(), index: self.shape.n, expected, found: pixels.len() });
        }
        self.write_all(pixels)?;
        self.shape.n += 1;
        Ok(())
    }

    /// Writes the final header, syncs and renames the shard into place.
    pub fn finish(self) -> Result<ShardShape, ShardError> {
        let temp_path = self.file.get_ref().temp_path().to_path_buf();
        let io_err = |source| ShardError::Io { path: temp_path.clone(), source };
        let mut file = self.file.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        file.write_all(&self.shape.encode()).map_err(io_err)?;
        file.commit(Durability::Durable).map_err(|source| ShardError::Io { path: self.out.clone(), source })?;
        Ok(self.shape)
    }
}
