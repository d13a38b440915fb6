//! The layout reader on synthetic fixtures, and on each kind of bad data with its message.

use std::fs;
use std::path::{Path, PathBuf};

use maskflow::data::labels::ImageSlot;
use maskflow::data::layout::{BadImagePolicy, FolderProblem, TrainIndex, read_eval, read_train};
use maskflow::data::synth::{SynthParams, generate};
use tempfile::TempDir;

const PERSONS: usize = 8;

/// A small synthetic dataset: returns the temp dir (kept alive) and the dataset root.
fn fixture() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("data");
    let params = SynthParams { persons: PERSONS, eval_persons: 2, seed: 7, width: 64, height: 80 };
    generate(&params, &root).unwrap();
    (tmp, root)
}

fn read(root: &Path) -> TrainIndex {
    read_train(&root.join("train"), BadImagePolicy::Error).unwrap()
}

fn error(root: &Path) -> String {
    read_train(&root.join("train"), BadImagePolicy::Error).unwrap_err().to_string()
}

fn edit_csv(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text = fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The file of `slot` in `person`'s folder (whatever its extension).
fn image_of(root: &Path, index: &TrainIndex, person: usize, slot: ImageSlot) -> PathBuf {
    let image = index.images.iter().find(|i| i.person == person && i.slot == slot).unwrap();
    root.join("train").join(&image.path)
}

#[test]
fn reads_a_synthetic_dataset_sorted_with_all_slots() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    assert_eq!(index.persons.len(), PERSONS);
    assert_eq!(index.images.len(), PERSONS * 7);
    assert!(index.skipped.is_empty());
    let ids: Vec<&str> = index.persons.iter().map(|p| p.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    for (i, image) in index.images.iter().enumerate() {
        assert_eq!(image.person, i / 7);
        assert_eq!(image.slot, ImageSlot::ALL[i % 7]);
        assert!(root.join("train").join(&image.path).is_file());
        assert!(image.path.starts_with("images"));
    }
    for person in &index.persons {
        assert_eq!(person.race, "Asian");
        assert_eq!(person.folder, format!("{}_{}_Asian_{}", person.id, person.gender.as_str(), person.age));
    }
}

#[test]
fn suffixed_ids_are_accepted() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    assert!(index.persons.iter().any(|p| p.id == "000002-1"));
    assert!(index.persons.iter().any(|p| p.id == "000002"));
}

#[test]
fn mixed_case_extensions_are_accepted() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    let extensions: Vec<String> = index.images.iter().map(|i| i.path.extension().unwrap().to_str().unwrap().to_owned()).collect();
    for ext in ["jpg", "png", "jpeg", "JPG"] {
        assert!(extensions.iter().any(|e| e == ext), "no .{ext} image read");
    }
}

