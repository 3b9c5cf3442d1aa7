//! The `[dns]`, `[auth]` and `[limits]` sections: where names are looked
//! up, what inbound authentication failures lead to, and the rate limits.

use std::net::SocketAddr;
use std::time::Duration;

use facteur_policy::auth::{Action, AuthRules};
use facteur_policy::limits::{Networks, Rate};
use serde::Deserialize;

use super::Problems;

/// Where DNS questions go.
#[derive(Debug, Clone)]
pub struct Dns {
    /// Name servers; empty for the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Time for one DNS question.
    pub timeout: Duration,
}

/// Inbound SPF/DKIM/DMARC/ARC checks and what their failures lead to.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Whether inbound mail is checked at all.
    pub verify: bool,
    pub rules: AuthRules,
}

/// Rate limits.
#[derive(Debug, Clone)]
pub struct Limits {
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
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    #[serde(default)]
    nameservers: Vec<String>,
    #[serde(default = "default_dns_timeout")]
    timeout: String,
}

impl Default for RawDns {
    fn default() -> Self {
        RawDns {
            nameservers: Vec::new(),
            timeout: default_dns_timeout(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default = "default_true")]
    verify: bool,
    #[serde(default = "default_reject")]
    dmarc_reject: String,
    #[serde(default = "default_mark")]
    dmarc_quarantine: String,
    #[serde(default = "default_mark")]
    spf_fail: String,
    #[serde(default)]
    trusted_arc_sealers: Vec<String>,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            verify: true,
            dmarc_reject: default_reject(),
            dmarc_quarantine: default_mark(),
            spf_fail: default_mark(),
            trusted_arc_sealers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default = "default_sender_mails_per_hour")]
    sender_mails_per_hour: u32,
    #[serde(default = "default_client_connections")]
    client_connections: u32,
    #[serde(default = "default_client_mails_per_minute")]
    client_mails_per_minute: u32,
    #[serde(default = "default_client_exceptions")]
    client_exceptions: Vec<String>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            sender_mails_per_hour: default_sender_mails_per_hour(),
            client_connections: default_client_connections(),
            client_mails_per_minute: default_client_mails_per_minute(),
            client_exceptions: default_client_exceptions(),
        }
    }
}

fn default_dns_timeout() -> String {
    "5s".into()
}
fn default_true() -> bool {
    true
}
fn default_reject() -> String {
    "reject".into()
}
fn default_mark() -> String {
    "mark".into()
}
fn default_sender_mails_per_hour() -> u32 {
    200
}
fn default_client_connections() -> u32 {
    20
}
fn default_client_mails_per_minute() -> u32 {
    120
}
fn default_client_exceptions() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1".into()]
}

fn action(p: &mut Problems, key: &str, text: &str) -> Action {
    match text {
        "reject" => Action::Reject,
        "mark" => Action::Mark,
        "ignore" => Action::Ignore,
        other => {
            p.add(
                key,
                format!("{other:?}: expected \"reject\", \"mark\" or \"ignore\""),
            );
            Action::Mark
        }
    }
}

impl RawDns {
    pub(super) fn check(self, p: &mut Problems) -> Dns {
        let mut nameservers = Vec::new();
        for server in &self.nameservers {
            match server.parse::<SocketAddr>() {
                Ok(addr) => nameservers.push(addr),
                // A bare address means port 53.
                Err(_) => match server.parse::<std::net::IpAddr>() {
                    Ok(ip) => nameservers.push(SocketAddr::new(ip, 53)),
                    Err(_) => p.add(
                        "dns.nameservers",
                        format!("{server:?} is not ip or ip:port"),
                    ),
                },
            }
        }
        Dns {
            nameservers,
            timeout: p.duration("dns.timeout", &self.timeout),
        }
    }
}

impl RawAuth {
    pub(super) fn check(self, p: &mut Problems) -> Auth {
        Auth {
            verify: self.verify,
            rules: AuthRules {
                dmarc_reject: action(p, "auth.dmarc_reject", &self.dmarc_reject),
                dmarc_quarantine: action(p, "auth.dmarc_quarantine", &self.dmarc_quarantine),
                spf_fail: action(p, "auth.spf_fail", &self.spf_fail),
                trusted_arc_sealers: self
                    .trusted_arc_sealers
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect(),
            },
        }
    }
}

impl RawLimits {
    pub(super) fn check(self, p: &mut Problems) -> Limits {
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
        Limits {
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
