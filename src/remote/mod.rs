//! The shared remote cache: every run reads it, only signed runs with trusted keys write it.
//! It is an accelerator: whatever goes wrong with it, the step is computed locally.
//!
//! | question | answer |
//! |---|---|
//! | what is stored | step records at `v1/ac/<key>`, each signed; objects, tree manifests and tree files at `v1/cas/<blake3>` |
//! | what is signed | the record's fingerprint ([`signing::fingerprint`]): step key, every output's digest and size, the metrics |
//! | who can write | whoever holds a secret key *and* the server's write credentials; readers accept a record only if its signer is in `trusted_keys` |
//! | when a record counts | signed by a trusted key, the signature verifies, its key text hashes to the step key, and every output exists on the remote |
//! | when bytes count | every downloaded byte is hashed; an object that does not hash to its name is a miss, never data |
//! | what is downloaded | only what a step that runs here needs, or what `saved/` shows (metrics, plots, submission): not weights or shards of steps that are hits |
//! | order of writes | objects first, the record last, so no record is visible before its outputs |
//! | a second record for a key | a reproducibility failure: both digests are reported, the first record stays, the run fails |
//!
//! Failures, and what follows:
//! - reading: unreachable server, timeout, 5xx, 401/403, truncated body, a record that does
//!   not count, an object that does not verify → one warning naming the URL; the step is
//!   computed locally;
//! - uploading: a 401/403 is an error (the user asked to upload); so is a conflicting record.

pub mod signing;
mod store;
pub mod sync;
pub mod transfers;

pub use store::{Auth, StoreError};

use crate::cache::manifest::Manifest;
use crate::cache::{Cache, Dir, Output, OutputState, Record};
use crate::config::RemoteSettings;
use crate::digest::Digest;
use crate::fsutil::Durability;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use signing::{SecretKey, TrustedKeys};
use std::path::PathBuf;
use store::Store;

/// A record as it lies on the remote: the cache's own record as the exact JSON text that was
/// signed, its signer and the signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedRecord {
    pub format: u32,
    pub record: String,
    pub signer: String,
    pub signature: String,
}

const SIGNED_FORMAT: u32 = 1;

impl SignedRecord {
    /// Signs `record` with `key`.
    pub fn new(record: &Record, key: &SecretKey) -> SignedRecord {
        let text = serde_json::to_string_pretty(record).expect("records serialise");
        let signature = key.sign(record, &text);
        SignedRecord { format: SIGNED_FORMAT, record: text, signer: key.name.clone(), signature }
    }

    /// The record inside.
    pub fn parse_record(&self) -> Result<Record> {
        serde_json::from_str(&self.record).context("the signed text is not a record")
    }
}

/// A record found on the remote that counts.
#[derive(Debug, Clone)]
pub struct RemoteHit {
    pub record: Record,
    pub signer: String,
}

/// What the remote says about a step key.
#[derive(Debug)]
pub enum Lookup {
    Hit(Box<RemoteHit>),
    /// No record: nobody has uploaded this step.
    Absent,
    /// A record, or the remote itself, that cannot be used; the words say why, naming the URL.
    Ignored(String),
    /// The remote failed earlier in this command and is not asked again (its warning was
    /// given once, with that failure).
    Down,
}

/// What an upload did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    pub objects: usize,
    pub bytes: u64,
    /// Whether the record itself was written (false: an identical one was there).
    pub record: bool,
}

pub struct Remote {
    store: Store,
    trusted: TrustedKeys,
    signer: Option<SecretKey>,
    pub upload: bool,
    /// Set by the first read that finds the server unreachable, timing out or failing: the
    /// rest of the command computes locally at once instead of waiting on it step by step.
    down: std::sync::atomic::AtomicBool,
    transfers: std::sync::Arc<transfers::Transfers>,
}

