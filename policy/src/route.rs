//! How an outgoing mail travels (doc/xmpp-mail.md §7): as XMPP, when the
//! recipient's domain answered that it takes XMPP-Mail for the recipient,
//! else by SMTP. Facts in, route out; the daemon asks the questions.

/// What the recipient's domain answered, or why there is no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The recipient takes XMPP-Mail at the domain's gateway, in stanzas
    /// of at most `max_size` bytes (0: not said).
    Accept {
        /// Largest stanza the gateway takes.
        max_size: u64,
        /// The recipient's gateway wrote to us by handoff: answer that way.
        handoff: bool,
    },
    /// The recipient does not take XMPP-Mail.
    Reject,
    /// The gateway would not or could not say.
    Unknown,
    /// The domain has no XMPP server (no SRV record, no address).
    NoXmppServer,
    /// The domain's XMPP server lists no XMPP-Mail gateway.
    NoGateway,
    /// The questions failed or ran out of time.
    Failed,
}

/// Everything the route depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Asking other domains is enabled.
    pub enabled: bool,
    /// The mail has a sender to speak for (reports have the null sender
    /// and go by SMTP).
    pub has_author: bool,
    /// Size of the message the mail would travel as; `None` when it
    /// cannot travel as XMPP at all.
    pub stanza_size: Option<usize>,
    /// The author's XMPP server lets the gateway send as its users
    /// (XEP-0356 message permission `outgoing`).
    pub privileged: bool,
    /// What the recipient's domain answered.
    pub answer: Answer,
}

/// How the mail is sent as XMPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// As the author's own message, through the author's server.
    Privilege,
    /// Handed to the recipient's gateway.
    Handoff,
}

impl Via {
    /// Its name in logs: `privilege` or `handoff`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Privilege => "privilege",
            Via::Handoff => "handoff",
        }
    }
}

/// The route, with why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// As XMPP.
    Xmpp(Via),
    /// By SMTP, for this reason.
    Smtp(&'static str),
}

/// Whether facts need the recipient's domain to be asked at all: when the
/// answer cannot change the route, nobody is asked.
pub fn worth_asking(enabled: bool, has_author: bool, stanza_size: Option<usize>) -> bool {
    enabled && has_author && stanza_size.is_some()
}

/// The route for a mail.
pub fn decide(facts: &Facts) -> Route {
    if !facts.enabled {
        return Route::Smtp("XMPP-Mail disabled");
    }
    if !facts.has_author {
        return Route::Smtp("a report");
    }
    let Some(size) = facts.stanza_size else {
        return Route::Smtp("not a message");
    };
    match facts.answer {
        Answer::Accept { max_size, handoff } => {
            if max_size != 0 && size as u64 > max_size {
                return Route::Smtp("larger than the gateway takes");
            }
            match (facts.privileged, handoff) {
                (true, false) => Route::Xmpp(Via::Privilege),
                _ => Route::Xmpp(Via::Handoff),
            }
        }
        Answer::Reject => Route::Smtp("rejected"),
        Answer::Unknown => Route::Smtp("unknown"),
        Answer::NoXmppServer => Route::Smtp("no XMPP server"),
        Answer::NoGateway => Route::Smtp("no XMPP-Mail gateway"),
        Answer::Failed => Route::Smtp("no answer in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(answer: Answer) -> Facts {
        Facts {
            enabled: true,
            has_author: true,
            stanza_size: Some(4096),
            privileged: true,
            answer,
        }
    }

    const ACCEPT: Answer = Answer::Accept {
        max_size: 262_144,
        handoff: false,
    };

    #[test]
    fn an_accepted_recipient_gets_the_authors_own_message_when_privileged() {
        assert_eq!(decide(&facts(ACCEPT)), Route::Xmpp(Via::Privilege));
        let unprivileged = Facts {
            privileged: false,
            ..facts(ACCEPT)
        };
        assert_eq!(decide(&unprivileged), Route::Xmpp(Via::Handoff));
    }

    #[test]
    fn a_correspondent_who_wrote_by_handoff_is_answered_by_handoff() {
        let answer = Answer::Accept {
            max_size: 0,
            handoff: true,
        };
        assert_eq!(decide(&facts(answer)), Route::Xmpp(Via::Handoff));
    }

    #[test]
    fn every_other_answer_goes_by_smtp() {
        for answer in [
            Answer::Reject,
            Answer::Unknown,
            Answer::NoXmppServer,
            Answer::NoGateway,
            Answer::Failed,
        ] {
            assert!(
                matches!(decide(&facts(answer)), Route::Smtp(_)),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn reports_disabled_and_oversized_mail_go_by_smtp() {
        let report = Facts {
            has_author: false,
            ..facts(ACCEPT)
        };
        assert_eq!(decide(&report), Route::Smtp("a report"));
        let disabled = Facts {
            enabled: false,
            ..facts(ACCEPT)
        };
        assert_eq!(decide(&disabled), Route::Smtp("XMPP-Mail disabled"));
        let large = Facts {
            stanza_size: Some(300_000),
            ..facts(ACCEPT)
        };
        assert_eq!(decide(&large), Route::Smtp("larger than the gateway takes"));
        let none = Facts {
            stanza_size: None,
            ..facts(ACCEPT)
        };
        assert_eq!(decide(&none), Route::Smtp("not a message"));
        assert!(!worth_asking(true, false, Some(1)));
        assert!(!worth_asking(true, true, None));
        assert!(!worth_asking(false, true, Some(1)));
        assert!(worth_asking(true, true, Some(1)));
    }
}
