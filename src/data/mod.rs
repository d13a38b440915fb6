//! The data library: reading the competition layout, labels, fixes, person-level splits,
//! statistics and a synthetic stand-in dataset. Knows nothing of the `.mf` language.

pub mod labels;
pub mod layout;
pub mod relabel;
pub mod split;
pub mod stats;
pub mod synth;

pub use layout::DataError;
