//! Malformed `--set` overrides and odd inputs are errors, never panics.

use maskflow::lang;
use std::path::Path;

#[test]
fn malformed_set_overrides_are_errors() {
    for set in [
        "=3",
        "train",
        "train.epochs",
        "train.epochs=",
        ".x=1",
        "train..epochs=1",
        "augment.train=1",
        "a.b.c.d=1",
        "train.epochs=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "train.epochs=99999999999999999999999",
        "model.arch=\"x\"",
        "split.seed.x=1",
        "train.epochs=sweep[]",
    ] {
        let err = lang::load(Path::new("pipelines/quickstart.mf"), &[set.to_string()]);
        let err = err.expect_err(set);
        let text = err.render();
        assert!(text.contains("--> --set:1:"), "{set}: {text}");
    }
}

#[test]
fn set_loss_kind_switches_the_loss_and_drops_its_old_keys() {
    let sets = ["loss.kind=focal".to_string(), "loss.gamma=1.5".to_string()];
    let l = lang::load(Path::new("pipelines/base.mf"), &sets).unwrap_or_else(|d| panic!("{}", d.render()));
    assert_eq!(
        l.variants[0].pipeline.loss.terms[0].kind,
        maskflow::ir::LossKind::Focal { gamma: 1.5, alpha: maskflow::ir::ClassWeights::None }
    );
}
