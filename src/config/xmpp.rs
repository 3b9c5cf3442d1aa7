//! The `[xmpp]` section: how stanzas to XMPP users (mail, and notices of
//! bounced or failed mail) are retried after a temporary failure: a
//! stanza error of type `wait` (RFC 6120 §8.3.2), or the disk failing while
//! the mail's attachments are stored.
//!
//! These keys are new; before them, deliveries to XMPP took `[outbound]`'s
//! retry keys. For one release a file that sets those and not these keeps
//! that behaviour, with a warning.

use facteur_policy::retry::RetrySchedule;
use serde::Deserialize;

use super::retry::{self, RetryKeys, KEYS};
use super::Problems;

/// Deliveries to XMPP users.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    pub retry: RetrySchedule,
}

/// Each key left out takes its default from `retry::KEYS`, or, for one
/// release, the value `[outbound]` gives the key of the same name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawXmpp {
    retry_initial: Option<String>,
    retry_max: Option<String>,
    max_lifetime: Option<String>,
}

impl RawXmpp {
    /// `outbound` is `[outbound]`'s retry keys as written.
    pub(super) fn check(self, p: &mut Problems, outbound: &RetryKeys) -> XmppConfig {
        let own = RetryKeys([self.retry_initial, self.retry_max, self.max_lifetime]);
        let before = p.errors.len();
        let mut durations = own.durations(p, "xmpp");
        let valid = p.errors.len() == before;
        let old = outbound.written();
        for ((((slot, mine), theirs), theirs_checked), (name, _)) in durations
            .iter_mut()
            .zip(&own.0)
            .zip(&outbound.0)
            .zip(old)
            .zip(KEYS)
        {
            if mine.is_some() || theirs.is_none() {
                continue;
            }
            p.warn(
                &format!("outbound.{name}"),
                format_args!(
                    "also applies to deliveries to XMPP users, until the next release; \
                     set xmpp.{name} for them"
                ),
            );
            // An invalid value is a problem of [outbound], reported there.
            if let Some(duration) = theirs_checked {
                *slot = duration;
            }
        }
        let [initial, max, lifetime] = durations;
        let [initial_written, max_written, _] = &own.0;
        // When both waits come from [outbound], a wrong order is its
        // problem; a bad duration is reported already.
        let retry = if valid && (initial_written.is_some() || max_written.is_some()) {
            retry::schedule(p, "xmpp", initial, max, lifetime)
        } else {
            RetrySchedule {
                initial,
                max,
                lifetime,
            }
        };
        XmppConfig { retry }
    }
}
