//! Where a remote keeps its bytes: plain HTTP (GET, HEAD, PUT; any server that takes WebDAV
//! PUT, such as nginx with `dav_methods PUT`) or a directory on a shared filesystem
//! (`file://`). Both use one layout under the URL: `v1/cas/<blake3>` for objects and tree
//! files, `v1/ac/<step key>` for signed step records.
//!
//! Nothing here trusts what it reads: callers verify digests and signatures. A download is
//! streamed into a temporary file that the caller renames into place only once verified.

use super::transfers::{Counting, InFlight};
use crate::fsutil::{AtomicFile, Durability};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach a remote, and as whom.
pub enum Store {
    Http(Http),
    Dir(PathBuf),
}

/// Credentials for HTTP: `user:password` (basic) or a bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Basic(String),
    Bearer(String),
}

pub struct Http {
    base: String,
    agent: ureq::Agent,
    auth: Option<Auth>,
}

/// Why a remote operation failed, in words that name the URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{url}: {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
}

impl StoreError {
    /// 401 or 403: the server refused these credentials (or their absence).
    pub fn is_refused(&self) -> bool {
        matches!(self, StoreError::Status { status: 401 | 403, .. })
    }
}

impl Store {
    /// Opens `url` (`http://host/ns` or `file:///path`); `connect` bounds connecting and
    /// `io` each whole request.
    pub fn open(url: &str, auth: Option<Auth>, connect: Duration, io: Duration) -> Result<Store> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                bail!("{url}: a file remote needs an absolute path (file:///shared/maskflow-cache)");
            }
            return Ok(Store::Dir(PathBuf::from(path)));
        }
        if url.starts_with("https://") {
            bail!("{url}: this build speaks plain HTTP only; put the cache on the team's network or behind a TLS proxy");
        }
        if !url.starts_with("http://") {
            bail!("{url}: a remote is `http://host/namespace` or `file:///path`");
        }
        let config =
            ureq::Agent::config_builder().timeout_connect(Some(connect)).timeout_global(Some(io)).http_status_as_error(false).build();
        Ok(Store::Http(Http { base: url.trim_end_matches('/').to_string(), agent: ureq::Agent::new_with_config(config), auth }))
    }

    /// The URL of an entry, for messages.
    pub fn url(&self, rel: &str) -> String {
        match self {
            Store::Http(h) => format!("{}/v1/{rel}", h.base),
            Store::Dir(d) => format!("file://{}", d.join("v1").join(rel).display()),
        }
    }

    /// Whether the entry exists.
    pub fn exists(&self, rel: &str) -> Result<bool, StoreError> {
        match self {
            Store::Dir(d) => Ok(d.join("v1").join(rel).is_file()),
            Store::Http(h) => {
                let url = self.url(rel);
                let resp = h.with_auth(h.agent.head(&url)).call().map_err(|e| transport(&url, e))?;
                match resp.status().as_u16() {
                    200..=299 => Ok(true),
                    404 => Ok(false),
                    status => Err(StoreError::Status { url, status }),
                }
            }
        }
    }

    /// The entry's bytes, or `None` when it does not exist. For small entries (records).
    pub fn get_bytes(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        Ok(self.get_into(rel, &mut out)?.map(|_| out))
    }

    /// Streams the entry into `sink`; returns its length, or `None` when it does not exist.
    /// A body shorter than the server announced is an error.
    pub fn get_into(&self, rel: &str, sink: &mut dyn Write) -> Result<Option<u64>, StoreError> {
        let url = self.url(rel);
        let io = |e: std::io::Error| StoreError::Transport { url: url.clone(), message: e.to_string() };
        match self {
            Store::Dir(d) => match std::fs::File::open(d.join("v1").join(rel)) {
                Ok(mut f) => Ok(Some(std::io::copy(&mut f, sink).map_err(io)?)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io(e)),
            },
            Store::Http(h) => {
                let mut resp = h.with_auth(h.agent.get(&url)).call().map_err(|e| transport(&url, e))?;
                match resp.status().as_u16() {
                    200..=299 => {}
                    404 => return Ok(None),
                    status => return Err(StoreError::Status { url, status }),
                }
                let announced: Option<u64> =
                    resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
                let n = std::io::copy(&mut reader, sink).map_err(io)?;
                if let Some(len) = announced
                    && len != n
                {
                    return Err(StoreError::Transport { url, message: format!("truncated body: {n} of {len} bytes") });
                }
                Ok(Some(n))
            }
        }
    }

    /// Writes the entry from a file. On a directory store the file appears whole (written
    /// beside it and renamed), so concurrent writers and readers never see a partial entry.
    pub fn put_file(&self, rel: &str, src: &Path, transfer: &InFlight) -> Result<(), StoreError> {
        let url = self.url(rel);
        let io = |e: std::io::Error| StoreError::Transport { url: url.clone(), message: e.to_string() };
        let file = std::fs::File::open(src).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut body = Counting { inner: file, transfer };
        match self {
            Store::Dir(d) => {
                let dest = d.join("v1").join(rel);
                std::fs::create_dir_all(dest.parent().expect("entries live in folders")).map_err(io)?;
                let mut file = AtomicFile::create(&dest).map_err(io)?;
                std::io::copy(&mut body, &mut file).map_err(io)?;
                file.commit(Durability::Durable).map_err(io)
            }
            Store::Http(h) => {
                // The length is given, so the body is sent as it is read (counted) and not
                // chunked: not every WebDAV server takes a chunked PUT.
                let resp = h
                    .with_auth(h.agent.put(&url))
                    .header("Content-Length", size.to_string())
                    .send(ureq::SendBody::from_reader(&mut body))
                    .map_err(|e| transport(&url, e))?;
                match resp.status().as_u16() {
                    200..=299 => Ok(()),
                    status => Err(StoreError::Status { url, status }),
                }
            }
        }
    }

    /// The names of the entries in a folder of the layout (`ac` or `cas`). Over HTTP this reads
    /// the server's JSON directory index (nginx: `autoindex on; autoindex_format json;`).
    pub fn list(&self, folder: &str) -> Result<Vec<String>, StoreError> {
        let url = self.url(&format!("{folder}/"));
        let io = |e: std::io::Error| StoreError::Transport { url: url.clone(), message: e.to_string() };
        let mut names = match self {
            Store::Dir(d) => match std::fs::read_dir(d.join("v1").join(folder)) {
                Ok(entries) => entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io(e)),
            },
            Store::Http(_) => {
                let Some(bytes) = self.get_bytes(&format!("{folder}/"))? else { return Ok(Vec::new()) };
                #[derive(serde::Deserialize)]
                struct Entry {
                    name: String,
                    #[serde(rename = "type")]
                    kind: String,
                }
                let entries: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|e| StoreError::Transport {
                    url: url.clone(),
                    message: format!("not a JSON directory index ({e}); enable `autoindex on; autoindex_format json;`"),
                })?;
                entries.into_iter().filter(|e| e.kind == "file").map(|e| e.name).collect()
            }
        };
        names.sort();
        Ok(names)
    }

    /// Writes the entry from bytes in memory (records).
    pub fn put_bytes(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let url = self.url(rel);
        match self {
            Store::Dir(d) => {
                let dest = d.join("v1").join(rel);
                crate::fsutil::write_atomic(&dest, bytes).map_err(|e| StoreError::Transport { url, message: e.to_string() })
            }
            Store::Http(h) => {
                let resp = h.with_auth(h.agent.put(&url)).send(bytes).map_err(|e| transport(&url, e))?;
                match resp.status().as_u16() {
                    200..=299 => Ok(()),
                    status => Err(StoreError::Status { url, status }),
                }
            }
        }
    }
}

