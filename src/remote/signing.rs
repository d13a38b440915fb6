//! ed25519 keys and what they sign, in Nix's binary-cache style: a key has a name
//! (`ci-1`), a public key is written `NAME:BASE64`, and the storage is never trusted, only the
//! keys listed in `trusted_keys`.
//!
//! What is signed is a fingerprint of the record:
//!
//! ```text
//! maskflow-record-1;<step key hex>;<output>=<digest hex>:<size>:<blob|tree>,…;record=<blake3 of the record's JSON text>
//! ```
//!
//! outputs in name order. So the signature covers the step key and every output's digest and
//! size by name, and everything else in the record (metrics, key object) through the digest
//! of the exact text stored: a reader hashes the bytes it received, never a re-serialisation
//! (JSON floats need not survive a parse and a print bit for bit).

use crate::cache::Record;
use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::path::Path;

/// A secret key with its name, as read from the file `MASKFLOW_SIGNING_KEY` names.
pub struct SecretKey {
    pub name: String,
    key: SigningKey,
}

/// A public key with its name: one entry of `trusted_keys`.
#[derive(Clone)]
pub struct PublicKey {
    pub name: String,
    key: VerifyingKey,
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(name: &str) -> Result<SecretKey> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut seed).context("the system's random source failed")?;
        Ok(SecretKey { name: name.to_string(), key: SigningKey::from_bytes(&seed) })
    }

    /// The file form: `NAME:BASE64(seed ‖ public key)`, as Nix writes secret keys.
    pub fn to_text(&self) -> String {
        let mut bytes = self.key.to_bytes().to_vec();
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}:{}\n", self.name, BASE64.encode(bytes))
    }

    pub fn read(path: &Path) -> Result<SecretKey> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the signing key", path.display()))?;
        let (name, bytes) = split_key(text.trim()).with_context(|| format!("{}: not a maskflow signing key", path.display()))?;
        let seed: [u8; 32] = match bytes.len() {
            64 | 32 => bytes[..32].try_into().expect("32 bytes"),
            n => bail!("{}: a signing key holds 64 bytes, this one {n}", path.display()),
        };
        let key = SigningKey::from_bytes(&seed);
        if bytes.len() == 64 && key.verifying_key().as_bytes() != &bytes[32..] {
            bail!("{}: the public half does not belong to the secret half", path.display());
        }
        Ok(SecretKey { name: name.to_string(), key })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// The base64 signature of the fingerprint of `record`, stored as `text`.
    pub fn sign(&self, record: &Record, text: &str) -> String {
        BASE64.encode(self.key.sign(fingerprint(record, text).as_bytes()).to_bytes())
    }
}

impl PublicKey {
    /// Parses `NAME:BASE64`.
    pub fn parse(text: &str) -> Result<PublicKey> {
        let (name, bytes) = split_key(text.trim()).with_context(|| format!("`{text}` is not a public key of the form NAME:BASE64"))?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| anyhow::anyhow!("`{text}`: a public key holds 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| anyhow::anyhow!("`{text}` is not an ed25519 public key"))?;
        Ok(PublicKey { name: name.to_string(), key })
    }

    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }

    /// Whether `signature` (base64) signs with this key the fingerprint of `record`, which
    /// was read from `text`.
    pub fn verifies(&self, record: &Record, text: &str, signature: &str) -> bool {
        let Ok(bytes) = BASE64.decode(signature) else { return false };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else { return false };
        self.key.verify_strict(fingerprint(record, text).as_bytes(), &Signature::from_bytes(&bytes)).is_ok()
    }
}

/// What a signature covers (see the module doc): `record` as parsed from `text`.
pub fn fingerprint(record: &Record, text: &str) -> String {
    let outputs: Vec<String> = record
        .outputs
        .iter()
        .map(|(name, o)| format!("{name}={}:{}:{}", o.digest.hex(), o.size, if o.tree { "tree" } else { "blob" }))
        .collect();
    format!("maskflow-record-1;{};{};record={}", record.key.hex(), outputs.join(","), crate::digest::Digest::of(text.as_bytes()).hex())
}

fn split_key(text: &str) -> Option<(&str, Vec<u8>)> {
    let (name, b64) = text.split_once(':')?;
    check_name(name).ok()?;
    Some((name, BASE64.decode(b64).ok()?))
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("`{name}` is not a key name: use letters, digits, `-`, `_` and `.` (for example `ci-1`)");
    }
    Ok(())
}

/// The trusted keys, by name.
#[derive(Clone, Default)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    pub fn parse(entries: &[String]) -> Result<TrustedKeys> {
        entries.iter().filter(|e| !e.trim().is_empty()).map(|e| PublicKey::parse(e)).collect::<Result<_>>().map(TrustedKeys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key named `name`, if trusted.
    pub fn get(&self, name: &str) -> Option<&PublicKey> {
        self.0.iter().find(|k| k.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Output, RECORD_FORMAT};
    use crate::digest::Digest;

    fn record() -> Record {
        let object = serde_json::json!({"kind": "split"});
        Record {
            format: RECORD_FORMAT,
            kind: "split".into(),
            key: crate::canonical::digest(&object),
            key_object: object.clone(),
            key_text: crate::canonical::json(&object),
            outputs: [("split.json".to_string(), Output { digest: Digest::of(b"x"), size: 1, tree: false })].into(),
            metrics: None,
            finished: String::new(),
            seconds: 0.0,
            maskflow_version: String::new(),
        }
    }

    #[test]
    fn a_signature_covers_the_outputs_and_round_trips_through_text() {
        let secret = SecretKey::generate("ci-1").unwrap();
        let public = PublicKey::parse(&secret.public().to_text()).unwrap();
        let mut r = record();
        let text = serde_json::to_string(&r).unwrap();
        let sig = secret.sign(&r, &text);
        assert!(public.verifies(&r, &text, &sig));
        assert!(!public.verifies(&r, &text.replace("split", "spl1t"), &sig));
        r.outputs.get_mut("split.json").unwrap().size = 2;
        assert!(!public.verifies(&r, &text, &sig));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), secret.to_text()).unwrap();
        let again = SecretKey::read(&dir.path().join("k")).unwrap();
        assert_eq!(again.public().to_text(), secret.public().to_text());
    }

    #[test]
    fn bad_key_text_is_an_error() {
        assert!(PublicKey::parse("ci-1").is_err());
        assert!(PublicKey::parse("ci 1:AAAA").is_err());
        assert!(PublicKey::parse("ci-1:AAAA").is_err());
    }
}
