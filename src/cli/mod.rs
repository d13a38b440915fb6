//! The command-line interface: the only module that prints. Each verb turns the library's
//! values into lines on stdout; every error is drawn once, by [`render_error`], on stderr,
//! and becomes a non-zero exit status.

mod ablate;
mod args;
mod pipeline;
mod remote;
mod report;
mod store;
mod tools;
mod transfer_bar;

pub use args::{Cli, Command};

use anyhow::{Context, Result};
use args::{CacheCommand, DataCommand, KeyCommand, ModelCommand};
use clap::Parser;
use std::path::Path;

pub fn main() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprint!("{}", render_error(&e));
            1
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let (cache, saved) = (&cli.cache, &cli.saved);
    let flags = crate::config::RemoteFlags { url: cli.remote.clone().flatten(), disabled: cli.no_remote, upload: cli.remote_upload };
    let open_remote = || -> Result<Option<crate::remote::Remote>> {
        let env = |name: &str| std::env::var(name).ok();
        let settings = crate::config::remote_settings(Path::new("."), &flags, &env)?;
        settings.map(|s| crate::remote::Remote::open(&s)).transpose()
    };
    match cli.command {
        Command::Init { dir } => tools::init(&dir),
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "maskflow", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script).context("writing the completion script to stdout")?;
            Ok(0)
        }
        Command::Run { pipeline, force, until, json, locked, exec } => {
            let run = pipeline::RunArgs { force, until, json, locked, exec };
            pipeline::run(cache, saved, open_remote()?.as_ref(), &pipeline, run)
        }
        Command::Ablate { a, b, rev, full, seeds, group, plan, yes, json, html, exec } => {
            let args = ablate::AblateArgs { a, b, rev, full, seeds: seeds as usize, groups: group, plan_only: plan, yes, json, html, exec };
            ablate::ablate(cache, saved, open_remote()?.as_ref(), args)
        }
        Command::Status { pipeline } => pipeline::status(cache, saved, &pipeline),
        Command::Step { pipeline, step, report } => pipeline::step(cache, open_remote()?.as_ref(), &pipeline, &step, report.as_deref()),
        Command::Plan { pipeline, json } => pipeline::plan(cache, open_remote()?.as_ref(), &pipeline, json),
        Command::Push { pipeline } => remote::push(cache, open_remote()?.as_ref(), &pipeline),
        Command::Pull { pipeline } => remote::pull(cache, open_remote()?.as_ref(), &pipeline),
        Command::Key { command: KeyCommand::Generate { name, out } } => remote::generate_key(&name, &out),
        Command::Check { files, sets } => pipeline::check(&files, &sets),
        Command::Fmt { files, check, write } => pipeline::fmt(&files, check, write),
        Command::Explain { pipeline, step } => pipeline::explain(cache, &pipeline, &step),
        Command::Diff { old, new, rev, all, json, sets, html } => {
            let args =
                report::DiffArgs { old: &old, new: new.as_deref(), rev: rev.as_deref(), sets: &sets, all, json, html: html.as_deref() };
            report::diff(cache, saved, args)
        }
        Command::Runs { files, json, csv, html } => report::runs(cache, open_remote()?.as_ref(), saved, &files, json, csv, html),
        Command::Verify { pipeline, steps, json } => report::verify(cache, &pipeline, &steps, json),
        Command::Gc { files, dry_run } => store::gc(cache, &files, dry_run),
        Command::Cache { command: CacheCommand::Verify } if cli.remote.is_some() => store::verify_remote(open_remote()?.as_ref()),
        Command::Cache { command: CacheCommand::Verify } => store::verify(cache),
        Command::Synth { persons, eval_persons, seed, size, out } => tools::synth(persons, eval_persons, seed, size, &out),
        Command::Model { command: ModelCommand::Info { name, classes, json } } => tools::model_info(&name, classes, json),
        Command::Model { command: ModelCommand::CheckWeights { model, classes, weights, io, tol, backend } } => {
            tools::check_weights(&backend, &model, classes, &weights, &io, tol)
        }
        Command::Model { command: ModelCommand::Bench { model, size, batch, steps, backend, precision, json } } => {
            tools::model_bench(&backend, precision, &model, &size, batch, steps, json)
        }
        Command::Score { submission, labels, json } => tools::score(&submission, &labels, json),
        Command::Data { command: DataCommand::Stats { dir, age_bins, svg } } => tools::data_stats(&dir, age_bins, &svg),
    }
}

/// Draws an error for stderr: its context lines, outermost first, as `error: …`, and, where
/// the cause is a pipeline's diagnostics, those drawn with their `file:line:col` and caret.
pub fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut messages = Vec::new();
    for cause in e.chain() {
        if let Some(diagnostics) = cause.downcast_ref::<crate::lang::Diagnostics>() {
            if !messages.is_empty() {
                out.push_str(&format!("error: {}\n", messages.join(": ")));
            }
            out.push_str(&diagnostics.render());
            return out;
        }
        messages.push(cause.to_string());
    }
    format!("error: {}\n", messages.join(": "))
}
