//! The few lines of HTTP that fetch one file from the hub into its cache.
//!
//! The request sequence is huggingface_hub's: a `HEAD` on the resolve URL, redirects not
//! followed, gives the commit (`X-Repo-Commit`), the blob's etag (`X-Linked-Etag`, else
//! `ETag`: the sha256 of a large file), its size (`X-Linked-Size`, else `Content-Length`) and
//! where the bytes are (`Location`, a CDN, else the URL itself); a `GET` there, resumed with
//! `Range: bytes=N-` from a partial `blobs/<etag>.incomplete`, brings the bytes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::Digest as _;

use super::{DEFAULT_ENDPOINT, HubCache, HubRef, Located};

/// What the `HEAD` said about a file.
#[derive(Debug, Clone)]
struct Metadata {
    commit: String,
    etag: String,
    size: u64,
    /// Where the bytes are (the resolve URL, or the CDN it redirects to).
    location: String,
}

/// A hub client over the hub cache.
pub struct Client {
    pub cache: HubCache,
    pub endpoint: String,
    pub offline: bool,
    token: Option<String>,
    /// No redirects followed: the `HEAD`'s own headers are the metadata.
    head_agent: ureq::Agent,
    get_agent: ureq::Agent,
}

impl Client {
    /// The client huggingface_hub would be: `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_TOKEN`, and
    /// the cache root of [`HubCache::from_env`].
    pub fn from_env() -> Client {
        let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
        Client::new(HubCache::from_env(), &endpoint, super::offline_from_env(), token)
    }

    pub fn new(cache: HubCache, endpoint: &str, offline: bool, token: Option<String>) -> Client {
        let base = || {
            ureq::Agent::config_builder()
                .timeout_connect(Some(Duration::from_secs(10)))
                // A stalled transfer fails instead of hanging the run; a slow one that moves is fine.
                .timeout_recv_body(None)
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .http_status_as_error(false)
        };
        let head_agent = ureq::Agent::new_with_config(base().max_redirects(0).max_redirects_will_error(false).build());
        let get_agent = ureq::Agent::new_with_config(base().build());
        Client { cache, endpoint: endpoint.trim_end_matches('/').to_string(), offline, token, head_agent, get_agent }
    }

    /// `<endpoint>/<repo>/resolve/<revision>/<file>`.
    pub fn url(&self, r: &HubRef, revision: &str) -> String {
        format!("{}/{}/resolve/{}/{}", self.endpoint, r.repo, revision, r.file)
    }

