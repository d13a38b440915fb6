//! Reads the competition's directory layout into plain, serialisable indexes.
//!
//! Constraints kept here:
//! - real data must load as it ships: extensions vary (`.jpg .jpeg .png`, any case), macOS
//!   `._*` and other dot files are ignored, ids may carry a suffix (`001498-1`);
//! - every problem is reported with the path and, for CSVs, the 1-based line number;
//! - the result is deterministic: persons sorted by id, images by (person, slot), paths
//!   relative to the dataset root with `/` separators, so the index can be cached as JSON.
//!
//! Only `read_dir` is used (one level per person folder), so symlink loops cannot hang it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::labels::{Gender, ImageSlot};

/// Image file extensions the reader accepts (compared without regard to case).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The oldest age `train.csv` may state; larger values are treated as typos.
pub const MAX_AGE: u32 = 150;

/// What to do with bad input images: when reading the layout, a person folder whose images
/// are not exactly the seven slots; when preparing, an image that cannot be read or decoded
/// ([`build_shard_with`](super::prepare::build_shard_with)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadImagePolicy {
    /// Stop at the first problem.
    Error,
    /// Leave the affected images out and report them ([`TrainIndex::skipped`] when reading,
    /// [`ShardStats::skipped`](super::prepare::ShardStats::skipped) when preparing).
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    pub gender: Gender,
    pub race: String,
    pub age: u32,
    /// The folder name under `images/` (train.csv's `path` column).
    pub folder: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainImage {
    /// Index into [`TrainIndex::persons`].
    pub person: usize,
    pub slot: ImageSlot,
    /// Relative to the train directory, e.g. `images/000001_female_Asian_45/mask1.jpg`.
    pub path: PathBuf,
}

/// A problem that [`BadImagePolicy::Skip`] stepped over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The folder or file, relative to the train directory like image paths.
    pub path: PathBuf,
    pub reason: FolderProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrainIndex {
    /// Sorted by id. Persons whose folder was skipped entirely are left out.
    pub persons: Vec<Person>,
    /// Sorted by (person, slot).
    pub images: Vec<TrainImage>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalImage {
    /// The `ImageID` column: the file name under `images/`.
    pub id: String,
    /// Relative to the eval directory, e.g. `images/<40 hex>.jpg`.
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EvalIndex {
    /// In `info.csv` order, which a submission must keep.
    pub images: Vec<EvalImage>,
}

/// Why a person folder (or a file in it) does not hold exactly the seven slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FolderProblem {
    /// The folder named by train.csv's `path` column does not exist.
    MissingFolder {
        csv_line: u64,
    },
    MissingImage {
        slot: ImageSlot,
    },
    /// More than one file for the same slot (e.g. `mask1.jpg` and `mask1.png`).
    DuplicateImage {
        slot: ImageSlot,
        files: Vec<String>,
    },
    /// A file that names no slot or has an unknown extension.
    UnexpectedFile,
}

impl fmt::Display for FolderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FolderProblem::MissingFolder { csv_line } => {
                write!(f, "person folder is missing (listed on train.csv line {csv_line})")
            }
            FolderProblem::MissingImage { slot } => write!(f, "no `{}` image", slot.stem()),
            FolderProblem::DuplicateImage { slot, files } => {
                write!(f, "several `{}` images: {}", slot.stem(), files.join(", "))
            }
            FolderProblem::UnexpectedFile => write!(
                f,
                "unexpected file: expected mask1..mask5, incorrect_mask or normal \
                 with extension .jpg, .jpeg or .png"
            ),
        }
    }
}

/// Errors of the data library. Each names the path and, for CSV rows, the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: malformed CSV: {source}", path.display(), line_suffix(*line))]
    Csv {
        path: PathBuf,
        line: Option<u64>,
        #[source]
        source: csv::Error,
    },
    #[error("{}: missing column `{column}` (header: {header})", path.display())]
    MissingColumn { path: PathBuf, column: String, header: String },
    /// A row whose field has an invalid value.
    #[error("{}:{line}: {message}", path.display())]
    BadValue { path: PathBuf, line: u64, message: String },
    #[error("{}:{line}: duplicate id `{id}` (first on line {first_line})", path.display())]
    DuplicateId { path: PathBuf, id: String, line: u64, first_line: u64 },
    #[error("{}: {problem}", path.display())]
    Folder { path: PathBuf, problem: FolderProblem },
    #[error("{}: {reason}", path.display())]
    Empty { path: PathBuf, reason: String },
    #[error("{}:{line}: image `{id}` not found in {}", path.display(), dir.display())]
    MissingEvalImage { path: PathBuf, line: u64, id: String, dir: PathBuf },
}

fn line_suffix(line: Option<u64>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

/// Opens a CSV file with trimmed fields and a header row.
pub(crate) fn open_csv(path: &Path) -> Result<csv::Reader<fs::File>, DataError> {
    let file = fs::File::open(path).map_err(|source| DataError::Io { path: path.to_owned(), source })?;
    Ok(csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file))
}

