//! The competition's label space: three tasks (mask, gender, age) folded into 18 classes.
//!
//! Constraint kept here: `class = mask * 6 + gender * 3 + age_class`, with mask wear 0 /
//! incorrect 1 / normal 2, gender male 0 / female 1, and age classes cut by two configurable
//! boundaries (`[30, 60]` in the competition, `[30, 58]` in some teams' fixes). Every other
//! module (loaders, models, losses, metrics) takes its class counts from the constants here
//! and converts through these functions, never by hand.

use serde::{Deserialize, Serialize};

/// Mask states: wear, incorrect, normal.
pub const MASK_CLASSES: usize = MaskState::ALL.len();

/// Genders: male, female.
pub const GENDER_CLASSES: usize = Gender::ALL.len();

/// Age classes: below `bins[0]`, below `bins[1]`, the rest.
pub const AGE_CLASSES: usize = 3;

/// The three tasks' class counts, in class-number order: mask, gender, age.
pub const TASK_CLASSES: [usize; 3] = [MASK_CLASSES, GENDER_CLASSES, AGE_CLASSES];

/// Number of classes in the folded label space (3 × 2 × 3 = 18).
pub const NUM_CLASSES: usize = MASK_CLASSES * GENDER_CLASSES * AGE_CLASSES;

/// Age boundaries: ages below `bins[0]` are class 0, below `bins[1]` class 1, the rest class 2.
pub type AgeBins = [u32; 2];

/// The competition's cut-offs: `<30`, `30–59`, `≥60`.
pub const DEFAULT_AGE_BINS: AgeBins = [30, 60];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    pub const ALL: [Gender; 2] = [Gender::Male, Gender::Female];

    /// The gender's digit in the class number (male 0, female 1).
    pub fn index(self) -> u8 {
        match self {
            Gender::Male => 0,
            Gender::Female => 1,
        }
    }

    pub fn from_index(index: u8) -> Option<Gender> {
        Gender::ALL.get(usize::from(index)).copied()
    }

    /// The spelling used in `train.csv` and folder names.
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
        }
    }

    /// Parses `male` / `female`, ignoring case and surrounding blanks.
    pub fn parse(text: &str) -> Option<Gender> {
        let text = text.trim();
        Gender::ALL.into_iter().find(|g| g.as_str().eq_ignore_ascii_case(text))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskState {
    Wear,
    Incorrect,
    Normal,
}

impl MaskState {
    pub const ALL: [MaskState; 3] = [MaskState::Wear, MaskState::Incorrect, MaskState::Normal];

    /// The mask state's digit in the class number (wear 0, incorrect 1, normal 2).
    pub fn index(self) -> u8 {
        match self {
            MaskState::Wear => 0,
            MaskState::Incorrect => 1,
            MaskState::Normal => 2,
        }
    }

    pub fn from_index(index: u8) -> Option<MaskState> {
        MaskState::ALL.get(usize::from(index)).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MaskState::Wear => "wear",
            MaskState::Incorrect => "incorrect",
            MaskState::Normal => "normal",
        }
    }
}

/// One of the seven photos every person contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSlot {
    Mask1,
    Mask2,
    Mask3,
    Mask4,
    Mask5,
    IncorrectMask,
    Normal,
}

impl ImageSlot {
    /// All slots in folder order (the order images of one person are listed in).
    pub const ALL: [ImageSlot; 7] = [
        ImageSlot::Mask1,
        ImageSlot::Mask2,
        ImageSlot::Mask3,
        ImageSlot::Mask4,
        ImageSlot::Mask5,
        ImageSlot::IncorrectMask,
        ImageSlot::Normal,
    ];

    /// The file stem in a person's folder (`mask1`, …, `incorrect_mask`, `normal`).
    pub fn stem(self) -> &'static str {
        match self {
            ImageSlot::Mask1 => "mask1",
            ImageSlot::Mask2 => "mask2",
            ImageSlot::Mask3 => "mask3",
            ImageSlot::Mask4 => "mask4",
            ImageSlot::Mask5 => "mask5",
            ImageSlot::IncorrectMask => "incorrect_mask",
            ImageSlot::Normal => "normal",
        }
    }

    /// The slot a file stem names, ignoring ASCII case.
    pub fn from_stem(stem: &str) -> Option<ImageSlot> {
        ImageSlot::ALL.into_iter().find(|s| s.stem().eq_ignore_ascii_case(stem))
    }

    /// The mask label a photo in this slot carries.
    pub fn mask_state(self) -> MaskState {
        match self {
            ImageSlot::IncorrectMask => MaskState::Incorrect,
            ImageSlot::Normal => MaskState::Normal,
            _ => MaskState::Wear,
        }
    }
}

