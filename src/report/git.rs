//! Reading an earlier version of a pipeline from git, for `diff FILE --rev REV`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// A file written from git next to the original (so `extends` resolves), removed on drop.
pub struct GitCopy(pub PathBuf);

impl Drop for GitCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `file` as it is at git revision `rev` beside the original (so its `extends` and
/// ensemble members resolve), as a hidden file removed when the returned value drops.
pub fn git_copy(file: &Path, rev: &str) -> Result<GitCopy> {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = file.file_name().with_context(|| format!("{}: not a file", file.display()))?.to_string_lossy().to_string();
    let out = std::process::Command::new("git")
        .arg("show")
        .arg(format!("{rev}:./{name}"))
        .current_dir(dir)
        .output()
        .context("cannot run `git` (is it installed?)")?;
    if !out.status.success() {
        bail!("git show {rev}:{}: {}", file.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let safe: String = rev.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let stem = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let path = dir.join(format!(".{stem}.{safe}.{}.mf", std::process::id()));
    std::fs::write(&path, &out.stdout).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(GitCopy(path))
}
