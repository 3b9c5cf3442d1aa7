//! Who may mail whom: the checks on a chat message before it becomes mail
//! (sender served and registered, recipient an escaped address, the
//! sender's mail rate).

use std::time::Instant;

use facteur_bridge::{jid_to_mailbox, MailAddress};
use facteur_policy::limits::{Decision, Rate};
use facteur_policy::relay::{sender_verdict, AddressFacts, SenderVerdict};
use jid::BareJid;
use tracing::{info, warn};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::Outgoing;
use crate::component::reply::{self, message_error, Fault};

/// A checked message: who sends to whom.
pub struct Sending {
    pub sender: BareJid,
    pub to: BareJid,
    pub from: MailAddress,
    pub rcpt: MailAddress,
}

impl Outgoing {
    /// Who sends to whom, or the error that refuses the message.
    pub(super) async fn check(&self, message: &Message) -> Result<Sending, Message> {
        let config = self.config.get();
        let refuse = |fault| message_error(message, fault);
        let domains = || config.mail.domains.join(", ");
        if message.type_ == MessageType::Groupchat {
            return Err(refuse(Fault::new(
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                "group chats cannot be mailed",
            )));
        }
        let Some(sender) = message.from.as_ref().map(|j| j.to_bare()) else {
            return Err(refuse(reply::NO_SENDER));
        };
        let Some(to) = message.to.as_ref().map(|j| j.to_bare()) else {
            return Err(refuse(Fault::new(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "no recipient",
            )));
        };
        let gateway = config.component.jid.domain();
        let rcpt = jid_to_mailbox(&to, gateway).map_err(|e| {
            refuse(Fault::with_text(
                ErrorType::Modify,
                DefinedCondition::ItemNotFound,
                format!(
                    "{e}; write to the address with @ escaped, e.g. bob\\40example.net@{gateway}"
                ),
            ))
        })?;
        let registered = self.store.is_registered(&sender).await.map_err(|e| {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for an outgoing message."
            );
            refuse(reply::NOT_QUEUED)
        })?;
        let facts = AddressFacts {
            domain_served: config.mail.serves(sender.domain().as_str()),
            registered,
        };
        match sender_verdict(config.mail.users, facts) {
            SenderVerdict::Allow => {}
            SenderVerdict::ForeignDomain => {
                return Err(refuse(Fault::with_text(
                    ErrorType::Cancel,
                    DefinedCondition::NotAllowed,
                    format!("only users of {} can send mail here", domains()),
                )));
            }
            SenderVerdict::NotRegistered => {
                return Err(refuse(Fault::with_text(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    format!("register with {gateway} (XEP-0077) before sending mail"),
                )));
            }
        }
        if let Decision::Deny { retry_after } = self.count_mail(&sender, config.limits.sender_mails)
        {
            info!(sender = %sender, "Sender over its mail rate.");
            let limit = config.limits.sender_mails.count;
            return Err(refuse(Fault::with_text(
                ErrorType::Wait,
                DefinedCondition::PolicyViolation,
                format!(
                    "at most {limit} mails an hour; try again in {} minutes",
                    retry_after.as_secs().div_ceil(60)
                ),
            )));
        }
        let from = MailAddress::parse(sender.as_str()).map_err(|_| {
            refuse(Fault::new(
                ErrorType::Cancel,
                DefinedCondition::NotAllowed,
                "your JID is not a valid mail address",
            ))
        })?;
        let rcpt = self.original_case(&to, rcpt).await;
        Ok(Sending {
            sender,
            to,
            from,
            rcpt,
        })
    }

    /// Counts one mail against the sender's rate.
    fn count_mail(&self, sender: &BareJid, rate: Rate) -> Decision {
        match self.sender_mails.lock() {
            Ok(mut limiter) => {
                limiter.set_rate(rate);
                limiter.check(sender, 1, Instant::now())
            }
            Err(_) => Decision::Allow,
        }
    }

    /// The address as first seen in mail, when it is the same mailbox:
    /// JIDs lose the case of the local part, some mail systems need it.
    async fn original_case(&self, jid: &BareJid, rcpt: MailAddress) -> MailAddress {
        match self.store.contact(jid).await {
            Ok(Some((seen, _))) => match MailAddress::parse(&seen) {
                Ok(seen) if seen.same_mailbox(&rcpt) => seen,
                _ => rcpt,
            },
            _ => rcpt,
        }
    }
}
