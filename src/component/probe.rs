//! XMPP-Mail probes from other domains' gateways (doc/xmpp-mail.md §5.2,
//! §5.3, §8, §9.1): whether each named recipient takes mail as XMPP.
//!
//! A probe tells no more than an SMTP `RCPT TO` would: only other domains
//! are answered, each requesting domain at most `xmpp_mail.probes` times,
//! and past that every recipient is `unknown` in the same shape as any
//! answer, so that the limit itself says nothing.

use std::time::Instant;

use facteur_bridge::wire::NS_MAIL;
use facteur_bridge::MailAddress;
use facteur_policy::limits::{Decision, Limiter, Rate};
use facteur_policy::relay::UserScope;
use facteur_policy::relay::{rcpt_verdict, AddressFacts, RcptVerdict};
use jid::{BareJid, Jid};
use tracing::{info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::reply::{self, error, result, Fault};
use crate::config::Config;
use crate::store::Store;
use crate::telemetry::meters;

/// `<rcpt/>` elements one probe may carry.
pub const MAX_RCPTS: usize = 50;
/// Seconds an `unknown` answer may be kept: soon asked again.
const UNKNOWN_TTL: u64 = 60;

/// What a recipient is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptStatus {
    /// Mail sent as XMPP reaches the user.
    Accept,
    /// The address takes no XMPP-Mail.
    Reject,
    /// Not certain (store unavailable, rate limit).
    Unknown,
}

impl RcptStatus {
    fn as_str(self) -> &'static str {
        match self {
            RcptStatus::Accept => "accept",
            RcptStatus::Reject => "reject",
            RcptStatus::Unknown => "unknown",
        }
    }
}

/// Whether `iq` is a probe.
pub fn is_probe(iq: &Iq) -> bool {
    matches!(iq, Iq::Get { payload, .. } if payload.is("probe", NS_MAIL))
}

/// Answers probes, counting them per requesting domain.
pub struct Probes {
    limiter: Limiter<String>,
}

impl Probes {
    pub fn new(rate: Rate) -> Probes {
        Probes {
            limiter: Limiter::new(rate),
        }
    }

    /// The answer to a probe received at `now`.
    pub async fn answer(&mut self, config: &Config, store: &Store, iq: Iq, now: Instant) -> Iq {
        let Some(from) = iq.from().cloned() else {
            return error(&iq, reply::NO_SENDER);
        };
        let requester = from.domain().as_str().to_ascii_lowercase();
        if config.mail.serves(&requester) || requester == config.component.jid.domain().as_str() {
            return error(
                &iq,
                Fault::new(
                    ErrorType::Cancel,
                    DefinedCondition::NotAllowed,
                    "probes are answered to other domains only",
                ),
            );
        }
        let rcpts = match &iq {
            Iq::Get { payload, .. } => requested(payload),
            _ => Err(reply::NOT_A_REQUEST),
        };
        let rcpts = match rcpts {
            Ok(rcpts) => rcpts,
            Err(fault) => return error(&iq, fault),
        };
        // One unit per probe, whatever it names: the limit is on questions.
        self.limiter.set_rate(config.xmpp_mail.probes);
        let limited = matches!(
            self.limiter.check(&requester, 1, now),
            Decision::Deny { .. }
        );
        let mut answers = Vec::with_capacity(rcpts.len());
        for rcpt in rcpts {
            let status = match limited {
                true => RcptStatus::Unknown,
                false => rcpt_status(config, store, &rcpt).await,
            };
            let meters = meters();
            match status {
                RcptStatus::Accept => meters.probes_answered_accept.increment(1),
                RcptStatus::Reject => meters.probes_answered_reject.increment(1),
                RcptStatus::Unknown => meters.probes_answered_unknown.increment(1),
            }
            answers.push((rcpt, status));
        }
        info!(from = %from, rcpts = answers.len(), limited, "Probe answered.");
        result(&iq, Some(answer_element(config, &answers)))
    }
}

/// The recipients a probe names, or why it is malformed (§8).
fn requested(probe: &Element) -> Result<Vec<BareJid>, Fault> {
    let rcpts: Vec<&Element> = probe
        .children()
        .filter(|child| child.is("rcpt", NS_MAIL))
        .collect();
    if rcpts.is_empty() {
        return Err(Fault::new(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "a probe names at least one <rcpt/>",
        ));
    }
    if rcpts.len() > MAX_RCPTS {
        return Err(Fault::with_text(
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            format!("a probe names at most {MAX_RCPTS} <rcpt/>"),
        ));
    }
    rcpts
        .into_iter()
        .map(|rcpt| {
            let named = rcpt.attr("jid").unwrap_or_default();
            user_jid(named).ok_or_else(|| {
                Fault::with_text(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    format!("<rcpt jid='{named}'/> is not a bare JID with a local part"),
                )
            })
        })
        .collect()
}

/// `text` as the bare JID of a user: a local part, no resource.
pub fn user_jid(text: &str) -> Option<BareJid> {
    match Jid::new(text) {
        Ok(jid) if jid.resource().is_none() && jid.node().is_some() => Some(jid.to_bare()),
        _ => None,
    }
}

/// What `rcpt` is answered: `accept` as RCPT TO would accept it by SMTP.
pub async fn rcpt_status(config: &Config, store: &Store, rcpt: &BareJid) -> RcptStatus {
    let domain_served = config.mail.serves(rcpt.domain().as_str());
    // What SMTP could not take as an address is no user.
    if domain_served && MailAddress::parse(rcpt.as_str()).is_err() {
        return RcptStatus::Reject;
    }
    let registered = match (domain_served, config.mail.users) {
        (true, UserScope::Registered) => match store.is_registered(rcpt).await {
            Ok(registered) => registered,
            Err(e) => {
                warn!(error = format!("{e:#}"), "Store unavailable for a probe.");
                return RcptStatus::Unknown;
            }
        },
        _ => false,
    };
    let facts = AddressFacts {
        domain_served,
        registered,
    };
    match rcpt_verdict(config.mail.users, facts) {
        RcptVerdict::Accept => RcptStatus::Accept,
        _ => RcptStatus::Reject,
    }
}

/// `<probe>` repeating each recipient with its status, ttl and max-size.
fn answer_element(config: &Config, answers: &[(BareJid, RcptStatus)]) -> Element {
    let settings = &config.xmpp_mail;
    let mut probe = Element::builder("probe", NS_MAIL);
    for (rcpt, status) in answers {
        let ttl = match status {
            RcptStatus::Accept => settings.ttl.accept.as_secs(),
            RcptStatus::Reject => settings.ttl.reject.as_secs(),
            RcptStatus::Unknown => UNKNOWN_TTL,
        };
        probe = probe.append(
            Element::builder("rcpt", NS_MAIL)
                .attr(xml_ncname!("jid").into(), rcpt.to_string())
                .attr(xml_ncname!("status").into(), status.as_str())
                .attr(xml_ncname!("ttl").into(), ttl.to_string())
                .attr(
                    xml_ncname!("max-size").into(),
                    settings.max_size.to_string(),
                )
                .build(),
        );
    }
    probe.build()
}

#[cfg(test)]
mod tests;
