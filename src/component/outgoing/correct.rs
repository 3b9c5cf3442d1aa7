//! XEP-0308 corrections of messages to mail contacts. The original is
//! found by the id the author's client gave it; a correction of a message
//! the gateway never mailed is mailed as any message. Otherwise two mails
//! are built: the corrected text in the original's place, for while it
//! still waits in the queue, and a reply to the original, opening with a
//! line that says it corrects it, under the original's Subject. The store
//! keeps the one that applies, in one transaction.

use facteur_bridge::correct::{replaced_id, subject_of};
use facteur_bridge::MailAddress;
use jid::BareJid;
use tracing::{info, warn};
use xmpp_parsers::message::Message;

use super::{owe, Outgoing, Prepared, LEAVING};
use crate::component::reply::{self, message_error};
use crate::store::{Corrected, MessageRecord, Millis, NewMail, OwedReceipt, Replacement};

/// The message a correction corrects, as the gateway mailed it.
pub(super) struct Original {
    pub record: MessageRecord,
    /// The Subject of its mail.
    pub subject: Option<String>,
}

impl Outgoing {
    /// The original of `message` if it is a correction of a message
    /// `sender` mailed to `to`.
    pub(super) async fn corrected(
        &self,
        message: &Message,
        sender: &BareJid,
        to: &BareJid,
        rcpt: &MailAddress,
    ) -> Option<Original> {
        let id = replaced_id(message)?;
        let record = match self.store.message_by_stanza_id(sender, &id).await {
            Ok(Some(record)) if record.author == *sender && record.peer == *to => record,
            Ok(_) => return None,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable; a correction goes as a mail of its own."
                );
                return None;
            }
        };
        let subject = match self
            .store
            .mail_raw(sender, &rcpt.to_string(), &record.message_id)
            .await
        {
            Ok(raw) => raw.as_deref().and_then(subject_of),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable; a correction goes without its Subject."
                );
                None
            }
        };
        Some(Original { record, subject })
    }

    /// Queues a correction (see [`Store::queue_correction`]); the answer
    /// to its stanza: none (its receipt comes once delivered), or a `wait`
    /// error.
    ///
    /// [`Store::queue_correction`]: crate::store::Store::queue_correction
    pub(super) async fn queue_correction(&self, prepared: Prepared) -> Option<Message> {
        let replacing = prepared.replacement.as_ref()?;
        let reply = NewMail {
            sender: &prepared.sender,
            mail_from: &prepared.mail_from,
            rcpt: &prepared.rcpt,
            message_id: &prepared.message_id,
            raw: &prepared.raw,
            stanza: &prepared.stanza,
            submission: prepared.submission,
        };
        let replacement = Replacement {
            message_id: &replacing.message_id,
            raw: &replacing.raw,
            stanza: &replacing.stanza,
        };
        // Owed by whichever mail the correction becomes, before either can
        // leave.
        let owed: Vec<OwedReceipt> = [&replacing.message_id, &prepared.message_id]
            .into_iter()
            .filter_map(|id| owe(&prepared.message, &prepared.sender, id, &prepared.rcpt))
            .collect();
        if let Err(e) = self.store.owe_receipts(&owed).await {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable for a correction."
            );
            return Some(message_error(&prepared.message, reply::NOT_QUEUED));
        }
        let leaving_until = Millis::now().after(LEAVING);
        match self
            .store
            .queue_correction(&replacement, &reply, &prepared.record, leaving_until)
            .await
        {
            Ok(Corrected::Replaced(id)) => {
                info!(queue_id = id, sender = %prepared.sender, rcpt = %prepared.rcpt, size = replacing.raw.len(), "Queued mail corrected.");
                None
            }
            Ok(Corrected::Queued(id)) => {
                info!(queue_id = id, sender = %prepared.sender, rcpt = %prepared.rcpt, size = prepared.raw.len(), "Queued a correction.");
                None
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable for a correction."
                );
                Some(message_error(&prepared.message, reply::NOT_QUEUED))
            }
        }
    }
}