impl Http {
    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        use base64::Engine;
        match &self.auth {
            Some(Auth::Basic(user_password)) => {
                req.header("Authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_password)))
            }
            Some(Auth::Bearer(token)) => req.header("Authorization", format!("Bearer {token}")),
            None => req,
        }
    }
}

fn transport(url: &str, e: ureq::Error) -> StoreError {
    StoreError::Transport { url: url.to_string(), message: e.to_string() }
}

/// Downloads `rel` into a temporary file beside `dest`'s final place, hashing as it goes;
/// returns the file (uncommitted) and its digest, or `None` when the entry does not exist.
pub fn download(store: &Store, rel: &str, dest: &Path, transfer: &InFlight) -> Result<Option<(AtomicFile, crate::digest::Digest, u64)>> {
    struct Hashing<'a> {
        file: &'a mut AtomicFile,
        hasher: blake3::Hasher,
        transfer: &'a InFlight<'a>,
    }
    impl Write for Hashing<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.file.write(buf)?;
            self.hasher.update(&buf[..n]);
            self.transfer.advance(n as u64);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let mut file = AtomicFile::create(dest).with_context(|| format!("{}: cannot create", dest.display()))?;
    let mut sink = Hashing { file: &mut file, hasher: blake3::Hasher::new(), transfer };
    let Some(size) = store.get_into(rel, &mut sink)? else { return Ok(None) };
    let digest = crate::digest::Digest(*sink.hasher.finalize().as_bytes());
    Ok(Some((file, digest, size)))
}
