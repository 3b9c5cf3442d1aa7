//! What an author's later word does to a mail of theirs. A retraction
//! (XEP-0424): a mail still waiting in the queue is withdrawn; one that has
//! left cannot be unsent; either way the author is told, by a notice queued
//! in the same transaction, and a withdrawn mail owes no receipt. A
//! correction (XEP-0308): a mail still waiting takes the corrected text in
//! its place; else the correction is queued as a mail of its own.
//!
//! "Still waiting" means queued and not due before a bound the caller
//! gives: a mail due sooner may be in the delivery runner's hands already,
//! and the runner does not ask the store again before it sends.

use anyhow::Context;
use jid::BareJid;

use super::messages::{insert_message, MessageRecord};
use super::to_mail::{insert_mail, NewMail, ToMailState};
use super::to_xmpp::{insert_notice, Notice};
use super::{Millis, Store};

/// The reason a withdrawn mail's row gives, among those of failures.
const WITHDRAWN: &str = "withdrawn by its author";

/// What became of a mail its author retracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// It was still queued and will never leave.
    Withdrawn,
    /// It has left, or is leaving now.
    Left,
    /// It had failed already: its author knows it never arrived.
    Failed,
    /// The queue has no such mail.
    Unknown,
}

impl Withdrawal {
    /// What the author is told, in the conversation with `contact`, whose
    /// mail address is `rcpt`.
    fn notice(self, author: &BareJid, contact: &BareJid, rcpt: &str) -> Option<Notice> {
        let (subject, body) = match self {
            Withdrawal::Withdrawn => (
                "Mail not sent",
                format!(
                    "Your retracted message to {rcpt} was still waiting to leave: it was withdrawn and not sent."
                ),
            ),
            Withdrawal::Left => (
                "Mail cannot be unsent",
                format!(
                    "Your retracted message to {rcpt} had already left as mail, and mail cannot be unsent: {rcpt} keeps it."
                ),
            ),
            Withdrawal::Failed | Withdrawal::Unknown => return None,
        };
        Some(Notice {
            recipient: author.clone(),
            from: contact.clone(),
            subject: subject.to_owned(),
            body,
        })
    }
}

/// The corrected form of a mail still queued: the same Message-ID, the
/// new bytes.
#[derive(Debug, Clone)]
pub struct Replacement<'a> {
    pub message_id: &'a str,
    pub raw: &'a [u8],
    /// See [`NewMail::stanza`].
    pub stanza: &'a str,
}

/// Where a correction went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrected {
    /// Into the place of the queued mail `id`.
    Replaced(i64),
    /// Into the queue as mail `id`, a reply to the original.
    Queued(i64),
}

