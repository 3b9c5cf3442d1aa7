//! The `[spam]` section: what facteur learns from users about spam. So
//! far, how often their blocklists are read where the XMPP server lets the
//! gateway read them (XEP-0356 IQ permission on `urn:xmpp:blocking`), how
//! long mail is held in quarantine, and how often its digest is sent.

use std::time::Duration;

use serde::Deserialize;

use super::Problems;

/// Spam feedback settings.
#[derive(Debug, Clone)]
pub struct SpamConfig {
    /// A user's blocklist, read at registration, is read again once older
    /// than this.
    pub blocklist_max_age: Duration,
    /// Mail held in quarantine is dropped after this, and the recent mail
    /// that feedback trains with is forgotten.
    pub held_for: Duration,
    /// How often users with newly held mail get a digest message naming it.
    pub digest_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSpam {
    blocklist_max_age: String,
    held_for: String,
    digest_interval: String,
}

impl Default for RawSpam {
    fn default() -> Self {
        RawSpam {
            blocklist_max_age: "1d".into(),
            held_for: "30d".into(),
            digest_interval: "1d".into(),
        }
    }
}

impl RawSpam {
    pub(super) fn check(self, p: &mut Problems) -> SpamConfig {
        let blocklist_max_age = p.duration("spam.blocklist_max_age", &self.blocklist_max_age);
        if blocklist_max_age < Duration::from_secs(60) {
            p.add("spam.blocklist_max_age", "must be at least 1m");
        }
        let held_for = p.duration("spam.held_for", &self.held_for);
        if held_for < Duration::from_secs(3600) {
            p.add("spam.held_for", "must be at least 1h");
        }
        let digest_interval = p.duration("spam.digest_interval", &self.digest_interval);
        if digest_interval < Duration::from_secs(1) {
            p.add("spam.digest_interval", "must be at least 1s");
        }
        SpamConfig {
            blocklist_max_age,
            held_for,
            digest_interval,
        }
    }
}
