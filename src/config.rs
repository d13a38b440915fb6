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
//! ```toml
//! [executor]
//! kind = "slurm"             # or "local" (the default)
//! jobs = 4                   # steps at once (local; on Slurm, the limit of an array: --array=0-N%jobs)
//! partition = "gpu"          # the rest only for Slurm; each is left out of sbatch when unset
//! account = "lab"
//! qos = "normal"
//! time = "04:00:00"
//! gpus_per_step = 1          # for steps that train or run a model
//! cpus_per_step = 4
//! mem = "16G"
//! extra = ["--constraint=a100"]
//! grace = 60                 # seconds a finished job's record may take to appear (NFS lag)
//! ```
//!
//! | setting | flag | environment |
//! |---|---|---|
//! | `executor.kind` | `--executor local\|slurm` | `MASKFLOW_EXECUTOR` |
//! | `executor.jobs` | `--jobs N` | |
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
    #[serde(default)]
    executor: ExecutorSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutorSection {
    kind: Option<String>,
    jobs: Option<usize>,
    partition: Option<String>,
    account: Option<String>,
    qos: Option<String>,
    time: Option<String>,
    gpus_per_step: Option<u32>,
    cpus_per_step: Option<u32>,
    mem: Option<String>,
    #[serde(default)]
    extra: Vec<String>,
    grace: Option<f64>,
}

/// Where steps are computed.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorSettings {
    /// On this machine: `jobs` at once, model steps each on one of `gpus` (when given).
    Local {
        jobs: usize,
        gpus: Vec<String>,
    },
    Slurm(SlurmSettings),
}

/// `sbatch` options for each job, and how long a finished job's record may take to appear.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlurmSettings {
    /// The most tasks of one array running at once (`--array=0-N%jobs`); `None`: no limit.
    pub jobs: Option<usize>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub time: Option<String>,
    pub gpus_per_step: Option<u32>,
    pub cpus_per_step: Option<u32>,
    pub mem: Option<String>,
    pub extra: Vec<String>,
    pub grace: Duration,
}

/// What the command line says about the executor.
#[derive(Debug, Default, Clone)]
pub struct ExecutorFlags {
    pub kind: Option<String>,
    pub jobs: Option<usize>,
    pub gpus: Vec<String>,
}

fn read_file(root: &Path) -> Result<ConfigFile> {
    let path = root.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// Resolves the executor: the flags, then `MASKFLOW_EXECUTOR`, then `[executor]`, then
/// local with one job at a time.
pub fn executor_settings(root: &Path, flags: &ExecutorFlags, env: &dyn Fn(&str) -> Option<String>) -> Result<ExecutorSettings> {
    let file = read_file(root)?.executor;
    let kind = flags.kind.clone().or_else(|| env("MASKFLOW_EXECUTOR").filter(|v| !v.trim().is_empty())).or(file.kind);
    let jobs = flags.jobs.or(file.jobs);
    if jobs == Some(0) {
        bail!("jobs must be at least 1");
    }
    match kind.as_deref().unwrap_or("local") {
        "local" => Ok(ExecutorSettings::Local { jobs: jobs.unwrap_or(1), gpus: flags.gpus.clone() }),
        "slurm" => {
            if !flags.gpus.is_empty() {
                bail!("--gpus picks devices on this machine; on Slurm, set `gpus_per_step` in [executor]");
            }
            let grace = file.grace.unwrap_or(60.0);
            if !(grace >= 0.0 && grace.is_finite()) {
                bail!("executor.grace must be a number of seconds, found {grace}");
            }
            Ok(ExecutorSettings::Slurm(SlurmSettings {
                jobs,
                partition: file.partition,
                account: file.account,
                qos: file.qos,
                time: file.time,
                gpus_per_step: file.gpus_per_step,
                cpus_per_step: file.cpus_per_step,
                mem: file.mem,
                extra: file.extra,
                grace: Duration::from_secs_f64(grace),
            }))
        }
        other => bail!("unknown executor `{other}`: `local` or `slurm`"),
    }
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
    let file = read_file(root)?;
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

    #[test]
    fn the_executor_comes_from_flags_then_environment_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        let flags = ExecutorFlags::default();
        assert_eq!(executor_settings(dir.path(), &flags, &none).unwrap(), ExecutorSettings::Local { jobs: 1, gpus: vec![] });
        std::fs::write(
            dir.path().join(FILE_NAME),
            "[executor]\nkind = \"slurm\"\npartition = \"gpu\"\ngpus_per_step = 1\nextra = [\"--constraint=a100\"]\njobs = 2\n",
        )
        .unwrap();
        let ExecutorSettings::Slurm(s) = executor_settings(dir.path(), &flags, &none).unwrap() else { panic!("slurm expected") };
        assert_eq!((s.partition.as_deref(), s.gpus_per_step, s.jobs, s.grace), (Some("gpu"), Some(1), Some(2), Duration::from_secs(60)));
        assert_eq!(s.extra, ["--constraint=a100"]);
        let local = ExecutorFlags { kind: Some("local".into()), jobs: Some(3), gpus: vec!["0".into(), "1".into()] };
        assert_eq!(
            executor_settings(dir.path(), &local, &none).unwrap(),
            ExecutorSettings::Local { jobs: 3, gpus: vec!["0".into(), "1".into()] }
        );
        let env = |n: &str| (n == "MASKFLOW_EXECUTOR").then(|| "local".to_string());
        assert!(matches!(executor_settings(dir.path(), &flags, &env).unwrap(), ExecutorSettings::Local { jobs: 2, .. }));
        let bad = ExecutorFlags { kind: Some("pbs".into()), ..Default::default() };
        assert!(executor_settings(dir.path(), &bad, &none).unwrap_err().to_string().contains("unknown executor `pbs`"));
        std::fs::write(dir.path().join(FILE_NAME), "[executor]\npartitio = \"x\"\n").unwrap();
        assert!(executor_settings(dir.path(), &flags, &none).unwrap_err().to_string().contains("unknown field"));
    }

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
