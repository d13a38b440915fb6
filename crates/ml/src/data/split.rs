//! Person-level train/validation splits: a hold-out split and stratified k-fold.
//!
//! Constraints kept here:
//! - splits are by person, never by image: all seven photos of a person fall on one side
//!   (splitting by image leaks a person into validation, the competition's classic bug);
//! - a split is a pure function of the set of persons, the parameters and the seed: the input
//!   order does not matter, and each stratum is shuffled with its own ChaCha stream so that
//!   persons of one stratum do not move when another stratum changes;
//! - every stratum (gender and/or age class) is represented in proportion: hold-out gives
//!   each stratum `round`-ed share ±1 of the validation side, k-fold deals each stratum
//!   round-robin so each fold holds `⌊n/k⌋` or `⌈n/k⌉` of it.

use std::collections::{BTreeMap, BTreeSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::labels::{AgeBins, age_class};
use super::layout::Person;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StratifyKey {
    Gender,
    /// The age class under the split's age bins.
    Age,
}

/// One train/validation partition, as sorted person ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

/// The folds of a split: one for a hold-out split, `k` for k-fold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFile {
    pub folds: Vec<Fold>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error("validation fraction {0} must lie strictly between 0 and 1")]
    BadFraction(f64),
    #[error("k-fold needs k >= 2, got {0}")]
    TooFewFolds(usize),
    #[error("{k} folds need at least {k} persons, got {persons}")]
    TooManyFolds { k: usize, persons: usize },
    #[error("validation fraction {fraction} of {persons} persons leaves the {side} side empty")]
    EmptySide { fraction: f64, persons: usize, side: &'static str },
    #[error("person id `{0}` appears more than once")]
    DuplicateId(String),
}

/// Splits `persons` into one train and one validation set, `val_fraction` of them (rounded)
/// going to validation.
pub fn holdout(
    persons: &[Person],
    val_fraction: f64,
    stratify: &[StratifyKey],
    seed: u64,
    age_bins: AgeBins,
) -> Result<SplitFile, SplitError> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(SplitError::BadFraction(val_fraction));
    }
    let order = stratified_order(persons, stratify, seed, age_bins)?;
    // Systematic sampling over the concatenated strata: position i goes to validation when
    // the running rounded quota steps up, so each contiguous stratum gets its share ±1 and
    // the total is round(n * fraction).
    let quota = |i: usize| (i as f64 * val_fraction + 0.5).floor() as usize;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, id) in order.into_iter().enumerate() {
        if quota(i + 1) > quota(i) {
            val.push(id);
        } else {
            train.push(id);
        }
    }
    for (side, ids) in [("validation", &val), ("train", &train)] {
        if ids.is_empty() {
            return Err(SplitError::EmptySide { fraction: val_fraction, persons: persons.len(), side });
        }
    }
    Ok(SplitFile { folds: vec![fold(train, val)] })
}

/// Splits `persons` into `k` folds whose validation sets are disjoint and cover everyone.
pub fn kfold(persons: &[Person], k: usize, stratify: &[StratifyKey], seed: u64, age_bins: AgeBins) -> Result<SplitFile, SplitError> {
    if k < 2 {
        return Err(SplitError::TooFewFolds(k));
    }
    if k > persons.len() {
        return Err(SplitError::TooManyFolds { k, persons: persons.len() });
    }
    let order = stratified_order(persons, stratify, seed, age_bins)?;
    // Dealing round-robin across the concatenated strata (without restarting per stratum)
    // keeps both each stratum and the fold sizes balanced to within one person.
    let mut fold_of = BTreeMap::new();
    for (i, id) in order.into_iter().enumerate() {
        fold_of.insert(id, i % k);
    }
    let folds = (0..k)
        .map(|f| {
            let (val, train): (Vec<_>, Vec<_>) = fold_of.iter().partition(|&(_, &fold)| fold == f);
            fold(train.into_iter().map(|(id, _)| id.clone()).collect(), val.into_iter().map(|(id, _)| id.clone()).collect())
        })
        .collect();
    Ok(SplitFile { folds })
}

fn fold(mut train: Vec<String>, mut val: Vec<String>) -> Fold {
    train.sort();
    val.sort();
    Fold { train, val }
}

/// The persons' ids, grouped by stratum (strata in key order), each stratum sorted by id
/// and then shuffled by its own seeded stream.
fn stratified_order(persons: &[Person], stratify: &[StratifyKey], seed: u64, age_bins: AgeBins) -> Result<Vec<String>, SplitError> {
    let mut seen = BTreeSet::new();
    if let Some(dup) = persons.iter().find(|p| !seen.insert(p.id.as_str())) {
        return Err(SplitError::DuplicateId(dup.id.clone()));
    }
    let keys: BTreeSet<StratifyKey> = stratify.iter().copied().collect();
    let mut strata: BTreeMap<(u8, u8), Vec<&str>> = BTreeMap::new();
    for person in persons {
        let gender = if keys.contains(&StratifyKey::Gender) { person.gender.index() } else { 0 };
        let age = if keys.contains(&StratifyKey::Age) { age_class(person.age, age_bins) } else { 0 };
        strata.entry((gender, age)).or_default().push(&person.id);
    }
    let mut order = Vec::with_capacity(persons.len());
    for ((gender, age), mut ids) in strata {
        ids.sort_unstable();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::from(gender) << 8 | u64::from(age));
        ids.shuffle(&mut rng);
        order.extend(ids.into_iter().map(str::to_owned));
    }
    Ok(order)
}
