//! `facteur spam train|score`: the Bayesian classifier's models, without a
//! running daemon.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use anyhow::Context;

use crate::config::Config;
use crate::spam::bayes;
use crate::store::Store;

#[derive(Subcommand)]
pub enum SpamAction {
    /// Learn from directories of RFC 5322 files (one mail per file), adding
    /// to the model: the global one, or a user's with --user. The models
    /// are kept in the store.
    Train {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        /// A directory of spam.
        #[arg(long)]
        spam: Option<PathBuf>,
        /// A directory of ham (wanted mail).
        #[arg(long)]
        ham: Option<PathBuf>,
        /// Train this user's own model (a bare JID) instead of the global one.
        #[arg(long)]
        user: Option<String>,
    },
    /// Print one line per file, "SCORE FILE": the probability that it is
    /// spam, from 0 to 1, by its content alone (no DNS, no lists).
    Score {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        /// Add this user's own model to the global one, if it has learnt
        /// from enough feedback.
        #[arg(long)]
        user: Option<String>,
        /// The mails (RFC 5322 files).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `facteur spam train|score`.
pub fn spam(action: SpamAction) -> ExitCode {
    match action {
        SpamAction::Train {
            config,
            spam,
            ham,
            user,
        } => with_store(&config, |store| async move {
            let summary =
                bayes::train(&store, spam.as_deref(), ham.as_deref(), user.as_deref()).await?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }),
        SpamAction::Score {
            config,
            user,
            files,
        } => with_store(&config, |store| async move {
            let (global, own) = bayes::models(&store, user.as_deref()).await?;
            let mut status = ExitCode::SUCCESS;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for file in files {
                match std::fs::read(&file) {
                    Ok(raw) => {
                        let score = global.score(&bayes::tokens(&raw), own.as_ref());
                        if writeln!(out, "{score:.6} {}", file.display()).is_err() {
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                    Err(e) => {
                        eprintln!("Reading {}: {e}", file.display());
                        status = ExitCode::FAILURE;
                    }
                }
            }
            if out.flush().is_err() {
                return Ok(ExitCode::FAILURE);
            }
            Ok(status)
        }),
    }
}

/// Runs `command` against the store the configuration names, the model
/// files of an older facteur moved into it first.
fn with_store<F, Fut>(path: &std::path::Path, command: F) -> ExitCode
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let outcome = tokio::runtime::Runtime::new()
        .context("Starting the runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                let config = Config::load(path)?;
                let store = Store::open(&config.store.url).await?;
                let outcome = match bayes::import_files(&config, &store).await {
                    Ok(()) => command(store.clone()).await,
                    Err(e) => Err(e),
                };
                store.close().await;
                outcome
            })
        });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
