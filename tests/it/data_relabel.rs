//! Label fixes, the fixes CSV and per-image labels.

use std::fs;
use std::path::PathBuf;

use maskflow::data::labels::{DEFAULT_AGE_BINS, Gender, ImageSlot, MaskState};
use maskflow::data::layout::{Person, TrainImage, TrainIndex};
use maskflow::data::relabel::{Change, Fix, Fixes, apply_fixes, competition_fixes, label_samples, read_fixes_csv};
use tempfile::TempDir;

fn person(id: &str, gender: Gender, age: u32) -> Person {
    Person { id: id.into(), gender, race: "Asian".into(), age, folder: format!("{id}_{}_Asian_{age}", gender.as_str()) }
}

/// Two persons with all seven photos each.
fn index() -> TrainIndex {
    let persons = vec![person("000020", Gender::Female, 25), person("006359", Gender::Female, 58)];
    let images = (0..persons.len())
        .flat_map(|p| {
            let folder = persons[p].folder.clone();
            ImageSlot::ALL.into_iter().map(move |slot| TrainImage {
                person: p,
                slot,
                path: PathBuf::from(format!("images/{folder}/{}.jpg", slot.stem())),
            })
        })
        .collect();
    TrainIndex { persons, images, skipped: vec![] }
}

#[test]
fn fixes_change_gender_age_and_swap_slots() {
    let mut index = index();
    let mut fixes = Fixes::new();
    fixes.insert("006359".into(), Fix { gender: Some(Gender::Male), age: Some(60), swap_incorrect_normal: false });
    fixes.insert("000020".into(), Fix { swap_incorrect_normal: true, ..Fix::default() });
    let report = apply_fixes(&mut index, &fixes);
    assert_eq!(
        report.changes,
        vec![
            Change::SwapIncorrectNormal { id: "000020".into() },
            Change::Gender { id: "006359".into(), from: Gender::Female, to: Gender::Male },
            Change::Age { id: "006359".into(), from: 58, to: 60 },
        ]
    );
    assert!(report.warnings.is_empty());
    assert_eq!(index.persons[1].gender, Gender::Male);
    assert_eq!(index.persons[1].age, 60);
    // The photo named `normal.jpg` is now labelled incorrect, and vice versa.
    let normal_file = index.images.iter().find(|i| i.person == 0 && i.path.ends_with("normal.jpg")).unwrap();
    assert_eq!(normal_file.slot, ImageSlot::IncorrectMask);
    let incorrect_file = index.images.iter().find(|i| i.person == 0 && i.path.ends_with("incorrect_mask.jpg")).unwrap();
    assert_eq!(incorrect_file.slot, ImageSlot::Normal);
    let keys: Vec<_> = index.images.iter().map(|i| (i.person, i.slot)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "images stay sorted by (person, slot)");

    let samples = label_samples(&index, DEFAULT_AGE_BINS);
    let by_path = |name: &str, p: usize| samples.iter().find(|s| s.person == p && index.images[s.image].path.ends_with(name)).unwrap();
    assert_eq!(by_path("normal.jpg", 0).mask, MaskState::Incorrect);
    // incorrect, female, <30 → 1*6 + 1*3 + 0
    assert_eq!(by_path("normal.jpg", 0).class, 9);
    // wear, male, 60 → 0 + 0 + 2
    assert_eq!(by_path("mask1.jpg", 1).class, 2);
    assert_eq!(by_path("mask1.jpg", 1).age_class, 2);
}

#[test]
fn unknown_ids_and_no_op_fixes_are_warnings() {
    let mut index = index();
    let before = index.clone();
    let mut fixes = Fixes::new();
    fixes.insert("999999".into(), Fix { gender: Some(Gender::Male), ..Fix::default() });
    fixes.insert("000020".into(), Fix { gender: Some(Gender::Female), ..Fix::default() });
    let report = apply_fixes(&mut index, &fixes);
    assert!(report.changes.is_empty());
    assert_eq!(report.warnings, vec!["`000020`: gender is already female".to_owned(), "fix for unknown id `999999` ignored".to_owned(),]);
    assert_eq!(index, before);
}

#[test]
fn label_samples_cover_every_image() {
    let index = index();
    let samples = label_samples(&index, [30, 58]);
    assert_eq!(samples.len(), 14);
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s.image, i);
        assert_eq!(s.mask, index.images[i].slot.mask_state());
    }
    // Age 58 is class 2 under the [30, 58] cut-offs.
    assert!(samples.iter().filter(|s| s.person == 1).all(|s| s.age_class == 2));
    let wear = samples.iter().filter(|s| s.mask == MaskState::Wear).count();
    assert_eq!(wear, 10);
}

fn write_fixes(text: &str) -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("fixes.csv");
    fs::write(&path, text).unwrap();
    (tmp, path)
}

#[test]
fn fixes_csv_merges_rows_per_id() {
    let (_tmp, path) = write_fixes("id,field,value\n006359,gender,male\n001498-1,gender,female\n006359,age,60\n000020,swap,true\n");
    let fixes = read_fixes_csv(&path).unwrap();
    assert_eq!(fixes.len(), 3);
    assert_eq!(fixes["006359"], Fix { gender: Some(Gender::Male), age: Some(60), swap_incorrect_normal: false });
    assert_eq!(fixes["001498-1"].gender, Some(Gender::Female));
    assert!(fixes["000020"].swap_incorrect_normal);
}

#[test]
fn fixes_csv_errors_name_the_line() {
    let cases = [
        ("id,field,value\n1,gender,male\n1,colour,red\n", "3: unknown field `colour` (expected gender, age or swap)"),
        ("id,field,value\n1,age,old\n", "2: age `old` is not a number"),
        ("id,field,value\n1,swap,maybe\n", "2: swap value `maybe` is not true or false"),
        ("id,field,value\n1,age,3\n2,age,4\n1,age,5\n", "4: `age` of `1` is already fixed on line 2"),
        ("id,field,value\n1,gender,x\n", "2: unknown gender `x` (expected male or female)"),
    ];
    for (text, expected) in cases {
        let (_tmp, path) = write_fixes(text);
        let err = read_fixes_csv(&path).unwrap_err().to_string();
        assert_eq!(err, format!("{}:{expected}", path.display()));
    }
    let (_tmp, path) = write_fixes("id,value\n1,2\n");
    assert_eq!(read_fixes_csv(&path).unwrap_err().to_string(), format!("{}: missing column `field` (header: id,value)", path.display()));
}

#[test]
fn competition_fixes_match_the_known_errors() {
    let fixes = competition_fixes();
    assert_eq!(fixes.len(), 11);
    assert_eq!(fixes["006362"].gender, Some(Gender::Male));
    assert_eq!(fixes["001498-1"].gender, Some(Gender::Female));
    assert!(fixes["004418"].swap_incorrect_normal);
    assert!(fixes.values().all(|f| f.age.is_none()));
    // Applied to an index holding one of them, the rest are warnings.
    let mut index = index();
    let report = apply_fixes(&mut index, &fixes);
    assert_eq!(
        report.changes,
        vec![
            Change::SwapIncorrectNormal { id: "000020".into() },
            Change::Gender { id: "006359".into(), from: Gender::Female, to: Gender::Male },
        ]
    );
    assert_eq!(report.warnings.len(), 9);
}