impl Remote {
    /// Opens the remote the settings name. Uploading needs a signing key.
    pub fn open(settings: &RemoteSettings) -> Result<Remote> {
        let store = Store::open(&settings.url, settings.auth.clone(), settings.connect_timeout, settings.timeout)?;
        let trusted = TrustedKeys::parse(&settings.trusted_keys).context("trusted_keys")?;
        let signer = match (&settings.signing_key, settings.upload) {
            (Some(path), _) => Some(SecretKey::read(path)?),
            (None, true) => {
                bail!("uploading to the remote needs a signing key: MASKFLOW_SIGNING_KEY=FILE (make one with `maskflow key generate`)")
            }
            (None, false) => None,
        };
        Ok(Remote { store, trusted, signer, upload: settings.upload, down: Default::default(), transfers: Default::default() })
    }

    /// The transfer counters, for a progress display that watches them from another thread.
    pub fn transfers(&self) -> std::sync::Arc<transfers::Transfers> {
        self.transfers.clone()
    }

    fn record_rel(key: &Digest) -> String {
        format!("ac/{}", key.hex())
    }

    fn object_rel(digest: &Digest) -> String {
        format!("cas/{}", digest.hex())
    }

    /// Looks a step up. Never fails: a remote that cannot answer is [`Lookup::Ignored`] the
    /// first time and [`Lookup::Down`] after that.
    pub fn lookup(&self, key: &Digest) -> Lookup {
        use std::sync::atomic::Ordering;
        if self.down.load(Ordering::Relaxed) {
            return Lookup::Down;
        }
        let rel = Self::record_rel(key);
        let url = self.store.url(&rel);
        let bytes = match self.store.get_bytes(&rel) {
            Ok(Some(b)) => b,
            Ok(None) => return Lookup::Absent,
            Err(e) => {
                self.down.store(true, Ordering::Relaxed);
                return Lookup::Ignored(format!("remote unavailable: {e}; not asked again in this run"));
            }
        };
        match self.check(key, &bytes) {
            Ok(hit) => Lookup::Hit(Box::new(hit)),
            Err(why) => Lookup::Ignored(format!("remote record ignored: {url}: {why}")),
        }
    }

    /// The record of `key` on the remote when it counts; `None` for anything else (reports
    /// that list results use this: what does not count is simply not listed).
    pub fn record(&self, key: &Digest) -> Option<Record> {
        match self.lookup(key) {
            Lookup::Hit(hit) => Some(hit.record),
            Lookup::Absent | Lookup::Ignored(_) | Lookup::Down => None,
        }
    }

