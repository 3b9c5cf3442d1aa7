//! Spam verdicts in the store: each user's thresholds, the Bayesian models
//! (the global one and each user's), the recent inbound mail per user with
//! its tokens (what feedback trains with), the quarantine, and the spam
//! reports counted across users.

use anyhow::Context;
use facteur_policy::spam::{Thresholds, Verdict as SpamVerdict};
use jid::BareJid;

use super::to_xmpp::ToXmppState;
use super::{Conn, Millis, Store};

/// What the spam check decided for one recipient of an accepted mail.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientSpam {
    pub recipient: BareJid,
    /// The score, in points.
    pub points: f64,
    /// Its reasons, comma-separated.
    pub reasons: String,
    /// Deliver, mark or quarantine (never reject: a rejected mail is not
    /// accepted).
    pub verdict: SpamVerdict,
}

/// What the spam check found of an accepted mail, for its recipients.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MailSpam {
    pub message_id: String,
    pub subject: String,
    /// The distinct token hashes, sorted.
    pub tokens: Vec<u64>,
    /// One per recipient who is served (the others have none).
    pub recipients: Vec<RecipientSpam>,
}

/// One recent inbound mail of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentMail {
    pub id: i64,
    pub mail_id: i64,
    pub message_id: String,
    pub sender: String,
    pub client_ip: String,
    pub subject: String,
    pub tokens: Vec<u64>,
    pub verdict: String,
    /// What the user's model learnt from it: '', spam or ham.
    pub trained: String,
    pub received_at: Millis,
}

/// One mail held in quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldMail {
    pub id: i64,
    pub user: String,
    pub mail_id: i64,
    pub sender: String,
    pub subject: String,
    pub points: f64,
    pub held_at: Millis,
}

/// A stored model.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    pub bytes: Vec<u8>,
    pub feedbacks: i64,
    pub version: i64,
}

pub(crate) fn tokens_to_bytes(tokens: &[u64]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.to_le_bytes()).collect()
}

pub(crate) fn tokens_from_bytes(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
        .collect()
}

type RecentRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Vec<u8>,
    String,
    String,
    i64,
);

const RECENT_COLUMNS: &str = "id, mail_id, message_id, sender, client_ip, subject, tokens, \
                              verdict, trained, received_at";

fn recent(row: RecentRow) -> RecentMail {
    let (id, mail_id, message_id, sender, client_ip, subject, tokens, verdict, trained, at) = row;
    RecentMail {
        id,
        mail_id,
        message_id,
        sender,
        client_ip,
        subject,
        tokens: tokens_from_bytes(&tokens),
        verdict,
        trained,
        received_at: Millis(at),
    }
}

