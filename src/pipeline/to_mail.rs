//! Delivery of queued outgoing mail: as XMPP-Mail when the recipient's
//! domain takes it (see `native`), else by SMTP, with retries on
//! temporary failures and a notice to the XMPP sender on a final one. An
//! answer to mail from an attached IMAP mailbox leaves through that
//! mailbox's submission server instead.

mod native;

use std::collections::HashMap;
use std::sync::Arc;

use facteur_policy::retry::RetryDecision;
use jid::BareJid;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{jitter, sleep_until};
use crate::component::LinkHandle;
use crate::config::Config;
use crate::config::Live;
use crate::imap::seal::SealKey;
use crate::probe::Prober;
use crate::return_path::ReturnPaths;
use crate::smtp::client::{Accepted, SendFailure, Sender};
use crate::smtp::submit::Submitter;
use crate::store::{
    envelope_id, ImapMailbox, MailOutcome, MailRoute, Millis, Notice, OutcomeCommitter, Store,
    ToMailItem,
};
use crate::telemetry::meters;

pub use native::late_errors;

/// Forgets a delivery that ended, however it ended.
fn finished(
    in_flight: &mut HashMap<tokio::task::Id, i64>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let task = match done {
        Ok((task, ())) => task,
        Err(e) => {
            warn!(error = %e, "A delivery attempt ended abnormally; it will be repeated.");
            e.id()
        }
    };
    in_flight.remove(&task);
}

/// Deliveries in flight at once.
const CONCURRENCY: usize = 64;
const BATCH: u32 = 64;

pub struct ToMail {
    pub config: Live,
    pub store: Store,
    pub outcomes: OutcomeCommitter,
    pub sender: Arc<Sender>,
    /// Envelope senders that match bounces to the queue.
    pub return_paths: ReturnPaths,
    /// The link to the XMPP server, for mail that goes as XMPP-Mail.
    pub link: LinkHandle,
    /// Asks other domains whether they take XMPP-Mail.
    pub prober: Arc<Prober>,
}

impl ToMail {
    /// Delivers due mail until `shutdown`. Deliveries run side by side, up
    /// to `CONCURRENCY`, and the queue is read again as soon as one ends:
    /// a slow destination holds one slot, not the whole queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut attempts = JoinSet::new();
        // Queue id of each delivery in progress, by task.
        let mut in_flight: HashMap<tokio::task::Id, i64> = HashMap::new();
        loop {
            while let Some(done) = attempts.try_join_next_with_id() {
                finished(&mut in_flight, done);
            }
            if shutdown.is_cancelled() {
                break;
            }
            let free = limit.available_permits();
            let due = match free {
                0 => Vec::new(),
                _ => this.due(&in_flight, free).await,
            };
            if due.is_empty() {
                // What is in progress is due too: wait for it to end.
                let wait = match in_flight.is_empty() {
                    true => {
                        let next = this.store.next_to_mail().await.ok().flatten();
                        sleep_until(next, this.config.get().store.poll_interval)
                    }
                    false => this.config.get().store.poll_interval,
                };
                tokio::select! {
                    () = this.store.to_mail_committed() => {}
                    () = tokio::time::sleep(wait) => {}
                    Some(done) = attempts.join_next_with_id(), if !attempts.is_empty() => {
                        finished(&mut in_flight, done);
                    }
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            for item in due {
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    break;
                };
                let id = item.id;
                let this = this.clone();
                let task = attempts.spawn(async move {
                    this.attempt(item).await;
                    drop(permit);
                });
                in_flight.insert(task.id(), id);
            }
        }
        // A delivery in progress finishes even on shutdown: its outcome
        // must reach the store.
        while attempts.join_next().await.is_some() {}
    }

