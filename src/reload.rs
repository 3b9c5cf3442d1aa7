//! Reloading the configuration file without a restart, on SIGHUP or the
//! `reload` ad-hoc command (XEP-0050).
//!
//! The file the daemon started with is read, parsed and checked as at
//! start (the STARTTLS certificate and key are loaded too, so that renewed
//! files are taken), and only then put in force, as a whole. A file that
//! fails a check changes nothing. Restart-only keys keep their running
//! value (`config::live`); each one the file changes is named.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{watch, Mutex};
use tokio_rustls::TlsAcceptor;
use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::smtp::server::tls_acceptor;
use crate::systemd::Notifier;

/// Puts a new configuration in force. Cheap to clone.
#[derive(Clone)]
pub struct Reloader(Arc<Inner>);

struct Inner {
    path: PathBuf,
    config: watch::Sender<Arc<Config>>,
    tls: watch::Sender<Option<TlsAcceptor>>,
    systemd: Arc<Notifier>,
    /// One reload at a time: each merges into what the last put in force.
    one: Mutex<()>,
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every problem of a refused file; empty when the file was taken.
    pub refused: Vec<String>,
    /// Keys whose new value is in force.
    pub applied: Vec<&'static str>,
    /// Restart-only keys the file changes; their running value stays.
    pub need_restart: Vec<&'static str>,
    /// What the new file should change (deprecated keys).
    pub warnings: Vec<String>,
}

impl Outcome {
    /// One text for the administrator who asked.
    pub fn note(&self) -> String {
        let mut note = String::new();
        if !self.refused.is_empty() {
            let _ = write!(
                note,
                "Configuration refused; the running one stays, unchanged. {} problem(s):",
                self.refused.len()
            );
            for problem in &self.refused {
                let _ = write!(note, "\n- {problem}");
            }
            return note;
        }
        if self.applied.is_empty() {
            note.push_str("Configuration reloaded: no key changed that a reload applies.");
        } else {
            let _ = write!(
                note,
                "Configuration reloaded. Now in force: {}.",
                self.applied.join(", ")
            );
        }
        if !self.need_restart.is_empty() {
            let _ = write!(
                note,
                "\nChanged, but only a restart applies them (the running values stay): {}.",
                self.need_restart.join(", ")
            );
        }
        for warning in &self.warnings {
            let _ = write!(note, "\nWarning: {warning}");
        }
        note
    }
}

impl Reloader {
    /// Reloads `path` into `config` and, with it, the STARTTLS material
    /// behind `tls`.
    pub fn new(
        path: PathBuf,
        config: watch::Sender<Arc<Config>>,
        tls: watch::Sender<Option<TlsAcceptor>>,
        systemd: Arc<Notifier>,
    ) -> Reloader {
        Reloader(Arc::new(Inner {
            path,
            config,
            tls,
            systemd,
            one: Mutex::new(()),
        }))
    }

    /// Reads the file again and puts it in force, or refuses it whole.
    /// `by` names who asked, for the log.
    pub async fn reload(&self, by: &str) -> Outcome {
        let inner = &self.0;
        let _one = inner.one.lock().await;
        inner.systemd.reloading();
        info!(by, file = %inner.path.display(), "Reloading the configuration.");
        let outcome = self.load();
        if outcome.refused.is_empty() {
            for key in &outcome.need_restart {
                warn!(key, "Changed key needs a restart; its running value stays.");
            }
            for warning in &outcome.warnings {
                warn!(%warning, "Configuration to update.");
            }
            info!(applied = ?outcome.applied, "Configuration reloaded.");
        } else {
            for problem in &outcome.refused {
                error!(%problem, "Configuration refused.");
            }
            warn!("Reload refused; the running configuration stays.");
        }
        inner.systemd.reloaded();
        outcome
    }

    /// Checks the file; swaps it in only once everything passed.
    fn load(&self) -> Outcome {
        let inner = &self.0;
        let text = match std::fs::read_to_string(&inner.path) {
            Ok(text) => text,
            Err(e) => {
                return Outcome {
                    refused: vec![format!("Reading {}: {e}", inner.path.display())],
                    ..Outcome::default()
                }
            }
        };
        let new = match Config::parse(&text) {
            Ok(new) => new,
            Err(config::ConfigErrors(problems)) => {
                return Outcome {
                    refused: problems,
                    ..Outcome::default()
                }
            }
        };
        let running = inner.config.borrow().clone();
        let merged = config::merge(&running, new);
        let tls = match &merged.config.inbound.tls {
            Some(files) => match tls_acceptor(files) {
                Ok(acceptor) => Some(acceptor),
                Err(e) => {
                    return Outcome {
                        refused: vec![format!("inbound.tls_cert, inbound.tls_key: {e:#}")],
                        ..Outcome::default()
                    }
                }
            },
            None => None,
        };
        let outcome = Outcome {
            refused: Vec::new(),
            applied: merged.applied,
            need_restart: merged.need_restart,
            warnings: merged.config.warnings.clone(),
        };
        // Both checked: put both in force.
        inner.config.send_replace(Arc::new(merged.config));
        inner.tls.send_replace(tls);
        outcome
    }
}
