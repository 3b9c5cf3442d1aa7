//! The `[limits]` section: rates per XMPP sender and per SMTP client
//! address, and the clients exempt from them.

use std::time::Duration;

use facteur_policy::limits::{Networks, Rate};
use serde::Deserialize;

use super::Problems;

/// Rate limits.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Mails one XMPP user may send.
    pub sender_mails: Rate,
    /// Simultaneous SMTP connections from one IP address.
    pub client_connections: u32,
    /// Mails one SMTP client IP address may send.
    pub client_mails: Rate,
    /// Clients the per-address limits do not apply to (the MTA in front).
    pub client_exceptions: Networks,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    sender_mails_per_hour: u32,
    client_connections: u32,
    client_mails_per_minute: u32,
    client_exceptions: Vec<String>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            sender_mails_per_hour: 200,
            client_connections: 20,
            client_mails_per_minute: 120,
            client_exceptions: vec!["127.0.0.0/8".into(), "::1".into()],
        }
    }
}

impl RawLimits {
    pub(super) fn check(self, p: &mut Problems) -> LimitsConfig {
        for (key, value) in [
            ("limits.sender_mails_per_hour", self.sender_mails_per_hour),
            ("limits.client_connections", self.client_connections),
            (
                "limits.client_mails_per_minute",
                self.client_mails_per_minute,
            ),
        ] {
            if value == 0 {
                p.add(key, "must be at least 1");
            }
        }
        let client_exceptions = Networks::parse(self.client_exceptions.iter().map(String::as_str))
            .unwrap_or_else(|problem| {
                p.add("limits.client_exceptions", problem);
                Networks::default()
            });
        LimitsConfig {
            client_exceptions,
            sender_mails: Rate {
                count: self.sender_mails_per_hour,
                period: Duration::from_secs(3600),
            },
            client_connections: self.client_connections,
            client_mails: Rate {
                count: self.client_mails_per_minute,
                period: Duration::from_secs(60),
            },
        }
    }
}
