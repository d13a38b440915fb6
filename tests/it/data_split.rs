//! Person-level splits: invariants checked on random populations.

use std::collections::{BTreeMap, BTreeSet};

use maskflow::data::labels::{AgeBins, DEFAULT_AGE_BINS, Gender, age_class};
use maskflow::data::layout::Person;
use maskflow::data::split::{SplitError, StratifyKey, holdout, kfold};
use proptest::prelude::*;

fn persons(spec: &[(bool, u32)]) -> Vec<Person> {
    spec.iter()
        .enumerate()
        .map(|(i, &(female, age))| Person {
            id: format!("{:06}", i * 7 + 1),
            gender: if female { Gender::Female } else { Gender::Male },
            race: "Asian".into(),
            age,
            folder: String::new(),
        })
        .collect()
}

fn population() -> impl Strategy<Value = Vec<Person>> {
    prop::collection::vec((any::<bool>(), 18u32..=60), 2..120).prop_map(|s| persons(&s))
}

fn stratify_keys() -> impl Strategy<Value = Vec<StratifyKey>> {
    prop::sample::subsequence(vec![StratifyKey::Gender, StratifyKey::Age], 0..=2)
}

fn stratum(p: &Person, keys: &[StratifyKey], bins: AgeBins) -> (u8, u8) {
    (
        if keys.contains(&StratifyKey::Gender) { p.gender.index() } else { 0 },
        if keys.contains(&StratifyKey::Age) { age_class(p.age, bins) } else { 0 },
    )
}

fn is_sorted(ids: &[String]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn kfold_partitions_everyone(
        people in population(),
        k in 2usize..8,
        keys in stratify_keys(),
        seed in any::<u64>(),
    ) {
        prop_assume!(k <= people.len());
        let split = kfold(&people, k, &keys, seed, DEFAULT_AGE_BINS).unwrap();
        prop_assert_eq!(split.folds.len(), k);
        let everyone: BTreeSet<String> = people.iter().map(|p| p.id.clone()).collect();
        let mut union = BTreeSet::new();
        for fold in &split.folds {
            prop_assert!(is_sorted(&fold.train) && is_sorted(&fold.val));
            let val: BTreeSet<_> = fold.val.iter().cloned().collect();
            let train: BTreeSet<_> = fold.train.iter().cloned().collect();
            prop_assert!(val.is_disjoint(&train), "a person on both sides");
            prop_assert_eq!(val.union(&train).cloned().collect::<BTreeSet<_>>(), everyone.clone());
            for id in &fold.val {
                prop_assert!(union.insert(id.clone()), "validation sets overlap");
            }
            // Fold sizes differ by at most one.
            let n = people.len();
            prop_assert!(fold.val.len() == n / k || fold.val.len() == n.div_ceil(k));
        }
        prop_assert_eq!(union, everyone);
    }

    #[test]
    fn kfold_represents_each_stratum_in_every_fold(
        people in population(),
        k in 2usize..6,
        keys in stratify_keys(),
        seed in any::<u64>(),
    ) {
        prop_assume!(k <= people.len());
        let split = kfold(&people, k, &keys, seed, DEFAULT_AGE_BINS).unwrap();
        let by_id: BTreeMap<&str, &Person> = people.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut totals: BTreeMap<(u8, u8), usize> = BTreeMap::new();
        for p in &people {
            *totals.entry(stratum(p, &keys, DEFAULT_AGE_BINS)).or_default() += 1;
        }
        for fold in &split.folds {
            let mut counts: BTreeMap<(u8, u8), usize> = BTreeMap::new();
            for id in &fold.val {
                *counts.entry(stratum(by_id[id.as_str()], &keys, DEFAULT_AGE_BINS)).or_default() += 1;
            }
            for (s, &total) in &totals {
                let got = counts.get(s).copied().unwrap_or(0);
                prop_assert!(got == total / k || got == total.div_ceil(k),
                    "stratum {:?}: {} in a fold, {} overall, k={}", s, got, total, k);
            }
        }
    }

    #[test]
    fn holdout_is_proportional_and_disjoint(
        people in population(),
        fraction in 0.05f64..0.95,
        keys in stratify_keys(),
        seed in any::<u64>(),
    ) {
        let n = people.len();
        let expected_val = (n as f64 * fraction).round() as usize;
        let result = holdout(&people, fraction, &keys, seed, DEFAULT_AGE_BINS);
        if expected_val == 0 || expected_val == n {
            let is_empty_side = matches!(result, Err(SplitError::EmptySide { .. }));
            prop_assert!(is_empty_side);
            return Ok(());
        }
        let split = result.unwrap();
        prop_assert_eq!(split.folds.len(), 1);
        let fold = &split.folds[0];
        prop_assert_eq!(fold.val.len(), expected_val);
        prop_assert_eq!(fold.train.len() + fold.val.len(), n);
        let val: BTreeSet<_> = fold.val.iter().collect();
        prop_assert!(fold.train.iter().all(|id| !val.contains(id)));
        let by_id: BTreeMap<&str, &Person> = people.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut totals: BTreeMap<(u8, u8), usize> = BTreeMap::new();
        let mut in_val: BTreeMap<(u8, u8), usize> = BTreeMap::new();
        for p in &people {
            *totals.entry(stratum(p, &keys, DEFAULT_AGE_BINS)).or_default() += 1;
        }
        for id in &fold.val {
            *in_val.entry(stratum(by_id[id.as_str()], &keys, DEFAULT_AGE_BINS)).or_default() += 1;
        }
        for (s, &total) in &totals {
            let got = in_val.get(s).copied().unwrap_or(0) as f64;
            prop_assert!((got - total as f64 * fraction).abs() <= 1.0 + 1e-9,
                "stratum {:?}: {} in val of {}", s, got, total);
        }
    }

    #[test]
    fn splits_are_deterministic_and_order_independent(
        people in population(),
        keys in stratify_keys(),
        seed in any::<u64>(),
    ) {
        let k = 2.min(people.len());
        let mut reversed = people.clone();
        reversed.reverse();
        prop_assert_eq!(
            kfold(&people, k, &keys, seed, DEFAULT_AGE_BINS).unwrap(),
            kfold(&reversed, k, &keys, seed, DEFAULT_AGE_BINS).unwrap()
        );
        if people.len() >= 4 {
            prop_assert_eq!(
                holdout(&people, 0.5, &keys, seed, DEFAULT_AGE_BINS).unwrap(),
                holdout(&reversed, 0.5, &keys, seed, DEFAULT_AGE_BINS).unwrap()
            );
        }
    }
}

