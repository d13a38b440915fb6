//! A synthetic stand-in for the competition dataset, in the competition's exact layout.
//!
//! Constraints kept here:
//! - the output is a pure function of [`SynthParams`]: every person draws from its own ChaCha
//!   stream seeded by `(seed, person index)`, so files are byte-identical whatever the thread
//!   count, and generation parallelises over persons with rayon;
//! - the label mix matches the competition (≈61% female; ages 18–60 with ≈47% under 30,
//!   ≈46% 30–59, ≈7% at 60): counts are fixed exactly from the person count, then dealt out
//!   by a seeded shuffle;
//! - the images carry a learnable but imperfect signal: a drawn face whose skin, face shape
//!   and hair are constant across a person's seven photos, gender cues that are usually right
//!   (hair length, beard, lipstick, jaw), an age cue that grows continuously (grey strands,
//!   wrinkles) so ages near the cut-offs stay hard, and the mask drawn over nose and mouth
//!   (wear), mouth or chin only (incorrect) or absent (normal); backgrounds, lighting, pose
//!   and JPEG quality vary per photo;
//! - the layout exercises the reader: a few `.png`, `.jpeg` and upper-case `.JPG` folders,
//!   macOS `._mask1.jpg` junk and one suffixed id (`000002-1`);
//! - output appears atomically: everything is written to `<out>.tmp-<pid>` and renamed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::labels::{AGE_CLASSES, DEFAULT_AGE_BINS, Gender, ImageSlot, MaskState, age_class, class_of};
use super::layout::DataError;

/// Bumped whenever the generator draws different images for the same parameters; it is
/// part of the synthetic source's step key, so cached datasets never go stale.
/// 3: persons labelled 60 look 60–80 (the competition's age cap); stronger gender cues.
pub const GENERATOR_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthParams {
    /// Persons in `train/` (7 images each).
    pub persons: usize,
    /// Persons in `eval/` (7 images each).
    pub eval_persons: usize,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
}

