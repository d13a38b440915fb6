//! The command line's shape (clap): every verb, flag and default, and nothing else.

use crate::data::labels::NUM_CLASSES;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "maskflow",
    version,
    about = "Declarative, cached pipelines for image-classification experiments",
    after_help = "Example:\n  maskflow init && maskflow synth --out data/mask --persons 200 --eval-persons 20 --size 96x128\n  maskflow run pipelines/starter.mf"
)]
pub struct Cli {
    /// Cache directory (content-addressed step outputs).
    #[arg(long, global = true, env = "MASKFLOW_CACHE", default_value = "cache")]
    pub cache: PathBuf,
    /// Where human-facing results go (`saved/<pipeline>/<run-id>/`).
    #[arg(long, global = true, env = "MASKFLOW_SAVED", default_value = "saved")]
    pub saved: PathBuf,
    /// The shared remote cache (`http://host/ns` or `file:///path`); overrides `maskflow.toml`
    /// and MASKFLOW_REMOTE. Without a URL: the configured one (`cache verify --remote`).
    #[arg(long, global = true, value_name = "URL", num_args = 0..=1, value_parser = parse_remote_url)]
    pub remote: Option<Option<String>>,
    /// Use no remote cache, whatever `maskflow.toml` or MASKFLOW_REMOTE say.
    #[arg(long, global = true, conflicts_with = "remote")]
    pub no_remote: bool,
    /// Upload what this run computes, signed with the key in MASKFLOW_SIGNING_KEY.
    #[arg(long, global = true)]
    pub remote_upload: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// The pipeline file (`.mf`).
    pub file: PathBuf,
    /// Override a field of the pipeline, e.g. `--set split.seed=7` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
}

