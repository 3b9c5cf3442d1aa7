//! The `[imap]` section: the key that seals attached mailboxes'
//! passwords, and how their followers watch for new mail.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;
use crate::imap::seal::{SealKey, MIN_SECRET};

/// Legacy IMAP mailboxes.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// From `secret_file`; without it no mailbox can be attached or
    /// followed.
    pub key: Option<SealKey>,
    /// How often a mailbox is polled where IDLE is not used.
    pub poll_interval: Duration,
    /// Whether IDLE is used where the server offers it.
    pub idle: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawImap {
    secret_file: Option<PathBuf>,
    poll_interval: String,
    idle: bool,
}

impl Default for RawImap {
    fn default() -> Self {
        RawImap {
            secret_file: None,
            poll_interval: "5m".into(),
            idle: true,
        }
    }
}

impl RawImap {
    pub(super) fn check(self, p: &mut Problems) -> ImapConfig {
        let key = self
            .secret_file
            .and_then(|file| match std::fs::read(&file) {
                Ok(bytes) if bytes.trim_ascii().len() >= MIN_SECRET => {
                    Some(SealKey::derive(bytes.trim_ascii()))
                }
                Ok(_) => {
                    p.add(
                        "imap.secret_file",
                        format!(
                            "{} holds less than {MIN_SECRET} bytes, e.g. \
                             head -c 32 /dev/urandom | base64 > {0}",
                            file.display()
                        ),
                    );
                    None
                }
                Err(e) => {
                    p.add("imap.secret_file", format!("{}: {e}", file.display()));
                    None
                }
            });
        ImapConfig {
            key,
            poll_interval: p.duration("imap.poll_interval", &self.poll_interval),
            idle: self.idle,
        }
    }
}
