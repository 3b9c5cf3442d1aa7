//! What other domains answered about XMPP-Mail (doc/xmpp-mail.md §5.4),
//! kept until the answer's ttl: per domain its gateway, per recipient
//! whether it takes XMPP-Mail, and whether a domain lists a gateway that
//! handed mail over. Kept in the store so that a restart asks nobody again.
//! Also what a late error for mail sent as XMPP does to it.

use anyhow::Context;
use jid::BareJid;
use sqlx::Row;

use super::to_mail::{MailRoute, ToMailState};
use super::to_xmpp::{insert_notice, Notice};
use super::{Millis, Store};

/// What a stanza error for a mail sent as XMPP did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Failed for good; its author is told (the recipient).
    Failed { rcpt: String },
    /// Queued again, for SMTP.
    Rerouted,
    /// The queue has no such mail sent as XMPP (any more).
    Nothing,
}

/// What an answer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Encode, sqlx::Decode)]
#[sqlx(rename_all = "lowercase")]
pub enum AnswerKind {
    /// A domain: its gateway, or none.
    Domain,
    /// A recipient (bare JID).
    Rcpt,
    /// Whether a domain lists a gateway; the subject is `domain gateway`.
    Lists,
}

/// An answer, stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Encode, sqlx::Decode)]
#[sqlx(rename_all = "lowercase")]
pub enum AnswerStatus {
    /// The domain has an XMPP-Mail gateway (`Answer::gateway`).
    Gateway,
    /// The domain has none, or could not be asked.
    None,
    Accept,
    Reject,
    Unknown,
    /// The domain lists the gateway, with the feature.
    Listed,
    Unlisted,
}

stored_as_text!(AnswerKind, AnswerStatus);

/// One remembered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: AnswerStatus,
    /// The gateway's JID, where there is one.
    pub gateway: String,
    /// Largest stanza the gateway takes (0: not said).
    pub max_size: u64,
    /// The recipient's gateway wrote by handoff: answers go the same way.
    pub handoff: bool,
    pub expires_at: Millis,
}

impl Store {
    /// The answer about `subject`, if one is kept and not expired at `now`.
    /// Read again from the store at most once per [`super::users::CACHE_TIME`]
    /// (an outgoing mail asks about its recipient's domain more than once).
    pub async fn xmpp_mail_answer(
        &self,
        kind: AnswerKind,
        subject: &str,
        now: Millis,
    ) -> anyhow::Result<Option<Answer>> {
        let key = answer_key(kind, subject);
        if let Some(kept) = self.answers.get(&key) {
            return Ok(kept.filter(|answer| answer.expires_at > now));
        }
        let answer = on_backend!(&self.pool, |pool| {
            let row = sqlx::query(
                "
            SELECT status, gateway, max_size, handoff, expires_at
            FROM xmpp_mail_answers
            WHERE kind = $1 AND subject = $2 AND expires_at > $3
            ",
            )
            .bind(kind)
            .bind(subject)
            .bind(now.0)
            .fetch_optional(pool)
            .await
            .context("Reading an XMPP-Mail answer")?;
            row.map(|row| {
                Ok::<_, anyhow::Error>(Answer {
                    status: row.try_get("status")?,
                    gateway: row.try_get("gateway")?,
                    max_size: u64::try_from(row.try_get::<i64, _>("max_size")?).unwrap_or(0),
                    handoff: row.try_get::<i64, _>("handoff")? != 0,
                    expires_at: Millis(row.try_get("expires_at")?),
                })
            })
            .transpose()?
        });
        self.answers.put(&key, answer.clone());
        Ok(answer)
    }

    /// Keeps `answer` about `subject`, replacing any earlier one.
    pub async fn remember_xmpp_mail_answer(
        &self,
        kind: AnswerKind,
        subject: &str,
        answer: &Answer,
    ) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO xmpp_mail_answers (kind, subject, status, gateway, max_size, handoff, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (kind, subject) DO UPDATE SET
                status = excluded.status, gateway = excluded.gateway,
                max_size = excluded.max_size, handoff = excluded.handoff,
                expires_at = excluded.expires_at
            ",
        )
        .bind(kind)
        .bind(subject)
        .bind(answer.status)
        .bind(&answer.gateway)
        .bind(i64::try_from(answer.max_size).unwrap_or(i64::MAX))
        .bind(i64::from(answer.handoff))
        .bind(answer.expires_at.0)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("Keeping an XMPP-Mail answer")?;
        self.answers.forget(&answer_key(kind, subject));
        Ok(())
    }
}

/// The cache key of an answer.
fn answer_key(kind: AnswerKind, subject: &str) -> String {
    format!("{kind:?} {subject}")
}