#[test]
fn hidden_files_are_skipped() {
    let (_tmp, root) = fixture();
    let junk: Vec<PathBuf> = walkdir::WalkDir::new(root.join("train/images"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("._"))
        .collect();
    assert!(!junk.is_empty(), "the fixture should contain `._*` junk");
    let folder = junk[0].parent().unwrap();
    fs::write(folder.join(".DS_Store"), b"junk").unwrap();
    let index = read(&root);
    assert_eq!(index.images.len(), PERSONS * 7);
    assert!(index.skipped.is_empty());
}

#[test]
fn missing_train_csv() {
    let (_tmp, root) = fixture();
    let csv = root.join("train/train.csv");
    fs::remove_file(&csv).unwrap();
    assert_eq!(error(&root), format!("{}: No such file or directory (os error 2)", csv.display()));
}

#[test]
fn missing_column() {
    let (_tmp, root) = fixture();
    let csv = root.join("train/train.csv");
    edit_csv(&csv, |lines| {
        for line in lines.iter_mut() {
            let mut cells: Vec<&str> = line.split(',').collect();
            cells.remove(3);
            *line = cells.join(",");
        }
    });
    assert_eq!(error(&root), format!("{}: missing column `age` (header: id,gender,race,path)", csv.display()));
}

#[test]
fn non_numeric_age() {
    let (_tmp, root) = fixture();
    let csv = root.join("train/train.csv");
    edit_csv(&csv, |lines| {
        let mut cells: Vec<String> = lines[2].split(',').map(str::to_owned).collect();
        cells[3] = "abc".into();
        lines[2] = cells.join(",");
    });
    assert_eq!(error(&root), format!("{}:3: age `abc` is not a number", csv.display()));
}

#[test]
fn age_out_of_range() {
    let (_tmp, root) = fixture();
    let csv = root.join("train/train.csv");
    edit_csv(&csv, |lines| {
        let mut cells: Vec<String> = lines[1].split(',').map(str::to_owned).collect();
        cells[3] = "151".into();
        lines[1] = cells.join(",");
    });
    assert_eq!(error(&root), format!("{}:2: age 151 is out of range 0..=150", csv.display()));
}

#[test]
fn unknown_gender() {
    let (_tmp, root) = fixture();
    let csv = root.join("train/train.csv");
    edit_csv(&csv, |lines| {
        let mut cells: Vec<String> = lines[4].split(',').map(str::to_owned).collect();
        cells[1] = "other".into();
        lines[4] = cells.join(",");
    });
    assert_eq!(error(&root), format!("{}:5: unknown gender `other` (expected male or female)", csv.display()));
}

#[test]
fn duplicate_id_names_both_rows() {
    let (_tmp, root) = fixture();
    let csv = root.join("train/train.csv");
    let mut id = String::new();
    edit_csv(&csv, |lines| {
        id = lines[1].split(',').next().unwrap().to_owned();
        lines.push(lines[1].clone());
    });
    assert_eq!(error(&root), format!("{}:{}: duplicate id `{id}` (first on line 2)", csv.display(), PERSONS + 2));
}

#[test]
fn folder_with_six_images_is_an_error() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    let normal = image_of(&root, &index, 1, ImageSlot::Normal);
    fs::remove_file(&normal).unwrap();
    assert_eq!(error(&root), format!("{}: no `normal` image", normal.parent().unwrap().display()));
}

#[test]
fn missing_image_under_skip_policy_is_counted() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    let mask3 = image_of(&root, &index, 4, ImageSlot::Mask3);
    fs::remove_file(&mask3).unwrap();
    let skipped = read_train(&root.join("train"), BadImagePolicy::Skip).unwrap();
    assert_eq!(skipped.persons.len(), PERSONS);
    assert_eq!(skipped.images.len(), PERSONS * 7 - 1);
    assert_eq!(skipped.skipped.len(), 1);
    assert_eq!(root.join("train").join(&skipped.skipped[0].path), mask3.parent().unwrap());
    assert!(skipped.skipped[0].path.is_relative());
    assert_eq!(skipped.skipped[0].reason, FolderProblem::MissingImage { slot: ImageSlot::Mask3 });
    assert!(!skipped.images.iter().any(|i| i.person == 4 && i.slot == ImageSlot::Mask3));
}

#[test]
fn missing_folder() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    let folder = root.join("train/images").join(&index.persons[0].folder);
    fs::remove_dir_all(&folder).unwrap();
    let line = {
        let csv = fs::read_to_string(root.join("train/train.csv")).unwrap();
        csv.lines().position(|l| l.ends_with(&index.persons[0].folder)).unwrap() + 1
    };
    assert_eq!(error(&root), format!("{}: person folder is missing (listed on train.csv line {line})", folder.display()));
    let skipped = read_train(&root.join("train"), BadImagePolicy::Skip).unwrap();
    assert_eq!(skipped.persons.len(), PERSONS - 1);
    assert!(skipped.persons.iter().all(|p| p.id != index.persons[0].id));
    assert_eq!(skipped.skipped.len(), 1);
}

