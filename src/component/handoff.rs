//! Handoffs from other domains' gateways (doc/xmpp-mail.md §7.2, §8,
//! §9.2, §9.3): a message to the gateway's own JID naming its author
//! with an XEP-0033 `ofrom` address and one served user with a `to`
//! address, carrying `<mail xmlns='urn:xmpp:mail:0'>`.
//!
//! What needs no other server is checked in the intake loop: the shape,
//! the domains, the size, the recipient. Whether the author's domain
//! lists the sending gateway is asked of that domain, in a task beside
//! the loop. A handoff taken is committed like mail received by SMTP
//! (with its own trace header and no `<auth/>`: the server-to-server link
//! vouches for it, not SPF or DKIM), and the receipt goes out only once
//! it is durable. The same handoff sent again is acknowledged, not stored
//! twice.

use std::sync::Arc;

use facteur_bridge::threading::message_id_for_stanza;
use facteur_bridge::to_mail::{stanza_parts, to_rfc5322, OutgoingMail};
use facteur_bridge::wire::{NS_ADDRESS, NS_MAIL};
use facteur_bridge::MailAddress;
use jid::BareJid;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::probe::{rcpt_status, user_jid, RcptStatus};
use super::reply::{self, message_error, receipt, Fault};
use super::LinkHandle;
use crate::config::{Config, Live};
use crate::probe::discover::{Discovery, NoAnswer};
use crate::store::{Answer, AnswerKind, AnswerStatus, HandoffTaken, Millis, NewHandoff, Store};

#[cfg(test)]
mod tests;

/// The sending gateway is not the author domain's (§7.2, §9.2).
const NOT_LISTED: Fault = Fault::new(
    ErrorType::Auth,
    DefinedCondition::Forbidden,
    "the author's domain does not list the sending gateway",
);
/// The author's domain did not say in time whether it lists the gateway.
const NOT_CHECKED: Fault = Fault::new(
    ErrorType::Wait,
    DefinedCondition::RemoteServerTimeout,
    "the author's domain did not answer, try again later",
);
/// The store cannot take the handoff now.
const NOT_STORED: Fault = Fault::new(
    ErrorType::Wait,
    DefinedCondition::InternalServerError,
    "the mail could not be stored, try again later",
);

/// Whether `message` is offered as a handoff: sent to the gateway's own
/// JID with addresses or a `<mail/>`. Messages to mail contacts are users'
/// mail, whatever they carry.
pub fn is_handoff(config: &Config, message: &Message) -> bool {
    let to_gateway = message
        .to
        .as_ref()
        .is_some_and(|to| to.node().is_none() && to.domain() == config.component.jid.domain());
    to_gateway
        && message.type_ != MessageType::Error
        && message
            .payloads
            .iter()
            .any(|p| p.is("addresses", NS_ADDRESS) || p.is("mail", NS_MAIL))
}

/// What a handoff's stanza says, its shape checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stated {
    /// The author (`ofrom`).
    pub ofrom: BareJid,
    /// The author's name, from the address's `desc`.
    pub ofrom_name: Option<String>,
    /// The recipient (`to`).
    pub rcpt: BareJid,
    pub mail: MailMeta,
}

/// The `<mail/>` element's headers (§6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailMeta {
    /// Without angle brackets.
    pub message_id: Option<String>,
    /// Unix seconds.
    pub date: Option<i64>,
    /// Without angle brackets.
    pub in_reply_to: Vec<String>,
    /// Without angle brackets, oldest first.
    pub references: Vec<String>,
}

/// A handoff that passed the checks of the intake loop.
#[derive(Debug)]
struct Checked {
    /// The sending gateway (the stanza's `from`, bare).
    gateway: BareJid,
    ofrom: BareJid,
    rcpt: BareJid,
    message_id: String,
    /// The mail, trace header included.
    raw: Vec<u8>,
}

/// Takes handoffs; shared with the tasks that finish them.
pub struct Handoffs {
    pub config: Live,
    pub store: Store,
    pub discovery: Discovery,
    pub link: LinkHandle,
    /// Where the checks that wait on other servers run.
    pub tracker: TaskTracker,
}