#[test]
fn different_seeds_give_different_splits() {
    let spec: Vec<(bool, u32)> = (0..200).map(|i| (i % 3 == 0, 18 + i % 43)).collect();
    let people = persons(&spec);
    let keys = [StratifyKey::Gender, StratifyKey::Age];
    let a = holdout(&people, 0.2, &keys, 1, DEFAULT_AGE_BINS).unwrap();
    let b = holdout(&people, 0.2, &keys, 2, DEFAULT_AGE_BINS).unwrap();
    assert_ne!(a, b);
    assert_eq!(a, holdout(&people, 0.2, &keys, 1, DEFAULT_AGE_BINS).unwrap());
}

#[test]
fn invalid_parameters_are_rejected() {
    let people = persons(&[(true, 20), (false, 40), (true, 60)]);
    for fraction in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(matches!(holdout(&people, fraction, &[], 0, DEFAULT_AGE_BINS), Err(SplitError::BadFraction(_))));
    }
    assert_eq!(kfold(&people, 1, &[], 0, DEFAULT_AGE_BINS).unwrap_err(), SplitError::TooFewFolds(1));
    assert_eq!(kfold(&people, 4, &[], 0, DEFAULT_AGE_BINS).unwrap_err().to_string(), "4 folds need at least 4 persons, got 3");
    let mut twins = people.clone();
    twins.push(twins[0].clone());
    twins[3].gender = Gender::Male;
    assert_eq!(kfold(&twins, 2, &[StratifyKey::Gender], 0, DEFAULT_AGE_BINS).unwrap_err(), SplitError::DuplicateId(people[0].id.clone()));
}
