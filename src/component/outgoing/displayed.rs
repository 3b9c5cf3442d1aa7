//! A XEP-0333 `displayed` marker from a user's client, on a mail that
//! asked for a read notification (`Disposition-Notification-To`), becomes
//! the RFC 8098 MDN (`manual-action/MDN-sent-manually; displayed`) From the
//! user to the address the mail named, for a user who turned the option
//! on; once per mail. The option is the user's consent that RFC 8098 §2.1
//! asks for; a mail that is itself a report or automatic never asks
//! (`facteur_bridge::mdn::receipt_request`).

use facteur_bridge::mdn::{displayed_report, DisplayedReport};
use facteur_bridge::MailAddress;
use rand::Rng;
use tracing::{debug, error, info, warn};
use xmpp_parsers::message::Message;

use super::Outgoing;
use crate::store::{MdnRequest, Millis, NewMail};

impl Outgoing {
    /// Mails the read notification the message `target` asked for, if
    /// the user sends them and it is owed still. Markers get no answer:
    /// what goes wrong is only logged.
    pub(super) async fn displayed(&self, message: &Message, target: &str) {
        let Some(user) = message.from.as_ref().map(|j| j.to_bare()) else {
            return;
        };
        match self.store.user_options(&user).await {
            Ok(Some(options)) if options.send_mdn => {}
            Ok(_) => return,
            Err(e) => {
                warn!(error = format!("{e:#}"), "Store unavailable for a marker.");
                return;
            }
        }
        let Ok(sending) = self.check(message).await else {
            debug!(user = %user, "Marker to an address that cannot be mailed.");
            return;
        };
        let request = match self
            .store
            .take_mdn_request(&sending.sender, &sending.to, target)
            .await
        {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                warn!(error = format!("{e:#}"), "Store unavailable for a marker.");
                return;
            }
        };
        if let Err(e) = self.queue_mdn(&sending.from, &request).await {
            warn!(error = format!("{e:#}"), user = %user, "Read notification not queued.");
            // Owed still: the next marker may send it.
            if let Err(e) = self.store.remember_mdn_request(&request).await {
                warn!(error = format!("{e:#}"), "Read notification forgotten.");
            }
        }
    }

    async fn queue_mdn(&self, from: &MailAddress, request: &MdnRequest) -> anyhow::Result<()> {
        let config = self.config.get();
        let to = MailAddress::parse(&request.notify_to)?;
        let gateway = config.component.jid.domain();
        let message_id = format!("mdn-{:032x}@{}", rand::rng().random::<u128>(), gateway);
        let raw = displayed_report(&DisplayedReport {
            from,
            to: &to,
            original_message_id: &request.message_id,
            original_subject: &request.subject,
            reporting_ua: &config.outbound.hostname,
            message_id: &message_id,
            date: Millis::now().0 / 1000,
        })?;
        let raw = self.signers.sign(from.domain(), raw).inspect_err(|e| {
            error!(error = format!("{e:#}"), "DKIM signing failed.");
        })?;
        let (mail_from, rcpt) = (from.to_string(), to.to_string());
        let mail = NewMail {
            sender: &request.user,
            mail_from: &mail_from,
            rcpt: &rcpt,
            message_id: &message_id,
            raw: &raw,
            stanza: "",
            submission: None,
        };
        let ids = self.store.queue_mails(&[(mail, None)]).await?;
        info!(queue_id = ?ids.first(), sender = %request.user, rcpt = %rcpt, original = %request.message_id, "Queued a read notification.");
        Ok(())
    }
}
