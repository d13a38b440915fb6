//! The front end's public API: pipelines, defaults, extends, --set, sweeps, robustness.

use maskflow::ir;
use maskflow::lang;
use std::fs;
use std::path::{Path, PathBuf};

fn load(path: &str, sets: &[&str]) -> lang::Loaded {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    lang::load(Path::new(path), &sets).unwrap_or_else(|d| panic!("{}", d.render()))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write");
    p
}

#[test]
fn quickstart_is_small_and_synthetic() {
    let l = load("pipelines/quickstart.mf", &[]);
    assert_eq!(l.name, "quickstart");
    assert_eq!(l.variants.len(), 1);
    assert_eq!(l.variants[0].name, "");
    let p = &l.variants[0].pipeline;
    assert_eq!(p.data.source, ir::Source::Synthetic { persons: 480, eval_persons: 40, seed: 1, size: [384, 512] });
    assert_eq!(p.prepare.size, [48, 64]);
    assert_eq!(p.model.arch, "tiny_cnn");
    assert_eq!(p.split.scheme, ir::SplitScheme::Holdout { val: 0.2 });
    assert_eq!(p.train.backend, ir::Backend::Cpu);
    assert!(p.train.epochs <= 30);
    assert!(matches!(p.loss.terms[0].kind, ir::LossKind::CrossEntropy { .. }));
}

#[test]
fn b4_focal_matches_the_seed_team() {
    let p = load("pipelines/b4_focal.mf", &[]).variants.remove(0).pipeline;
    assert_eq!(p.model.arch, "efficientnet_b4");
    assert!(matches!(p.model.heads, ir::Heads::Multi { .. }));
    assert_eq!(p.loss.terms.len(), 1);
    assert_eq!(p.loss.terms[0].kind, ir::LossKind::Focal { gamma: 2.0, alpha: ir::ClassWeights::None });
    assert_eq!(p.train.cutmix, 0.5);
    assert_eq!(p.train.backend, ir::Backend::Cuda);
    assert!(matches!(p.train.optimizer, ir::Optimizer::Adamw { lr, .. } if lr == 3e-4));
    assert_eq!(p.predict.as_ref().map(|x| x.tta), Some(ir::Tta::Hflip));
    assert_eq!(p.augment.train[0], ir::Op::Resize { size: [380, 380] });
    // relabel { known = true }: 6 + 2 gender fixes, 3 swaps.
    assert_eq!(p.relabel.fixes.len(), 11);
    assert_eq!(p.relabel.fixes["001498-1"].gender, Some(ir::Gender::Female));
    assert!(p.relabel.fixes["004418"].swap_incorrect_normal);
    // Oversampling copies use fixed (not random) rotations.
    assert_eq!(p.oversample.len(), 1);
    assert_eq!(p.oversample[0].with[0], ir::Op::Rotate { degrees: -10.0, random: false });
    assert_eq!(p.oversample[0].predicate, vec![ir::Clause { field: ir::LabelField::Age, cmp: ir::Cmp::Eq, value: 2 }]);
}

#[test]
fn extends_merges_keys_and_lists_the_chain() {
    let l = load("pipelines/b0_base.mf", &[]);
    assert_eq!(l.files, vec![PathBuf::from("pipelines/b0_base.mf"), PathBuf::from("pipelines/base.mf")]);
    assert_eq!(l.variants.len(), 2);
    assert_eq!(l.variants[0].name, "train.optimizer.lr=1e-3");
    assert_eq!(l.variants[1].name, "train.optimizer.lr=3e-4");
    let p = &l.variants[1].pipeline;
    assert_eq!(p.data.age_bins, [30, 58], "from the base");
    assert_eq!(p.train.epochs, 12, "overridden");
    assert_eq!(p.train.batch, 64, "kept from the base");
    assert!(matches!(p.model.heads, ir::Heads::Multi { .. }), "kept from the base");
    assert_eq!(p.model.pretrained.as_deref(), Some("weights/efficientnet_b0.safetensors"));
    assert!(matches!(p.train.optimizer, ir::Optimizer::Adamw { lr, weight_decay, .. } if lr == 3e-4 && weight_decay == 0.05));
}

#[test]
fn minimal_file_gets_documented_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "m.mf", "data { root = \"d\" }\nmodel efficientnet_b0 {}\n");
    let p = lang::load(&p, &[]).unwrap_or_else(|d| panic!("{}", d.render())).variants.remove(0).pipeline;
    assert_eq!(
        p.split,
        ir::Split {
            scheme: ir::SplitScheme::Holdout { val: 0.2 },
            stratify: vec![ir::StratifyKey::Gender, ir::StratifyKey::Age],
            seed: 42
        }
    );
    assert_eq!(p.data.age_bins, [30, 60]);
    assert_eq!(p.prepare, ir::Prepare { size: [192, 256], crop: ir::Crop::None });
    assert_eq!((p.model.dropout, p.model.drop_path, &p.model.heads), (0.2, 0.2, &ir::Heads::Single));
    assert_eq!(p.train.optimizer, ir::Optimizer::Adamw { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 });
    assert_eq!(p.train.schedule, ir::Schedule::Cosine { warmup: 1, min_lr: 1e-6 });
    assert_eq!((p.train.epochs, p.train.batch, p.train.seed), (10, 32, 42));
    assert_eq!(p.evaluate.tta, ir::Tta::None);
    assert!(p.predict.is_none() && p.ensemble.is_none());
}