/// Wraps a csv error with the file path and the line it occurred on.
pub(crate) fn csv_error(path: &Path, source: csv::Error) -> DataError {
    DataError::Csv { path: path.to_owned(), line: source.position().map(|p| p.line()), source }
}

/// Finds the positions of `columns` in the header; extra columns are allowed.
pub(crate) fn column_positions<const N: usize>(
    path: &Path,
    reader: &mut csv::Reader<fs::File>,
    columns: [&str; N],
) -> Result<[usize; N], DataError> {
    let header = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let mut positions = [0; N];
    for (slot, column) in positions.iter_mut().zip(columns) {
        *slot = header.iter().position(|h| h == column).ok_or_else(|| DataError::MissingColumn {
            path: path.to_owned(),
            column: column.to_owned(),
            header: header.iter().collect::<Vec<_>>().join(","),
        })?;
    }
    Ok(positions)
}

/// Iterates over the data rows of a CSV as `(line, record)`.
pub(crate) fn rows<'a>(
    path: &'a Path,
    reader: &'a mut csv::Reader<fs::File>,
) -> impl Iterator<Item = Result<(u64, csv::StringRecord), DataError>> + 'a {
    reader.records().map(move |record| {
        let record = record.map_err(|e| csv_error(path, e))?;
        let line = record.position().map_or(0, |p| p.line());
        Ok((line, record))
    })
}

fn bad_value(path: &Path, line: u64, message: String) -> DataError {
    DataError::BadValue { path: path.to_owned(), line, message }
}

/// Parses an age field: an integer in `0..=MAX_AGE`.
pub(crate) fn parse_age(path: &Path, line: u64, text: &str) -> Result<u32, DataError> {
    let age: u32 = text.parse().map_err(|_| bad_value(path, line, format!("age `{text}` is not a number")))?;
    if age > MAX_AGE {
        return Err(bad_value(path, line, format!("age {age} is out of range 0..={MAX_AGE}")));
    }
    Ok(age)
}

/// Parses a gender field: `male` or `female`.
pub(crate) fn parse_gender(path: &Path, line: u64, text: &str) -> Result<Gender, DataError> {
    Gender::parse(text).ok_or_else(|| bad_value(path, line, format!("unknown gender `{text}` (expected male or female)")))
}

/// Reads `train_dir/train.csv` and the person folders under `train_dir/images/`.
pub fn read_train(train_dir: &Path, policy: BadImagePolicy) -> Result<TrainIndex, DataError> {
    let csv_path = train_dir.join("train.csv");
    let rows = read_train_csv(&csv_path)?;
    if rows.is_empty() {
        return Err(DataError::Empty { path: csv_path, reason: "dataset is empty: train.csv lists no persons".into() });
    }

    let mut index = TrainIndex::default();
    for (line, person) in rows.into_values() {
        let folder_rel = Path::new("images").join(&person.folder);
        let found = match scan_person_folder(train_dir, &folder_rel, line) {
            Ok(found) => found,
            Err(problem) => {
                skip_or_fail(policy, train_dir, &mut index.skipped, problem)?;
                continue;
            }
        };
        for problem in found.problems {
            skip_or_fail(policy, train_dir, &mut index.skipped, problem)?;
        }
        let slots = found.slots;
        for slot in ImageSlot::ALL {
            // A duplicated slot was reported above; report only slots with no file at all.
            if !slots.contains_key(&slot) && !found.duplicated.contains(&slot) {
                skip_or_fail(
                    policy,
                    train_dir,
                    &mut index.skipped,
                    Skipped { path: train_dir.join(&folder_rel), reason: FolderProblem::MissingImage { slot } },
                )?;
            }
        }
        if slots.is_empty() {
            continue;
        }
        let person_index = index.persons.len();
        index.persons.push(person);
        index.images.extend(slots.into_iter().map(|(slot, path)| TrainImage { person: person_index, slot, path }));
    }

    if index.images.is_empty() {
        return Err(DataError::Empty {
            path: train_dir.join("images"),
            reason: "dataset is empty: no images left after skipping bad folders".into(),
        });
    }
    Ok(index)
}

impl TrainIndex {
    /// The person an image belongs to.
    pub fn person_of(&self, image: &TrainImage) -> &Person {
        &self.persons[image.person]
    }
}

/// Fails with `problem` (whose path is under `train_dir`), or records it relative to
/// `train_dir`.
fn skip_or_fail(policy: BadImagePolicy, train_dir: &Path, skipped: &mut Vec<Skipped>, problem: Skipped) -> Result<(), DataError> {
    match policy {
        BadImagePolicy::Error => Err(DataError::Folder { path: problem.path, problem: problem.reason }),
        BadImagePolicy::Skip => {
            let path = match problem.path.strip_prefix(train_dir) {
                Ok(relative) => relative.to_owned(),
                Err(_) => problem.path,
            };
            skipped.push(Skipped { path, reason: problem.reason });
            Ok(())
        }
    }
}