impl Default for SynthParams {
    /// The competition's sizes: 2,700 train persons, 1,800 eval persons, 384×512 photos.
    fn default() -> Self {
        SynthParams { persons: 2700, eval_persons: 1800, seed: 0, width: 384, height: 512 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthSummary {
    pub train_persons: usize,
    pub train_images: usize,
    pub eval_images: usize,
    pub female: usize,
    /// Train persons per age class under the competition's bins `[30, 60]`.
    pub age_classes: [usize; AGE_CLASSES],
    /// Hidden `._*` junk files written beside real photos.
    pub junk_files: usize,
    /// Total size of all files written.
    pub bytes: u64,
}

/// Share of female persons.
const FEMALE_SHARE: f64 = 0.61;
/// Shares of the age classes `<30`, `30–59`, `60`.
const AGE_SHARES: [f64; AGE_CLASSES] = [0.47, 0.46, 0.07];
/// The stream offset that separates eval persons from train persons.
const EVAL_STREAM: u64 = 1 << 40;
/// The stream of the label shuffle.
const LABEL_STREAM: u64 = 1 << 41;

/// Writes a synthetic dataset under `out` (`train/` and `eval/`). `out` must not exist or be
/// an empty directory; nothing appears under `out` unless generation succeeds.
pub fn generate(params: &SynthParams, out: &Path) -> Result<SynthSummary, DataError> {
    let size_ok = |n: u32| (8..=u32::from(u16::MAX)).contains(&n);
    if params.persons == 0 || !size_ok(params.width) || !size_ok(params.height) {
        return Err(DataError::Io {
            path: out.to_owned(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "synthetic data needs at least 1 person and image sides of 8 to 65535 pixels",
            ),
        });
    }
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| DataError::Io { path, source }
    };
    if out.exists() {
        let empty = fs::read_dir(out).map_err(io_err(out))?.next().is_none();
        if !empty {
            return Err(DataError::Io {
                path: out.to_owned(),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "output directory exists and is not empty"),
            });
        }
    }
    let tmp = temp_sibling(out);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    let result = write_dataset(params, &tmp);
    match result {
        Ok(summary) => {
            if out.exists() {
                fs::remove_dir(out).map_err(io_err(out))?;
            }
            fs::rename(&tmp, out).map_err(io_err(out))?;
            Ok(summary)
        }
        Err(e) => {
            // Best effort: the error being returned matters more than a failed cleanup.
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn temp_sibling(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    out.with_file_name(name)
}

/// The labels and files of one synthetic person.
struct PersonPlan {
    index: usize,
    id: String,
    gender: Gender,
    age: u32,
    extension: &'static str,
    junk: bool,
}

fn write_dataset(params: &SynthParams, root: &Path) -> Result<SynthSummary, DataError> {
    let train_dir = root.join("train");
    let images_dir = train_dir.join("images");
    let eval_images_dir = root.join("eval").join("images");
    for dir in [&images_dir, &eval_images_dir] {
        fs::create_dir_all(dir).map_err(|source| DataError::Io { path: dir.clone(), source })?;
    }

    let train = plan_persons(params.seed, params.persons, 0);
    let train_results: Vec<(u64, usize)> =
        train.par_iter().map(|plan| write_train_person(params, plan, &images_dir)).collect::<Result<_, _>>()?;

    let mut csv = String::from("id,gender,race,age,path\n");
    for plan in &train {
        csv.push_str(&format!("{},{},Asian,{},{}\n", plan.id, plan.gender.as_str(), plan.age, folder_name(plan)));
    }
    let mut bytes = write_file(&train_dir.join("train.csv"), csv.as_bytes())?;
    bytes += train_results.iter().map(|r| r.0).sum::<u64>();

    let eval = plan_persons(params.seed, params.eval_persons, EVAL_STREAM);
    let eval_rows: Vec<Vec<(String, u8, u64)>> =
        eval.par_iter().map(|plan| write_eval_person(params, plan, &eval_images_dir)).collect::<Result<_, _>>()?;
    let mut eval_rows: Vec<(String, u8, u64)> = eval_rows.into_iter().flatten().collect();
    // Hash names sort into an order that reveals nothing about persons or labels.
    eval_rows.sort();
    let mut info = String::from("ImageID,ans\n");
    let mut labels = String::from("ImageID,class\n");
    for (name, class, size) in &eval_rows {
        info.push_str(&format!("{name},0\n"));
        labels.push_str(&format!("{name},{class}\n"));
        bytes += size;
    }
    bytes += write_file(&root.join("eval").join("info.csv"), info.as_bytes())?;
    bytes += write_file(&root.join("eval").join("labels.csv"), labels.as_bytes())?;

    let mut age_classes = [0; AGE_CLASSES];
    for plan in &train {
        age_classes[usize::from(age_class(plan.age, DEFAULT_AGE_BINS))] += 1;
    }
    Ok(SynthSummary {
        train_persons: train.len(),
        train_images: train.len() * ImageSlot::ALL.len(),
        eval_images: eval_rows.len(),
        female: train.iter().filter(|p| p.gender == Gender::Female).count(),
        age_classes,
        junk_files: train_results.iter().map(|r| r.1).sum(),
        bytes,
    })
}

fn write_file(path: &Path, contents: &[u8]) -> Result<u64, DataError> {
    fs::write(path, contents).map_err(|source| DataError::Io { path: path.to_owned(), source })?;
    Ok(contents.len() as u64)
}

fn folder_name(plan: &PersonPlan) -> String {
    format!("{}_{}_Asian_{}", plan.id, plan.gender.as_str(), plan.age)
}

/// Splits `n` into counts proportional to `shares` (largest remainder).
fn apportion<const N: usize>(n: usize, shares: [f64; N]) -> [usize; N] {
    let exact = shares.map(|s| s * n as f64);
    let mut counts = exact.map(|e| e.floor() as usize);
    let mut order: Vec<usize> = (0..N).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let missing = n - counts.iter().sum::<usize>();
    for &i in order.iter().cycle().take(missing) {
        counts[i] += 1;
    }
    counts
}

/// Fixes every person's labels and file details. Gender and age class are dealt from exact
/// counts; the age within its class, the extension and junk come from the person's stream.
fn plan_persons(seed: u64, n: usize, stream_base: u64) -> Vec<PersonPlan> {
    let mut label_rng = ChaCha8Rng::seed_from_u64(seed);
    label_rng.set_stream(LABEL_STREAM + stream_base);
    let [_, female] = apportion(n, [1.0 - FEMALE_SHARE, FEMALE_SHARE]);
    let mut genders: Vec<Gender> = (0..n).map(|i| if i < female { Gender::Female } else { Gender::Male }).collect();
    genders.shuffle(&mut label_rng);
    let age_counts = apportion(n, AGE_SHARES);
    let mut age_classes: Vec<usize> = (0..3).flat_map(|c| std::iter::repeat_n(c, age_counts[c])).collect();
    age_classes.shuffle(&mut label_rng);

    let train = stream_base == 0;
    (0..n)
        .map(|index| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream_base + index as u64);
            let age = match age_classes[index] {
                0 => rng.random_range(18..=29),
                // The competition's middle class leans towards the 50s.
                1 if rng.random_bool(0.5) => rng.random_range(30..=49),
                1 => rng.random_range(50..=59),
                _ => 60,
            };
            // Ids as in the competition: six digits; person 2 reuses person 1's number with a
            // `-1` suffix, like `001498-1`.
            let id = if index == 2 && train { format!("{:06}-1", index) } else { format!("{:06}", index + 1) };
            // A few fixed persons carry each file variant so that small datasets have them.
            let extension = match index {
                _ if !train => "jpg",
                3 => "png",
                4 => "jpeg",
                5 => "JPG",
                _ => match rng.random_range(0..100) {
                    0..5 => "png",
                    5..9 => "jpeg",
                    9..12 => "JPG",
                    _ => "jpg",
                },
            };
            let junk = train && (index == 6 || rng.random_bool(0.03));
            PersonPlan { index, id, gender: genders[index], age, extension, junk }
        })
        .collect()
}

fn person_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    // Skip far past the few draws `plan_persons` made from this stream, so that drawing
    // does not reuse them (which would tie looks to the age within its class).
    rng.set_word_pos(1 << 20);
    rng
}

/// Writes one train person's folder; returns (bytes written, junk files written).
fn write_train_person(params: &SynthParams, plan: &PersonPlan, images_dir: &Path) -> Result<(u64, usize), DataError> {
    let folder = images_dir.join(folder_name(plan));
    fs::create_dir_all(&folder).map_err(|source| DataError::Io { path: folder.clone(), source })?;
    let mut bytes = 0;
    let photos = render_person(params, plan, plan.index as u64);
    for (slot, (pixels, quality)) in ImageSlot::ALL.into_iter().zip(photos) {
        let path = folder.join(format!("{}.{}", slot.stem(), plan.extension));
        let encoded = encode(&pixels, params, plan.extension, quality, &path)?;
        bytes += write_file(&path, &encoded)?;
    }
    let mut junk = 0;
    if plan.junk {
        bytes += write_file(&folder.join("._mask1.jpg"), &apple_double_stub())?;
        junk += 1;
    }
    Ok((bytes, junk))
}

/// Writes one eval person's photos; returns (file name, true class, bytes) per photo.
fn write_eval_person(params: &SynthParams, plan: &PersonPlan, images_dir: &Path) -> Result<Vec<(String, u8, u64)>, DataError> {
    let photos = render_person(params, plan, EVAL_STREAM + plan.index as u64);
    let age = age_class(plan.age, DEFAULT_AGE_BINS);
    let mut rows = Vec::with_capacity(photos.len());
    for (slot, (pixels, quality)) in ImageSlot::ALL.into_iter().zip(photos) {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&params.seed.to_le_bytes());
        hasher.update(&(plan.index as u64).to_le_bytes());
        hasher.update(slot.stem().as_bytes());
        let hex = hasher.finalize().to_hex();
        let name = format!("{}.jpg", &hex[..40]);
        let path = images_dir.join(&name);
        let encoded = encode(&pixels, params, "jpg", quality, &path)?;
        let size = write_file(&path, &encoded)?;
        rows.push((name, class_of(slot.mask_state(), plan.gender, age), size));
    }
    Ok(rows)
}