    /// The file of `r` in the hub cache: found there without a request (at `pin`, the commit
    /// a lockfile pinned, when given), or downloaded into it.
    pub fn fetch(&self, r: &HubRef, pin: Option<&str>) -> Result<Located> {
        if let Some(found) = self.cache.locate(r, pin) {
            return Ok(found);
        }
        let revision = pin.unwrap_or(&r.revision);
        let url = self.url(r, revision);
        let by_hand = self.cache.snapshot_path(r, revision);
        if self.offline {
            bail!(
                "{r}: not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set\n  download {url}\n  and place it at {}",
                self.cache.root.display(),
                by_hand.display()
            );
        }
        let meta = self.head(&url).map_err(|e| match e {
            HeadError::Unreachable(message) => anyhow::anyhow!(
                "{r}: cannot reach {url}: {message}\n  without network, download that URL elsewhere and place the file at {}\n  \
                 (a file already in the Hugging Face cache is used without any request)",
                by_hand.display()
            ),
            HeadError::Other(e) => e,
        })?;
        // One download of a blob at a time, across processes (huggingface_hub locks the same
        // way, under `.locks/`); whoever waited finds the blob there.
        let locks = self.cache.root.join(".locks").join(r.cache_folder());
        std::fs::create_dir_all(&locks).with_context(|| format!("{}: cannot create", locks.display()))?;
        let lock_path = locks.join(format!("{}.lock", meta.etag));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("{}: cannot open", lock_path.display()))?;
        lock.lock().with_context(|| format!("{}: cannot lock", lock_path.display()))?;
        // Another tool may have downloaded this commit already.
        let snapshot = self.cache.snapshot_path(r, &meta.commit);
        if !snapshot.is_file() {
            let blob = self.cache.repo_dir(r).join("blobs").join(&meta.etag);
            if !blob.is_file() {
                self.download(&meta, &blob).with_context(|| format!("{r}: downloading {url}"))?;
            }
            link(&blob, &snapshot).with_context(|| format!("{}: cannot link the downloaded file", snapshot.display()))?;
        }
        if revision != meta.commit {
            let refs = self.cache.repo_dir(r).join("refs").join(revision);
            crate::fsutil::write_atomic(&refs, meta.commit.as_bytes()).with_context(|| format!("{}: cannot write", refs.display()))?;
        }
        Ok(Located { commit: meta.commit, path: snapshot })
    }

    fn with_token<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    fn head(&self, url: &str) -> Result<Metadata, HeadError> {
        let resp = self.with_token(self.head_agent.head(url)).header("Accept-Encoding", "identity").call().map_err(|e| match e {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_) => {
                HeadError::Unreachable(e.to_string())
            }
            e => HeadError::Other(anyhow::anyhow!("{url}: {e}")),
        })?;
        let status = resp.status().as_u16();
        let header = |k: &str| resp.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let redirect = (300..400).contains(&status);
        match status {
            200..=399 => {}
            404 => return Err(HeadError::Other(anyhow::anyhow!("{url}: 404 Not Found: the hub has no such repo, revision or file"))),
            401 | 403 => {
                return Err(HeadError::Other(anyhow::anyhow!(
                    "{url}: {status}: the repo is gated or private; set HF_TOKEN to a token that may read it"
                )));
            }
            _ => return Err(HeadError::Other(anyhow::anyhow!("{url}: the hub answered {status}"))),
        }
        let missing =
            |what: &str| HeadError::Other(anyhow::anyhow!("{url}: the answer has no {what} header; is HF_ENDPOINT a Hugging Face hub?"));
        let commit = header("x-repo-commit").ok_or_else(|| missing("X-Repo-Commit"))?;
        let etag = header("x-linked-etag").or_else(|| header("etag")).map(|e| normalise_etag(&e)).ok_or_else(|| missing("ETag"))?;
        let size = header("x-linked-size")
            .or_else(|| if redirect { None } else { header("content-length") })
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| missing("size (X-Linked-Size or Content-Length)"))?;
        let location = match header("location") {
            Some(l) if redirect => absolute(url, &l),
            _ => url.to_string(),
        };
        let safe = |s: &str| super::valid_name(s);
        if !safe(&commit) || !safe(&etag) {
            return Err(HeadError::Other(anyhow::anyhow!("{url}: unusable commit {commit:?} or etag {etag:?} in the answer")));
        }
        Ok(Metadata { commit, etag, size, location })
    }

    /// Brings the bytes of `meta` into `blob`, through `blob.incomplete` (resumed when it is
    /// there), checked, then renamed: `blob` is whole or absent.
    fn download(&self, meta: &Metadata, blob: &Path) -> Result<()> {
        let dir = blob.parent().context("a blob has a folder")?;
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let partial = PathBuf::from(format!("{}.incomplete", blob.display()));
        let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > meta.size {
            have = 0;
        }
        let transfers = super::transfers();
        let transfer = transfers.start(meta.size, false);
        transfer.advance(have);
        if have < meta.size {
            let mut req = self.with_token(self.get_agent.get(&meta.location));
            if have > 0 {
                req = req.header("Range", format!("bytes={have}-"));
            }
            let mut resp = req.call().map_err(|e| anyhow::anyhow!("{}: {e}", meta.location))?;
            let append = match resp.status().as_u16() {
                206 if content_range_start(resp.headers()) == Some(have) => true,
                // The server ignored the range: start over.
                200 => false,
                status => bail!("{}: the hub answered {status}", meta.location),
            };
            if !append {
                transfer.advance_back(have);
                have = 0;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(&partial)
                .with_context(|| format!("{}: cannot write", partial.display()))?;
            let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader
                    .read(&mut buf)
                    .with_context(|| format!("{}: the transfer broke off after {have} bytes; run again to resume", meta.location))?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n]).with_context(|| format!("{}: cannot write", partial.display()))?;
                have += n as u64;
                transfer.advance(n as u64);
                if have > meta.size {
                    break;
                }
            }
            file.sync_all().with_context(|| format!("{}: cannot write", partial.display()))?;
        }
        let got = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if got != meta.size {
            if got > meta.size {
                let _ = std::fs::remove_file(&partial);
            }
            bail!("{}: got {got} of {} bytes; run again to resume", meta.location, meta.size);
        }
        if is_sha256(&meta.etag) {
            let digest = sha256_file(&partial)?;
            if digest != meta.etag {
                let _ = std::fs::remove_file(&partial);
                bail!("{}: the bytes' sha256 is {digest}, the hub announced {}; the partial file was removed", meta.location, meta.etag);
            }
        }
        std::fs::rename(&partial, blob).with_context(|| format!("{}: cannot rename into place", blob.display()))?;
        Ok(())
    }
}

enum HeadError {
    /// No answer at all: offline, refused, DNS, timeout.
    Unreachable(String),
    Other(anyhow::Error),
}

/// huggingface_hub's etag normalisation: a weak `W/` prefix and the quotes go.
fn normalise_etag(e: &str) -> String {
    e.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The first byte a `206`'s `Content-Range: bytes A-B/N` covers.
fn content_range_start(headers: &ureq::http::HeaderMap) -> Option<u64> {
    let v = headers.get("content-range")?.to_str().ok()?;
    v.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// A `Location` made absolute against the URL it came from.
fn absolute(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    if location.starts_with('/') {
        format!("{}{location}", &base[..host_end])
    } else {
        format!("{}/{location}", base.rsplit_once('/').map_or(base, |(a, _)| a))
    }
}

/// `snapshot` → `blob` as a relative symlink, as huggingface_hub makes it (a copy where
/// symlinks are refused).
fn link(blob: &Path, snapshot: &Path) -> Result<()> {
    let dir = snapshot.parent().context("a snapshot file has a folder")?;
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(snapshot);
    #[cfg(unix)]
    if std::os::unix::fs::symlink(super::relative_to(blob, dir), snapshot).is_ok() {
        return Ok(());
    }
    let tmp = snapshot.with_extension("copying");
    std::fs::copy(blob, &tmp)?;
    std::fs::rename(&tmp, snapshot)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_locations_normalise_like_huggingface_hub() {
        assert_eq!(normalise_etag("W/\"abc\""), "abc");
        assert_eq!(normalise_etag("\"abc\""), "abc");
        assert_eq!(absolute("http://h:1/a/resolve/main/f", "/x/y"), "http://h:1/x/y");
        assert_eq!(absolute("http://h:1/a/resolve/main/f", "https://cdn/z"), "https://cdn/z");
    }
}
