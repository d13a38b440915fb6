//! Per-person label fixes and the final per-image labels.
//!
//! Constraint kept here: fixes change labels only, never files; an id a fix names but the
//! index lacks is a warning (fix lists are shared between datasets and folds), not an error.
//! The report lists every change with its old and new value so that a run can explain itself.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::labels::{AgeBins, Gender, ImageSlot, MaskState, age_class, class_of};
use super::layout::{DataError, TrainIndex, column_positions, open_csv, parse_age, parse_gender, rows};

/// Corrections for one person. Absent fields leave the label as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fix {
    pub gender: Option<Gender>,
    pub age: Option<u32>,
    /// Exchange the labels of the `incorrect_mask` and `normal` photos.
    pub swap_incorrect_normal: bool,
}

/// Fixes keyed by person id.
pub type Fixes = BTreeMap<String, Fix>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Gender { id: String, from: Gender, to: Gender },
    Age { id: String, from: u32, to: u32 },
    SwapIncorrectNormal { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RelabelReport {
    pub changes: Vec<Change>,
    /// Fixes that did nothing: unknown ids, values already in place.
    pub warnings: Vec<String>,
}

/// One labelled training image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Index into [`TrainIndex::images`].
    pub image: usize,
    /// Index into [`TrainIndex::persons`].
    pub person: usize,
    pub class: u8,
    pub mask: MaskState,
    pub gender: Gender,
    pub age_class: u8,
}

/// Applies `fixes` to `index` in place (ids in sorted order) and reports what changed.
pub fn apply_fixes(index: &mut TrainIndex, fixes: &Fixes) -> RelabelReport {
    let mut report = RelabelReport::default();
    let positions: BTreeMap<String, usize> = index.persons.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
    for (id, fix) in fixes {
        let Some(&person_index) = positions.get(id) else {
            report.warnings.push(format!("fix for unknown id `{id}` ignored"));
            continue;
        };
        let person = &mut index.persons[person_index];
        if let Some(gender) = fix.gender {
            if person.gender == gender {
                report.warnings.push(format!("`{id}`: gender is already {}", gender.as_str()));
            } else {
                report.changes.push(Change::Gender { id: id.clone(), from: person.gender, to: gender });
                person.gender = gender;
            }
        }
        if let Some(age) = fix.age {
            if person.age == age {
                report.warnings.push(format!("`{id}`: age is already {age}"));
            } else {
                report.changes.push(Change::Age { id: id.clone(), from: person.age, to: age });
                person.age = age;
            }
        }
        if fix.swap_incorrect_normal {
            swap_incorrect_normal(index, person_index);
            report.changes.push(Change::SwapIncorrectNormal { id: id.clone() });
        }
    }
    report
}

/// Relabels the person's `incorrect_mask` photo as `normal` and vice versa, keeping the
/// images sorted by (person, slot).
fn swap_incorrect_normal(index: &mut TrainIndex, person: usize) {
    for image in index.images.iter_mut().filter(|i| i.person == person) {
        image.slot = match image.slot {
            ImageSlot::IncorrectMask => ImageSlot::Normal,
            ImageSlot::Normal => ImageSlot::IncorrectMask,
            other => other,
        };
    }
    index.images.sort_by_key(|i| (i.person, i.slot));
}

/// Reads fixes from a CSV with columns `id,field,value`; `field` is `gender` (value
/// `male`/`female`), `age` (an integer) or `swap` (`true`/`false`, `1`/`0`, `yes`/`no`).
/// Several rows may fix one id; the same field twice for one id is an error.
pub fn read_fixes_csv(path: &Path) -> Result<Fixes, DataError> {
    let mut reader = open_csv(path)?;
    let [id_col, field_col, value_col] = column_positions(path, &mut reader, ["id", "field", "value"])?;
    let mut fixes = Fixes::new();
    // (id, field) → line, to name the first line of a repeated fix.
    let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in rows(path, &mut reader) {
        let (line, record) = row?;
        let get = |col: usize| record.get(col).unwrap_or("");
        let (id, field, value) = (get(id_col), get(field_col), get(value_col));
        let bad = |message: String| DataError::BadValue { path: path.to_owned(), line, message };
        if id.is_empty() {
            return Err(bad("empty id".into()));
        }
        let field_key = field.to_ascii_lowercase();
        match seen.entry((id.to_owned(), field_key.clone())) {
            Entry::Occupied(first) => {
                return Err(bad(format!("`{field}` of `{id}` is already fixed on line {}", first.get())));
            }
            Entry::Vacant(slot) => {
                slot.insert(line);
            }
        }
        let fix = fixes.entry(id.to_owned()).or_default();
        match field_key.as_str() {
            "gender" => fix.gender = Some(parse_gender(path, line, value)?),
            "age" => fix.age = Some(parse_age(path, line, value)?),
            "swap" => {
                fix.swap_incorrect_normal = parse_bool(value).ok_or_else(|| bad(format!("swap value `{value}` is not true or false")))?
            }
            _ => {
                return Err(bad(format!("unknown field `{field}` (expected gender, age or swap)")));
            }
        }
    }
    Ok(fixes)
}

/// The label errors that several competition teams fixed (see the competition notes):
/// gender female→male for `006359`–`006364`, male→female for `001498-1` and `004432`, and
/// `incorrect_mask` ↔ `normal` swapped for `000020`, `004418` and `005227`.
pub fn competition_fixes() -> Fixes {
    let mut fixes = Fixes::new();
    let mut set = |id: &str, edit: &dyn Fn(&mut Fix)| edit(fixes.entry(id.to_owned()).or_default());
    for id in ["006359", "006360", "006361", "006362", "006363", "006364"] {
        set(id, &|f| f.gender = Some(Gender::Male));
    }
    for id in ["001498-1", "004432"] {
        set(id, &|f| f.gender = Some(Gender::Female));
    }
    for id in ["000020", "004418", "005227"] {
        set(id, &|f| f.swap_incorrect_normal = true);
    }
    fixes
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// One sample per image, labelled from its slot and its person's (fixed) gender and age.
pub fn label_samples(index: &TrainIndex, age_bins: AgeBins) -> Vec<Sample> {
    index
        .images
        .iter()
        .enumerate()
        .map(|(image_index, image)| {
            let person = &index.persons[image.person];
            let mask = image.slot.mask_state();
            let age_class = age_class(person.age, age_bins);
            Sample {
                image: image_index,
                person: image.person,
                class: class_of(mask, person.gender, age_class),
                mask,
                gender: person.gender,
                age_class,
            }
        })
        .collect()
}
