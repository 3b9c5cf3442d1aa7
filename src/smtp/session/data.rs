//! DATA (RFC 5321 §4.1.1.4): the mail read in, dot-unstuffed, checked
//! (authentication, spam) and committed. `250` is written only once the
//! store has the mail; a report to a return path goes to the queue of
//! the mail it reports on.

use facteur_policy::auth::AuthVerdict;
use jid::BareJid;
use smtp_proto::request::receiver::DataReceiver;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use super::super::reader::{COMMAND_BUFFER, DATA_BUFFER};
use super::super::reply;
use super::{Session, Transaction};
use crate::store::InboundMail;
use crate::telemetry::meters;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// Handles DATA; returns false when the connection must close.
    pub(super) async fn data(&mut self) -> std::io::Result<bool> {
        if self.tx.mail_from.is_none() {
            self.reply(reply::MAIL_BEFORE_DATA);
            return Ok(true);
        }
        if self.tx.recipients.is_empty() && self.tx.bounces.is_empty() {
            self.reply(reply::NO_VALID_RECIPIENTS);
            return Ok(true);
        }
        self.reply(reply::START_DATA);
        self.flush().await?;

        let max = self.config().inbound.max_message_size;
        let idle = self.config().inbound.idle_timeout;
        let deadline = tokio::time::Instant::now() + self.config().inbound.data_timeout;
        let mut receiver = DataReceiver::new();
        let mut data = Vec::with_capacity(8 * 1024);
        let mut size = 0usize;
        // A large buffer while the mail streams in; an early return ends
        // the connection, buffer and all.
        self.reader.set_capacity(DATA_BUFFER);
        loop {
            let wait = idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let available = match tokio::time::timeout(wait, self.reader.fill_buf()).await {
                Ok(read) => read?,
                Err(_) => {
                    self.timed_out().await?;
                    return Ok(false);
                }
            };
            if available.is_empty() {
                return Ok(false);
            }
            let mut bytes = available.iter();
            let before = data.len();
            let done = receiver.ingest(&mut bytes, &mut data);
            let used = available.len() - bytes.len();
            self.reader.consume(used);
            size += data.len() - before;
            if size > max {
                // Keep reading to the end of DATA, storing nothing.
                data.clear();
            }
            if done {
                break;
            }
        }
        self.reader.set_capacity(COMMAND_BUFFER);
        let tx = std::mem::take(&mut self.tx);
        if size > max {
            info!(peer = %self.peer, size, max, "Refused oversized mail.");
            meters().smtp_refused.too_big.increment(1);
            self.reply(reply::TOO_BIG);
            return Ok(true);
        }
        // Boxed: the checks and the commit hold large futures only while
        // a mail is being committed, not in every idle connection.
        Box::pin(self.commit(tx, data)).await;
        Ok(true)
    }

    async fn commit(&mut self, tx: Transaction, data: Vec<u8>) {
        if !facteur_bridge::to_xmpp::is_readable(&data) {
            meters().smtp_refused.unparsable.increment(1);
            self.reply(reply::UNPARSABLE);
            return;
        }
        let mail_from = tx.mail_from.unwrap_or_default();
        // The client that sent the mail: the peer, or the one the MTA in
        // front names.
        let client = tx.forwarded.addr.unwrap_or(self.peer.ip());
        let (auth_header, auth, warning) = match &self.reception.verifier {
            Some(verifier) => {
                let helo = match &tx.forwarded.helo {
                    Some(helo) => helo.as_str(),
                    None => self.helo.as_deref().unwrap_or_default(),
                };
                let verified = verifier
                    .verify(&data, client, helo, &mail_from, &self.config.auth.rules)
                    .await;
                debug!(auth = %verified.summary, "Checked.");
                let warning = match verified.verdict {
                    AuthVerdict::Accept => String::new(),
                    AuthVerdict::Mark { reason, .. } => reason,
                    AuthVerdict::Reject { failed, reason } => {
                        info!(peer = %self.peer, mail_from = %mail_from, auth = %verified.summary, reason = %reason, "Refused mail that failed authentication.");
                        meters().smtp_refused.authentication.increment(1);
                        self.reply(reply::auth_refusal(failed, &reason));
                        return;
                    }
                };
                (verified.header, verified.summary, warning)
            }
            None => (String::new(), String::new(), String::new()),
        };
        if !tx.bounces.is_empty() {
            if let Err(error) = self.bounced(&tx.bounces, &data).await {
                warn!(
                    error = format!("{error:#}"),
                    "Store unavailable at end of DATA."
                );
                meters().smtp_refused.store.increment(1);
                return self.reply(reply::STORAGE_FAILED);
            }
            if tx.recipients.is_empty() {
                meters().smtp_reports.increment(1);
                return self.reply(reply::REPORT_RECEIVED);
            }
        }
        let (delivered, spam) = match self
            .reception
            .spam
            .judge(
                &self.reception.store,
                &mail_from,
                client,
                &data,
                &tx.recipients,
                &warning,
            )
            .await
        {
            crate::spam::Judged::Accept(delivered, spam) => (delivered, spam),
            crate::spam::Judged::Reject(scores) => {
                info!(peer = %self.peer, mail_from = %mail_from, scores = %scores, "Refused mail as spam.");
                meters().smtp_refused.spam.increment(1);
                return self.reply(reply::SPAM_REFUSED);
            }
        };
        let raw = self.with_trace(&auth_header, data, &tx.recipients);
        let recipients = tx.recipients.len();
        let size = raw.len();
        let mail = InboundMail {
            mail_from: mail_from.clone(),
            client_ip: client.to_string(),
            raw,
            recipients: delivered,
            auth,
            warning,
            spam,
        };
        match self.reception.committer.commit(mail).await {
            Ok(id) => {
                info!(mail_id = id, peer = %self.peer, client = %client, mail_from = %mail_from, recipients, size, "Accepted mail.");
                meters().smtp_accepted.increment(1);
                self.reply(reply::queued(id));
            }
            Err(error) => {
                warn!(
                    error = format!("{error:#}"),
                    "Store unavailable at end of DATA."
                );
                meters().smtp_refused.store.increment(1);
                self.reply(reply::STORAGE_FAILED);
            }
        }
    }

    /// Hands a bounce of mail facteur sent to the outgoing queue, which
    /// tells the XMPP sender; a positive delivery report (RFC 3464
    /// `delivered`, `relayed` or `expanded`) sends the XEP-0184 receipts
    /// the mail owes. Other reports (delays, auto-replies to the return
    /// path) are taken and dropped: none reaches the user.
    async fn bounced(&self, ids: &[i64], data: &[u8]) -> anyhow::Result<()> {
        let Some(bounce) = facteur_bridge::bounce::read_bounce(data).filter(|b| b.permanent) else {
            let Some(delivered) = facteur_bridge::bounce::read_delivered(data) else {
                info!(peer = %self.peer, queue_ids = ?ids, "Report to a return path is no failure; dropped.");
                return Ok(());
            };
            for &id in ids {
                let receipts = self
                    .reception
                    .store
                    .mail_reported_delivered(id, &delivered)
                    .await?;
                info!(queue_id = id, receipts, "Delivery report received.");
            }
            return Ok(());
        };
        let gateway = &self.config().component.jid;
        for &id in ids {
            match self
                .reception
                .store
                .mail_bounced(id, &bounce, gateway)
                .await?
            {
                Some(told) => {
                    info!(queue_id = id, rcpt = %told.rcpt, told = true, reason = %told.reason, "Bounce received.");
                }
                None => info!(queue_id = id, told = false, "Bounce received."),
            }
        }
        Ok(())
    }

    /// Prepends the authentication results (RFC 8601 §5: above the trace
    /// header of the same host) and the RFC 5321 §4.4 trace header, in
    /// the buffer the mail was received in (no second copy of the mail).
    fn with_trace(&self, auth_header: &str, data: Vec<u8>, recipients: &[BareJid]) -> Vec<u8> {
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let helo: String = helo
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        let protocol = match (self.extended, self.tls_active) {
            (true, true) => "ESMTPS",
            (true, false) => "ESMTP",
            (false, _) => "SMTP",
        };
        let rcpt = match recipients {
            [one] => format!("\r\n\tfor <{one}>"),
            _ => String::new(),
        };
        let date = mail_builder::headers::date::Date::new(crate::store::Millis::now().0 / 1000)
            .to_rfc822();
        let header = format!(
            "Received: from {helo} ([{ip}])\r\n\tby {host} (facteur) with {protocol}{rcpt};\r\n\t{date}\r\n",
            ip = self.peer.ip(),
            host = self.config().inbound.hostname,
        );
        let mut raw = data;
        raw.splice(0..0, auth_header.bytes().chain(header.bytes()));
        raw
    }
}