    /// Up to `room` due mails that are not being delivered already.
    async fn due(&self, in_flight: &HashMap<tokio::task::Id, i64>, room: usize) -> Vec<ToMailItem> {
        let busy: Vec<i64> = in_flight.values().copied().collect();
        let room = u32::try_from(room).unwrap_or(BATCH).min(BATCH);
        match self
            .store
            .due_to_mail_except(Millis::now(), room, &busy)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable; outgoing mail waits."
                );
                Vec::new()
            }
        }
    }

    async fn attempt(&self, item: ToMailItem) {
        if let Some(mailbox) = item.submission {
            return self.submit(&item, mailbox).await;
        }
        if item.route != MailRoute::Smtp {
            match self.native_route(&item).await {
                native::Decision::Smtp => {}
                native::Decision::Xmpp(route) => return self.send_native(&item, route).await,
                // Not recorded: the mail waits for the next attempt.
                native::Decision::NotNow => return,
            }
        }
        // Facteur's own reports go out with the null sender (RFC 5321
        // §4.5.5); users' mail with a return path naming its queue entry.
        let return_path = match item.mail_from.rsplit_once('@') {
            Some((_, domain)) => Some(self.return_paths.address(item.id, domain)),
            None => None,
        };
        // Through a smarthost, the 250 says only that the smarthost took
        // the mail: a mail whose author asked for a receipt asks for a
        // delivery report, and the receipt waits for it.
        let report = match self.sender.relays() && return_path.is_some() {
            true => match self
                .store
                .owes_receipts(&item.sender, &item.message_id, &item.rcpt)
                .await
            {
                Ok(owed) => owed.then(|| envelope_id(item.id)),
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        queue_id = item.id,
                        "Store unavailable; outgoing mail waits."
                    );
                    return;
                }
            },
            false => None,
        };
        let outcome = self
            .sender
            .send(
                return_path.as_deref(),
                &item.rcpt,
                &item.raw,
                report.as_deref(),
            )
            .await;
        let outcome = match outcome {
            Ok(Accepted {
                reply,
                report_asked,
            }) => {
                info!(queue_id = item.id, rcpt = %item.rcpt, message_id = %item.message_id, reply, report_asked, "Sent mail.");
                // The receipts wait for the report, if one was asked for;
                // else they are queued with the outcome.
                Ok(match report_asked {
                    true => MailOutcome::SentAwaitingReport(item.id),
                    false => MailOutcome::Sent(item.id),
                })
            }
            Err(failure) if failure.permanent => self.fail(&item, &failure.text),
            Err(SendFailure { text, .. }) => self.deferred(&item, text),
        };
        // Committed as soon as possible, grouped with concurrent attempts:
        // the window in which a crash repeats a sent mail stays small.
        self.record(&item, outcome).await;
    }

    /// After a temporary failure: tried again later, or given up when
    /// the retry policy says so.
    fn deferred(&self, item: &ToMailItem, text: String) -> anyhow::Result<MailOutcome> {
        let age = Millis::now().since(item.created_at);
        match self
            .config
            .get()
            .outbound
            .retry
            .after_failure(item.attempts + 1, age, jitter())
        {
            RetryDecision::RetryAfter(wait) => {
                info!(queue_id = item.id, rcpt = %item.rcpt, error = %text, wait_s = wait.as_secs(), "Mail deferred.");
                Ok(MailOutcome::Retry {
                    id: item.id,
                    at: Millis::now().after(wait),
                    error: text,
                })
            }
            RetryDecision::GiveUp => {
                let text = format!(
                    "gave up after {} attempts; last error: {text}",
                    item.attempts + 1
                );
                self.fail(item, &text)
            }
        }
    }

    /// An answer to mail from an attached mailbox (mailbox `id`): it
    /// leaves from the mailbox's address through its submission server,
    /// with SMTP AUTH; once sent, a copy goes to the mailbox's Sent
    /// folder, unless the server files one itself. A copy that cannot be
    /// put there is logged: the mail is never sent again for it.
    async fn submit(&self, item: &ToMailItem, id: i64) {
        let config = self.config.get();
        let mailbox = match BareJid::new(&item.sender) {
            Ok(user) => self.store.imap_mailbox(&user, id).await,
            Err(e) => Err(anyhow::anyhow!("Stored sender {}: {e}", item.sender)),
        };
        let mailbox = match mailbox {
            Ok(mailbox) => mailbox,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    queue_id = item.id,
                    "Store unavailable; outgoing mail waits."
                );
                return;
            }
        };
        let sent = match (&mailbox, config.imap.key.as_ref()) {
            (Some(mailbox), Some(key)) => self.submitted(item, mailbox, key, &config).await,
            (None, _) => Err(SendFailure {
                permanent: true,
                text: "the mailbox it answers is no longer attached, and its outgoing \
                       server with it"
                    .into(),
            }),
            (Some(_), None) => Err(SendFailure {
                permanent: false,
                text: "no [imap] secret_file: the mailbox's password cannot be opened".into(),
            }),
        };
        let outcome = match sent {
            Ok(reply) => {
                info!(queue_id = item.id, mailbox = id, rcpt = %item.rcpt, message_id = %item.message_id, reply, "Sent mail through the mailbox's submission server.");
                Ok(MailOutcome::Sent(item.id))
            }
            Err(failure) if failure.permanent => self.fail(item, &failure.text),
            Err(SendFailure { text, .. }) => self.deferred(item, text),
        };
        let sent = matches!(outcome, Ok(MailOutcome::Sent(_)));
        self.record(item, outcome).await;
        let (Some(mailbox), Some(key), true) = (&mailbox, config.imap.key.as_ref(), sent) else {
            return;
        };
        if mailbox.submission.as_ref().is_some_and(|s| s.sent_copy) {
            match crate::imap::folders::append_sent(mailbox, key, &item.raw).await {
                Ok(folder) => {
                    info!(
                        queue_id = item.id,
                        mailbox = id,
                        folder,
                        "Copy put in the Sent folder."
                    )
                }
                Err(e) => warn!(
                    queue_id = item.id,
                    mailbox = id,
                    error = format!("{e:#}"),
                    "Copy not put in the Sent folder; the mail was sent."
                ),
            }
        }
    }

    /// Submits the mail through `mailbox`'s outgoing server.
    async fn submitted(
        &self,
        item: &ToMailItem,
        mailbox: &ImapMailbox,
        key: &SealKey,
        config: &Config,
    ) -> Result<String, SendFailure> {
        let Some(server) = &mailbox.submission else {
            return Err(SendFailure {
                permanent: true,
                text: format!(
                    "the mailbox {} at {} has no outgoing server any more",
                    mailbox.username, mailbox.host
                ),
            });
        };
        let password = key
            .open(
                mailbox.user.as_str(),
                &server.host,
                &server.username,
                &server.password,
            )
            .map_err(|e| SendFailure {
                permanent: false,
                text: format!("{e:#}"),
            })?;
        Submitter {
            host: &server.host,
            port: server.port,
            tls: server.tls,
            username: &server.username,
            password: &password,
            hello: &config.outbound.hostname,
            timeout: config.outbound.timeout,
        }
        .submit(&item.mail_from, &item.rcpt, &item.raw)
        .await
    }

    /// Records an outcome, grouped with concurrent attempts; a mail sent
    /// has its receipts queued with it (see [`MailOutcome::Sent`]).
    async fn record(&self, item: &ToMailItem, outcome: anyhow::Result<MailOutcome>) {
        // Counted once the outcome is durable; a sent mail's latency too.
        let meters = meters();
        let (counter, sent) = match &outcome {
            Ok(MailOutcome::Sent(_) | MailOutcome::SentAwaitingReport(_)) => {
                (Some(&meters.to_mail_sent), true)
            }
            Ok(MailOutcome::Retry { .. }) => (Some(&meters.to_mail_deferred), false),
            Ok(MailOutcome::Failed { .. }) => (Some(&meters.to_mail_bounced), false),
            Ok(MailOutcome::SentAsXmpp { .. }) => (Some(&meters.xmpp_mail_sent), false),
            Ok(MailOutcome::Rerouted { .. }) => (Some(&meters.xmpp_mail_rerouted), false),
            Ok(MailOutcome::Routed { .. }) | Err(_) => (None, false),
        };
        let failed = matches!(outcome, Ok(MailOutcome::Failed { .. }));
        let stored = match outcome {
            Ok(outcome) => self.outcomes.commit(outcome).await,
            Err(e) => Err(e),
        };
        if stored.is_ok() && failed {
            self.drop_receipts(item).await;
        }
        if let (Ok(()), Some(counter)) = (&stored, counter) {
            counter.increment(1);
            if sent {
                meters
                    .to_mail_seconds
                    .record(Millis::now().since(item.created_at));
            }
        }
        if let Err(e) = stored {
            warn!(
                error = format!("{e:#}"),
                queue_id = item.id,
                "Store unavailable; the attempt will be repeated."
            );
        }
    }

    /// A failed mail owes no receipts: its sender gets the notice
    /// instead.
    async fn drop_receipts(&self, item: &ToMailItem) {
        if let Err(e) = self
            .store
            .take_receipts(&item.sender, &item.message_id, &item.rcpt)
            .await
        {
            warn!(
                error = format!("{e:#}"),
                queue_id = item.id,
                "Receipts owed by a failed mail not dropped."
            );
        }
    }

    /// Fails the mail for good and tells its sender, in the conversation
    /// with the recipient. A report of facteur's own that fails is only
    /// logged: nobody sent it (and reports never cause reports).
    fn fail(&self, item: &ToMailItem, reason: &str) -> anyhow::Result<MailOutcome> {
        warn!(queue_id = item.id, rcpt = %item.rcpt, error = reason, "Mail failed.");
        let notice = match item.mail_from.is_empty() {
            true => None,
            false => Some(Notice::undelivered(
                &self.config.get().component.jid,
                &item.sender,
                &item.rcpt,
                reason,
            )?),
        };
        Ok(MailOutcome::Failed {
            id: item.id,
            error: reason.to_owned(),
            notice,
        })
    }
}
