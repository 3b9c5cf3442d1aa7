//! The `[auth]` section: whether inbound mail is checked (SPF RFC 7208,
//! DKIM RFC 6376, ARC RFC 8617, DMARC RFC 7489) and what failures lead to.

use facteur_policy::auth::{Action, AuthRules};
use serde::Deserialize;

use super::Problems;

/// Inbound SPF/DKIM/DMARC/ARC checks and what their failures lead to.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Whether inbound mail is checked at all.
    pub verify: bool,
    pub rules: AuthRules,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAuth {
    verify: bool,
    dmarc_reject: String,
    dmarc_quarantine: String,
    spf_fail: String,
    trusted_arc_sealers: Vec<String>,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            verify: true,
            dmarc_reject: "reject".into(),
            dmarc_quarantine: "mark".into(),
            spf_fail: "mark".into(),
            trusted_arc_sealers: Vec::new(),
        }
    }
}

impl RawAuth {
    pub(super) fn check(self, p: &mut Problems) -> AuthConfig {
        AuthConfig {
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