impl Handoffs {
    /// Checks a handoff in the intake loop; the answer to send now, if
    /// any. A handoff that passes is finished in a task of its own.
    pub async fn take(self: &Arc<Self>, message: Message) -> Option<Message> {
        let checked = match self.check(&message).await {
            Ok(checked) => checked,
            Err((ofrom, fault)) => return Some(self.refuse(&message, ofrom.as_ref(), fault)),
        };
        let this = self.clone();
        self.tracker.spawn(async move {
            if let Some(reply) = this.finish(&message, checked).await {
                this.link.send(reply).await;
            }
        });
        None
    }

    /// The checks of §7.2 and §8 that need no other server, in order:
    /// shape, domains, size, recipient.
    async fn check(&self, message: &Message) -> Result<Checked, (Option<BareJid>, Fault)> {
        let gateway = message
            .from
            .as_ref()
            .map(|from| from.to_bare())
            .ok_or((None, reply::NO_SENDER))?;
        let stated = stated(message).map_err(|fault| (None, fault))?;
        let refuse = |fault| (Some(stated.ofrom.clone()), fault);
        let config = self.config.get();
        let own = config.component.jid.domain();
        let ours = |domain: &str| config.mail.serves(domain) || domain == own.as_str();
        if ours(gateway.domain().as_str()) {
            return Err(refuse(Fault::new(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "handoffs are taken from other domains' gateways only",
            )));
        }
        if ours(stated.ofrom.domain().as_str()) {
            return Err(refuse(Fault::new(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "the author is of a domain this gateway serves",
            )));
        }
        let max_size = config.xmpp_mail.max_size;
        let size = String::from(&Element::from(message.clone())).len();
        if u64::try_from(size).unwrap_or(u64::MAX) > max_size {
            return Err(refuse(Fault::with_text(
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                format!("the stanza is larger than max-size {max_size}"),
            )));
        }
        match rcpt_status(&config, &self.store, &stated.rcpt).await {
            RcptStatus::Accept => {}
            RcptStatus::Reject => {
                return Err(refuse(Fault::with_text(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    format!("{} takes no XMPP-Mail", stated.rcpt),
                )))
            }
            RcptStatus::Unknown => return Err(refuse(NOT_STORED)),
        }
        let now = Millis::now().0 / 1000;
        let (message_id, raw) =
            to_mail(message, &stated, &gateway, &config, now).map_err(refuse)?;
        Ok(Checked {
            gateway,
            ofrom: stated.ofrom,
            rcpt: stated.rcpt,
            message_id,
            raw,
        })
    }

    /// Beside the loop: asks whether the author's domain lists the
    /// gateway, then commits. The answer to send, if any.
    async fn finish(&self, message: &Message, checked: Checked) -> Option<Message> {
        match self.listed(&checked.ofrom, &checked.gateway).await {
            Ok(true) => {}
            Ok(false) => return Some(self.refuse(message, Some(&checked.ofrom), NOT_LISTED)),
            Err(NoAnswer(reason)) => {
                info!(from = %checked.gateway, ofrom = %checked.ofrom, reason, "Handoff refused.");
                return Some(message_error(message, NOT_CHECKED));
            }
        }
        let handoff = NewHandoff {
            author: &checked.ofrom,
            message_id: &checked.message_id,
            rcpt: &checked.rcpt,
            gateway: &checked.gateway,
            raw: &checked.raw,
        };
        match self.store.accept_handoff(&handoff).await {
            Ok(HandoffTaken::New(mail_id)) => {
                info!(mail_id, from = %checked.gateway, ofrom = %checked.ofrom, rcpt = %checked.rcpt, size = checked.raw.len(), "Handoff accepted.");
            }
            Ok(HandoffTaken::Again(mail_id)) => {
                info!(mail_id, from = %checked.gateway, ofrom = %checked.ofrom, rcpt = %checked.rcpt, "Handoff received again; acknowledged.");
            }
            Err(e) => {
                warn!(error = format!("{e:#}"), "Store unavailable for a handoff.");
                return Some(message_error(message, NOT_STORED));
            }
        }
        self.remember_writer(&checked).await;
        receipt(message)
    }

