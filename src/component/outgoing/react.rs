//! A XEP-0444 reaction to a message of a conversation with a mail contact
//! becomes an RFC 9078 reaction mail, In-Reply-To the message reacted to:
//! what Delta Chat and other RFC 9078 clients show as a reaction. Its
//! fallback body, if the client adds one, is never mailed as text.

use facteur_bridge::reaction::{reaction_mail, ReactionMail, StanzaReaction};
use facteur_bridge::threading::{message_id_for_stanza, references_for_reply};
use facteur_bridge::to_mail::stanza_parts;
use rand::Rng;
use tracing::{debug, info, warn};
use xmpp_parsers::message::Message;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{owe, Outgoing};
use crate::component::reply::{self, message_error, Fault};
use crate::store::{Millis, NewMail};

impl Outgoing {
    /// Mails `reaction`; the answer to send back now, if any.
    pub(super) async fn react(
        &self,
        message: &Message,
        reaction: StanzaReaction,
    ) -> Option<Message> {
        let sending = match self.check(message).await {
            Ok(sending) => sending,
            Err(refusal) => return Some(refusal),
        };
        let target = match self
            .store
            .message_by_stanza_id(&sending.sender, &reaction.id)
            .await
        {
            Ok(Some(record)) if record.peer == sending.to => record,
            Ok(_) => {
                debug!(sender = %sending.sender, "Reaction to a message the gateway does not know.");
                return None;
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable for a reaction."
                );
                return Some(message_error(message, reply::TRY_LATER));
            }
        };
        let config = self.config.get();
        let gateway = config.component.jid.domain();
        // The same reaction stanza again makes the same mail, queued once.
        let message_id = match stanza_parts(message).stanza_id {
            Some(id) => message_id_for_stanza(&sending.sender, &id, gateway.as_str()),
            None => format!("{:032x}@{}", rand::rng().random::<u128>(), gateway),
        };
        let references = references_for_reply(&target.message_id, &target.references);
        let raw = reaction_mail(&ReactionMail {
            from: &sending.from,
            to: &sending.rcpt,
            message_id: &message_id,
            in_reply_to: &target.message_id,
            references: &references,
            emoji: &reaction.emoji,
            jabber_id: config
                .outbound
                .jabber_id_header
                .then_some(sending.sender.as_str()),
            date: Millis::now().0 / 1000,
        });
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                return Some(message_error(
                    message,
                    Fault::with_text(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        e.to_string(),
                    ),
                ))
            }
        };
        // A reaction is mail like any other: encrypted, or not sent, as
        // the user's option `encrypt` says.
        let sealed = match self
            .sealing(message, &sending.sender, &sending.from, &sending.rcpt)
            .await
        {
            Ok(sealing) => {
                self.seal(message, sending.from.domain(), raw, &sealing)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        let raw = match sealed {
            Ok(raw) => raw,
            Err(refusal) => return Some(refusal),
        };
        let (mail_from, rcpt) = (sending.from.to_string(), sending.rcpt.to_string());
        let mail = NewMail {
            sender: &sending.sender,
            mail_from: &mail_from,
            rcpt: &rcpt,
            message_id: &message_id,
            raw: &raw,
            stanza: "",
            submission: None,
        };
        let owed: Vec<_> = owe(message, &sending.sender, &message_id, &rcpt)
            .into_iter()
            .collect();
        let queued = match self.store.owe_receipts(&owed).await {
            Ok(()) => self.store.queue_mails(&[(mail, None)]).await,
            Err(e) => Err(e),
        };
        match queued {
            Ok(ids) => {
                info!(queue_id = ?ids.first(), sender = %sending.sender, rcpt = %rcpt, size = raw.len(), "Queued a reaction.");
                None
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable for a reaction."
                );
                Some(message_error(message, reply::NOT_QUEUED))
            }
        }
    }
}