/// Stores what the spam check found of an accepted mail, in the
/// transaction that accepts it: the recent rows, the held ones, and the
/// score of marked deliveries.
pub(super) async fn insert_spam(
    tx: Conn<'_>,
    mail_id: i64,
    mail_from: &str,
    client_ip: &str,
    spam: &MailSpam,
    now: Millis,
) -> anyhow::Result<()> {
    if spam.recipients.is_empty() {
        return Ok(());
    }
    let tokens = tokens_to_bytes(&spam.tokens);
    on_backend!(tx, |tx| {
        for rcpt in &spam.recipients {
            let recent_id: i64 = sqlx::query_scalar(
                "
                INSERT INTO spam_recent (user_jid, mail_id, message_id, sender, client_ip, subject,
                                         tokens, score, verdict, received_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                RETURNING id
                ",
            )
            .bind(rcpt.recipient.as_str())
            .bind(mail_id)
            .bind(&spam.message_id)
            .bind(mail_from.to_ascii_lowercase())
            .bind(client_ip)
            .bind(&spam.subject)
            .bind(&tokens)
            .bind(rcpt.points)
            .bind(rcpt.verdict.name())
            .bind(now.0)
            .fetch_one(&mut *tx)
            .await
            .context("Storing a recent mail")?;
            match rcpt.verdict {
                SpamVerdict::Quarantine | SpamVerdict::Reject => {
                    sqlx::query(
                        "
                        INSERT INTO spam_held (recent_id, user_jid, mail_id, held_at)
                        VALUES ($1, $2, $3, $4)
                        ",
                    )
                    .bind(recent_id)
                    .bind(rcpt.recipient.as_str())
                    .bind(mail_id)
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await
                    .context("Holding a mail in quarantine")?;
                }
                SpamVerdict::Mark => {
                    sqlx::query(
                        "UPDATE to_xmpp SET spam = $1 WHERE mail_id = $2 AND recipient = $3",
                    )
                    .bind(format!("{:.1} {}", rcpt.points, rcpt.reasons))
                    .bind(mail_id)
                    .bind(rcpt.recipient.as_str())
                    .execute(&mut *tx)
                    .await
                    .context("Marking a delivery as spam")?;
                }
                SpamVerdict::Deliver => {}
            }
        }
        anyhow::Ok(())
    })
}

impl Store {
    /// `user`'s spam thresholds (read with her options, from the same
    /// cache); the defaults for a user who is not registered.
    pub async fn spam_thresholds(&self, user: &BareJid) -> anyhow::Result<Thresholds> {
        Ok(self
            .user_row(user)
            .await
            .with_context(|| format!("Looking up the spam thresholds of {user}"))?
            .map_or_else(Thresholds::default, |row| row.spam))
    }

    /// Sets `user`'s spam thresholds; whether she is registered.
    pub async fn set_spam_thresholds(
        &self,
        user: &BareJid,
        thresholds: &Thresholds,
    ) -> anyhow::Result<bool> {
        let done = on_backend!(&self.pool, |pool| {
            sqlx::query(
            "UPDATE users SET spam_mark = $2, spam_quarantine = $3, spam_reject = $4 WHERE jid = $1"
        )
        .bind(user.as_str())
        .bind(thresholds.mark)
        .bind(thresholds.quarantine)
        .bind(thresholds.reject)
        .execute(pool)
        .await
        .map(|d| d.rows_affected())
        })
        .with_context(|| format!("Setting the spam thresholds of {user}"))?;
        self.users.forget(user.as_str());
        Ok(done > 0)
    }

    /// A model: `""` for the global one, else a user's bare JID.
    pub async fn spam_model(&self, owner: &str) -> anyhow::Result<Option<StoredModel>> {
        let row: Option<(Vec<u8>, i64, i64)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT model, feedbacks, version FROM spam_models WHERE owner = $1"
        )
        .bind(owner)
        .fetch_optional(pool)
        .await)
        .context("Reading a spam model")?;
        Ok(row.map(|(bytes, feedbacks, version)| StoredModel {
            bytes,
            feedbacks,
            version,
        }))
    }

    /// The version of a model, 0 when there is none: cheap, to know
    /// whether a cached model is stale.
    pub async fn spam_model_version(&self, owner: &str) -> anyhow::Result<i64> {
        let version: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT version FROM spam_models WHERE owner = $1"
        )
        .bind(owner)
        .fetch_optional(pool)
        .await)
        .context("Reading a spam model's version")?;
        Ok(version.unwrap_or(0))
    }

    /// Stores a model in place of the old one, `feedbacks` more than it
    /// had; the new version.
    pub async fn save_spam_model(
        &self,
        owner: &str,
        bytes: &[u8],
        feedbacks: i64,
    ) -> anyhow::Result<i64> {
        on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "
            INSERT INTO spam_models (owner, model, feedbacks, version, updated_at)
            VALUES ($1, $2, $3, 1, $4)
            ON CONFLICT (owner) DO UPDATE SET
                model = excluded.model,
                feedbacks = spam_models.feedbacks + excluded.feedbacks,
                version = spam_models.version + 1,
                updated_at = excluded.updated_at
            RETURNING version
            ",
        )
        .bind(owner)
        .bind(bytes)
        .bind(feedbacks)
        .bind(Millis::now().0)
        .fetch_one(pool)
        .await)
        .context("Storing a spam model")
    }

    /// `user`'s recent inbound mails, the newest first, at most `limit`.
    pub async fn recent_mails(
        &self,
        user: &BareJid,
        limit: i64,
    ) -> anyhow::Result<Vec<RecentMail>> {
        let sql = format!(
            "SELECT {RECENT_COLUMNS} FROM spam_recent WHERE user_jid = $1
             ORDER BY received_at DESC, id DESC LIMIT $2"
        );
        let rows: Vec<RecentRow> =
            on_backend!(&self.pool, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(user.as_str())
                .bind(limit)
                .fetch_all(pool)
                .await)
            .with_context(|| format!("Listing the recent mail of {user}"))?;
        Ok(rows.into_iter().map(recent).collect())
    }

    /// One of `user`'s recent mails, by its row id or its Message-ID.
    pub async fn recent_mail(
        &self,
        user: &BareJid,
        id: Option<i64>,
        message_id: Option<&str>,
    ) -> anyhow::Result<Option<RecentMail>> {
        let sql = format!(
            "SELECT {RECENT_COLUMNS} FROM spam_recent
             WHERE user_jid = $1 AND (id = $2 OR message_id = $3)
             ORDER BY id DESC LIMIT 1"
        );
        let row: Option<RecentRow> =
            on_backend!(&self.pool, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(user.as_str())
                .bind(id.unwrap_or(-1))
                .bind(message_id.filter(|m| !m.is_empty()).unwrap_or("\u{0}"))
                .fetch_optional(pool)
                .await)
            .with_context(|| format!("Looking up a recent mail of {user}"))?;
        Ok(row.map(recent))
    }

    /// Notes what `user`'s model learnt from a recent mail.
    pub async fn mark_trained(&self, id: i64, trained: &str) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "UPDATE spam_recent SET trained = $2 WHERE id = $1"
        )
        .bind(id)
        .bind(trained)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("Noting what a model learnt")
    }

    /// The mails held for `user` (all users: `None`), oldest first; only
    /// those not yet named in a digest with `undigested`.
    pub async fn held_mails(
        &self,
        user: Option<&BareJid>,
        undigested: bool,
    ) -> anyhow::Result<Vec<HeldMail>> {
        let rows: Vec<(i64, String, i64, String, String, f64, i64)> =
            on_backend!(&self.pool, |pool| sqlx::query_as(
                "
                SELECT h.id, h.user_jid, h.mail_id, r.sender, r.subject, r.score, h.held_at
                FROM spam_held h JOIN spam_recent r ON r.id = h.recent_id
                WHERE ($1 = '' OR h.user_jid = $1) AND ($2 = 0 OR h.digested = 0)
                ORDER BY h.user_jid, h.held_at, h.id
                "
            )
            .bind(user.map(|u| u.as_str()).unwrap_or_default())
            .bind(i64::from(undigested))
            .fetch_all(pool)
            .await)
            .context("Listing held mail")?;
        Ok(rows
            .into_iter()
            .map(
                |(id, user, mail_id, sender, subject, points, held_at)| HeldMail {
                    id,
                    user,
                    mail_id,
                    sender,
                    subject,
                    points,
                    held_at: Millis(held_at),
                },
            )
            .collect())
    }

    /// Queues a digest `notice` naming the held mails `ids`, and notes
    /// them as named, in one transaction.
    pub async fn queue_digest(&self, notice: &super::Notice, ids: &[i64]) -> anyhow::Result<()> {
        let now = Millis::now();
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            super::to_xmpp::insert_notice((&mut *tx).into(), notice, now).await?;
            for id in ids {
                sqlx::query("UPDATE spam_held SET digested = 1 WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .context("Noting a digest")?;
            }
            tx.commit().await.context("Committing a digest")
        })?;
        self.wake.to_xmpp.notify_one();
        Ok(())
    }

    /// Releases a mail held for `user`: queued for delivery as any mail,
    /// in one transaction. The recent mail it was, or `None` when nothing
    /// is held under this id for her.
    pub async fn release_held(
        &self,
        user: &BareJid,
        held_id: i64,
    ) -> anyhow::Result<Option<RecentMail>> {
        let now = Millis::now();
        let sql = format!("SELECT {RECENT_COLUMNS} FROM spam_recent WHERE id = $1");
        let released = on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            // A write first: SQLite takes the write lock at once (waiting
            // for it), rather than failing to upgrade a read later.
            let recent_id: Option<i64> = sqlx::query_scalar(
                "DELETE FROM spam_held WHERE id = $1 AND user_jid = $2 RETURNING recent_id",
            )
            .bind(held_id)
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await
            .context("Releasing held mail")?;
            let Some(recent_id) = recent_id else {
                return Ok(None);
            };
            let row: RecentRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(recent_id)
                .fetch_one(&mut *tx)
                .await
                .context("Looking up held mail")?;
            let mail = recent(row);
            sqlx::query(
                "
                INSERT INTO to_xmpp (mail_id, recipient, state, next_attempt_at, created_at,
                                     updated_at, message_id)
                VALUES ($1, $2, $3, $4, $4, $4, $5)
                ON CONFLICT DO NOTHING
                ",
            )
            .bind(mail.mail_id)
            .bind(user.as_str())
            .bind(ToXmppState::Pending)
            .bind(now.0)
            .bind(Some(mail.message_id.clone()).filter(|m| !m.is_empty()))
            .execute(&mut *tx)
            .await
            .context("Queueing released mail")?;
            tx.commit().await.context("Committing a release")?;
            anyhow::Ok(Some(mail))
        })?;
        if released.is_some() {
            self.wake.to_xmpp.notify_one();
        }
        Ok(released)
    }

    /// Forgets held mail and recent mail older than `before`; how many
    /// held mails expired.
    pub async fn expire_spam(&self, before: Millis) -> anyhow::Result<u64> {
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let held = sqlx::query("DELETE FROM spam_held WHERE held_at < $1")
                .bind(before.0)
                .execute(&mut *tx)
                .await
                .context("Expiring held mail")?
                .rows_affected();
            sqlx::query(
                "DELETE FROM spam_recent WHERE received_at < $1
                 AND NOT EXISTS (SELECT 1 FROM spam_held h WHERE h.recent_id = spam_recent.id)",
            )
            .bind(before.0)
            .execute(&mut *tx)
            .await
            .context("Expiring recent mail")?;
            tx.commit().await.context("Committing expiry")?;
            anyhow::Ok(held)
        })
    }

    /// Records a spam report by `user` on a mail from `sender` sent from
    /// `client_ip` (empty when not known), for lists shared with other
    /// servers.
    pub async fn record_report(
        &self,
        user: &BareJid,
        sender: &str,
        message_id: &str,
        client_ip: &str,
        verdict: super::Verdict,
    ) -> anyhow::Result<()> {
        let sender = sender.trim().to_ascii_lowercase();
        let domain = sender
            .rsplit_once('@')
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default();
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO spam_reports (user_jid, sender, message_id, verdict, created_at,
                                      sender_domain, client_ip)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (user_jid, sender, message_id)
            DO UPDATE SET verdict = excluded.verdict, created_at = excluded.created_at,
                          sender_domain = excluded.sender_domain,
                          client_ip = CASE WHEN excluded.client_ip = '' THEN spam_reports.client_ip
                                           ELSE excluded.client_ip END
            ",
        )
        .bind(user.as_str())
        .bind(&sender)
        .bind(message_id)
        .bind(verdict.name())
        .bind(Millis::now().0)
        .bind(domain)
        .bind(client_ip)
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Recording {user}'s report on {sender}"))
    }

    /// The senders, sender domains and client IPs that at least
    /// `threshold` distinct users reported as spam (their latest verdict),
    /// as (`address` | `domain` | `ip`, value), sorted: the entries of
    /// facteur's own shared list.
    #[allow(dead_code)]
    pub async fn reports_by_distinct_users(
        &self,
        threshold: i64,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "
            SELECT kind, value FROM (
                SELECT 'address' AS kind, sender AS value, COUNT(DISTINCT user_jid) AS n
                FROM spam_reports WHERE verdict = 'spam' AND sender <> '' GROUP BY sender
                UNION ALL
                SELECT 'domain', sender_domain, COUNT(DISTINCT user_jid)
                FROM spam_reports WHERE verdict = 'spam' AND sender_domain <> ''
                GROUP BY sender_domain
                UNION ALL
                SELECT 'ip', client_ip, COUNT(DISTINCT user_jid)
                FROM spam_reports WHERE verdict = 'spam' AND client_ip <> '' GROUP BY client_ip
            ) counted
            WHERE n >= $1
            ORDER BY kind, value
            ",
        )
        .bind(threshold)
        .fetch_all(pool)
        .await)
        .context("Counting spam reports")?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests;
