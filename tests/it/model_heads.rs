//! Head layouts: output shapes, probability normalisation, and the task combination
//! `log p(class) = log p(mask) + log p(gender) + log p(age)` with `class = mask*6 + gender*3 + age`.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor, TensorData};
use maskflow::model::{self, HeadKind, ModelSpec, TaskLogProbs};

type B = Flex;

fn row_sums(t: Tensor<B, 2>) -> Vec<f32> {
    t.exp().sum_dim(1).into_data().to_vec::<f32>().unwrap()
}

#[test]
fn combine_tasks_adds_the_right_marginals() {
    let _rng = crate::common::burn_rng_lock();
    let d = Default::default();
    let t = |v: Vec<f32>, k| Tensor::<B, 2>::from_data(TensorData::new(v, [1, k]), &d);
    let tasks =
        TaskLogProbs { mask: t(vec![-1.0, -2.0, -3.0], 3), gender: t(vec![-10.0, -20.0], 2), age: t(vec![-100.0, -200.0, -300.0], 3) };
    let out = model::combine_tasks(&tasks).into_data().to_vec::<f32>().unwrap();
    for (class, got) in out.iter().enumerate() {
        let (m, g, a) = (class / 6, (class / 3) % 2, class % 3);
        let want = -((m + 1) as f32) - 10.0 * (g + 1) as f32 - 100.0 * (a + 1) as f32;
        assert_eq!(*got, want, "class {class}");
    }
}

#[test]
fn every_head_gives_normalised_18_class_output() {
    let _rng = crate::common::burn_rng_lock();
    let d = Default::default();
    for arch in ["tiny_cnn", "efficientnet_nano"] {
        for head in [HeadKind::Single, HeadKind::Multi, HeadKind::Separate] {
            let m = ModelSpec::new(arch, head).build::<B>(&d).unwrap();
            assert_eq!(m.head_kind(), head);
            let x = Tensor::<B, 4>::random([2, 3, 32, 24], Distribution::Normal(0.0, 1.0), &d);
            let out = m.forward(x);
            assert_eq!(out.log_probs.dims(), [2, 18]);
            for s in row_sums(out.log_probs.clone()) {
                assert!((s - 1.0).abs() < 1e-4, "{arch} {head:?}: row sums to {s}");
            }
            assert_eq!(out.tasks.is_some(), head != HeadKind::Single);
            if let Some(t) = out.tasks {
                assert_eq!(t.mask.dims(), [2, 3]);
                assert_eq!(t.gender.dims(), [2, 2]);
                assert_eq!(t.age.dims(), [2, 3]);
            }
        }
    }
}

#[test]
fn train_mode_forward_runs_with_drop_path_and_dropout() {
    let _rng = crate::common::burn_rng_lock();
    type A = Autodiff<Flex>;
    let d = Default::default();
    let spec = ModelSpec { dropout: Some(0.3), drop_path: 0.2, ..ModelSpec::new("efficientnet_nano", HeadKind::Single) };
    let m = spec.build::<A>(&d).unwrap();
    let x = Tensor::<A, 4>::random([3, 3, 32, 32], Distribution::Normal(0.0, 1.0), &d);
    let out = m.forward(x);
    assert_eq!(out.log_probs.dims(), [3, 18]);
}

#[test]
fn bad_specs_are_errors() {
    let _rng = crate::common::burn_rng_lock();
    let d = Default::default();
    assert!(ModelSpec::new("vgg", HeadKind::Single).build::<B>(&d).is_err());
    let spec = ModelSpec { drop_path: 1.5, ..ModelSpec::new("tiny_cnn", HeadKind::Single) };
    assert!(spec.build::<B>(&d).is_err());
}