/// Parses train.csv into persons keyed (and so sorted) by id, each with its line number.
fn read_train_csv(path: &Path) -> Result<BTreeMap<String, (u64, Person)>, DataError> {
    let mut reader = open_csv(path)?;
    let [id_col, gender_col, race_col, age_col, path_col] = column_positions(path, &mut reader, ["id", "gender", "race", "age", "path"])?;
    let mut persons: BTreeMap<String, (u64, Person)> = BTreeMap::new();
    for row in rows(path, &mut reader) {
        let (line, record) = row?;
        let field = |col: usize| record.get(col).unwrap_or("");
        let id = field(id_col);
        if id.is_empty() || id.chars().any(char::is_whitespace) {
            return Err(bad_value(path, line, format!("invalid id `{id}`")));
        }
        let gender = parse_gender(path, line, field(gender_col))?;
        let age = parse_age(path, line, field(age_col))?;
        let folder = field(path_col);
        if !is_plain_name(folder) {
            return Err(bad_value(path, line, format!("path `{folder}` must be a single folder name under images/")));
        }
        let person = Person { id: id.to_owned(), gender, race: field(race_col).to_owned(), age, folder: folder.to_owned() };
        match persons.entry(id.to_owned()) {
            Entry::Occupied(first) => {
                return Err(DataError::DuplicateId { path: path.to_owned(), id: id.to_owned(), line, first_line: first.get().0 });
            }
            Entry::Vacant(slot) => {
                slot.insert((line, person));
            }
        }
    }
    Ok(persons)
}

/// A name that stays inside its parent: no separators, not `.`/`..`, not empty.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\'])
}

/// What one person folder holds.
struct FolderScan {
    /// Slots with exactly one file.
    slots: BTreeMap<ImageSlot, PathBuf>,
    /// Slots with several files (each also has an entry in `problems`).
    duplicated: BTreeSet<ImageSlot>,
    problems: Vec<Skipped>,
}

/// Lists one person folder. A missing folder is returned as `Err`, other problems in
/// `problems` so that the caller can decide per policy.
fn scan_person_folder(train_dir: &Path, folder_rel: &Path, csv_line: u64) -> Result<FolderScan, Skipped> {
    let folder = train_dir.join(folder_rel);
    let entries = fs::read_dir(&folder).map_err(|_| Skipped { path: folder.clone(), reason: FolderProblem::MissingFolder { csv_line } })?;
    let mut by_slot: BTreeMap<ImageSlot, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else {
            problems.push(Skipped { path: folder.join(&name), reason: FolderProblem::UnexpectedFile });
            continue;
        };
        // macOS `._*` resource forks, `.DS_Store` and other hidden files are not photos.
        if name.starts_with('.') {
            continue;
        }
        match slot_of_file_name(name) {
            Some(slot) if folder.join(name).is_file() => by_slot.entry(slot).or_default().push(name.to_owned()),
            _ => problems.push(Skipped { path: folder.join(name), reason: FolderProblem::UnexpectedFile }),
        }
    }
    let mut slots = BTreeMap::new();
    let mut duplicated = BTreeSet::new();
    for (slot, files) in by_slot {
        match <[String; 1]>::try_from(files) {
            Ok([file]) => {
                slots.insert(slot, folder_rel.join(file));
            }
            Err(files) => {
                duplicated.insert(slot);
                problems.push(Skipped { path: folder.clone(), reason: FolderProblem::DuplicateImage { slot, files } });
            }
        }
    }
    Ok(FolderScan { slots, duplicated, problems })
}

/// `mask1.JPG` → `Mask1`; `None` for unknown stems or extensions.
fn slot_of_file_name(name: &str) -> Option<ImageSlot> {
    let (stem, ext) = name.rsplit_once('.')?;
    if !IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
        return None;
    }
    ImageSlot::from_stem(stem)
}

/// Reads `eval_dir/info.csv` (columns `ImageID`, `ans`) and checks every named image exists.
pub fn read_eval(eval_dir: &Path) -> Result<EvalIndex, DataError> {
    let csv_path = eval_dir.join("info.csv");
    let images_dir = eval_dir.join("images");
    let mut reader = open_csv(&csv_path)?;
    let [id_col] = column_positions(&csv_path, &mut reader, ["ImageID"])?;
    let mut first_lines: BTreeMap<String, u64> = BTreeMap::new();
    let mut images = Vec::new();
    for row in rows(&csv_path, &mut reader) {
        let (line, record) = row?;
        let id = record.get(id_col).unwrap_or("");
        if !is_plain_name(id) {
            return Err(bad_value(&csv_path, line, format!("invalid ImageID `{id}`")));
        }
        if let Some(&first_line) = first_lines.get(id) {
            return Err(DataError::DuplicateId { path: csv_path.clone(), id: id.to_owned(), line, first_line });
        }
        first_lines.insert(id.to_owned(), line);
        if !images_dir.join(id).is_file() {
            return Err(DataError::MissingEvalImage { path: csv_path.clone(), line, id: id.to_owned(), dir: images_dir.clone() });
        }
        images.push(EvalImage { id: id.to_owned(), path: Path::new("images").join(id) });
    }
    if images.is_empty() {
        return Err(DataError::Empty { path: csv_path.clone(), reason: "info.csv lists no images".into() });
    }
    Ok(EvalIndex { images })
}