    /// Whether the domain of `ofrom` lists `gateway` with the feature,
    /// from the store while the last answer holds, else asked. The domain
    /// itself speaks for its users.
    async fn listed(&self, ofrom: &BareJid, gateway: &BareJid) -> Result<bool, NoAnswer> {
        let domain = ofrom.domain().as_str();
        // The server-to-server link authenticated the domain itself.
        if gateway.node().is_none() && gateway.domain().as_str() == domain {
            return Ok(true);
        }
        let subject = format!("{domain} {gateway}");
        let now = Millis::now();
        match self
            .store
            .xmpp_mail_answer(AnswerKind::Lists, &subject, now)
            .await
        {
            Ok(Some(answer)) => return Ok(answer.status == AnswerStatus::Listed),
            Ok(None) => {}
            Err(e) => warn!(error = format!("{e:#}"), "Store unavailable for a listing."),
        }
        let listed = self.discovery.lists(domain, gateway).await?;
        let ttl = &self.config.get().xmpp_mail.ttl;
        let answer = Answer {
            status: match listed {
                true => AnswerStatus::Listed,
                false => AnswerStatus::Unlisted,
            },
            gateway: gateway.to_string(),
            max_size: 0,
            handoff: false,
            expires_at: now.after(match listed {
                true => ttl.accept,
                false => ttl.reject,
            }),
        };
        if let Err(e) = self
            .store
            .remember_xmpp_mail_answer(AnswerKind::Lists, &subject, &answer)
            .await
        {
            warn!(error = format!("{e:#}"), "Store unavailable for a listing.");
        }
        Ok(listed)
    }

    /// The author writes by handoff: mail back to them goes the same way
    /// (§7.2), through the gateway that handed this one over.
    async fn remember_writer(&self, checked: &Checked) {
        let answer = Answer {
            status: AnswerStatus::Accept,
            gateway: checked.gateway.to_string(),
            max_size: 0,
            handoff: true,
            expires_at: Millis::now().after(self.config.get().xmpp_mail.ttl.accept),
        };
        if let Err(e) = self
            .store
            .remember_xmpp_mail_answer(AnswerKind::Rcpt, checked.ofrom.as_str(), &answer)
            .await
        {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for an XMPP-Mail answer."
            );
        }
    }

    /// The error answering a handoff refused, logged.
    fn refuse(&self, message: &Message, ofrom: Option<&BareJid>, fault: Fault) -> Message {
        let from = message
            .from
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_default();
        let ofrom = ofrom.map(|o| o.to_string()).unwrap_or_default();
        info!(from, ofrom, reason = %fault.text, "Handoff refused.");
        message_error(message, fault)
    }
}

/// The handoff's addresses and `<mail/>`, or the `bad-request` that
/// refuses a malformed one (§8).
pub fn stated(message: &Message) -> Result<Stated, Fault> {
    let bad =
        |text: &'static str| Fault::new(ErrorType::Modify, DefinedCondition::BadRequest, text);
    let addresses: Vec<&Element> = message
        .payloads
        .iter()
        .filter(|p| p.is("addresses", NS_ADDRESS))
        .flat_map(|a| a.children().filter(|c| c.is("address", NS_ADDRESS)))
        .collect();
    let of_type = |kind: &str| -> Vec<&Element> {
        addresses
            .iter()
            .copied()
            .filter(|a| a.attr("type") == Some(kind))
            .collect()
    };
    let (ofrom, ofrom_name) = match of_type("ofrom").as_slice() {
        [] => return Err(bad("a handoff names its author with an ofrom address")),
        [one] => (
            one.attr("jid")
                .and_then(user_jid)
                .ok_or(bad("the ofrom address is not a bare JID"))?,
            one.attr("desc")
                .map(str::to_owned)
                .filter(|d| !d.trim().is_empty()),
        ),
        _ => return Err(bad("a handoff names one author")),
    };
    let rcpt = match of_type("to").as_slice() {
        [] => return Err(bad("a handoff names its recipient with a to address")),
        [one] => one
            .attr("jid")
            .and_then(user_jid)
            .ok_or(bad("the to address is not a bare JID"))?,
        _ => return Err(bad("a handoff names one recipient")),
    };
    let mail = message
        .payloads
        .iter()
        .find(|p| p.is("mail", NS_MAIL))
        .ok_or(bad("a handoff carries <mail xmlns='urn:xmpp:mail:0'/>"))?;
    let date = match mail.attr("date") {
        None => None,
        Some(date) => Some(
            date.trim()
                .parse::<i64>()
                .map_err(|_| bad("the <mail/> date is not an integer"))?,
        ),
    };
    let message_id = match mail.attr("message-id") {
        None => None,
        Some(id) if is_message_id(id) => Some(id.to_owned()),
        Some(_) => {
            return Err(bad(
                "the <mail/> message-id is empty or has angle brackets or spaces",
            ))
        }
    };
    let ids = |name: &str| {
        mail.get_child(name, NS_MAIL)
            .map(|e| id_list(&e.text()))
            .unwrap_or_default()
    };
    Ok(Stated {
        ofrom,
        ofrom_name,
        rcpt,
        mail: MailMeta {
            message_id,
            date,
            in_reply_to: ids("in-reply-to"),
            references: ids("references"),
        },
    })
}

