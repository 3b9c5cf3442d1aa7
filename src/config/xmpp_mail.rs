//! The `[xmpp_mail]` section: XMPP-Mail between domains
//! (doc/xmpp-mail.md). Before mail to another domain leaves by SMTP,
//! facteur asks that domain whether it takes the mail as XMPP; it also
//! answers other domains' questions.

use std::time::Duration;

use facteur_policy::limits::Rate;
use serde::Deserialize;

use super::Problems;

/// How other domains are asked and answered.
#[derive(Debug, Clone)]
pub struct XmppMailConfig {
    /// Whether mail to other domains is offered to them as XMPP first.
    pub enabled: bool,
    /// Longest wait of each step: a DNS question, a disco IQ, the probe.
    pub step_timeout: Duration,
    /// Longest wait of the whole probe of a domain; past it the mail goes
    /// by SMTP.
    pub budget: Duration,
    /// How long answers are kept, where the answer gives no `ttl`.
    pub ttl: AnswerTtls,
    /// Probes answered per requesting domain; past it every answer is
    /// `unknown`.
    pub probes: Rate,
    /// Largest handed-off stanza taken, in bytes, announced as `max-size`.
    pub max_size: u64,
}

/// How long each kind of answer is kept.
#[derive(Debug, Clone, Copy)]
pub struct AnswerTtls {
    pub accept: Duration,
    pub reject: Duration,
    /// The domain has no XMPP-Mail gateway.
    pub unsupported: Duration,
    /// The probe failed or timed out.
    pub error: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawXmppMail {
    enabled: bool,
    step_timeout: String,
    budget: String,
    ttl_accept: String,
    ttl_reject: String,
    ttl_unsupported: String,
    ttl_error: String,
    probes_per_minute: u32,
    max_size: u64,
}

impl Default for RawXmppMail {
    fn default() -> Self {
        RawXmppMail {
            enabled: true,
            step_timeout: "5s".into(),
            budget: "10s".into(),
            ttl_accept: "24h".into(),
            ttl_reject: "1h".into(),
            ttl_unsupported: "6h".into(),
            ttl_error: "15m".into(),
            probes_per_minute: 60,
            max_size: 262_144,
        }
    }
}

impl RawXmppMail {
    pub(super) fn check(self, p: &mut Problems) -> XmppMailConfig {
        let step_timeout = p.duration("xmpp_mail.step_timeout", &self.step_timeout);
        let budget = p.duration("xmpp_mail.budget", &self.budget);
        if step_timeout > budget {
            p.add(
                "xmpp_mail.step_timeout",
                "must not be longer than xmpp_mail.budget",
            );
        }
        if self.probes_per_minute == 0 {
            p.add("xmpp_mail.probes_per_minute", "must be at least 1");
        }
        // Prosody closes a component stream for any stanza over 512 KiB.
        if !(4096..=512 * 1024).contains(&self.max_size) {
            p.add(
                "xmpp_mail.max_size",
                "must be between 4096 and 524288 bytes (the XMPP server's stanza limit)",
            );
        }
        XmppMailConfig {
            enabled: self.enabled,
            step_timeout,
            budget,
            ttl: AnswerTtls {
                accept: p.duration("xmpp_mail.ttl_accept", &self.ttl_accept),
                reject: p.duration("xmpp_mail.ttl_reject", &self.ttl_reject),
                unsupported: p.duration("xmpp_mail.ttl_unsupported", &self.ttl_unsupported),
                error: p.duration("xmpp_mail.ttl_error", &self.ttl_error),
            },
            probes: Rate {
                count: self.probes_per_minute,
                period: Duration::from_secs(60),
            },
            max_size: self.max_size,
        }
    }
}