/// The header of a macOS AppleDouble file, padded: junk that is not an image.
fn apple_double_stub() -> Vec<u8> {
    let mut bytes = vec![0x00, 0x05, 0x16, 0x07, 0x00, 0x02, 0x00, 0x00];
    bytes.extend_from_slice(b"Mac OS X        ");
    bytes.resize(4096, 0);
    bytes
}

fn encode(pixels: &[u8], params: &SynthParams, extension: &str, quality: u8, path: &Path) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    let result = if extension.eq_ignore_ascii_case("png") {
        PngEncoder::new(&mut out).write_image(pixels, params.width, params.height, ExtendedColorType::Rgb8).map_err(io::Error::other)
    } else {
        // jpeg-encoder is several times faster than image's own JPEG encoder, which
        // dominates generation time at the competition's size.
        jpeg_encoder::Encoder::new(&mut out, quality)
            .encode(pixels, params.width as u16, params.height as u16, jpeg_encoder::ColorType::Rgb)
            .map_err(io::Error::other)
    };
    result.map_err(|e| DataError::Io { path: path.to_owned(), source: e })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Drawing. Shapes live in "face space": origin at the face centre, one unit = the face's
// half width, v pointing down. Each pixel is mapped into face space through the photo's
// pose (shift, rotation, scale) and coloured by the frontmost shape that covers it.