/// A Message-ID without its angle brackets, as `<mail/>` carries it.
fn is_message_id(id: &str) -> bool {
    !id.is_empty()
        && !id
            .chars()
            .any(|c| c == '<' || c == '>' || c.is_whitespace() || c.is_control())
}

/// `<a@x> <b@y>` as ids without brackets; malformed ones are left out.
fn id_list(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|id| id.trim_start_matches('<').trim_end_matches('>'))
        .filter(|id| is_message_id(id))
        .map(str::to_owned)
        .collect()
}

/// The RFC 5322 mail a handoff carries, with its trace header, and its
/// Message-ID: the `<mail/>`'s, else one made from the stanza's id (so
/// that the same stanza sent again is the same mail). Shared files stay
/// links: they are fetched when the recipient opens them, never here.
pub fn to_mail(
    message: &Message,
    stated: &Stated,
    gateway: &BareJid,
    config: &Config,
    now: i64,
) -> Result<(String, Vec<u8>), Fault> {
    let bad =
        |text: String| Fault::with_text(ErrorType::Modify, DefinedCondition::BadRequest, text);
    let address = |jid: &BareJid| {
        MailAddress::parse(jid.as_str()).map_err(|e| bad(format!("{jid} is no mail address: {e}")))
    };
    let from = address(&stated.ofrom)?;
    let to = address(&stated.rcpt)?;
    let parts = stanza_parts(message);
    let mut body = parts.body.clone();
    for shared in &parts.shared {
        if !body.contains(&shared.url) {
            if !body.is_empty() {
                body.push('\n');
            }
            body.push_str(&shared.url);
        }
    }
    let message_id = match (&stated.mail.message_id, &parts.stanza_id) {
        (Some(id), _) => id.clone(),
        (None, Some(stanza_id)) => {
            message_id_for_stanza(&stated.ofrom, stanza_id, gateway.domain().as_str())
        }
        (None, None) => {
            return Err(bad(
                "a handoff without a message-id needs a stanza id".into()
            ))
        }
    };
    let date = stated.mail.date.unwrap_or(now);
    let mail = OutgoingMail {
        from: &from,
        from_name: stated.ofrom_name.as_deref(),
        to: &to,
        subject: parts.subject.as_deref(),
        body: &body,
        message_id: &message_id,
        in_reply_to: stated.mail.in_reply_to.first().map(String::as_str),
        references: &stated.mail.references,
        html: parts.html.as_deref(),
        styled: parts.styled,
        files: &[],
        jabber_id: None,
        date,
    };
    let built = to_rfc5322(&mail).map_err(|e| bad(e.to_string()))?;
    let trace = format!(
        "Received: from {gateway}\r\n\tby {own} (facteur) with XMPP-Mail\r\n\tfor <{rcpt}>;\r\n\t{date}\r\n",
        own = config.component.jid,
        rcpt = stated.rcpt,
        date = mail_builder::headers::date::Date::new(now).to_rfc822(),
    );
    let mut raw = Vec::with_capacity(trace.len() + built.len());
    raw.extend_from_slice(trace.as_bytes());
    raw.extend_from_slice(&built);
    Ok((message_id, raw))
}
