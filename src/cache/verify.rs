//! `maskflow cache verify`: re-hash every object, tree and record, trusting no stamp.
//! Every mismatch comes back as a line naming the path.

use super::manifest::Manifest;
use super::{Cache, Dir};
use crate::digest::Digest;
use rayon::prelude::*;
use std::path::PathBuf;

/// Every problem found, one line each, naming the path.
pub fn verify(cache: &Cache) -> Vec<String> {
    // `.name.tmp-…` files are leftovers of writes killed before their rename: never part
    // of the cache (nothing refers to them) and removed by `gc`.
    let objects: Vec<PathBuf> = walkdir::WalkDir::new(cache.dir(Dir::Objects))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && !is_temp_leftover(e.file_name()))
        .map(|e| e.into_path())
        .collect();
    let mut problems: Vec<String> = objects
        .par_iter()
        .filter_map(|path| {
            let name = format!("{}{}", path.parent()?.file_name()?.to_string_lossy(), path.file_name()?.to_string_lossy());
            match (Digest::from_hex(&name), Digest::of_file(path)) {
                (Some(expected), Ok(actual)) if expected == actual => None,
                (Some(_), Ok(actual)) => Some(format!("corrupt object: {} (content hashes to {})", path.display(), actual.short())),
                (None, _) => Some(format!("stray file: {}", path.display())),
                (_, Err(e)) => Some(format!("unreadable object: {} ({e})", path.display())),
            }
        })
        .collect();
    for record in cache.all_records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("bad record: {e}"));
                continue;
            }
        };
        for (name, out) in &record.outputs {
            let path = cache.object_path(&out.digest);
            if !path.is_file() {
                problems.push(format!(
                    "missing object: {} (output `{name}` of {} step {})",
                    path.display(),
                    record.kind,
                    record.key.short()
                ));
                continue;
            }
            if out.tree {
                problems.extend(verify_tree(cache, &out.digest));
            }
        }
    }
    problems.sort();
    problems
}

fn verify_tree(cache: &Cache, manifest_digest: &Digest) -> Vec<String> {
    let dir = cache.tree_path(manifest_digest);
    let Ok(text) = std::fs::read_to_string(cache.object_path(manifest_digest)) else { return vec![] };
    let Some(expected) = Manifest::from_text(&text) else {
        return vec![format!("corrupt manifest: {}", cache.object_path(manifest_digest).display())];
    };
    expected
        .files
        .par_iter()
        .filter_map(|f| {
            let path = dir.join(&f.path);
            match Digest::of_file(&path) {
                Ok(d) if d == f.digest => None,
                Ok(_) => Some(format!("corrupt tree file: {}", path.display())),
                Err(_) => Some(format!("missing tree file: {}", path.display())),
            }
        })
        .collect()
}

fn is_temp_leftover(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') && name.contains(".tmp-")
}
