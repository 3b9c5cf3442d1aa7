//! The `[outbound]` section: delivery of mail by SMTP (RFC 5321 client),
//! to a relay or the recipient domain's MX hosts, and its retry schedule.

use facteur_policy::retry::RetrySchedule;
use serde::Deserialize;
use std::time::Duration;

use super::retry::RetryKeys;
use super::{address, Problems};

/// Delivery of mail by SMTP.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Smarthost `host:port`; without it, mail goes to the recipient
    /// domain's MX on port 25.
    pub relay: Option<String>,
    pub hostname: String,
    pub retry: RetrySchedule,
    pub timeout: Duration,
    /// Whether outgoing mail carries an RFC 7259 `Jabber-ID` header.
    pub jabber_id_header: bool,
    /// Port of the MX hosts (25 on the internet).
    pub mx_port: u16,
    /// Simultaneous deliveries to one host.
    pub destination_concurrency: usize,
}

/// The retry keys are `None` when left out (their defaults are in
/// `retry::KEYS`): `[xmpp]` needs to know which ones the file sets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawOutbound {
    relay: Option<String>,
    hostname: Option<String>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    max_lifetime: Option<String>,
    timeout: String,
    jabber_id_header: bool,
    mx_port: u16,
    destination_concurrency: usize,
}

impl Default for RawOutbound {
    fn default() -> Self {
        RawOutbound {
            relay: None,
            hostname: None,
            retry_initial: None,
            retry_max: None,
            max_lifetime: None,
            timeout: "5m".into(),
            jabber_id_header: true,
            mx_port: 25,
            destination_concurrency: 10,
        }
    }
}

impl RawOutbound {
    /// The retry keys as written.
    pub(super) fn retry_keys(&self) -> RetryKeys {
        RetryKeys([
            self.retry_initial.clone(),
            self.retry_max.clone(),
            self.max_lifetime.clone(),
        ])
    }

    /// The EHLO hostname defaults to `inbound_hostname`.
    pub(super) fn check(self, p: &mut Problems, inbound_hostname: &str) -> OutboundConfig {
        if let Some(relay) = &self.relay {
            address::host_port(p, "outbound.relay", relay);
        }
        let retry = self.retry_keys().check(p, "outbound");
        if self.mx_port == 0 {
            p.add("outbound.mx_port", "must be from 1 to 65535");
        }
        if self.destination_concurrency == 0 {
            p.add("outbound.destination_concurrency", "must be at least 1");
        }
        OutboundConfig {
            relay: self.relay,
            hostname: self.hostname.unwrap_or_else(|| inbound_hostname.to_owned()),
            retry,
            timeout: p.duration("outbound.timeout", &self.timeout),
            jabber_id_header: self.jabber_id_header,
            mx_port: self.mx_port,
            destination_concurrency: self.destination_concurrency,
        }
    }
}