#[test]
fn duplicate_slot_files_are_an_error() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    let mask1 = image_of(&root, &index, 0, ImageSlot::Mask1);
    let folder = mask1.parent().unwrap();
    let ext = mask1.extension().unwrap().to_str().unwrap();
    let other = if ext == "png" { "jpg" } else { "png" };
    fs::copy(&mask1, folder.join(format!("mask1.{other}"))).unwrap();
    let mut names = [format!("mask1.{ext}"), format!("mask1.{other}")];
    names.sort();
    assert_eq!(error(&root), format!("{}: several `mask1` images: {}, {}", folder.display(), names[0], names[1]));
    let skipped = read_train(&root.join("train"), BadImagePolicy::Skip).unwrap();
    assert_eq!(skipped.images.len(), PERSONS * 7 - 1);
    assert_eq!(skipped.skipped.len(), 1);
}

#[test]
fn unexpected_file_is_an_error() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    let folder = image_of(&root, &index, 2, ImageSlot::Mask1).parent().unwrap().to_owned();
    let stray = folder.join("mask6.jpg");
    fs::write(&stray, b"x").unwrap();
    assert_eq!(
        error(&root),
        format!(
            "{}: unexpected file: expected mask1..mask5, incorrect_mask or normal \
             with extension .jpg, .jpeg or .png",
            stray.display()
        )
    );
}

#[test]
fn empty_dataset() {
    let (_tmp, root) = fixture();
    let csv = root.join("train/train.csv");
    edit_csv(&csv, |lines| lines.truncate(1));
    assert_eq!(error(&root), format!("{}: dataset is empty: train.csv lists no persons", csv.display()));
}

#[test]
fn all_folders_skipped_is_an_empty_dataset() {
    let (_tmp, root) = fixture();
    fs::remove_dir_all(root.join("train/images")).unwrap();
    fs::create_dir(root.join("train/images")).unwrap();
    let err = read_train(&root.join("train"), BadImagePolicy::Skip).unwrap_err().to_string();
    assert_eq!(err, format!("{}: dataset is empty: no images left after skipping bad folders", root.join("train/images").display()));
}

#[test]
fn eval_rows_keep_file_order() {
    let (_tmp, root) = fixture();
    let eval = read_eval(&root.join("eval")).unwrap();
    let info = fs::read_to_string(root.join("eval/info.csv")).unwrap();
    let ids: Vec<&str> = info.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(ids.len(), 14);
    assert_eq!(eval.images.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ids);
    for image in &eval.images {
        assert!(root.join("eval").join(&image.path).is_file());
    }
}

#[test]
fn eval_info_naming_a_missing_file() {
    let (_tmp, root) = fixture();
    let eval = read_eval(&root.join("eval")).unwrap();
    let gone = &eval.images[3];
    fs::remove_file(root.join("eval").join(&gone.path)).unwrap();
    let err = read_eval(&root.join("eval")).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{}:5: image `{}` not found in {}", root.join("eval/info.csv").display(), gone.id, root.join("eval/images").display())
    );
}

#[test]
fn index_round_trips_through_json() {
    let (_tmp, root) = fixture();
    let index = read(&root);
    let json = serde_json::to_string(&index).unwrap();
    let back: TrainIndex = serde_json::from_str(&json).unwrap();
    assert_eq!(back, index);
}

#[test]
fn byte_order_mark_and_crlf_line_endings_are_accepted() {
    let (_tmp, root) = fixture();
    let csv = root.join("train/train.csv");
    let text = fs::read_to_string(&csv).unwrap();
    fs::write(&csv, format!("\u{feff}{}", text.replace('\n', "\r\n"))).unwrap();
    assert_eq!(read(&root).persons.len(), PERSONS);
    // Lines are still counted from the top of the file.
    edit_csv(&csv, |lines| {
        let mut cells: Vec<String> = lines[3].split(',').map(str::to_owned).collect();
        cells[3] = "x".into();
        lines[3] = cells.join(",");
    });
    assert_eq!(error(&root), format!("{}:4: age `x` is not a number", csv.display()));
}