/// Where and how many steps run at once (`run`).
#[derive(Args, Debug, Clone, Default)]
pub struct ExecArgs {
    /// Compute up to N independent steps at once, each in its own process with its share of
    /// the cores (default: `[executor] jobs` in maskflow.toml, else 1). On Slurm: the most
    /// tasks of one job array running at once.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// GPU ids for steps that train or run a model, one step per GPU at a time: the step runs
    /// with CUDA_VISIBLE_DEVICES=<id> (burn's CUDA device 0 is then that GPU).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub gpus: Vec<String>,
    /// After a failure, go on with every step that does not depend on it.
    #[arg(long, short = 'k')]
    pub keep_going: bool,
    /// Where steps are computed: `local` (default) or `slurm` (sbatch; see "Running on a
    /// cluster" in the README). Overrides MASKFLOW_EXECUTOR and `[executor] kind`.
    #[arg(long, value_name = "KIND", value_parser = ["local", "slurm"])]
    pub executor: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a project: a commented starter pipeline (pipelines/starter.mf), maskflow.toml,
    /// and .gitignore lines for cache/ and saved/. Existing files are left as they are.
    #[command(after_help = "Example:\n  maskflow init && maskflow synth --out data/mask --persons 200 --eval-persons 20 --size 96x128")]
    Init {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print a shell completion script on stdout.
    #[command(after_help = "Example:\n  maskflow completions bash > ~/.local/share/bash-completion/completions/maskflow")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Run the pipeline's steps in dependency order, skipping those already cached.
    #[command(after_help = "Example:\n  maskflow run pipelines/quickstart.mf --set train.epochs=3 --jobs 2")]
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Rerun this step even if it is cached (a step name or kind; repeatable).
        #[arg(long, value_name = "STEP")]
        force: Vec<String>,
        /// Stop after this step (and run only what it needs).
        #[arg(long, value_name = "STEP")]
        until: Option<String>,
        /// Print a JSON report instead of step lines.
        #[arg(long)]
        json: bool,
        /// Fail if the plan no longer matches `FILE.lock` (for CI); the lock is not rewritten.
        #[arg(long)]
        locked: bool,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Which of the changes between two pipelines made the difference: runs A and B with
    /// each change added to A and left out of B (or every subset, --full), then reports each
    /// change's effect on macro-F1 with a paired bootstrap interval.
    #[command(after_help = "Example:\n  maskflow ablate pipelines/b0_base.mf pipelines/b4_focal.mf --plan")]
    Ablate {
        /// The old pipeline (or, alone, the working file to compare with git).
        a: PathBuf,
        /// The new pipeline.
        b: Option<PathBuf>,
        /// With one file: the git revision of A (default HEAD).
        #[arg(long)]
        rev: Option<String>,
        /// Run every subset of the changes (2^k arms, k ≤ 6) and report interactions.
        #[arg(long)]
        full: bool,
        /// Repeat every arm with N training seeds (B's seed, +1, …); effects pool them.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
        seeds: u32,
        /// Merge the changes under these paths into one (`--group loss,train.optimizer`; repeatable).
        #[arg(long, value_name = "PATH,PATH")]
        group: Vec<String>,
        /// Print the arms, the steps each must run and an estimate of the training time; run nothing.
        #[arg(long)]
        plan: bool,
        /// Run even when more than 16 trainings are to run.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
        /// Also write the report's HTML page (intervals drawn against zero) here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Where each step stands: cached, or its job of the latest Slurm run queued (job id),
    /// running (node, elapsed) or failed (log).
    #[command(after_help = "Example:\n  maskflow status pipelines/b4_focal.mf")]
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Compute one step of a pipeline (its dependencies must be in the cache or on the
    /// remote): what a job of `run --jobs N` or `--executor slurm` runs.
    #[command(hide = true)]
    Step {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// The step's full name, as `plan` prints it.
        step: String,
        /// Write the step's report (JSON) here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Compare two pipeline versions (or a file with its git HEAD / --rev): changed parameters,
    /// rerun and shared steps, and metrics side by side when both have results (then also a
    /// comparison page in saved/diff/).
    #[command(after_help = "Example:\n  maskflow diff pipelines/starter.mf pipelines/starter_lr.mf")]
    Diff {
        /// The old version (or, alone, the working file to compare with git).
        old: PathBuf,
        /// The new version.
        new: Option<PathBuf>,
        /// With one file: the git revision to compare against (default HEAD).
        #[arg(long)]
        rev: Option<String>,
        /// Also list the unchanged parameters of each step.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Also write the comparison page here (it always goes to saved/diff/ when both
        /// versions have results): curves, per-class F1, the bootstrap interval, confusion B − A.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// List every evaluated variant found in the cache (or, with a remote, signed there),
    /// sorted by macro-F1.
    #[command(after_help = "Example:\n  maskflow runs pipelines/quickstart.mf --csv")]
    Runs {
        /// Pipelines to look at (default: every `.mf` under `pipelines/`).
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Write `saved/index.html` (the runs table and the latest plots) instead of printing.
        #[arg(long, conflicts_with_all = ["json", "csv"])]
        html: bool,
    },
    /// Re-execute cached steps ignoring the cache and compare outputs bit for bit.
    #[command(after_help = "Example:\n  maskflow verify pipelines/quickstart.mf --steps split,prepare")]
    Verify {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Steps to verify (names or kinds, comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        steps: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show every step with hit or miss and why, without running anything or writing to the
    /// cache (pretrained weights named from the hub are downloaded: their digest is in the key).
    #[command(after_help = "Example:\n  maskflow plan pipelines/quickstart.mf --set split.seed=7")]
    Plan {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        json: bool,
    },
    /// Check pipelines for errors without running them.
    #[command(after_help = "Example:\n  maskflow check pipelines/*.mf")]
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
    },
    /// Print pipelines in canonical form (or, with --check, fail if they are not).
    #[command(after_help = "Example:\n  maskflow fmt --write pipelines/*.mf")]
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Exit non-zero if a file is not in canonical form; change nothing.
        #[arg(long)]
        check: bool,
        /// Rewrite the files in place.
        #[arg(long, conflicts_with = "check")]
        write: bool,
    },
    /// Print what one step's cache key is computed from: its inputs in the pipeline's spelling
    /// (`loss.gamma = 2.0`), then the key object.
    #[command(after_help = "Example:\n  maskflow explain pipelines/quickstart.mf train")]
    Explain {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// The step name, as `maskflow plan` shows it.
        step: String,
    },
    /// Remove cache entries that no pipeline references.
    #[command(after_help = "Example:\n  maskflow gc --dry-run")]
    Gc {
        /// Pipelines whose steps to keep (default: every `.mf` under `pipelines/`).
        files: Vec<PathBuf>,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cache maintenance.
    #[command(after_help = "Example:\n  maskflow cache verify")]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Upload what the pipeline's steps computed here to the remote cache, signed (for CI,
    /// after `maskflow verify`).
    #[command(after_help = "Example:\n  maskflow push pipelines/quickstart.mf --remote http://cache.lab:8080/maskflow")]
    Push {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Fetch everything the pipeline's steps produced from the remote cache, for offline work.
    #[command(after_help = "Example:\n  maskflow pull pipelines/quickstart.mf")]
    Pull {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Signing keys for the remote cache.
    #[command(after_help = "Example:\n  maskflow key generate ci-1 --out ci-1.key")]
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Write a synthetic dataset in the competition layout (train/ and eval/).
    #[command(after_help = "Example:\n  maskflow synth --out data/mask --persons 200 --eval-persons 20 --size 96x128")]
    Synth {
        /// Persons in train/ (7 photos each).
        #[arg(long, default_value_t = 2700)]
        persons: usize,
        /// Persons in eval/ (7 photos each).
        #[arg(long, default_value_t = 1800)]
        eval_persons: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Image size, width x height.
        #[arg(long, default_value = "384x512", value_parser = parse_size)]
        size: (u32, u32),
        /// Output directory (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Model tools: parameter counts, timm weight checks.
    #[command(after_help = "Example:\n  maskflow model info efficientnet_b4")]
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Score a submission (ImageID,ans) against known labels (ImageID,class), e.g. the
    /// synthetic eval set's eval/labels.csv.
    #[command(after_help = "Example:\n  maskflow score saved/quickstart/latest/submission.csv --labels data/mask/eval/labels.csv")]
    Score {
        submission: PathBuf,
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Dataset tools.
    #[command(after_help = "Example:\n  maskflow data stats data/mask")]
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Print an architecture's parameter count (timm's counting: BatchNorm statistics excluded).
    #[command(after_help = "Example:\n  maskflow model info efficientnet_b4 --classes 18 --json")]
    Info {
        /// `tiny_cnn`, `efficientnet_nano` or `efficientnet_b0` … `efficientnet_b7`.
        name: String,
        #[arg(long, default_value_t = NUM_CLASSES)]
        classes: usize,
        #[arg(long)]
        json: bool,
    },
    /// Load timm-named weights, run IO["input"] in eval mode and compare with IO["logits"].
    #[command(
        after_help = "Example:\n  maskflow model check-weights --model efficientnet_b0 --weights tests/fixtures/timm/efficientnet_b0_18.safetensors --io tests/fixtures/timm/efficientnet_b0_18_io.safetensors"
    )]
    CheckWeights {
        #[arg(long)]
        model: String,
        #[arg(long, default_value_t = NUM_CLASSES)]
        classes: usize,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        io: PathBuf,
        #[arg(long, default_value_t = 1e-4)]
        tol: f64,
        /// The backend to run on: `cpu`, or `cuda`/`wgpu` in a build with that feature.
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// Measure training and inference throughput (random images, AdamW) on a backend.
    #[command(after_help = "Example:\n  maskflow model bench --model efficientnet_b4 --size 380x380 --batch 16 --backend cuda --json")]
    Bench {
        #[arg(long, default_value = "efficientnet_b0")]
        model: String,
        /// `HxW`, the input size.
        #[arg(long, default_value = "224x224")]
        size: String,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed steps after the warm-up step.
        #[arg(long, default_value_t = 3)]
        steps: usize,
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// The device's float type: f32, f16 or bf16 (the last two on a GPU backend that has them).
        #[arg(long, default_value = "f32", value_parser = parse_precision)]
        precision: crate::train::Precision,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Print the class, gender and age distribution of a dataset and write a chart of it (SVG).
    #[command(after_help = "Example:\n  maskflow data stats data/mask --svg stats.svg")]
    Stats {
        /// A dataset root (holding train/) or a train directory (holding train.csv).
        dir: PathBuf,
        /// Age bin lower bounds.
        #[arg(long, default_value = "30,60", value_parser = parse_bins)]
        age_bins: [u32; 2],
        /// Where to write the chart, an SVG (default: stats.svg in the current directory).
        #[arg(long, default_value = "stats.svg")]
        svg: PathBuf,
    },
}

/// A remote's URL; anything else (a pipeline path after a bare `--remote`) is refused here.
fn parse_remote_url(s: &str) -> Result<String, String> {
    if s.contains("://") { Ok(s.to_string()) } else { Err(format!("`{s}` is not a URL (`http://host/ns` or `file:///path`)")) }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("`{s}` is not a size like 384x512"))?;
    let w = w.parse().map_err(|_| format!("`{s}` is not a size like 384x512"))?;
    let h = h.parse().map_err(|_| format!("`{s}` is not a size like 384x512"))?;
    Ok((w, h))
}

fn parse_bins(s: &str) -> Result<[u32; 2], String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [a, b] => {
            let a: u32 = a.trim().parse().map_err(|_| format!("`{s}`: expected two ages like 30,60"))?;
            let b: u32 = b.trim().parse().map_err(|_| format!("`{s}`: expected two ages like 30,60"))?;
            if a < b { Ok([a, b]) } else { Err(format!("`{s}`: the first bound must be below the second")) }
        }
        _ => Err(format!("`{s}`: expected two ages like 30,60")),
    }
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Re-hash every object, tree and record; exit non-zero on any mismatch. With `--remote`:
    /// the remote cache's every record (signature, key, outputs) and every object's digest.
    #[command(after_help = "Example:\n  maskflow cache verify --remote")]
    Verify,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a new ed25519 key pair: the secret to FILE (mode 600), the public key on stdout
    /// as `NAME:BASE64`, the form `trusted_keys` takes.
    #[command(after_help = "Example:\n  maskflow key generate ci-1 --out ci-1.key")]
    Generate {
        /// The key's name, e.g. `ci-1` (a number allows rotation).
        name: String,
        /// Where to write the secret key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `--precision`: one of [`crate::train::Precision::ALL`] by name.
fn parse_precision(s: &str) -> Result<crate::train::Precision, String> {
    crate::train::Precision::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = crate::train::Precision::ALL.iter().map(|p| p.name()).collect();
        format!("expected one of {}", names.join(", "))
    })
}
