//! timm weight import against the fixture made by scripts/make_timm_fixture.py
//! (efficientnet_b0, 18 classes, BatchNorm statistics/affine and biases randomised).

use std::path::{Path, PathBuf};

use maskflow::model;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm").join(name)
}

fn weights() -> PathBuf {
    fixture("efficientnet_b0_18.safetensors")
}

fn io() -> PathBuf {
    fixture("efficientnet_b0_18_io.safetensors")
}

#[test]
fn timm_b0_logits_match_within_1e_4() {
    let _rng = crate::common::burn_rng_lock();
    let report = model::check_weights("efficientnet_b0", 18, &weights(), &io(), 1e-4).unwrap();
    eprintln!("timm b0 fixture: max |Δlogit| = {:e}", report.max_abs_diff);
    assert!(report.passed, "max |Δ| = {}", report.max_abs_diff);
    assert!(report.max_abs_diff < 1e-4);
}

/// Rewrites `src` as safetensors with `edit` applied to each (name, shape, f32 values).
fn rewrite(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<usize>, Vec<f32>) -> (Vec<usize>, Vec<f32>)) {
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            owned.push((name, view.dtype(), view.shape().to_vec(), view.data().to_vec()));
            continue;
        }
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let (shape, values) = edit(&name, view.shape().to_vec(), values);
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        owned.push((name, safetensors::Dtype::F32, shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, dt, shape, data)| (n.clone(), safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, dst).unwrap();
}

#[test]
fn perturbed_logits_fail_the_check() {
    let _rng = crate::common::burn_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let bad_io = dir.path().join("io.safetensors");
    rewrite(&io(), &bad_io, |name, shape, mut v| {
        if name == "logits" {
            v[5] += 1e-3;
        }
        (shape, v)
    });
    let report = model::check_weights("efficientnet_b0", 18, &weights(), &bad_io, 1e-4).unwrap();
    assert!(!report.passed);
    assert!((report.max_abs_diff - 1e-3).abs() < 1e-4, "{}", report.max_abs_diff);
}

#[test]
fn wrong_shape_weights_are_a_clear_error() {
    let _rng = crate::common::burn_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    // A stem with 24 instead of 32 output channels.
    rewrite(
        &weights(),
        &bad,
        |name, shape, v| {
            if name == "conv_stem.weight" { (vec![24, 3, 3, 3], v[..24 * 27].to_vec()) } else { (shape, v) }
        },
    );
    let err = model::check_weights("efficientnet_b0", 18, &bad, &io(), 1e-4).unwrap_err().to_string();
    eprintln!("wrong shape: {err}");
    assert!(err.contains("bad.safetensors"), "{err}");
    assert!(err.contains("stem.conv.weight") || err.contains("do not fit"), "{err}");
}

#[test]
fn wrong_class_count_is_a_clear_error() {
    let _rng = crate::common::burn_rng_lock();
    let err = model::check_weights("efficientnet_b0", 10, &weights(), &io(), 1e-4).unwrap_err().to_string();
    eprintln!("wrong classes: {err}");
    assert!(err.contains("classifier"), "{err}");
}

#[test]
fn non_safetensors_file_is_a_clear_error() {
    let _rng = crate::common::burn_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("weights.safetensors");
    std::fs::write(&junk, b"this is not a tensor file at all").unwrap();
    let err = model::check_weights("efficientnet_b0", 18, &junk, &io(), 1e-4).unwrap_err().to_string();
    assert!(err.contains("not a safetensors file"), "{err}");
    let err = model::check_weights("efficientnet_b0", 18, &weights(), &junk, 1e-4).unwrap_err().to_string();
    assert!(err.contains("not a safetensors file"), "{err}");
    let err = model::check_weights("tiny_cnn", 18, &weights(), &io(), 1e-4).unwrap_err().to_string();
    assert!(err.contains("not a timm EfficientNet"), "{err}");
}

