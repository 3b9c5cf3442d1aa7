//! Anti-relay and anti-spoofing: inbound recipients only for served users,
//! outbound mail only from served users.

/// Which users of the served domains have mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserScope {
    /// Only users who registered with the gateway (XEP-0077).
    Registered,
    /// Every user of the served domains.
    All,
}

/// Facts about one address of a served or foreign domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressFacts {
    /// The domain is one the gateway serves.
    pub domain_served: bool,
    /// The user registered with the gateway.
    pub registered: bool,
}

/// What to do with an inbound recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptVerdict {
    /// Accept mail for this recipient.
    Accept,
    /// A served domain, but no such mail user (SMTP 550 5.1.1).
    UnknownUser,
    /// Not a served domain: relaying is refused (SMTP 550 5.7.1).
    RelayDenied,
}

/// Whether inbound mail for a recipient is accepted.
pub fn rcpt_verdict(scope: UserScope, facts: AddressFacts) -> RcptVerdict {
    match (facts.domain_served, scope, facts.registered) {
        (false, _, _) => RcptVerdict::RelayDenied,
        (true, UserScope::All, _) | (true, UserScope::Registered, true) => RcptVerdict::Accept,
        (true, UserScope::Registered, false) => RcptVerdict::UnknownUser,
    }
}

/// Whether an XMPP user may send mail through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderVerdict {
    /// May send, as their own address.
    Allow,
    /// A user of another XMPP domain: never relayed.
    ForeignDomain,
    /// A served user who has not registered.
    NotRegistered,
}

/// Whether the XMPP user described by `facts` may send mail.
pub fn sender_verdict(scope: UserScope, facts: AddressFacts) -> SenderVerdict {
    match (facts.domain_served, scope, facts.registered) {
        (false, _, _) => SenderVerdict::ForeignDomain,
        (true, UserScope::All, _) | (true, UserScope::Registered, true) => SenderVerdict::Allow,
        (true, UserScope::Registered, false) => SenderVerdict::NotRegistered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RcptVerdict as R;
    use SenderVerdict as S;
    use UserScope::{All, Registered};

    #[test]
    fn table() {
        // scope, domain served, registered → recipient, sender
        let cases = [
            (Registered, true, true, R::Accept, S::Allow),
            (Registered, true, false, R::UnknownUser, S::NotRegistered),
            (Registered, false, true, R::RelayDenied, S::ForeignDomain),
            (Registered, false, false, R::RelayDenied, S::ForeignDomain),
            (All, true, false, R::Accept, S::Allow),
            (All, true, true, R::Accept, S::Allow),
            (All, false, false, R::RelayDenied, S::ForeignDomain),
        ];
        for (scope, domain_served, registered, rcpt, sender) in cases {
            let facts = AddressFacts {
                domain_served,
                registered,
            };
            assert_eq!(rcpt_verdict(scope, facts), rcpt, "{scope:?} {facts:?}");
            assert_eq!(sender_verdict(scope, facts), sender, "{scope:?} {facts:?}");
        }
    }
}
