//! Parameter counts equal timm's (`timm.create_model(name, num_classes=C)`, timm 1.0.31),
//! both from the analytic plan (`model::info`) and counted on a built model.

use burn::backend::Flex;
use maskflow::model::{self, HeadKind, ModelSpec};

const TIMM: [(&str, usize, usize); 8] = [
    ("efficientnet_b0", 5_288_548, 4_030_606),
    ("efficientnet_b1", 7_794_184, 6_536_242),
    ("efficientnet_b2", 9_109_994, 7_726_356),
    ("efficientnet_b3", 12_233_232, 10_723_898),
    ("efficientnet_b4", 19_341_616, 17_580_890),
    ("efficientnet_b5", 30_389_784, 28_377_666),
    ("efficientnet_b6", 43_040_704, 40_777_194),
    ("efficientnet_b7", 66_347_960, 63_833_058),
];

#[test]
fn info_matches_timm_for_b0_to_b7() {
    let _rng = crate::common::burn_rng_lock();
    for (arch, c1000, c18) in TIMM {
        assert_eq!(model::info(arch, 1000).unwrap().params, c1000, "{arch} 1000");
        assert_eq!(model::info(arch, 18).unwrap().params, c18, "{arch} 18");
    }
}

#[test]
fn built_models_have_the_planned_parameter_count() {
    let _rng = crate::common::burn_rng_lock();
    let device = Default::default();
    for arch in model::ARCHS {
        let net = model::build_backbone::<Flex>(arch, 18, None, 0.0, &device).unwrap();
        let counted = model::count_trainable(&net);
        assert_eq!(counted, model::info(arch, 18).unwrap().params, "{arch}");
    }
}

#[test]
fn small_models_are_small() {
    let _rng = crate::common::burn_rng_lock();
    let tiny = model::info("tiny_cnn", 18).unwrap().params;
    let nano = model::info("efficientnet_nano", 18).unwrap().params;
    eprintln!("tiny_cnn {tiny} params, efficientnet_nano {nano} params (18 classes)");
    assert!((50_000..=200_000).contains(&tiny), "tiny_cnn has {tiny}");
    assert!((50_000..=400_000).contains(&nano), "efficientnet_nano has {nano}");
}

#[test]
fn heads_change_the_classifier_only() {
    let _rng = crate::common::burn_rng_lock();
    let device = Default::default();
    let count = |head| {
        let m = ModelSpec::new("tiny_cnn", head).build::<Flex>(&device).unwrap();
        model::count_trainable(&m)
    };
    let one = model::info("tiny_cnn", 18).unwrap().params;
    assert_eq!(count(HeadKind::Single), one);
    // 8 task logits instead of 18: 10 × (128 + 1) fewer.
    assert_eq!(count(HeadKind::Multi), one - 10 * 129);
    let sep: usize = [3, 2, 3].iter().map(|c| model::info("tiny_cnn", *c).unwrap().params).sum();
    assert_eq!(count(HeadKind::Separate), sep);
}

#[test]
fn info_is_serialisable_and_rejects_unknown_archs() {
    let _rng = crate::common::burn_rng_lock();
    let json = serde_json::to_value(model::info("efficientnet_b0", 18).unwrap()).unwrap();
    assert_eq!(json["params"], 4_030_606);
    let err = model::info("resnet50", 18).unwrap_err().to_string();
    assert!(err.contains("unknown architecture"), "{err}");
    assert!(model::info("efficientnet_b0", 0).is_err());
}