#[test]
fn set_overrides_apply_to_the_merged_pipeline() {
    let l = load(
        "pipelines/quickstart.mf",
        &["split.seed=7", "train.optimizer.lr=1e-2", "data.root=/data/mask", "model.arch=efficientnet_b0", "loss.smoothing=0.1"],
    );
    let p = &l.variants[0].pipeline;
    assert_eq!(p.split.seed, 7);
    assert!(matches!(p.train.optimizer, ir::Optimizer::Adamw { lr, .. } if lr == 1e-2));
    assert_eq!(p.data.source, ir::Source::Dir { root: "/data/mask".into(), eval: None });
    assert_eq!(p.model.arch, "efficientnet_b0");
    assert!(matches!(p.loss.terms[0].kind, ir::LossKind::CrossEntropy { smoothing, .. } if smoothing == 0.1));
    // An optimizer argument on a file that does not write `optimizer` uses the default optimizer.
    let q = load("pipelines/base.mf", &["train.schedule.warmup=3"]).variants.remove(0).pipeline;
    assert!(matches!(q.train.schedule, ir::Schedule::Cosine { warmup: 3, .. }));
    // A sweep can come from --set too.
    assert_eq!(load("pipelines/quickstart.mf", &["split.seed=sweep[1, 2, 3]"]).variants.len(), 3);
}

#[test]
fn set_errors_point_into_the_set_text() {
    let err = lang::load(Path::new("pipelines/quickstart.mf"), &["split.val=1.5".to_string()]).expect_err("out of range");
    let text = err.render();
    assert!(text.contains("--> --set:1:11"), "{text}");
    assert_eq!(err.len(), 1);
}

#[test]
fn sweeps_expand_to_the_cartesian_product_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "s.mf",
        "data synthetic {}\nmodel tiny_cnn {}\nsplit by person { seed = sweep[1, 2] }\ntrain { optimizer = adamw(lr = sweep[1e-3, 3e-4, 1e-4]) }\n",
    );
    let l = lang::load(&p, &[]).unwrap_or_else(|d| panic!("{}", d.render()));
    let names: Vec<&str> = l.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "split.seed=1,train.optimizer.lr=1e-3",
            "split.seed=1,train.optimizer.lr=3e-4",
            "split.seed=1,train.optimizer.lr=1e-4",
            "split.seed=2,train.optimizer.lr=1e-3",
            "split.seed=2,train.optimizer.lr=3e-4",
            "split.seed=2,train.optimizer.lr=1e-4",
        ]
    );
    assert_eq!(l.variants[4].pipeline.split.seed, 2);
    assert_eq!(l.variants[4].assignments["train.optimizer.lr"], "3e-4");
}

#[test]
fn child_augment_and_oversample_blocks_replace_the_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "base.mf",
        "data synthetic {}\nmodel tiny_cnn {}\naugment train { hflip; rotate 5deg }\noversample where age == 2 { copies = 2 }\noversample where years >= 58 { copies = 1 }\n",
    );
    let child = write(
        dir.path(),
        "child.mf",
        "extends \"base.mf\"\naugment train { hflip 0.25 }\noversample where mask == incorrect { copies = 3 }\n",
    );
    let p = lang::load(&child, &[]).unwrap_or_else(|d| panic!("{}", d.render())).variants.remove(0).pipeline;
    assert_eq!(p.augment.train, vec![ir::Op::Hflip { p: 0.25 }]);
    assert_eq!(p.oversample.len(), 1);
    assert_eq!(p.oversample[0].predicate[0], ir::Clause { field: ir::LabelField::Mask, cmp: ir::Cmp::Eq, value: 1 });
}

#[test]
fn extends_depth_is_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..12 {
        write(dir.path(), &format!("f{i}.mf"), &format!("extends \"f{}.mf\"\n", i + 1));
    }
    write(dir.path(), "f12.mf", "data synthetic {}\nmodel tiny_cnn {}\n");
    let err = lang::load(&dir.path().join("f0.mf"), &[]).expect_err("too deep");
    assert!(err.render().contains("deeper than 8"), "{}", err.render());
}

#[test]
fn unreadable_file_is_an_error_without_a_source_line() {
    let err = lang::load(Path::new("pipelines/does_not_exist.mf"), &[]).expect_err("missing");
    assert_eq!(err.render(), "error: cannot read `pipelines/does_not_exist.mf`: no such file\n");
}

/// Random byte edits of real pipelines never panic (a small deterministic fuzz).
#[test]
fn mutated_inputs_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seeds: Vec<Vec<u8>> =
        ["quickstart", "b4_focal", "base"].iter().map(|n| fs::read(format!("pipelines/{n}.mf")).expect("read")).collect();
    let alphabet = b"{}[]()=;:,.\"#\n -+*x0123456789eabsweep\xff";
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        state = state.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    let path = dir.path().join("m.mf");
    for i in 0..400 {
        let mut text = seeds[i % seeds.len()].clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % text.len();
            match next() % 3 {
                0 => text[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => {
                    text.remove(at);
                }
                _ => text.insert(at, alphabet[(next() as usize) % alphabet.len()]),
            }
        }
        fs::write(&path, &text).expect("write");
        if let Err(d) = lang::load(&path, &[]) {
            assert!(!d.is_empty());
            let _ = d.render();
        }
        let _ = lang::format_file(&path);
    }
}
