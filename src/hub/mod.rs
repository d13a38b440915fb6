//! Pretrained weights by name, from the Hugging Face hub, kept in the hub's own cache.
//!
//! A pipeline names weights as `timm("efficientnet_b4.ra2_in1k")` or `"hf://ORG/REPO"`
//! ([`HubRef`]); the file is `<endpoint>/<repo>/resolve/<revision>/<file>` (`HF_ENDPOINT`,
//! default `https://huggingface.co`) and lands where Python's huggingface_hub puts it, so each
//! tool finds what the other downloaded:
//!
//! | path under the cache root                          | what it holds                          |
//! |----------------------------------------------------|----------------------------------------|
//! | `models--ORG--NAME/blobs/<etag>`                   | the bytes, named by their sha256       |
//! | `models--ORG--NAME/snapshots/<commit>/<file>`      | a relative symlink to the blob         |
//! | `models--ORG--NAME/refs/<revision>`                | the commit the revision resolved to    |
//!
//! The cache root is `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
//!
//! Constraints kept:
//! - a file in the cache is used without a request: the lockfile's pinned commit first, then
//!   `refs/<revision>`; the network is asked only for a file that is not there (unlike
//!   huggingface_hub, which asks the hub on every call, so a second run makes no request);
//! - `HF_HUB_OFFLINE=1` never touches the network; an unreachable endpoint is the same as
//!   offline for a cached file, and an error giving the URL and where to place the file for
//!   one that is not;
//! - a download goes to `blobs/<etag>.incomplete`, resumes from its length (`Range`), is
//!   checked against its size and sha256 (the hub's etag for large files), and is renamed into
//!   place: a blob is whole or absent;
//! - the step key takes the file's blake3 (`plan`), never its name: the lockfile pins the commit
//!   and that digest, so `run --locked` notices a file that changed under the same revision.

pub mod download;
pub mod timm;

pub use download::Client;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::remote::transfers::Transfers;

/// The hub's public endpoint, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The revision a name without `@REV` means.
pub const DEFAULT_REVISION: &str = "main";
/// The file a name without a path means: timm's checkpoints are `model.safetensors`.
pub const DEFAULT_FILE: &str = "model.safetensors";

/// Weights on the hub: `hf://ORG/NAME[@REVISION][/PATH/IN/REPO]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HubRef {
    /// `ORG/NAME`, e.g. `timm/efficientnet_b4.ra2_in1k`.
    pub repo: String,
    pub revision: String,
    pub file: String,
}

impl HubRef {
    pub const SCHEME: &'static str = "hf://";

    /// Parses `hf://…`; `None` for a string that is not a hub reference (a local path), an
    /// error for one that is but is malformed.
    pub fn parse(s: &str) -> Option<Result<HubRef, String>> {
        let rest = s.strip_prefix(Self::SCHEME)?;
        Some(Self::parse_rest(rest).ok_or_else(|| format!("`{s}` is not a hub reference; write `hf://ORG/NAME[@REVISION][/FILE]`")))
    }

    fn parse_rest(rest: &str) -> Option<HubRef> {
        let mut parts = rest.splitn(3, '/');
        let org = parts.next().filter(|p| valid_name(p))?;
        let name_rev = parts.next()?;
        let (name, revision) = match name_rev.split_once('@') {
            Some((n, r)) => (n, r),
            None => (name_rev, DEFAULT_REVISION),
        };
        let file = parts.next().unwrap_or(DEFAULT_FILE);
        let file_ok = !file.is_empty() && file.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
        let rev_ok = !revision.is_empty() && !revision.contains(['/', '\\']) && revision != "." && revision != "..";
        (valid_name(name) && rev_ok && file_ok).then(|| HubRef {
            repo: format!("{org}/{name}"),
            revision: revision.into(),
            file: file.into(),
        })
    }

    /// timm's name for a checkpoint (`efficientnet_b4` or `efficientnet_b4.ra2_in1k`), with
    /// timm's default tag filled in, and the architecture it is for.
    pub fn timm(name: &str) -> Result<(HubRef, &'static str), String> {
        let (repo, arch) = timm::repo_for(name)?;
        Ok((HubRef { repo, revision: DEFAULT_REVISION.into(), file: DEFAULT_FILE.into() }, arch))
    }

