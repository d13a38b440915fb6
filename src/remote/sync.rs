//! `maskflow push` and `maskflow pull`: a whole pipeline's steps to or from the remote.

use super::{Lookup, Remote, Uploaded};
use crate::cache::{Cache, OutputState};
use crate::plan::Plan;
use anyhow::Result;

/// What happened to one step.
#[derive(Debug)]
pub enum Synced {
    /// Pushed: what was sent (nothing when the remote had it all).
    Pushed(Uploaded),
    /// Pulled from the remote, signed by this key.
    Pulled { signer: String },
    /// Already here, complete.
    Here,
    /// Not computed here (push) or not on the remote (pull).
    Missing,
    /// The remote's record does not count, or a transfer failed; the words say why.
    Failed(String),
}

/// Uploads every step whose record and outputs are complete in the local cache.
pub fn push(cache: &mut Cache, plan: &Plan, remote: &Remote) -> Vec<(String, Synced)> {
    plan.steps
        .iter()
        .map(|step| {
            let outcome = match cache.read_record(&step.key) {
                Ok(Some(record)) if record.outputs.values().all(|o| cache.check_output(o) == OutputState::Ok) => {
                    match remote.upload(cache, &record) {
                        Ok(up) => Synced::Pushed(up),
                        Err(e) => Synced::Failed(format!("{e:#}")),
                    }
                }
                _ => Synced::Missing,
            };
            (step.name.clone(), outcome)
        })
        .collect()
}

/// Fetches every step the remote holds and this cache does not, outputs included.
pub fn pull(cache: &mut Cache, plan: &Plan, remote: &Remote) -> Result<Vec<(String, Synced)>> {
    let mut out = Vec::new();
    for step in &plan.steps {
        let local =
            matches!(cache.read_record(&step.key), Ok(Some(r)) if r.outputs.values().all(|o| cache.check_output(o) == OutputState::Ok));
        let outcome = if local {
            Synced::Here
        } else {
            match remote.lookup(&step.key) {
                Lookup::Hit(hit) => match hit.record.outputs.values().try_for_each(|o| remote.fetch(cache, o)) {
                    Ok(()) => {
                        cache.write_record(&hit.record)?;
                        Synced::Pulled { signer: hit.signer }
                    }
                    Err(e) => Synced::Failed(format!("{e:#}")),
                },
                Lookup::Absent => Synced::Missing,
                Lookup::Ignored(why) => Synced::Failed(why),
                Lookup::Down => Synced::Failed("the remote is unavailable (see above)".into()),
            }
        };
        out.push((step.name.clone(), outcome));
    }
    cache.flush()?;
    Ok(out)
}
