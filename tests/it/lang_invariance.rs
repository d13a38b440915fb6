//! Equivalent spellings give identical IR; formatting round-trips to the same IR.

use maskflow::lang;
use std::fs;
use std::path::Path;

fn ir_json(path: &Path, sets: &[String]) -> String {
    let loaded = lang::load(path, sets).unwrap_or_else(|d| panic!("{}", d.render()));
    serde_json::to_string(&loaded.variants).expect("serialise IR")
}

fn ir_of(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.mf");
    fs::write(&path, text).expect("write");
    ir_json(&path, &[])
}

const BASE: &str = r#"
data synthetic { persons = 50; eval_persons = 10 }
split by person { val = 0.5; stratify = [gender, age]; seed = 3 }
model tiny_cnn { dropout = 0.25 }
train { epochs = 2; optimizer = adamw(lr = 0.001, weight_decay = 0.01); cutmix = 0.5 }
augment train { rotate 15deg; hflip 0.5 }
"#;

#[test]
fn comment_only_edits_do_not_change_ir() {
    let commented = BASE.replace("model tiny_cnn", "# the model\nmodel tiny_cnn").replace("seed = 3 }", "seed = 3 }  # seeded");
    assert_ne!(commented, BASE);
    assert_eq!(ir_of(BASE), ir_of(&commented));
}

#[test]
fn key_and_block_order_do_not_change_ir() {
    let reordered = r#"
train { cutmix = 0.5; optimizer = adamw(weight_decay = 0.01, lr = 0.001); epochs = 2 }
augment train { rotate 15deg; hflip 0.5 }
model tiny_cnn { dropout = 0.25 }
split by person { seed = 3; stratify = [age, gender, age]; val = 0.5 }
data synthetic { eval_persons = 10; persons = 50 }
"#;
    assert_eq!(ir_of(BASE), ir_of(reordered));
}

#[test]
fn equivalent_number_spellings_give_identical_ir() {
    let spelled = BASE
        .replace("val = 0.5", "val = 5e-1")
        .replace("lr = 0.001", "lr = 1e-3")
        .replace("cutmix = 0.5", "cutmix = 50e-2")
        .replace("hflip 0.5", "hflip(p = 0.5)")
        .replace("rotate 15deg", "rotate(degrees = 15.0deg)");
    assert_ne!(spelled, BASE);
    assert_eq!(ir_of(BASE), ir_of(&spelled));
    // An integer where a float is expected means the same number.
    assert_eq!(ir_of(BASE), ir_of(&BASE.replace("dropout = 0.25", "dropout = 25e-2")));
    let one = ir_of(&BASE.replace("cutmix = 0.5", "cutmix = 1"));
    let one_f = ir_of(&BASE.replace("cutmix = 0.5", "cutmix = 1.0"));
    assert_eq!(one, one_f);
}

#[test]
fn different_values_give_different_ir() {
    assert_ne!(ir_of(BASE), ir_of(&BASE.replace("val = 0.5", "val = 0.4")));
}

#[test]
fn radians_are_normalised_to_degrees() {
    let loaded = {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.mf");
        fs::write(&path, BASE.replace("rotate 15deg", "rotate 0.5rad")).expect("write");
        lang::load(&path, &[]).unwrap_or_else(|d| panic!("{}", d.render()))
    };
    let ops = &loaded.variants[0].pipeline.augment.train;
    match &ops[0] {
        maskflow::ir::Op::Rotate { degrees, random } => {
            assert!((degrees - 0.5f64.to_degrees()).abs() < 1e-12);
            assert!(*random);
        }
        other => panic!("unexpected op {other:?}"),
    }
}

/// Every pipeline in pipelines/ → format → load gives the same IR (bases copied alongside).
#[test]
fn pipelines_round_trip_through_fmt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut names = Vec::new();
    for entry in fs::read_dir("pipelines").expect("pipelines dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "mf") {
            let formatted = lang::format_file(&path).unwrap_or_else(|d| panic!("{}", d.render()));
            fs::write(dir.path().join(path.file_name().expect("name")), formatted).expect("write");
            names.push(path);
        }
    }
    assert!(names.len() >= 4);
    for path in names {
        let original = ir_json(&path, &[]);
        let formatted = ir_json(&dir.path().join(path.file_name().expect("name")), &[]);
        assert_eq!(original, formatted, "{} changed meaning when formatted", path.display());
    }
}
