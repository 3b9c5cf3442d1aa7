//! A XEP-0424 retraction of a message to a mail contact. The retraction
//! itself (and its XEP-0428 fallback text) is never mailed. The mail it
//! names is withdrawn while it still waits in the queue; one that has left
//! cannot be unsent. The author is told which, by a notice in the
//! conversation.

use tracing::{debug, info, warn};
use xmpp_parsers::message::Message;

use super::{Outgoing, LEAVING};
use crate::component::reply::{self, message_error};
use crate::store::Millis;

impl Outgoing {
    /// Acts on a retraction of the message its author's client knows by
    /// `id`; the answer to send back now, if any.
    pub(super) async fn retract(&self, message: &Message, id: &str) -> Option<Message> {
        let sending = match self.check(message).await {
            Ok(sending) => sending,
            Err(refusal) => return Some(refusal),
        };
        // Conversations retracts every earlier id of a corrected message
        // too; ids the gateway never mailed are not its business.
        let record = match self.store.message_by_stanza_id(&sending.sender, id).await {
            Ok(Some(record)) if record.author == sending.sender && record.peer == sending.to => {
                record
            }
            Ok(_) => {
                debug!(sender = %sending.sender, "Retraction of a message never mailed.");
                return None;
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable for a retraction."
                );
                return Some(message_error(message, reply::TRY_LATER));
            }
        };
        let leaving_until = Millis::now().after(LEAVING);
        match self
            .store
            .withdraw_mail(
                &sending.sender,
                &sending.to,
                &sending.rcpt.to_string(),
                &record.message_id,
                leaving_until,
            )
            .await
        {
            Ok(outcome) => {
                info!(sender = %sending.sender, message_id = %record.message_id, outcome = ?outcome, "Retraction.");
                None
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable for a retraction."
                );
                Some(message_error(message, reply::TRY_LATER))
            }
        }
    }
}