/// The age class of `age` under `bins` (0, 1 or 2).
pub fn age_class(age: u32, bins: AgeBins) -> u8 {
    if age < bins[0] {
        0
    } else if age < bins[1] {
        1
    } else {
        2
    }
}

/// The class number of three task digits: `mask * 6 + gender * 3 + age`. The digits are
/// taken as they are (callers check or clamp their range).
pub fn class_number(mask: u32, gender: u32, age: u32) -> u32 {
    mask * (GENDER_CLASSES * AGE_CLASSES) as u32 + gender * AGE_CLASSES as u32 + age
}

/// The inverse of [`class_number`]: the `(mask, gender, age)` digits of a class number. A
/// number ≥ 18 gives a mask digit ≥ 3.
pub fn class_digits(class: u32) -> (u32, u32, u32) {
    (class / (GENDER_CLASSES * AGE_CLASSES) as u32, (class / AGE_CLASSES as u32) % GENDER_CLASSES as u32, class % AGE_CLASSES as u32)
}

/// Folds the three task labels into one class number in `0..18`.
///
/// `age_class` above 2 is clamped to 2 so the result always stays in range.
pub fn class_of(mask: MaskState, gender: Gender, age_class: u8) -> u8 {
    let age = age_class.min(AGE_CLASSES as u8 - 1);
    class_number(mask.index().into(), gender.index().into(), age.into()) as u8
}

/// The inverse of [`class_of`]: `(mask, gender, age_class)`, or `None` for a class ≥ 18.
pub fn split_class(class: u8) -> Option<(MaskState, Gender, u8)> {
    if usize::from(class) >= NUM_CLASSES {
        return None;
    }
    let (mask, gender, age) = class_digits(class.into());
    Some((MaskState::from_index(mask as u8)?, Gender::from_index(gender as u8)?, age as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_round_trips_for_every_combination() {
        let mut seen = Vec::new();
        for mask in MaskState::ALL {
            for gender in Gender::ALL {
                for age in 0..3 {
                    let class = class_of(mask, gender, age);
                    assert_eq!(split_class(class), Some((mask, gender, age)));
                    seen.push(class);
                }
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..NUM_CLASSES as u8).collect::<Vec<_>>());
        assert_eq!(split_class(18), None);
    }

    #[test]
    fn the_label_space_is_the_product_of_the_three_tasks() {
        assert_eq!((TASK_CLASSES, NUM_CLASSES), ([3, 2, 3], 18));
        for class in 0..NUM_CLASSES as u32 {
            let (m, g, a) = class_digits(class);
            assert_eq!(class_number(m, g, a), class);
            assert_eq!(class, m * 6 + g * 3 + a);
        }
        assert_eq!(class_digits(18).0, 3);
    }

    #[test]
    fn competition_examples() {
        // normal, female, 60+ is the last class; incorrect, male, 30-59 is 7.
        assert_eq!(class_of(MaskState::Normal, Gender::Female, 2), 17);
        assert_eq!(class_of(MaskState::Incorrect, Gender::Male, 1), 7);
    }

    #[test]
    fn age_class_uses_both_boundaries() {
        let bins = [30, 58];
        assert_eq!(age_class(29, bins), 0);
        assert_eq!(age_class(30, bins), 1);
        assert_eq!(age_class(57, bins), 1);
        assert_eq!(age_class(58, bins), 2);
        assert_eq!(age_class(60, DEFAULT_AGE_BINS), 2);
        assert_eq!(age_class(59, DEFAULT_AGE_BINS), 1);
    }

    #[test]
    fn stems_and_genders_parse_case_insensitively() {
        assert_eq!(ImageSlot::from_stem("Incorrect_Mask"), Some(ImageSlot::IncorrectMask));
        assert_eq!(ImageSlot::from_stem("mask6"), None);
        assert_eq!(Gender::parse(" Female "), Some(Gender::Female));
        assert_eq!(Gender::parse("f"), None);
        assert_eq!(serde_json::to_string(&ImageSlot::IncorrectMask).unwrap(), "\"incorrect_mask\"");
    }
}
