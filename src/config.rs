//! `maskflow.toml`: how this checkout works, as opposed to what the pipelines compute. Nothing
//! here enters a step key: where results are shared is not what they are.
//!
//! ```toml
//! [remote]
//! url = "http://cache.lab:8080/maskflow"   # or "file:///shared/maskflow-cache"
//! trusted_keys = ["ci-1:BASE64…"]
//! upload = false
//! connect_timeout = 5                      # seconds
//! timeout = 600                            # seconds, one whole transfer
//! ```
//!
//! Every setting has an environment override, so CI and scripts need no file, and the CLI's
//! flags override both:
//!
//! | setting | flag | environment |
//! |---|---|---|
//! | `remote.url` | `--remote URL`, `--no-remote` | `MASKFLOW_REMOTE` |
//! | `remote.trusted_keys` | | `MASKFLOW_TRUSTED_KEYS` (comma-separated `NAME:BASE64`) |
//! | `remote.upload` | `--remote-upload` | `MASKFLOW_REMOTE_UPLOAD=1` |
//! | `remote.connect_timeout` | | `MASKFLOW_REMOTE_CONNECT_TIMEOUT` |
//! | `remote.timeout` | | `MASKFLOW_REMOTE_TIMEOUT` |
//!
//! Secrets never live in the file: credentials come from `MASKFLOW_REMOTE_AUTH=user:password`
//! (HTTP basic) or `MASKFLOW_REMOTE_TOKEN` (bearer), and the signing key from the file that
//! `MASKFLOW_SIGNING_KEY` names.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file's name, looked for in the project root (the current directory).
pub const FILE_NAME: &str = "maskflow.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    remote: RemoteSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteSection {
    url: Option<String>,
    #[serde(default)]
    trusted_keys: Vec<String>,
    #[serde(default)]
    upload: bool,
    connect_timeout: Option<f64>,
    timeout: Option<f64>,
}

/// What the command line says about the remote.
#[derive(Debug, Default, Clone)]
pub struct RemoteFlags {
    pub url: Option<String>,
    pub disabled: bool,
    pub upload: bool,
}

/// The remote settings after the file, the environment and the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSettings {
    pub url: String,
    pub trusted_keys: Vec<String>,
    pub upload: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub auth: Option<crate::remote::Auth>,
    pub signing_key: Option<PathBuf>,
}

/// Resolves the remote settings: `None` when no remote is configured or `--no-remote` is
/// given. `env` reads an environment variable (a parameter, so tests need not set any).
pub fn remote_settings(root: &Path, flags: &RemoteFlags, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<RemoteSettings>> {
    let path = root.join(FILE_NAME);
    let file: ConfigFile = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if flags.disabled {
        return Ok(None);
    }
    let Some(url) = flags.url.clone().or_else(|| env("MASKFLOW_REMOTE")).or(file.remote.url) else { return Ok(None) };
    let trusted_keys = match env("MASKFLOW_TRUSTED_KEYS") {
        Some(list) => list.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect(),
        None => file.remote.trusted_keys,
    };
    let upload = flags.upload || env("MASKFLOW_REMOTE_UPLOAD").is_some_and(|v| v != "0") || file.remote.upload;
    let seconds = |name: &str, from_file: Option<f64>, default: f64| -> Result<Duration> {
        let value = match env(name) {
            Some(v) => v.trim().parse::<f64>().with_context(|| format!("{name}=`{v}` is not a number of seconds"))?,
            None => from_file.unwrap_or(default),
        };
        if !(value > 0.0 && value.is_finite()) {
            bail!("{name}: a timeout must be a positive number of seconds, found {value}");
        }
        Ok(Duration::from_secs_f64(value))
    };
    let connect_timeout = seconds("MASKFLOW_REMOTE_CONNECT_TIMEOUT", file.remote.connect_timeout, 5.0)?;
    let timeout = seconds("MASKFLOW_REMOTE_TIMEOUT", file.remote.timeout, 600.0)?;
    let auth = match (env("MASKFLOW_REMOTE_AUTH"), env("MASKFLOW_REMOTE_TOKEN")) {
        (Some(_), Some(_)) => bail!("set MASKFLOW_REMOTE_AUTH or MASKFLOW_REMOTE_TOKEN, not both"),
        (Some(basic), None) if !basic.contains(':') => bail!("MASKFLOW_REMOTE_AUTH must be `user:password`"),
        (Some(basic), None) => Some(crate::remote::Auth::Basic(basic)),
        (None, Some(token)) => Some(crate::remote::Auth::Bearer(token)),
        (None, None) => None,
    };
    let signing_key = env("MASKFLOW_SIGNING_KEY").map(PathBuf::from);
    Ok(Some(RemoteSettings { url, trusted_keys, upload, connect_timeout, timeout, auth, signing_key }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(file: Option<&str>, flags: RemoteFlags, env: &[(&str, &str)]) -> Result<Option<RemoteSettings>> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        }
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        remote_settings(dir.path(), &flags, &|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let file = "[remote]\nurl = \"http://file/ns\"\ntrusted_keys = [\"a:AAAA\"]\nconnect_timeout = 2\n";
        let s = settings(Some(file), RemoteFlags::default(), &[]).unwrap().unwrap();
        assert_eq!(
            (s.url.as_str(), s.trusted_keys.as_slice(), s.connect_timeout),
            ("http://file/ns", &["a:AAAA".to_string()][..], Duration::from_secs(2))
        );
        let s =
            settings(Some(file), RemoteFlags::default(), &[("MASKFLOW_REMOTE", "http://env/ns"), ("MASKFLOW_TRUSTED_KEYS", "b:BB, c:CC")])
                .unwrap()
                .unwrap();
        assert_eq!((s.url.as_str(), s.trusted_keys.len()), ("http://env/ns", 2));
        let flags = RemoteFlags { url: Some("file:///x".into()), upload: true, ..Default::default() };
        let s = settings(Some(file), flags, &[("MASKFLOW_REMOTE", "http://env/ns")]).unwrap().unwrap();
        assert_eq!((s.url.as_str(), s.upload), ("file:///x", true));
        let off = RemoteFlags { disabled: true, ..Default::default() };
        assert!(settings(Some(file), off, &[("MASKFLOW_REMOTE", "http://env/ns")]).unwrap().is_none());
        assert!(settings(None, RemoteFlags::default(), &[]).unwrap().is_none());
    }

    #[test]
    fn a_bad_file_or_value_names_itself() {
        let err = settings(Some("[remote]\nurl = 3\n"), RemoteFlags::default(), &[]).unwrap_err().to_string();
        assert!(err.contains(FILE_NAME), "{err}");
        let err = settings(Some("[remote]\nurll = \"x\"\n"), RemoteFlags::default(), &[]).unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
        let err = settings(None, RemoteFlags::default(), &[("MASKFLOW_REMOTE", "http://x"), ("MASKFLOW_REMOTE_AUTH", "nopassword")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("user:password"), "{err}");
    }
}
