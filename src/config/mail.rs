//! The `[mail]` section: the served domains and who among their users has
//! mail.

use facteur_policy::relay::UserScope;
use jid::BareJid;
use serde::Deserialize;

use super::Problems;

/// The served domains and users.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// Served domains, lower-case.
    pub domains: Vec<String>,
    pub users: UserScope,
}

impl MailConfig {
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMail {
    /// Required: an empty list is reported by `check`.
    domains: Vec<String>,
    users: String,
}

impl Default for RawMail {
    fn default() -> Self {
        RawMail {
            domains: Vec::new(),
            users: "registered".into(),
        }
    }
}

impl RawMail {
    /// `component_domain` may not be served: its JIDs are mail addresses.
    pub(super) fn check(self, p: &mut Problems, component_domain: &str) -> MailConfig {
        let mut domains = Vec::new();
        for d in &self.domains {
            match BareJid::new(d) {
                Ok(jid) if jid.node().is_none() => domains.push(jid.domain().to_string()),
                _ => p.add("mail.domains", format!("{d:?} is not a domain")),
            }
        }
        if domains.is_empty() {
            p.add("mail.domains", "at least one served domain is required");
        }
        if domains.iter().any(|d| d == component_domain) {
            p.add(
                "mail.domains",
                "must not contain the component's own domain",
            );
        }
        let users = match self.users.as_str() {
            "registered" => UserScope::Registered,
            "all" => UserScope::All,
            other => {
                p.add(
                    "mail.users",
                    format!("{other:?}: expected \"registered\" or \"all\""),
                );
                UserScope::Registered
            }
        };
        MailConfig { domains, users }
    }
}
