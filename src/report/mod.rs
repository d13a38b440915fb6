//! Reports over pipelines and the cache: `maskflow diff`, `maskflow runs`, lockfiles and
//! `maskflow verify`.
//!
//! Constraint kept here: reports only read plans and records. The one writer is the lockfile
//! (next to the pipeline); `verify` may put re-computed outputs into the object store (it is
//! content-addressed, so that never changes what a record means) but never writes records or refs.

pub mod ablate;
pub mod diff;
pub mod git;
pub mod lockfile;
pub mod metrics;
pub mod page;
pub mod runs;
pub mod table;
pub mod verify;
