//! The synthetic generator: determinism, layout, labels and the label mix.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use maskflow::data::labels::{DEFAULT_AGE_BINS, Gender, ImageSlot, class_of};
use maskflow::data::layout::{BadImagePolicy, read_eval, read_train};
use maskflow::data::stats::{render_table, stats};
use maskflow::data::synth::{SynthParams, generate};
use tempfile::TempDir;

fn small(persons: usize, eval_persons: usize, seed: u64) -> SynthParams {
    SynthParams { persons, eval_persons, seed, width: 32, height: 40 }
}

/// Every file under `dir`, relative path → contents.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_owned(), fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn same_seed_gives_byte_identical_files_whatever_the_thread_count() {
    let tmp = TempDir::new().unwrap();
    // 64×80 takes the half-resolution drawing path.
    let params = SynthParams { width: 64, height: 80, ..small(9, 2, 3) };
    generate(&params, &tmp.path().join("a")).unwrap();
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    one_thread.install(|| generate(&params, &tmp.path().join("b"))).unwrap();
    let a = files(&tmp.path().join("a"));
    assert_eq!(a.len(), 9 * 7 + 1 + 1 + 2 * 7 + 2, "images, junk, csvs");
    assert_eq!(a, files(&tmp.path().join("b")));

    let other_seed = SynthParams { seed: 4, ..params };
    generate(&other_seed, &tmp.path().join("c")).unwrap();
    let c = files(&tmp.path().join("c"));
    let differing = a.iter().filter(|(path, bytes)| c.get(*path) != Some(bytes)).count();
    assert!(differing > a.len() / 2, "another seed changes most files");
}

#[test]
fn output_appears_atomically_and_is_never_overwritten() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    generate(&small(2, 1, 0), &out).unwrap(); // an empty directory is fine
    let err = generate(&small(2, 1, 0), &out).unwrap_err().to_string();
    assert_eq!(err, format!("{}: output directory exists and is not empty", out.display()));
    let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec!["out"], "no temporary directory left behind");
}

#[test]
fn eval_labels_match_info_order_and_persons() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("d");
    let summary = generate(&small(3, 4, 11), &root).unwrap();
    assert_eq!(summary.eval_images, 28);
    let eval = read_eval(&root.join("eval")).unwrap();
    let labels = fs::read_to_string(root.join("eval/labels.csv")).unwrap();
    let rows: Vec<(&str, u8)> = labels
        .lines()
        .skip(1)
        .map(|l| {
            let (id, class) = l.split_once(',').unwrap();
            (id, class.parse().unwrap())
        })
        .collect();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), eval.images.iter().map(|i| i.id.as_str()).collect::<Vec<_>>());
    for image in &eval.images {
        assert_eq!(image.id.len(), 44);
        assert!(image.id[..40].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(image.id.ends_with(".jpg"));
    }
    // Each eval person gives 5 wear, 1 incorrect, 1 normal: 20 / 4 / 4 over 4 persons.
    let mut masks = [0; 3];
    for (_, class) in &rows {
        masks[usize::from(class / 6)] += 1;
    }
    assert_eq!(masks, [20, 4, 4]);
    let info = fs::read_to_string(root.join("eval/info.csv")).unwrap();
    assert!(info.starts_with("ImageID,ans\n"));
    assert!(info.lines().skip(1).all(|l| l.ends_with(",0")));
}

#[test]
fn train_labels_follow_folder_names_and_ranges() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("d");
    let summary = generate(&small(40, 0, 5), &root).unwrap();
    let index = read_train(&root.join("train"), BadImagePolicy::Error).unwrap();
    assert_eq!(index.persons.len(), 40);
    assert_eq!(summary.train_images, index.images.len());
    assert_eq!(summary.female, index.persons.iter().filter(|p| p.gender == Gender::Female).count());
    for p in &index.persons {
        assert!((18..=60).contains(&p.age), "age {}", p.age);
    }
    assert!(summary.junk_files >= 1);
    // Wear photos are five per person: class of the first slot uses mask state wear.
    let p = &index.persons[0];
    assert_eq!(class_of(ImageSlot::Mask1.mask_state(), p.gender, 0), p.gender.index() * 3);
}

fn shares(persons: usize, seed: u64) -> (f64, [f64; 3], String, TempDir) {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("d");
    let params = SynthParams { width: 8, height: 8, ..small(persons, 0, seed) };
    generate(&params, &root).unwrap();
    let index = read_train(&root.join("train"), BadImagePolicy::Error).unwrap();
    let s = stats(&index, DEFAULT_AGE_BINS);
    let n = s.persons as f64;
    let female = s.gender_persons[1] as f64 / n;
    let ages = s.age_class_persons.map(|c| c as f64 / n);
    // The chart names every class in words and gives each bar its count.
    let svg = maskflow::charts::stats::svg_of(&s).unwrap();
    let texts: Vec<&str> = svg.split("<text").skip(1).filter_map(|t| Some(t.split_once('>')?.1.split("</text>").next()?.trim())).collect();
    assert!(texts.iter().any(|t| t.ends_with("wear·F·&lt;30")), "{texts:?}");
    assert!(texts.contains(&s.class_images[0].to_string().as_str()), "the first class's count is written: {texts:?}");
    assert!(texts.contains(&"images") && texts.contains(&"class (mask·gender·age)"), "axis titles: {texts:?}");
    (female, ages, render_table(&s), tmp)
}

#[test]
fn label_mix_of_500_persons() {
    let (female, ages, table, _tmp) = shares(500, 1);
    assert!((female - 0.61).abs() < 0.04, "female share {female}");
    for (got, want) in ages.iter().zip([0.47, 0.46, 0.07]) {
        assert!((got - want).abs() < 0.04, "age shares {ages:?}");
    }
    assert!(table.contains("persons 500  images 3500  skipped 0"), "{table}");
    assert!(table.contains("wear 2500 (71.4%)"), "{table}");
}

#[test]
#[ignore = "writes 18,900 files; run with --ignored"]
fn label_mix_of_2700_persons() {
    let (female, ages, table, _tmp) = shares(2700, 0);
    println!("{table}");
    assert!((female - 0.61).abs() <= 0.02, "female share {female}");
    for (got, want) in ages.iter().zip([0.47, 0.46, 0.07]) {
        assert!((got - want).abs() <= 0.02, "age shares {ages:?}");
    }
}
