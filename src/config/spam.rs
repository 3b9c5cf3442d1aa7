//! The `[spam]` section: what facteur learns from users about spam. So
//! far, how often their blocklists are read where the XMPP server lets the
//! gateway read them (XEP-0356 IQ permission on `urn:xmpp:blocking`).

use std::time::Duration;

use serde::Deserialize;

use super::Problems;

/// Spam feedback settings.
#[derive(Debug, Clone)]
pub struct SpamConfig {
    /// A user's blocklist, read at registration, is read again once older
    /// than this.
    pub blocklist_max_age: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSpam {
    blocklist_max_age: String,
}

impl Default for RawSpam {
    fn default() -> Self {
        RawSpam {
            blocklist_max_age: "1d".into(),
        }
    }
}

impl RawSpam {
    pub(super) fn check(self, p: &mut Problems) -> SpamConfig {
        let blocklist_max_age = p.duration("spam.blocklist_max_age", &self.blocklist_max_age);
        if blocklist_max_age < Duration::from_secs(60) {
            p.add("spam.blocklist_max_age", "must be at least 1m");
        }
        SpamConfig { blocklist_max_age }
    }
}