impl Store {
    /// The bytes of `author`'s mail `message_id` to `rcpt`, in whatever
    /// state.
    pub async fn mail_raw(
        &self,
        author: &BareJid,
        rcpt: &str,
        message_id: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT raw FROM to_mail WHERE sender = $1 AND message_id = $2 AND rcpt = $3",
        )
        .bind(author.as_str())
        .bind(message_id)
        .bind(rcpt)
        .fetch_optional(pool)
        .await
        .with_context(|| format!("Loading mail {message_id}")))
    }

    /// Puts `replacement` in the place of the author's mail of its
    /// Message-ID to the same recipient while it is still waiting (not
    /// due before `leaving_until`); otherwise queues `reply`, with its
    /// `record`. One transaction either way.
    pub async fn queue_correction(
        &self,
        replacement: &Replacement<'_>,
        reply: &NewMail<'_>,
        record: &MessageRecord,
        leaving_until: Millis,
    ) -> anyhow::Result<Corrected> {
        let now = Millis::now();
        let corrected = on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let replaced: Option<i64> = sqlx::query_scalar(
                "
                UPDATE to_mail
                SET raw = $1, stanza = $2, updated_at = $3
                WHERE sender = $4 AND message_id = $5 AND rcpt = $6 AND state = $7
                  AND next_attempt_at > $8
                RETURNING id
                ",
            )
            .bind(replacement.raw)
            .bind(replacement.stanza)
            .bind(now.0)
            .bind(reply.sender.as_str())
            .bind(replacement.message_id)
            .bind(reply.rcpt)
            .bind(ToMailState::Queued)
            .bind(leaving_until.0)
            .fetch_optional(&mut *tx)
            .await
            .with_context(|| format!("Correcting mail {}", replacement.message_id))?;
            let corrected = match replaced {
                Some(id) => Corrected::Replaced(id),
                None => {
                    let id = match insert_mail((&mut *tx).into(), reply, now).await? {
                        Some(id) => id,
                        // The same correction again: queued once.
                        None => sqlx::query_scalar(
                            "SELECT id FROM to_mail
                             WHERE sender = $1 AND message_id = $2 AND rcpt = $3",
                        )
                        .bind(reply.sender.as_str())
                        .bind(reply.message_id)
                        .bind(reply.rcpt)
                        .fetch_one(&mut *tx)
                        .await
                        .context("Finding the queued copy of a correction")?,
                    };
                    insert_message((&mut *tx).into(), record).await?;
                    Corrected::Queued(id)
                }
            };
            tx.commit().await.context("Committing a correction")?;
            corrected
        });
        if let Corrected::Queued(_) = corrected {
            self.wake.to_mail.notify_one();
        }
        Ok(corrected)
    }

    /// Withdraws `author`'s mail `message_id` to `rcpt` if it is still
    /// queued and not due before `leaving_until` (a mail due sooner may be
    /// in the hands of the delivery runner already, which does not ask
    /// again before sending), and queues the notice that tells the author,
    /// from `contact`, what became of it.
    pub async fn withdraw_mail(
        &self,
        author: &BareJid,
        contact: &BareJid,
        rcpt: &str,
        message_id: &str,
        leaving_until: Millis,
    ) -> anyhow::Result<Withdrawal> {
        let now = Millis::now();
        let (outcome, told) = on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let withdrawn: Option<i64> = sqlx::query_scalar(
                "
                UPDATE to_mail
                SET state = $1, last_error = $2, updated_at = $3
                WHERE sender = $4 AND message_id = $5 AND rcpt = $6 AND state = $7
                  AND next_attempt_at > $8
                RETURNING id
                ",
            )
            .bind(ToMailState::Failed)
            .bind(WITHDRAWN)
            .bind(now.0)
            .bind(author.as_str())
            .bind(message_id)
            .bind(rcpt)
            .bind(ToMailState::Queued)
            .bind(leaving_until.0)
            .fetch_optional(&mut *tx)
            .await
            .with_context(|| format!("Withdrawing mail {message_id}"))?;
            let outcome = match withdrawn {
                Some(_) => {
                    // It never leaves: no receipt will say it was delivered.
                    sqlx::query(
                        "DELETE FROM mail_receipts
                         WHERE sender = $1 AND message_id = $2 AND rcpt = $3",
                    )
                    .bind(author.as_str())
                    .bind(message_id)
                    .bind(rcpt)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("Forgetting the receipts of mail {message_id}"))?;
                    Withdrawal::Withdrawn
                }
                None => {
                    let state: Option<ToMailState> = sqlx::query_scalar(
                        "SELECT state FROM to_mail
                         WHERE sender = $1 AND message_id = $2 AND rcpt = $3",
                    )
                    .bind(author.as_str())
                    .bind(message_id)
                    .bind(rcpt)
                    .fetch_optional(&mut *tx)
                    .await
                    .with_context(|| format!("Finding mail {message_id}"))?;
                    match state {
                        Some(ToMailState::Queued | ToMailState::Sent) => Withdrawal::Left,
                        Some(ToMailState::Failed) => Withdrawal::Failed,
                        None => Withdrawal::Unknown,
                    }
                }
            };
            let notice = outcome.notice(author, contact, rcpt);
            if let Some(notice) = &notice {
                insert_notice((&mut *tx).into(), notice, now).await?;
            }
            tx.commit().await.context("Committing a withdrawal")?;
            (outcome, notice.is_some())
        });
        if told {
            self.wake.to_xmpp.notify_one();
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;