/// The fixture's `conv_stem.weight` as f32 values.
fn stem_from_file() -> Vec<f32> {
    let bytes = std::fs::read(weights()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("conv_stem.weight").unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn pretrained_backbones_load_and_mismatched_classifiers_stay_fresh() {
    let _rng = crate::common::burn_rng_lock();
    use burn::backend::Flex;
    use maskflow::model::{Backbone, Classifier, HeadKind, ModelSpec};
    let device = Default::default();
    let want = stem_from_file();
    let stem = |net: &Backbone<Flex>| match net {
        Backbone::EfficientNet(n) => n.stem.conv.weight.val().into_data().to_vec::<f32>().unwrap(),
        Backbone::Tiny(_) => panic!("expected an EfficientNet"),
    };
    // Multi head: 8 outputs, so the 18-class classifier in the file is skipped.
    let mut multi = ModelSpec::new("efficientnet_b0", HeadKind::Multi).build::<Flex>(&device).unwrap();
    let report = model::load_pretrained(&mut multi, "efficientnet_b0", &weights()).unwrap();
    let Classifier::Multi(net) = &multi else { panic!("multi head expected") };
    assert_eq!(stem(net), want);
    // timm's classifier (weight, bias) is left out and maskflow's head keeps its initialisation;
    // every backbone tensor is loaded.
    assert_eq!((report.skipped, report.initialised), (2, 2), "{report:?}");
    let mut single = ModelSpec::new("efficientnet_b0", HeadKind::Single).build::<Flex>(&device).unwrap();
    let all = model::load_pretrained(&mut single, "efficientnet_b0", &weights()).unwrap();
    assert_eq!((all.loaded, all.skipped, all.initialised), (report.loaded + 2, 0, 0), "{all:?}");
    // Separate heads: all three backbones get the weights.
    let mut sep = ModelSpec::new("efficientnet_b0", HeadKind::Separate).build::<Flex>(&device).unwrap();
    let three = model::load_pretrained(&mut sep, "efficientnet_b0", &weights()).unwrap();
    assert_eq!((three.loaded, three.skipped), (3 * report.loaded, 6));
    let Classifier::Separate(nets) = &sep else { panic!("separate heads expected") };
    for net in [&nets.mask, &nets.gender, &nets.age] {
        assert_eq!(stem(net), want);
    }
    // Another architecture does not fit.
    let mut b1 = ModelSpec::new("efficientnet_b1", HeadKind::Single).build::<Flex>(&device).unwrap();
    let err = model::load_pretrained(&mut b1, "efficientnet_b1", &weights()).unwrap_err().to_string();
    assert!(err.contains("missing") || err.contains("do not fit"), "{err}");
}

/// Eval mode's fast path (BatchNorm, SiLU, the squeeze-excite gate and the residual fused
/// into the convolutions, the pools as row sums) against the same network run op by op:
/// burn's convolutions and means, then BatchNorm, SiLU, the gate and the add each as its own
/// pass. On the timm fixture's weights
/// and input, the logits stay within 1e-5.
#[test]
fn eval_fast_path_logits_stay_within_1e_5_of_the_unfolded_network() {
    use burn::backend::Flex;
    use burn::tensor::activation::{sigmoid, silu};
    use burn::tensor::{Tensor, TensorData};
    use maskflow::model::efficientnet::{ConvBnAct, EfficientNet, EfficientNetConfig};

    fn conv_bn_act(m: &ConvBnAct<Flex>, x: Tensor<Flex, 4>) -> Tensor<Flex, 4> {
        m.bn.forward_then(m.conv.forward(x), m.act)
    }
    fn unfolded(net: &EfficientNet<Flex>, x: Tensor<Flex, 4>) -> Tensor<Flex, 2> {
        let mut x = conv_bn_act(&net.stem, x);
        for block in &net.blocks {
            let shortcut = x.clone();
            let mid = conv_bn_act(&block.dw, block.expand.as_ref().map_or(x.clone(), |e| conv_bn_act(e, x.clone())));
            let se = &block.se;
            let squeezed = mid.clone().mean_dim(2).mean_dim(3);
            let gate = sigmoid(se.expand.forward(silu(se.reduce.forward(squeezed))));
            let y = conv_bn_act(&block.project, mid * gate);
            x = if block.residual { y + shortcut } else { y };
        }
        let x = conv_bn_act(&net.head, x).mean_dim(2).mean_dim(3).flatten::<2>(1, 3);
        net.classifier.forward(x)
    }

    let _rng = crate::common::burn_rng_lock();
    let device = Default::default();
    let config = EfficientNetConfig::by_name("efficientnet_b0").unwrap();
    let mut net = config.init::<Flex>(18, 0.0, 0.0, &device);
    model::load_timm_weights(&mut net, &config, &weights(), false).unwrap();
    let bytes = std::fs::read(io()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let input = st.tensor("input").unwrap();
    let values: Vec<f32> = input.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let x = Tensor::<Flex, 4>::from_data(TensorData::new(values, input.shape().to_vec()), &device);

    let fast = net.forward(x.clone()).into_data().to_vec::<f32>().unwrap();
    let apart = unfolded(&net, x).into_data().to_vec::<f32>().unwrap();
    let max_abs_diff = fast.iter().zip(&apart).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("eval fast path vs unfolded: max |Δlogit| = {max_abs_diff:e}");
    assert_eq!(fast.len(), apart.len());
    assert!(max_abs_diff <= 1e-5, "max |Δlogit| = {max_abs_diff:e}");
    assert!(max_abs_diff > 0.0, "the folded gate rounds differently: identical logits mean the fast path did not run");
}
