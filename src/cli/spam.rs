//! `facteur spam train|score`: the Bayesian classifier's models, without a
//! running daemon.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::bayes;
use crate::config::Config;

#[derive(Subcommand)]
pub enum SpamAction {
    /// Learn from directories of RFC 5322 files (one mail per file), adding
    /// to the model: the global one, or a user's with --user. The models
    /// are kept in spam-models/ beside the SQLite database.
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
        } => {
            let outcome = Config::load(&config).and_then(|config| {
                bayes::train(&config, spam.as_deref(), ham.as_deref(), user.as_deref())
            });
            match outcome {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        SpamAction::Score {
            config,
            user,
            files,
        } => {
            let (global, own) =
                match Config::load(&config).and_then(|c| bayes::models(&c, user.as_deref())) {
                    Ok(models) => models,
                    Err(e) => {
                        eprintln!("{e:#}");
                        return ExitCode::FAILURE;
                    }
                };
            let mut status = ExitCode::SUCCESS;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for file in files {
                match std::fs::read(&file) {
                    Ok(raw) => {
                        let score = global.score(&bayes::tokens(&raw), own.as_ref());
                        if writeln!(out, "{score:.6} {}", file.display()).is_err() {
                            return ExitCode::FAILURE;
                        }
                    }
                    Err(e) => {
                        eprintln!("Reading {}: {e}", file.display());
                        status = ExitCode::FAILURE;
                    }
                }
            }
            if out.flush().is_err() {
                return ExitCode::FAILURE;
            }
            status
        }
    }
}
