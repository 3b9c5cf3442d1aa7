//! What becomes of a delivery once the server has answered for its
//! stanza: delivered, deferred, given up with the report its sender is
//! owed, or given back when the link went down first.

use jid::BareJid;
use tracing::{debug, info, warn};

use super::{Sent, ToXmpp, CONFIRM_TIMEOUT};
use crate::component::Undelivered;
use crate::pipeline::jitter;
use crate::pipeline::reports::{owed_report, status_for_refusal};
use crate::store::{Millis, NewMail, ToXmppBody, ToXmppItem};
use crate::telemetry::meters;

impl ToXmpp {
    /// Waits for the server's confirmations of a batch, and stores the
    /// outcome of each item: delivered, retried, failed, or given back.
    pub(super) async fn settle(&self, waiting: Sent) {
        let mut delivered = Vec::with_capacity(waiting.len());
        let mut unsent = Vec::new();
        for (item, confirmation) in waiting {
            let outcome = tokio::time::timeout(CONFIRM_TIMEOUT, confirmation).await;
            let stored = match outcome {
                Ok(Ok(())) => {
                    info!(delivery = item.id, to = %item.recipient, "Delivered to XMPP.");
                    meters().to_xmpp_delivered.increment(1);
                    meters()
                        .to_xmpp_seconds
                        .record(Millis::now().since(item.created_at));
                    delivered.push(item.id);
                    Ok(())
                }
                // A block refuses the mail: telling its sender would tell a
                // spammer that the address is read.
                Ok(Err(Undelivered::Refused(refusal)))
                    if refusal.permanent && self.sender_blocked(&item).await =>
                {
                    info!(delivery = item.id, to = %item.recipient, error = %refusal, "Refused by the recipient's block; no report to the sender.");
                    self.store
                        .to_xmpp_failed(item.id, &refusal.to_string(), None)
                        .await
                        .map(|()| meters().to_xmpp_failed.increment(1))
                }
                Ok(Err(Undelivered::Refused(refusal))) if refusal.permanent => {
                    warn!(delivery = item.id, to = %item.recipient, error = %refusal, "XMPP server refused the message.");
                    let status = status_for_refusal(&refusal.condition);
                    self.give_up(&item, &refusal.to_string(), status).await
                }
                Ok(Err(Undelivered::Refused(refusal))) => {
                    self.retry(&item, &refusal.to_string()).await
                }
                // Not the item's fault: it is due again as soon as the link is back.
                Ok(Err(Undelivered::LinkLost)) | Err(_) => {
                    debug!(
                        delivery = item.id,
                        "Link lost before confirmation; will resend."
                    );
                    unsent.push(item.id);
                    Ok(())
                }
            };
            if let Err(e) = stored {
                warn!(
                    error = format!("{e:#}"),
                    delivery = item.id,
                    "Store unavailable; the delivery will be repeated."
                );
            }
        }
        // One commit for the batch: a crash before it repeats the batch,
        // with the same stanza ids.
        if let Err(e) = self.store.to_xmpp_delivered(&delivered, &[], &[]).await {
            warn!(
                error = format!("{e:#}"),
                count = delivered.len(),
                "Store unavailable; deliveries will be repeated."
            );
        }
        // Given back: another instance whose link is up may send them.
        if let Err(e) = self.store.to_xmpp_release(&unsent).await {
            warn!(
                error = format!("{e:#}"),
                count = unsent.len(),
                "Store unavailable; deliveries wait for their leases to run out."
            );
        }
    }

    /// Whether the recipient of an inbound mail blocked its sender (the
    /// reverse path, as at RCPT), also if she unblocked it at the gateway
    /// only. A store error counts as not blocked: the report goes as
    /// before.
    async fn sender_blocked(&self, item: &ToXmppItem) -> bool {
        let ToXmppBody::Mail { mail_from, .. } = &item.body else {
            return false;
        };
        let Ok(user) = BareJid::new(&item.recipient) else {
            return false;
        };
        match self.store.server_may_block(&user, mail_from).await {
            Ok(blocked) => blocked,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable; a block may go unseen."
                );
                false
            }
        }
    }

    /// Gives a delivery up, with the report its sender is owed, if any.
    pub(super) async fn give_up(
        &self,
        item: &ToXmppItem,
        reason: &str,
        status: &str,
    ) -> anyhow::Result<()> {
        let config = self.config.get();
        let report = owed_report(&config, item, reason, status);
        let queued = report.as_ref().map(|report| NewMail {
            sender: &config.component.jid,
            mail_from: "",
            rcpt: &report.rcpt,
            message_id: &report.message_id,
            raw: &report.raw,
            stanza: "",
            submission: None,
        });
        self.store
            .to_xmpp_failed(item.id, reason, queued.as_ref())
            .await?;
        meters().to_xmpp_failed.increment(1);
        if let Some(report) = report {
            info!(delivery = item.id, to = %report.rcpt, status, "Delivery report queued.");
        }
        Ok(())
    }

    pub(super) async fn retry(&self, item: &ToXmppItem, reason: &str) -> anyhow::Result<()> {
        use facteur_policy::retry::RetryDecision;
        let age = Millis::now().since(item.created_at);
        match self
            .config
            .get()
            .xmpp
            .retry
            .after_failure(item.attempts + 1, age, jitter())
        {
            RetryDecision::RetryAfter(wait) => {
                info!(
                    delivery = item.id,
                    error = reason,
                    wait_s = wait.as_secs(),
                    "XMPP delivery deferred."
                );
                self.store
                    .to_xmpp_retry(item.id, Millis::now().after(wait), reason)
                    .await?;
                meters().to_xmpp_deferred.increment(1);
                Ok(())
            }
            RetryDecision::GiveUp => {
                warn!(
                    delivery = item.id,
                    error = reason,
                    "XMPP delivery given up."
                );
                self.give_up(item, reason, "4.4.7").await
            }
        }
    }
}
