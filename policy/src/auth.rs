//! What to do with an inbound mail given its SPF (RFC 7208), DKIM
//! (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617) results.
//!
//! The results are facts found by the daemon; the verdict is data: accept,
//! mark (deliver, with the failure shown) or refuse, and why. The daemon
//! maps a refusal to an SMTP reply in one place.

/// Result of one SPF check (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spf {
    /// The client is authorised.
    Pass,
    /// The domain says the client is not authorised.
    Fail,
    /// The domain says the client is probably not authorised.
    SoftFail,
    /// The domain makes no assertion.
    Neutral,
    /// No SPF record.
    None,
    /// A transient DNS error.
    TempError,
    /// A record that cannot be used.
    PermError,
}

/// Aggregate DKIM result: the best of all signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dkim {
    /// At least one signature verified.
    Pass,
    /// Signatures were present and none verified.
    Fail,
    /// No signature.
    None,
    /// A transient DNS error kept every signature from verifying.
    TempError,
    /// Signatures that cannot be used (syntax, unsupported algorithm).
    PermError,
}

/// DMARC result for the From domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dmarc {
    /// SPF or DKIM passed, aligned with the From domain.
    Pass,
    /// Neither aligned SPF nor aligned DKIM passed.
    Fail,
    /// The domain publishes no DMARC record.
    None,
    /// A transient DNS error.
    TempError,
    /// A record that cannot be used.
    PermError,
}

/// The policy the From domain publishes (`p=`, or `sp=` for a subdomain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// `p=none`: monitor only.
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

/// ARC chain validation result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arc {
    /// The chain validated.
    Pass,
    /// The chain is broken.
    Fail,
    /// No ARC headers.
    None,
}

/// What the gateway found about one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFacts {
    /// SPF of the MAIL FROM domain (of the HELO name for the null sender).
    pub spf: Spf,
    /// DKIM, all signatures together.
    pub dkim: Dkim,
    /// DMARC of the From domain.
    pub dmarc: Dmarc,
    /// The policy that From domain publishes, when it has a record.
    pub dmarc_policy: Option<DmarcPolicy>,
    /// The From domain.
    pub from_domain: String,
    /// ARC chain validation.
    pub arc: Arc,
    /// The domain that sealed the newest ARC set, when the chain passed.
    pub arc_sealer: Option<String>,
}

/// What the operator chose to do with each kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Refuse at the end of DATA (SMTP 550).
    Reject,
    /// Accept and deliver, with the failure shown to the user.
    Mark,
    /// Accept as if nothing failed (the results are still recorded).
    Ignore,
}

/// The operator's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRules {
    /// A DMARC failure where the domain publishes `p=reject`.
    pub dmarc_reject: Action,
    /// A DMARC failure where the domain publishes `p=quarantine`.
    pub dmarc_quarantine: Action,
    /// An SPF hard fail of the MAIL FROM domain.
    pub spf_fail: Action,
    /// ARC sealers whose validated chain overrides a DMARC failure
    /// (RFC 8617 §7.2: mailing lists and forwarders the operator trusts).
    pub trusted_arc_sealers: Vec<String>,
}

impl Default for AuthRules {
    /// Refuse what the sender's domain asks to refuse; mark the rest.
    fn default() -> Self {
        AuthRules {
            dmarc_reject: Action::Reject,
            dmarc_quarantine: Action::Mark,
            spf_fail: Action::Mark,
            trusted_arc_sealers: Vec::new(),
        }
    }
}

/// Which check a refusal or mark comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// DMARC failed under the From domain's policy.
    Dmarc,
    /// SPF failed.
    Spf,
}

/// The decision about one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Deliver.
    Accept,
    /// Deliver, showing the failure.
    Mark {
        /// The check that failed.
        failed: Failed,
        /// Why, for the user.
        reason: String,
    },
    /// Refuse.
    Reject {
        /// The check that failed.
        failed: Failed,
        /// Why, for the sending server.
        reason: String,
    },
}

fn apply(action: Action, failed: Failed, reason: String) -> Option<AuthVerdict> {
    match action {
        Action::Reject => Some(AuthVerdict::Reject { failed, reason }),
        Action::Mark => Some(AuthVerdict::Mark { failed, reason }),
        Action::Ignore => None,
    }
}

impl AuthVerdict {
    fn severity(&self) -> u8 {
        match self {
            AuthVerdict::Accept => 0,
            AuthVerdict::Mark { .. } => 1,
            AuthVerdict::Reject { .. } => 2,
        }
    }
}

/// Decides what to do with a mail: the stricter of what its DMARC and its
/// SPF results call for, DMARC first when both are as strict. Transient
/// DNS errors never refuse a mail: a sender's broken DNS must not lose it.
pub fn auth_verdict(facts: &AuthFacts, rules: &AuthRules) -> AuthVerdict {
    let dmarc = dmarc_verdict(facts, rules);
    let spf = spf_verdict(facts, rules);
    if spf.severity() > dmarc.severity() {
        spf
    } else {
        dmarc
    }
}

fn dmarc_verdict(facts: &AuthFacts, rules: &AuthRules) -> AuthVerdict {
    if facts.dmarc == Dmarc::Fail {
        let domain = &facts.from_domain;
        let action = match facts.dmarc_policy {
            Some(DmarcPolicy::Reject) => rules.dmarc_reject,
            Some(DmarcPolicy::Quarantine) => rules.dmarc_quarantine,
            Some(DmarcPolicy::None) | None => Action::Ignore,
        };
        let trusted_arc = facts.arc == Arc::Pass
            && facts.arc_sealer.as_ref().is_some_and(|sealer| {
                rules
                    .trusted_arc_sealers
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(sealer))
            });
        let (action, reason) = if trusted_arc && action != Action::Ignore {
            let sealer = facts.arc_sealer.as_deref().unwrap_or_default();
            (
                Action::Mark,
                format!("DMARC failed for {domain}, forwarded by trusted {sealer} (ARC)"),
            )
        } else {
            (
                action,
                format!(
                    "the DMARC policy of {domain} refuses mail that fails SPF and DKIM alignment"
                ),
            )
        };
        if let Some(verdict) = apply(action, Failed::Dmarc, reason) {
            return verdict;
        }
    }
    AuthVerdict::Accept
}

fn spf_verdict(facts: &AuthFacts, rules: &AuthRules) -> AuthVerdict {
    if facts.spf == Spf::Fail {
        let reason = "SPF: the sending host is not allowed to send for the sender's domain";
        // A mail that passes DMARC is authentic whatever its envelope
        // says: forwarding breaks SPF, not DKIM (RFC 7489 §10.1).
        let action = match rules.spf_fail {
            Action::Reject if facts.dmarc == Dmarc::Pass => Action::Mark,
            action => action,
        };
        if let Some(verdict) = apply(action, Failed::Spf, reason.to_owned()) {
            return verdict;
        }
    }
    AuthVerdict::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_from_of_a_reject_domain_is_refused() {
        let facts = AuthFacts {
            spf: Spf::Pass,
            dkim: Dkim::None,
            dmarc: Dmarc::Fail,
            dmarc_policy: Some(DmarcPolicy::Reject),
            from_domain: "bank.test".into(),
            arc: Arc::None,
            arc_sealer: None,
        };
        assert!(matches!(
            auth_verdict(&facts, &AuthRules::default()),
            AuthVerdict::Reject {
                failed: Failed::Dmarc,
                ..
            }
        ));
    }
}