type Rgb = [f32; 3];

/// What stays the same across one person's photos.
struct Identity {
    skin: Rgb,
    hair: Rgb,
    lips: Rgb,
    /// Half width of the lower face (jaw), relative to the upper face.
    jaw: f32,
    /// Half height of the face ellipse.
    face_height: f32,
    long_hair: bool,
    /// Where long hair ends (face units below the face centre).
    hair_end: f32,
    /// 0 (none) to 1 (full stubble).
    beard: f32,
    /// Share of grey hair strands, growing with age.
    grey: f32,
    /// Depth of wrinkle lines, growing with age.
    wrinkles: f32,
    eye_spacing: f32,
    hair_seed: u32,
}

#[derive(Clone, Copy)]
enum MaskStyle {
    Plain,
    Pleated,
    Dotted,
    Checked,
}

struct MaskLook {
    top: f32,
    bottom: f32,
    colour: Rgb,
    accent: Rgb,
    style: MaskStyle,
}

/// What changes from photo to photo.
struct Shot {
    background: [Rgb; 2],
    background_dir: [f32; 2],
    band: Option<(f32, f32, Rgb)>,
    clothes: Rgb,
    centre: [f32; 2],
    angle: f32,
    /// Face half width in pixels.
    radius: f32,
    light: f32,
    light_dir: [f32; 2],
    noise: f32,
    noise_seed: u32,
    mask: Option<MaskLook>,
    quality: u8,
}

fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn scale(c: Rgb, k: f32) -> Rgb {
    [c[0] * k, c[1] * k, c[2] * k]
}

