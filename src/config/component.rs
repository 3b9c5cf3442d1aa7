//! The `[component]` section: the XEP-0114 link to the XMPP server, its
//! domain, address, shared secret and keepalive.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use jid::BareJid;
use serde::Deserialize;

use super::{address, Problems};

/// The component link.
#[derive(Clone)]
pub struct ComponentConfig {
    /// The component's domain, e.g. `mail.example.test`.
    pub jid: BareJid,
    /// The XMPP server's component port, `host:port`.
    pub server: String,
    pub secret: String,
    pub ping_interval: Duration,
    pub reconnect_max: Duration,
    /// Bare JIDs that may run the gateway's ad-hoc commands (XEP-0050).
    pub admins: Vec<BareJid>,
}

impl ComponentConfig {
    /// Whether `jid` (full or bare) is one of the gateway's administrators.
    pub fn is_admin(&self, jid: &jid::Jid) -> bool {
        let bare = jid.to_bare();
        self.admins.contains(&bare)
    }
}

impl fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentConfig")
            .field("jid", &self.jid)
            .field("server", &self.server)
            .field("secret", &"<redacted>")
            .field("admins", &self.admins)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawComponent {
    /// Required; `None` is reported by `check` with the other problems.
    jid: Option<String>,
    server: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    ping_interval: String,
    reconnect_max: String,
    admins: Vec<String>,
}

impl Default for RawComponent {
    fn default() -> Self {
        RawComponent {
            jid: None,
            server: "127.0.0.1:5347".into(),
            secret: None,
            secret_file: None,
            ping_interval: "30s".into(),
            reconnect_max: "60s".into(),
            admins: Vec::new(),
        }
    }
}

impl RawComponent {
    /// `None` when `jid` is missing or invalid (a problem is added then).
    pub(super) fn check(self, p: &mut Problems) -> Option<ComponentConfig> {
        let jid = match self.jid.as_deref().map(BareJid::new) {
            Some(Ok(jid)) if jid.node().is_none() => Some(jid),
            Some(Ok(_)) => {
                p.add(
                    "component.jid",
                    "must be a bare domain, e.g. mail.example.org",
                );
                None
            }
            Some(Err(e)) => {
                p.add("component.jid", e);
                None
            }
            None => {
                p.add("component.jid", "is required, e.g. mail.example.org");
                None
            }
        };
        address::host_port(p, "component.server", &self.server);
        let secret = match (self.secret, self.secret_file) {
            (Some(s), None) if !s.is_empty() => s,
            (None, Some(file)) => match std::fs::read_to_string(&file) {
                Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
                Ok(_) => {
                    p.add(
                        "component.secret_file",
                        format!("{} is empty", file.display()),
                    );
                    String::new()
                }
                Err(e) => {
                    p.add("component.secret_file", format!("{}: {e}", file.display()));
                    String::new()
                }
            },
            (Some(_), Some(_)) => {
                p.add("component", "set secret or secret_file, not both");
                String::new()
            }
            _ => {
                p.add("component", "secret or secret_file is required");
                String::new()
            }
        };
        let ping_interval = p.duration("component.ping_interval", &self.ping_interval);
        let reconnect_max = p.duration("component.reconnect_max", &self.reconnect_max);
        let mut admins = Vec::with_capacity(self.admins.len());
        for admin in &self.admins {
            match BareJid::new(admin) {
                Ok(jid) if jid.node().is_some() => admins.push(jid),
                Ok(_) => p.add(
                    "component.admins",
                    format!("{admin} is not a user's JID, e.g. admin@example.org"),
                ),
                Err(e) => p.add("component.admins", format!("{admin}: {e}")),
            }
        }
        Some(ComponentConfig {
            jid: jid?,
            server: self.server,
            secret,
            ping_interval,
            reconnect_max,
            admins,
        })
    }
}
