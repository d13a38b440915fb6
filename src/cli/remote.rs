//! The remote-cache verbs: `push`, `pull`, `key generate`.

use super::args::PipelineArgs;
use super::pipeline::load_plan;
use super::transfer_bar::TransferBar;
use crate::cache::Cache;
use crate::remote::Remote;
use crate::remote::signing::SecretKey;
use crate::remote::sync::{self, Synced};
use anyhow::{Context, Result, bail};
use std::path::Path;

/// The remote, or what to do for one.
pub(super) fn need(remote: Option<&Remote>) -> Result<&Remote> {
    remote.context("no remote cache: set `[remote] url` in maskflow.toml, MASKFLOW_REMOTE, or --remote URL")
}

/// One line per step; exit 1 when any step failed.
fn report(lines: Vec<(String, Synced)>, verb: &str) -> i32 {
    let mut failed = 0;
    for (step, outcome) in lines {
        match outcome {
            Synced::Pushed(up) if up.record => {
                println!("pushed {step}: {} objects, {:.1} MB", up.objects, up.bytes as f64 / 1e6)
            }
            Synced::Pushed(_) => println!("up to date {step}"),
            Synced::Pulled { signer } => println!("pulled {step} (signed by {signer})"),
            Synced::Here => println!("have {step}"),
            Synced::Missing if verb == "push" => println!("skip {step}: not computed here"),
            Synced::Missing => println!("skip {step}: not on the remote"),
            Synced::Failed(why) => {
                failed += 1;
                eprintln!("error: {step}: {why}");
            }
        }
    }
    if failed > 0 { 1 } else { 0 }
}

pub(super) fn push(cache_dir: &Path, remote: Option<&Remote>, args: &PipelineArgs) -> Result<i32> {
    let remote = need(remote)?;
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    let pushed = {
        let _bar = TransferBar::watch(Some(remote));
        sync::push(&mut cache, &plan, remote)
    };
    Ok(report(pushed, "push"))
}

pub(super) fn pull(cache_dir: &Path, remote: Option<&Remote>, args: &PipelineArgs) -> Result<i32> {
    let remote = need(remote)?;
    let mut cache = Cache::open(cache_dir)?;
    let plan = load_plan(&mut cache, args)?;
    let pulled = {
        let _bar = TransferBar::watch(Some(remote));
        sync::pull(&mut cache, &plan, remote)?
    };
    Ok(report(pulled, "pull"))
}

/// `maskflow key generate NAME --out FILE`: the secret to FILE (mode 600, never replaced),
/// the public key alone on stdout.
pub(super) fn generate_key(name: &str, out: &Path) -> Result<i32> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if out.exists() {
        bail!("{}: already exists; a signing key is never overwritten", out.display());
    }
    let key = SecretKey::generate(name)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("{}: cannot create", out.display()))?;
    file.write_all(key.to_text().as_bytes()).and_then(|()| file.sync_all()).with_context(|| format!("{}: cannot write", out.display()))?;
    println!("{}", key.public().to_text());
    Ok(0)
}