fn random_colour(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> Rgb {
    [rng.random_range(lo..hi), rng.random_range(lo..hi), rng.random_range(lo..hi)]
}

/// A uniform draw in `centre ± spread`, clamped to `[0, 1]`.
fn noisy(rng: &mut ChaCha8Rng, centre: f32, spread: f32) -> f32 {
    (centre + rng.random_range(-spread..spread)).clamp(0.0, 1.0)
}

fn identity(rng: &mut ChaCha8Rng, gender: Gender, age: u32) -> Identity {
    let female = gender == Gender::Female;
    let tone = rng.random_range(0.0..1.0f32);
    let skin = lerp([236.0, 200.0, 172.0], [176.0, 128.0, 96.0], tone);
    let hair_tone = rng.random_range(0.0..1.0f32);
    let hair = lerp([20.0, 16.0, 14.0], [96.0, 64.0, 40.0], hair_tone * hair_tone);
    let lipstick = female && rng.random_bool(0.7);
    let lips = if lipstick { [rng.random_range(170.0..215.0), 40.0, 60.0] } else { lerp(skin, [150.0, 80.0, 80.0], 0.5) };
    // Cues that are usually but not always right.
    let long_hair = if female { rng.random_bool(0.9) } else { rng.random_bool(0.06) };
    let beard = if !female && rng.random_bool(0.6) { rng.random_range(0.3..1.0) } else { 0.0 };
    let jaw = if female { 0.9 } else { 0.98 } + rng.random_range(-0.06..0.06);
    // Age cues grow continuously, with person-to-person spread, so 29 and 31 look alike.
    // As in the competition, 60 is a cap: a person labelled 60 really is 60 to 80, so the
    // oldest class looks older on average while 58 and 61 still look alike.
    let look_age = if age >= 60 { rng.random_range(60..=80) } else { age } as f32;
    let grey = noisy(rng, (look_age - 30.0) / 45.0, 0.12);
    let wrinkles = noisy(rng, (look_age - 24.0) / 50.0, 0.12);
    Identity {
        skin,
        hair,
        lips,
        jaw,
        face_height: rng.random_range(1.28..1.42),
        long_hair,
        hair_end: rng.random_range(1.2..2.4),
        beard,
        grey,
        wrinkles,
        eye_spacing: rng.random_range(0.34..0.42),
        hair_seed: rng.random(),
    }
}

fn mask_look(rng: &mut ChaCha8Rng, state: MaskState) -> Option<MaskLook> {
    let (top, bottom) = match state {
        MaskState::Normal => return None,
        MaskState::Wear => (rng.random_range(-0.14..0.0), rng.random_range(1.3..1.45)),
        // Below the nose (mouth and chin covered) or on the chin only.
        MaskState::Incorrect if rng.random_bool(0.6) => (rng.random_range(0.35..0.48), rng.random_range(1.35..1.5)),
        MaskState::Incorrect => (rng.random_range(0.8..0.95), rng.random_range(1.5..1.65)),
    };
    const COLOURS: [Rgb; 6] = [
        [238.0, 238.0, 240.0],
        [30.0, 30.0, 34.0],
        [150.0, 190.0, 225.0],
        [130.0, 130.0, 135.0],
        [230.0, 170.0, 190.0],
        [60.0, 80.0, 140.0],
    ];
    let colour = COLOURS[rng.random_range(0..COLOURS.len())];
    let style = match rng.random_range(0..10) {
        0..4 => MaskStyle::Plain,
        4..7 => MaskStyle::Pleated,
        7..9 => MaskStyle::Dotted,
        _ => MaskStyle::Checked,
    };
    Some(MaskLook { top, bottom, colour, accent: random_colour(rng, 20.0, 240.0), style })
}

fn shot(rng: &mut ChaCha8Rng, params: &SynthParams, state: MaskState) -> Shot {
    let (w, h) = (params.width as f32, params.height as f32);
    let angle: f32 = rng.random_range(-0.16..0.16);
    let dir: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let light_dir: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let band = rng.random_bool(0.35).then(|| {
        let start = rng.random_range(0.0..0.8);
        (start, start + rng.random_range(0.05..0.3), random_colour(rng, 30.0, 230.0))
    });
    Shot {
        background: [random_colour(rng, 40.0, 235.0), random_colour(rng, 40.0, 235.0)],
        background_dir: [dir.cos(), dir.sin()],
        band,
        clothes: random_colour(rng, 15.0, 220.0),
        centre: [w * (0.5 + rng.random_range(-0.06..0.06)), h * (0.42 + rng.random_range(-0.04..0.04))],
        angle,
        radius: 0.26 * w.min(h * 0.75) * rng.random_range(0.86..1.14),
        light: rng.random_range(0.75..1.15),
        light_dir: [light_dir.cos(), light_dir.sin()],
        noise: rng.random_range(1.0..4.0),
        noise_seed: rng.random(),
        mask: mask_look(rng, state),
        quality: rng.random_range(72..=95),
    }
}

/// Renders a person's seven photos (RGB bytes and JPEG quality), in slot order.
fn render_person(params: &SynthParams, plan: &PersonPlan, stream: u64) -> Vec<(Vec<u8>, u8)> {
    let mut rng = person_rng(params.seed, stream);
    let who = identity(&mut rng, plan.gender, plan.age);
    ImageSlot::ALL
        .into_iter()
        .map(|slot| {
            let shot = shot(&mut rng, params, slot.mask_state());
            (render(&who, &shot, params.width, params.height), shot.quality)
        })
        .collect()
}

/// A 32-bit integer hash (for per-pixel noise and hair strands).
fn hash(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Draws a photo. Shapes are drawn at half resolution and upsampled bilinearly before the
/// sensor noise is added: real photos are soft, and drawing at full resolution dominated
/// generation time.
fn render(who: &Identity, shot: &Shot, width: u32, height: u32) -> Vec<u8> {
    let step = if width >= 64 && height >= 64 { 2 } else { 1 };
    let (dw, dh) = (width.div_ceil(step) as usize, height.div_ceil(step) as usize);
    let drawn = draw(who, shot, dw, dh, step as f32, width, height);

    // For each output column (row): the two drawn columns (rows) around it and the weight
    // of the second.
    let taps = |n: u32, drawn_n: usize| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let s = ((i as f32 + 0.5) / step as f32 - 0.5).max(0.0);
                let i0 = (s as usize).min(drawn_n - 1);
                (i0, (i0 + 1).min(drawn_n - 1), s - i0 as f32)
            })
            .collect()
    };
    let (columns, rows) = (taps(width, dw), taps(height, dh));
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    let mut out = pixels.chunks_exact_mut(3);
    for (y, &(y0, y1, ty)) in rows.iter().enumerate() {
        let (row0, row1) = (&drawn[y0 * dw..(y0 + 1) * dw], &drawn[y1 * dw..(y1 + 1) * dw]);
        for (x, &(x0, x1, tx)) in columns.iter().enumerate() {
            let top = lerp(row0[x0], row0[x1], tx);
            let bottom = lerp(row1[x0], row1[x1], tx);
            let colour = lerp(top, bottom, ty);
            let noise = hash(x as u32 ^ ((y as u32) << 12) ^ shot.noise_seed) as f32 / u32::MAX as f32 - 0.5;
            if let Some(px) = out.next() {
                for (dst, c) in px.iter_mut().zip(colour) {
                    *dst = (c + noise * 2.0 * shot.noise).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    pixels
}

/// Lit colours of a `dw × dh` grid whose cells are `step` output pixels wide.
fn draw(who: &Identity, shot: &Shot, dw: usize, dh: usize, step: f32, width: u32, height: u32) -> Vec<Rgb> {
    let (sin, cos) = shot.angle.sin_cos();
    let inv_r = 1.0 / shot.radius;
    let (inv_w, inv_h) = (1.0 / width as f32, 1.0 / height as f32);
    let mut drawn = Vec::with_capacity(dw * dh);
    for y in 0..dh {
        let cy = (y as f32 + 0.5) * step;
        for x in 0..dw {
            let cx = (x as f32 + 0.5) * step;
            let (px, py) = (cx - shot.centre[0], cy - shot.centre[1]);
            let u = (px * cos + py * sin) * inv_r;
            let v = (-px * sin + py * cos) * inv_r;
            let (fx, fy) = (cx * inv_w, cy * inv_h);
            let colour = match scene(who, shot, u, v) {
                Some(c) => c,
                None => background(shot, fx, fy),
            };
            let light = shot.light * (1.0 + 0.18 * ((fx - 0.5) * shot.light_dir[0] + (fy - 0.5) * shot.light_dir[1]));
            drawn.push(scale(colour, light));
        }
    }
    drawn
}

fn background(shot: &Shot, fx: f32, fy: f32) -> Rgb {
    if let Some((start, end, colour)) = shot.band
        && fx >= start
        && fx < end
    {
        return colour;
    }
    let t = (0.5 + (fx - 0.5) * shot.background_dir[0] + (fy - 0.5) * shot.background_dir[1]).clamp(0.0, 1.0);
    lerp(shot.background[0], shot.background[1], t)
}

/// Whether `(u, v)` lies inside the axis-aligned ellipse at `(cu, cv)` with radii `(ru, rv)`.
fn in_ellipse(u: f32, v: f32, cu: f32, cv: f32, ru: f32, rv: f32) -> bool {
    let (du, dv) = ((u - cu) / ru, (v - cv) / rv);
    du * du + dv * dv <= 1.0
}

/// Whether `(u, v)` lies within `width` of the segment `a`–`b`.
fn near_segment(u: f32, v: f32, a: [f32; 2], b: [f32; 2], width: f32) -> bool {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let t = (((u - a[0]) * dx + (v - a[1]) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    let (ex, ey) = (u - a[0] - t * dx, v - a[1] - t * dy);
    ex * ex + ey * ey < width * width
}

/// The hair colour at `(u, v)`: vertical strands, a share of them grey.
fn hair_colour(who: &Identity, u: f32, v: f32) -> Rgb {
    // Strands lean a little with height; a triangle wave avoids a sine per pixel.
    let lean = ((v * 0.8).fract().abs() - 0.5).abs() * 3.0;
    let strand = ((u * 28.0 + lean).floor() as i32) as u32;
    let grey = (hash(strand ^ who.hair_seed) as f32 / u32::MAX as f32) < who.grey;
    if grey { [200.0, 200.0, 204.0] } else { who.hair }
}

/// The colour of the frontmost shape at `(u, v)`, or `None` for background.
fn scene(who: &Identity, shot: &Shot, u: f32, v: f32) -> Option<Rgb> {
    if let Some(mask) = &shot.mask
        && let Some(c) = mask_colour(mask, u, v)
    {
        return Some(c);
    }
    let face_half_width = if v > 0.0 { who.jaw } else { 1.0 };
    let in_face = in_ellipse(u, v, 0.0, 0.0, face_half_width, who.face_height);
    // The fringe: hair over the top of the face above a curved hairline.
    let in_skull = in_ellipse(u, v, 0.0, -0.35, 1.14, 1.25);
    if in_skull && v < -0.78 + 0.3 * u * u {
        return Some(hair_colour(who, u, v));
    }
    if in_face {
        return Some(face_colour(who, u, v, face_half_width));
    }
    // Ear loops run from the mask's sides to the ears.
    if let Some(mask) = &shot.mask
        && (0.9..1.1).contains(&u.abs())
        && v > -0.2
        && v < mask.top + 0.25
        && near_segment(u.abs(), v, [1.0, -0.15], [0.98, mask.top + 0.2], 0.025)
    {
        return Some(scale(mask.colour, 0.9));
    }
    if in_skull || (who.long_hair && u.abs() < 1.32 && v > -0.4 && v < who.hair_end) {
        return Some(hair_colour(who, u, v));
    }
    if u.abs() < 0.42 && v > 0.5 && v < 2.2 {
        return Some(scale(who.skin, 0.82));
    }
    if in_ellipse(u, v, 0.0, 3.1, 2.5, 1.5) {
        return Some(shot.clothes);
    }
    None
}

fn face_colour(who: &Identity, u: f32, v: f32, half_width: f32) -> Rgb {
    let (du, dv) = (u / half_width, v / who.face_height);
    // Darker towards the rim, for a little roundness.
    let skin = scale(who.skin, 1.0 - 0.18 * (du * du + dv * dv));
    let au = u.abs();
    // Eyes: white with a dark iris.
    if (-0.33..-0.17).contains(&v) && in_ellipse(au, v, who.eye_spacing, -0.25, 0.15, 0.07) {
        return if in_ellipse(au, v, who.eye_spacing, -0.25, 0.06, 0.06) { [35.0, 25.0, 20.0] } else { [235.0, 235.0, 230.0] };
    }
    // Eyebrows, greying with the hair.
    if au > 0.16 && au < 0.6 && v > -0.5 && v < -0.43 {
        return lerp(who.hair, [190.0, 190.0, 190.0], who.grey * 0.7);
    }
    if in_ellipse(u, v, 0.0, 0.62, 0.27, 0.065) {
        return who.lips;
    }
    if in_ellipse(au, v, 0.06, 0.35, 0.05, 0.03) {
        return scale(skin, 0.55);
    }
    if in_ellipse(u, v, 0.0, 0.12, 0.1, 0.24) {
        return scale(skin, 0.9);
    }
    let mut colour = skin;
    // Forehead lines: the older the person, the more and the deeper.
    if au < 0.45 && (-0.76..-0.54).contains(&v) {
        for (k, line) in [-0.58f32, -0.65, -0.72].into_iter().enumerate() {
            let depth = who.wrinkles - k as f32 * 0.3;
            if depth > 0.0 && (v - line - 0.04 * u * u).abs() < 0.012 {
                colour = scale(colour, 1.0 - 0.4 * depth.min(0.8));
            }
        }
    }
    // Lines from nose to mouth corners and at the eyes' outer corners.
    if who.wrinkles > 0.15 && (0.15..0.75).contains(&au) && (-0.4..0.75).contains(&v) {
        let depth = 1.0 - 0.35 * who.wrinkles;
        if (v > 0.28 && near_segment(au, v, [0.18, 0.3], [0.34, 0.72], 0.014))
            || (au > 0.56
                && (near_segment(au, v, [0.58, -0.3], [0.7, -0.36], 0.01) || near_segment(au, v, [0.58, -0.2], [0.7, -0.16], 0.01)))
        {
            colour = scale(colour, depth);
        }
    }
    if who.beard > 0.0 && v > 0.42 {
        let stubble = lerp(who.hair, [150.0, 150.0, 150.0], who.grey);
        colour = lerp(colour, stubble, 0.45 * who.beard);
    }
    colour
}

fn mask_colour(mask: &MaskLook, u: f32, v: f32) -> Option<Rgb> {
    // A half ellipse hanging from a gently arched top edge.
    let height = mask.bottom - mask.top;
    let arch = mask.top - 0.08 * (1.0 - (u / 1.08) * (u / 1.08)).max(0.0);
    if v < arch || !in_ellipse(u, v, 0.0, mask.top, 1.08, height) {
        return None;
    }
    let t = (v - mask.top) / height;
    let base = match mask.style {
        MaskStyle::Plain => mask.colour,
        MaskStyle::Pleated if (t * 4.0).fract() < 0.12 => scale(mask.colour, 0.8),
        MaskStyle::Pleated => mask.colour,
        MaskStyle::Dotted => {
            let (fu, fv) = ((u * 6.0).fract().abs() - 0.5, (v * 6.0).fract().abs() - 0.5);
            if fu * fu + fv * fv < 0.06 { mask.accent } else { mask.colour }
        }
        MaskStyle::Checked => {
            if ((u * 5.0).floor() as i32 + (v * 5.0).floor() as i32) % 2 == 0 {
                mask.accent
            } else {
                mask.colour
            }
        }
    };
    Some(scale(base, 1.0 - 0.2 * u * u))
}