    /// Whether `bytes` are a record of `key` that counts (see the module doc).
    fn check(&self, key: &Digest, bytes: &[u8]) -> Result<RemoteHit, String> {
        let signed: SignedRecord = serde_json::from_slice(bytes).map_err(|e| format!("not a signed record ({e})"))?;
        let record = signed.parse_record().map_err(|e| format!("{e:#}"))?;
        if signed.signature.is_empty() || signed.signer.is_empty() {
            return Err("unsigned".into());
        }
        if record.key != *key || Digest::of(record.key_text.as_bytes()) != *key {
            return Err("its key object does not hash to the step key".into());
        }
        let Some(public) = self.trusted.get(&signed.signer) else {
            return Err(format!("signed by `{}`, which is not in trusted_keys", signed.signer));
        };
        if !public.verifies(&record, &signed.record, &signed.signature) {
            return Err(format!("the signature of `{}` does not match the record (changed after signing?)", signed.signer));
        }
        for (name, out) in &record.outputs {
            match self.store.exists(&Self::object_rel(&out.digest)) {
                Ok(true) => {}
                Ok(false) => return Err(format!("output `{name}` ({}) is missing on the remote", out.digest.short())),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(RemoteHit { record, signer: signed.signer })
    }

    /// `maskflow cache verify --remote`: every record's signature (and the rest of what makes
    /// it count) and every object's digest, re-read from the remote. One line per problem.
    pub fn verify_all(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for name in self.store.list("ac")? {
            let rel = format!("ac/{name}");
            let url = self.store.url(&rel);
            let Some(key) = Digest::from_hex(&name) else {
                problems.push(format!("stray entry: {url}"));
                continue;
            };
            match self.store.get_bytes(&rel) {
                Ok(Some(bytes)) => {
                    if let Err(why) = self.check(&key, &bytes) {
                        problems.push(format!("bad record: {url}: {why}"));
                    }
                }
                Ok(None) => {}
                Err(e) => problems.push(format!("unreadable record: {e}")),
            }
        }
        let objects = self.store.list("cas")?;
        let found = std::sync::Mutex::new(Vec::new());
        in_parallel(&objects, |name| {
            let rel = format!("cas/{name}");
            let problem = match Digest::from_hex(name) {
                None => Some(format!("stray entry: {}", self.store.url(&rel))),
                Some(digest) => {
                    let mut hasher = HashingSink(blake3::Hasher::new());
                    match self.store.get_into(&rel, &mut hasher) {
                        Ok(_) if Digest(*hasher.0.finalize().as_bytes()) == digest => None,
                        Ok(_) => Some(format!(
                            "corrupt object: {} (content hashes to {})",
                            self.store.url(&rel),
                            Digest(*hasher.0.finalize().as_bytes()).short()
                        )),
                        Err(e) => Some(format!("unreadable object: {e}")),
                    }
                }
            };
            found.lock().unwrap_or_else(|e| e.into_inner()).extend(problem);
            Ok(())
        })?;
        problems.extend(found.into_inner().unwrap_or_else(|e| e.into_inner()));
        problems.sort();
        Ok(problems)
    }

    /// Puts one output of a remote record into the local cache, verifying every byte.
    pub fn fetch(&self, cache: &mut Cache, out: &Output) -> Result<()> {
        if cache.check_output(out) == OutputState::Ok {
            return Ok(());
        }
        // A private name in `tmp/`: another process may be fetching the same object.
        let private = crate::fsutil::temp_path_for(&cache.dir(Dir::Tmp).join(format!("remote-{}", out.digest.short())));
        let object = self.fetch_object(&private, &out.digest, out.size)?;
        if !out.tree {
            cache.put_file(&object)?;
            return Ok(());
        }
        // A tree: its manifest names every file by digest; fetch them (several at once) into a
        // private folder, then move the folder into `trees/`, which re-derives the manifest.
        let text = std::fs::read_to_string(&object).with_context(|| format!("{}: cannot read", object.display()))?;
        let manifest = Manifest::from_text(&text)
            .with_context(|| format!("{}: not a tree manifest", self.store.url(&Self::object_rel(&out.digest))))?;
        let dir = cache.temp_dir("remote-tree")?;
        in_parallel(&manifest.files, |f| {
            let dest = dir.join(&f.path);
            std::fs::create_dir_all(dest.parent().expect("tree files live in the tree"))?;
            self.fetch_object(&dest, &f.digest, f.size).map(|_| ())
        })?;
        let tree = cache.put_tree(&dir)?;
        if tree.digest != out.digest {
            bail!("{}: the fetched tree does not match its manifest", self.store.url(&Self::object_rel(&out.digest)));
        }
        cache.put_file(&object)?;
        Ok(())
    }

    /// Downloads one object to `dest`, verified against its digest before it appears there
    /// (until then it is a temporary file beside it, removed on any failure).
    fn fetch_object(&self, dest: &std::path::Path, digest: &Digest, size: u64) -> Result<PathBuf> {
        let rel = Self::object_rel(digest);
        let url = self.store.url(&rel);
        let transfer = self.transfers.start(size, false);
        let Some((file, actual, _size)) = store::download(&self.store, &rel, dest, &transfer)? else {
            bail!("{url}: missing on the remote");
        };
        if actual != *digest {
            // Dropped uncommitted: the bytes are removed, never used.
            bail!("{url}: content hashes to {}, not to its name", actual.short());
        }
        file.commit(Durability::VerifiedOnRead).with_context(|| format!("{}: cannot write", dest.display()))?;
        Ok(dest.to_path_buf())
    }

    /// Uploads a local record: its objects (and tree files) first, skipping those the remote
    /// has, then the signed record. A different record already there for the key is a
    /// reproducibility failure, reported with both sets of digests.
    pub fn upload(&self, cache: &mut Cache, record: &Record) -> Result<Uploaded> {
        let signer = self.signer.as_ref().ok_or_else(|| anyhow!("uploading needs a signing key (MASKFLOW_SIGNING_KEY)"))?;
        let rel = Self::record_rel(&record.key);
        let mut done = Uploaded::default();
        if let Some(bytes) = self.store.get_bytes(&rel).map_err(refused_is_error)? {
            return match serde_json::from_slice::<SignedRecord>(&bytes).map_err(anyhow::Error::from).and_then(|s| s.parse_record()) {
                Ok(theirs) if theirs.outputs == record.outputs => Ok(done),
                Ok(theirs) => Err(anyhow!(
                    "reproducibility failure: {} already holds a {} record for key {} with other outputs; kept it\n{}",
                    self.store.url(&rel),
                    record.kind,
                    record.key.short(),
                    conflict_lines(&theirs, record)
                )),
                Err(_) => Err(anyhow!("{}: an entry that is not a signed record is in the way; kept it", self.store.url(&rel))),
            };
        }
        let sent = std::sync::Mutex::new(Uploaded::default());
        in_parallel(&self.local_objects(cache, record)?, |(path, digest)| {
            let object_rel = Self::object_rel(digest);
            if self.store.exists(&object_rel).map_err(refused_is_error)? {
                return Ok(());
            }
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            self.store.put_file(&object_rel, path, &self.transfers.start(size, true)).map_err(refused_is_error)?;
            let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
            sent.objects += 1;
            sent.bytes += size;
            Ok(())
        })?;
        done = sent.into_inner().unwrap_or_else(|e| e.into_inner());
        let signed = SignedRecord::new(record, signer);
        self.store.put_bytes(&rel, &serde_json::to_vec_pretty(&signed)?).map_err(refused_is_error)?;
        done.record = true;
        Ok(done)
    }

    /// Every local file an upload of `record` sends, with its digest: each output's object
    /// and, for a tree, each of its files.
    fn local_objects(&self, cache: &mut Cache, record: &Record) -> Result<Vec<(PathBuf, Digest)>> {
        let mut files = Vec::new();
        for out in record.outputs.values() {
            if out.tree {
                let dir = cache.tree_dir(out)?;
                let manifest = Manifest::from_text(&String::from_utf8_lossy(&cache.read_blob(&out.digest)?))
                    .with_context(|| format!("{}: unreadable manifest", cache.object_path(&out.digest).display()))?;
                files.extend(manifest.files.iter().map(|f| (dir.join(&f.path), f.digest)));
            }
            files.push((cache.object_path(&out.digest), out.digest));
        }
        Ok(files)
    }
}

/// A sink that only hashes what it is given.
struct HashingSink(blake3::Hasher);

impl std::io::Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The most transfers a remote operation has in flight: a push of 1,000 shard parts is not
/// 1,000 round trips in series, and the server is not flooded.
pub const MAX_TRANSFERS: usize = 8;

/// Runs `f` on every item, [`MAX_TRANSFERS`] at a time; the first error wins (the others
/// finish what they started).
fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..MAX_TRANSFERS.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = f(item) {
                        failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                        next.store(items.len(), std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Upload errors keep their words; a refusal adds what to do about it.
fn refused_is_error(e: StoreError) -> anyhow::Error {
    if e.is_refused() {
        anyhow!(
            "{e}: the server refused to store; uploading needs write credentials (MASKFLOW_REMOTE_AUTH=user:password or MASKFLOW_REMOTE_TOKEN)"
        )
    } else {
        anyhow!("{e}")
    }
}

/// `output: remote DIGEST, local DIGEST` for each output that differs.
fn conflict_lines(theirs: &Record, ours: &Record) -> String {
    let names: std::collections::BTreeSet<&String> = theirs.outputs.keys().chain(ours.outputs.keys()).collect();
    names
        .into_iter()
        .filter(|n| theirs.outputs.get(*n).map(|o| o.digest) != ours.outputs.get(*n).map(|o| o.digest))
        .map(|n| {
            let show = |r: &Record| r.outputs.get(n).map_or_else(|| "(none)".to_string(), |o| o.digest.hex());
            format!("  {n}: remote {}, local {}", show(theirs), show(ours))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