impl Store {
    /// Records a stanza error the recipient's side sent for mail `id`
    /// (created at `created_at`), sent as XMPP: a permanent one fails the
    /// mail and queues the notice to its author, a temporary one queues
    /// the mail again for SMTP (nothing was delivered). Only a mail sent
    /// as XMPP and not failed yet is changed, so a repeated error does
    /// nothing.
    pub async fn xmpp_mail_refused(
        &self,
        id: i64,
        created_at: Millis,
        permanent: bool,
        reason: &str,
        gateway: &BareJid,
    ) -> anyhow::Result<Refused> {
        let now = Millis::now();
        let outcome = on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let outcome = if permanent {
                let failed: Option<(String, String)> = sqlx::query_as(
                    "
                UPDATE to_mail SET state = $1, last_error = $2, updated_at = $3
                WHERE id = $4 AND created_at = $5 AND route = $6 AND state = $7
                RETURNING sender, rcpt
                ",
                )
                .bind(ToMailState::Failed)
                .bind(reason)
                .bind(now.0)
                .bind(id)
                .bind(created_at.0)
                .bind(MailRoute::Xmpp)
                .bind(ToMailState::Sent)
                .fetch_optional(&mut *tx)
                .await
                .with_context(|| format!("Failing mail {id}"))?;
                match failed {
                    Some((sender, rcpt)) => {
                        let notice = Notice::undelivered(gateway, &sender, &rcpt, reason)?;
                        insert_notice((&mut *tx).into(), &notice, now).await?;
                        Refused::Failed { rcpt }
                    }
                    None => Refused::Nothing,
                }
            } else {
                let queued = sqlx::query(
                    "
                UPDATE to_mail SET state = $1, route = $2, next_attempt_at = $3, last_error = $4,
                                   updated_at = $5
                WHERE id = $6 AND created_at = $7 AND route = $8 AND state = $9
                ",
                )
                .bind(ToMailState::Queued)
                .bind(MailRoute::Smtp)
                .bind(now.0)
                .bind(reason)
                .bind(now.0)
                .bind(id)
                .bind(created_at.0)
                .bind(MailRoute::Xmpp)
                .bind(ToMailState::Sent)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("Rerouting mail {id}"))?;
                match queued.rows_affected() {
                    0 => Refused::Nothing,
                    _ => Refused::Rerouted,
                }
            };
            tx.commit().await.context("Committing a refusal")?;
            outcome
        });
        match outcome {
            Refused::Failed { .. } => self.wake.to_xmpp.notify_one(),
            Refused::Rerouted => self.wake.to_mail.notify_one(),
            Refused::Nothing => {}
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
        async fn an_answer_kept_by_another_instance_is_seen_within_the_cache_time(store, scratch) {
            let now = Millis::now();
            let ask = || store.xmpp_mail_answer(AnswerKind::Domain, "b.test", now);
            assert_eq!(ask().await.expect("read"), None);
            let answer = Answer {
                status: AnswerStatus::Gateway,
                gateway: "mail.b.test".into(),
                max_size: 0,
                handoff: false,
                expires_at: now.after(std::time::Duration::from_secs(3600)),
            };
            let other = scratch.open().await;
            other
                .remember_xmpp_mail_answer(AnswerKind::Domain, "b.test", &answer)
                .await
                .expect("kept");
            tokio::time::sleep(crate::store::users::CACHE_TIME + std::time::Duration::from_millis(50)).await;
            assert_eq!(ask().await.expect("read"), Some(answer));
        }
    }

    store_test! {
        async fn answers_are_kept_until_they_expire(store, scratch) {
            let now = Millis(1_000_000);
            let answer = Answer {
                status: AnswerStatus::Accept,
                gateway: "mail.b.test".into(),
                max_size: 262_144,
                handoff: false,
                expires_at: Millis(2_000_000),
            };
            store
                .remember_xmpp_mail_answer(AnswerKind::Rcpt, "bob@b.test", &answer)
                .await
                .unwrap();
            let kept = store
                .xmpp_mail_answer(AnswerKind::Rcpt, "bob@b.test", now)
                .await
                .unwrap();
            assert_eq!(kept, Some(answer.clone()));
            // Another kind of answer about the same subject is another answer.
            assert_eq!(
                store
                    .xmpp_mail_answer(AnswerKind::Domain, "bob@b.test", now)
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .xmpp_mail_answer(AnswerKind::Rcpt, "bob@b.test", Millis(2_000_000))
                    .await
                    .unwrap(),
                None
            );
            let newer = Answer {
                status: AnswerStatus::Reject,
                expires_at: Millis(3_000_000),
                ..answer
            };
            store
                .remember_xmpp_mail_answer(AnswerKind::Rcpt, "bob@b.test", &newer)
                .await
                .unwrap();
            assert_eq!(
                store
                    .xmpp_mail_answer(AnswerKind::Rcpt, "bob@b.test", Millis(2_500_000))
                    .await
                    .unwrap(),
                Some(newer)
            );
            // The sweep forgets expired answers, and only those.
            let retention = crate::store::sweep::Retention {
                keep_finished: std::time::Duration::from_secs(86400),
                keep_threads: std::time::Duration::from_secs(86400),
            };
            let stop = tokio_util::sync::CancellationToken::new();
            for (at, swept) in [(2_500_000, 0), (3_000_001, 1)] {
                let done = store.sweep(Millis(at), &retention, &stop).await.unwrap();
                assert_eq!(done.xmpp_mail, swept, "at {at}");
            }
        }
    }
}
