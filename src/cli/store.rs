//! The cache verbs: `gc` and `cache verify`.

use crate::cache::Cache;
use crate::plan::MissingInputs;
use crate::project;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// `maskflow gc [FILES…]`: keeps what the pipelines (default: `pipelines/**/*.mf`) reference.
/// Every pipeline must plan first: an incomplete live set would delete wanted results.
pub(super) fn gc(cache_dir: &Path, files: &[PathBuf], dry_run: bool) -> Result<i32> {
    let files = if files.is_empty() { project::default_pipelines() } else { files.to_vec() };
    if files.is_empty() {
        bail!("no pipelines given and none found under {}/; nothing removed", project::PIPELINES_DIR);
    }
    let mut cache = Cache::open_exclusive(cache_dir)?;
    let mut plans = Vec::new();
    for file in &files {
        let plan = project::plan(&mut cache, file, &[], MissingInputs::Fail)
            .with_context(|| format!("{}: cannot plan; nothing removed", file.display()))?;
        plans.push(plan);
    }
    let c = crate::gc::collect(&mut cache, &plans, dry_run)?;
    let verb = if c.dry_run { "would remove" } else { "removed" };
    println!("{verb} {} entries ({:.1} MB); kept {} step records", c.entries, c.bytes as f64 / 1e6, c.kept_records);
    Ok(0)
}

/// `maskflow cache verify`: one line per problem, exit 1 if there is any.
pub(super) fn verify(cache_dir: &Path) -> Result<i32> {
    let cache = Cache::open(cache_dir)?;
    Ok(print_problems(&crate::cache::verify::verify(&cache), "cache ok"))
}

/// `maskflow cache verify --remote`.
pub(super) fn verify_remote(remote: Option<&crate::remote::Remote>) -> Result<i32> {
    Ok(print_problems(&super::remote::need(remote)?.verify_all()?, "remote ok"))
}

fn print_problems(problems: &[String], ok: &str) -> i32 {
    for p in problems {
        println!("{p}");
    }
    if problems.is_empty() {
        println!("{ok}");
        0
    } else {
        println!("{} problem{} found", problems.len(), if problems.len() == 1 { "" } else { "s" });
        1
    }
}