    /// The folder of this repo in the hub cache: `models--ORG--NAME`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

/// The canonical spelling: defaults left out (`hf://timm/efficientnet_b0.ra_in1k`).
impl std::fmt::Display for HubRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", Self::SCHEME, self.repo)?;
        if self.revision != DEFAULT_REVISION {
            write!(f, "@{}", self.revision)?;
        }
        if self.file != DEFAULT_FILE {
            write!(f, "/{}", self.file)?;
        }
        Ok(())
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A file found in (or just put into) the hub cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The commit its snapshot folder is named after.
    pub commit: String,
    pub path: PathBuf,
}

/// The hub cache on disk, in huggingface_hub's layout.
#[derive(Debug, Clone)]
pub struct HubCache {
    pub root: PathBuf,
}

impl HubCache {
    /// The root huggingface_hub uses: `HF_HUB_CACHE`, `HF_HOME/hub`, `XDG_CACHE_HOME/huggingface/hub`,
    /// `~/.cache/huggingface/hub`.
    pub fn from_env() -> HubCache {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")))
            .or_else(|| var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        HubCache { root }
    }

    pub fn repo_dir(&self, r: &HubRef) -> PathBuf {
        self.root.join(r.cache_folder())
    }

    /// Where the file of `r` at `commit` is (or would be).
    pub fn snapshot_path(&self, r: &HubRef, commit: &str) -> PathBuf {
        self.repo_dir(r).join("snapshots").join(commit).join(&r.file)
    }

    /// The commit `refs/<revision>` names, when the cache has that ref.
    pub fn read_ref(&self, r: &HubRef, revision: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.repo_dir(r).join("refs").join(revision)).ok()?;
        let commit = text.trim();
        (!commit.is_empty() && valid_name(commit)).then(|| commit.to_string())
    }

    /// The cached file for `r`, without any request: at the pinned commit when there is a
    /// pin; else at the commit `refs/<revision>` names, or in `snapshots/<revision>/` (a
    /// revision that is a commit, or a file placed there by hand).
    pub fn locate(&self, r: &HubRef, pin: Option<&str>) -> Option<Located> {
        let candidates: Vec<String> = match pin {
            Some(commit) => vec![commit.to_string()],
            None => self.read_ref(r, &r.revision).into_iter().chain([r.revision.clone()]).collect(),
        };
        candidates.into_iter().find_map(|commit| {
            let path = self.snapshot_path(r, &commit);
            path.is_file().then_some(Located { commit, path })
        })
    }
}

/// Whether `HF_HUB_OFFLINE` (or transformers' `TRANSFORMERS_OFFLINE`) asks for no network.
pub fn offline_from_env() -> bool {
    ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")))
}

/// The counters every hub download in this process updates, for the CLI's transfer bar.
pub fn transfers() -> Arc<Transfers> {
    static TRANSFERS: OnceLock<Arc<Transfers>> = OnceLock::new();
    TRANSFERS.get_or_init(|| Arc::new(Transfers::default())).clone()
}

/// `path` relative to `from_dir` when both are under the same root (`../../blobs/<etag>`).
fn relative_to(path: &Path, from_dir: &Path) -> PathBuf {
    let a: Vec<_> = path.components().collect();
    let b: Vec<_> = from_dir.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &a[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_defaults_and_print_canonically() {
        let r = HubRef::parse("hf://timm/efficientnet_b0.ra_in1k").unwrap().unwrap();
        assert_eq!((r.repo.as_str(), r.revision.as_str(), r.file.as_str()), ("timm/efficientnet_b0.ra_in1k", "main", "model.safetensors"));
        assert_eq!(r.to_string(), "hf://timm/efficientnet_b0.ra_in1k");
        assert_eq!(r.cache_folder(), "models--timm--efficientnet_b0.ra_in1k");
        let r = HubRef::parse("hf://org/x@v1.0/weights/a.safetensors").unwrap().unwrap();
        assert_eq!((r.revision.as_str(), r.file.as_str()), ("v1.0", "weights/a.safetensors"));
        assert_eq!(r.to_string(), "hf://org/x@v1.0/weights/a.safetensors");
        assert!(HubRef::parse("weights/a.safetensors").is_none());
        for bad in ["hf://", "hf://timm", "hf://timm/", "hf://timm/x/../y", "hf://timm/x@", "hf://ti m/x"] {
            assert!(HubRef::parse(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn snapshot_links_are_relative_to_their_folder() {
        let root = Path::new("/c/models--a--b");
        assert_eq!(relative_to(&root.join("blobs/e"), &root.join("snapshots/c1")), PathBuf::from("../../blobs/e"));
        assert_eq!(relative_to(&root.join("blobs/e"), &root.join("snapshots/c1/sub")), PathBuf::from("../../../blobs/e"));
    }
}
