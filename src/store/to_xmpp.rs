//! Stanzas owed to XMPP users (`to_xmpp`, with the inbound mail they carry
//! in `inbound_mail`): one row per recipient of an accepted mail, and the
//! gateway's notices. Every commit that adds a row wakes the runner.

use anyhow::Context;
use jid::BareJid;
use sqlx::Row;
use tracing::warn;

use super::contacts::{upsert_contact, Contact};
use super::messages::{insert_messages, MessageRecord};
use super::to_mail::{insert_mail, NewMail};
use super::{give_up, Backend, Conn, Millis, Store, TO_XMPP};
use crate::telemetry::{meters, Timed};

/// Where a stanza owed to a user stands; stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Encode, sqlx::Decode)]
#[sqlx(rename_all = "lowercase")]
pub enum ToXmppState {
    /// Due at `next_attempt_at`.
    Pending,
    /// Confirmed by the XMPP server.
    Delivered,
    /// Given up; `last_error` says why.
    Failed,
}

stored_as_text!(ToXmppState);

/// One stanza owed to an XMPP user.
#[derive(Debug, Clone)]
pub struct ToXmppItem {
    pub id: i64,
    pub recipient: String,
    pub attempts: u32,
    pub created_at: Millis,
    pub body: ToXmppBody,
}

#[derive(Debug, Clone)]
pub enum ToXmppBody {
    /// An inbound mail, as received.
    Mail {
        mail_id: i64,
        mail_from: String,
        raw: Vec<u8>,
        /// What the inbound checks found: `spf=… dkim=… dmarc=… arc=…`.
        auth: String,
        /// Why the user should distrust the sender, when they should.
        warning: String,
        /// The spam score of a marked mail: `POINTS REASONS`.
        spam: Option<String>,
    },
    /// A notice from the gateway.
    Notice(Notice),
    /// A XEP-0184 receipt for a mail a positive delivery report came for.
    Receipt(Receipt),
}

/// A XEP-0184 receipt queued for delivery to XMPP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The full JID of the client that asked for it.
    pub to: String,
    /// The mail contact it comes from.
    pub from: String,
    /// The id of the message it names.
    pub id: String,
}

/// A message the gateway itself sends a user.
#[derive(Debug, Clone)]
pub struct Notice {
    pub recipient: BareJid,
    pub from: BareJid,
    pub subject: String,
    pub body: String,
}

/// An inbound mail about to be committed.
#[derive(Debug, Clone, Default)]
pub struct InboundMail {
    pub mail_from: String,
    pub client_ip: String,
    pub raw: Vec<u8>,
    pub recipients: Vec<BareJid>,
    /// What the inbound checks found, for the stanza.
    pub auth: String,
    /// Why the user should distrust the sender; empty when nothing failed.
    pub warning: String,
    /// The spam verdicts of the recipients (quarantined ones are not in
    /// `recipients`), stored in the same transaction.
    pub spam: super::spam_verdicts::MailSpam,
}

impl InboundMail {
    /// The mail's Message-ID, without its angle brackets, if it has one.
    fn message_id(&self) -> Option<String> {
        mail_parser::MessageParser::new()
            .parse_headers(&self.raw)?
            .message_id()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
    }
}

impl Store {
    /// Commits inbound mails, each with one pending delivery per
    /// recipient, in one transaction (one fsync for all). Returns their ids.
    #[cfg(test)]
    pub async fn accept_mails(&self, mails: &[InboundMail]) -> anyhow::Result<Vec<i64>> {
        self.accept_owned_mails(mails.to_vec()).await
    }

    /// [`Store::accept_mails`] of mails the caller gives up: each mail's
    /// bytes are handed to the database driver, not copied, and freed
    /// as soon as they are written.
    pub async fn accept_owned_mails(&self, mails: Vec<InboundMail>) -> anyhow::Result<Vec<i64>> {
        let _timed = Timed::start(&meters().store.accept_mails);
        let now = Millis::now();
        let mut ids = Vec::with_capacity(mails.len());
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            for mut mail in mails {
                let message_id = mail.message_id();
                let raw = std::mem::take(&mut mail.raw);
                let id = insert_inbound_raw((&mut *tx).into(), &mail, raw, message_id, now).await?;
                super::spam_verdicts::insert_spam(
                    (&mut *tx).into(),
                    id,
                    &mail.mail_from,
                    &mail.client_ip,
                    &mail.spam,
                    now,
                )
                .await?;
                ids.push(id);
            }
            tx.commit().await.context("Committing inbound mail")?;
        });
        if !ids.is_empty() {
            self.wake.to_xmpp.notify_one();
        }
        Ok(ids)
    }

    /// Takes pending deliveries to XMPP users that are due (see
    /// [`Store::due_to_xmpp_except`]).
    #[cfg(test)]
    pub async fn due_to_xmpp(&self, now: Millis, limit: u32) -> anyhow::Result<Vec<ToXmppItem>> {
        self.due_to_xmpp_except(now, limit, &[]).await
    }

    /// Takes pending deliveries to XMPP users that are due, oldest
    /// first, but for `busy` (sent by this instance and waiting for the
    /// server's confirmation): each is leased to this instance until
    /// `now` plus the lease, in one statement. Deliveries leased to
    /// another instance are left to it until its lease runs out; those
    /// leased to this one are taken again (a batch that ended without
    /// their outcome).
    pub async fn due_to_xmpp_except(
        &self,
        now: Millis,
        limit: u32,
        busy: &[i64],
    ) -> anyhow::Result<Vec<ToXmppItem>> {
        // SQLite has one writer at a time: what it selects is not taken
        // by another before the update. PostgreSQL skips the rows another
        // instance is taking at the same moment.
        let lock = match self.pool {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let busy_ids = super::json_ids_sql(self.pool.kind(), 6);
        // Only the constant fragments above are formatted in. The mail
        // goes with each row, read by subqueries (RETURNING names one
        // table).
        let sql = format!(
            "
            UPDATE to_xmpp SET lease_owner = $4, lease_until = $5
            WHERE id IN (
                SELECT id FROM to_xmpp
                WHERE state = $1 AND next_attempt_at <= $2
                  AND (lease_until IS NULL OR lease_until < $2 OR lease_owner = $4)
                  AND id NOT IN ({busy_ids})
                ORDER BY id
                LIMIT $3
                {lock}
            )
            RETURNING id, recipient, attempts, created_at, mail_id,
                notice_from, notice_subject, notice_body, receipt_to, receipt_id,
                (SELECT m.mail_from FROM inbound_mail m WHERE m.id = to_xmpp.mail_id) AS mail_from,
                (SELECT m.raw FROM inbound_mail m WHERE m.id = to_xmpp.mail_id) AS raw,
                (SELECT m.auth FROM inbound_mail m WHERE m.id = to_xmpp.mail_id) AS auth,
                (SELECT m.warning FROM inbound_mail m WHERE m.id = to_xmpp.mail_id) AS warning,
                spam
            "
        );
        let mut items = on_backend!(&self.pool, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ToXmppState::Pending)
                .bind(now.0)
                .bind(i64::from(limit))
                .bind(&*self.owner)
                .bind(now.after(self.lease).0)
                .bind(super::json_ids(busy))
                .fetch_all(pool)
                .await
                .context("Taking due deliveries to XMPP")?;
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                let recipient: String = row.try_get("recipient")?;
                let mail_id: Option<i64> = row.try_get("mail_id")?;
                let receipt_to: Option<String> = row.try_get("receipt_to")?;
                let receipt_id: Option<String> = row.try_get("receipt_id")?;
                let body = match (mail_id, receipt_to, receipt_id) {
                    (None, Some(to), Some(id)) => ToXmppBody::Receipt(Receipt {
                        to,
                        from: row.try_get("notice_from")?,
                        id,
                    }),
                    (mail_id, _, _) => match mail_id {
                        Some(mail_id) => ToXmppBody::Mail {
                            mail_id,
                            mail_from: row.try_get("mail_from")?,
                            raw: row.try_get("raw")?,
                            auth: row.try_get("auth")?,
                            warning: row.try_get("warning")?,
                            spam: row.try_get("spam")?,
                        },
                        None => {
                            let from: String = row.try_get("notice_from")?;
                            ToXmppBody::Notice(Notice {
                                recipient: BareJid::new(&recipient)
                                    .with_context(|| format!("Stored recipient {recipient}"))?,
                                from: BareJid::new(&from)
                                    .with_context(|| format!("Stored notice sender {from}"))?,
                                subject: row.try_get("notice_subject")?,
                                body: row.try_get("notice_body")?,
                            })
                        }
                    },
                };
                items.push(ToXmppItem {
                    id: row.try_get("id")?,
                    recipient,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    created_at: Millis(row.try_get("created_at")?),
                    body,
                });
            }
            items
        });
        items.sort_by_key(|item| item.id);
        Ok(items)
    }

    /// When the next pending delivery to XMPP is due for this instance,
    /// if any: one leased to another instance is due when its lease runs
    /// out.
    pub async fn next_to_xmpp(&self) -> anyhow::Result<Option<Millis>> {
        self.next_due(&TO_XMPP, "Finding the next due delivery to XMPP")
            .await
    }

    /// Marks deliveries confirmed by the XMPP server, and remembers their
    /// messages and senders, in one transaction.
    pub async fn to_xmpp_delivered(
        &self,
        ids: &[i64],
        messages: &[MessageRecord],
        contacts: &[Contact],
    ) -> anyhow::Result<()> {
        if ids.is_empty() && messages.is_empty() && contacts.is_empty() {
            return Ok(());
        }
        let _timed = Timed::start(&meters().store.to_xmpp_delivered);
        let now = Millis::now();
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let marked = mark_delivered((&mut *tx).into(), ids, &self.owner, now).await?;
            if marked < ids.len() as u64 {
                warn!(
                    confirmed = ids.len(),
                    recorded = marked,
                    instance = &*self.owner,
                    "Deliveries not all recorded: another instance holds some now, or they ended already."
                );
            }
            insert_messages((&mut *tx).into(), messages).await?;
            for contact in contacts {
                upsert_contact((&mut *tx).into(), contact).await?;
            }
            tx.commit().await.context("Committing deliveries")?;
        });
        Ok(())
    }

    /// Remembers the messages of a batch and their senders before the
    /// batch is sent, so that a quick answer finds what it replies to.
    pub async fn remember_messages(
        &self,
        messages: &[MessageRecord],
        contacts: &[Contact],
    ) -> anyhow::Result<()> {
        self.to_xmpp_delivered(&[], messages, contacts).await
    }

    /// Gives back deliveries this instance took but could not send (its
    /// link went down): they are due at once for any instance whose link
    /// is up, and for this one when its link is back.
    pub async fn to_xmpp_release(&self, ids: &[i64]) -> anyhow::Result<()> {
        for id in ids {
            on_backend!(&self.pool, |pool| sqlx::query(
                "
                UPDATE to_xmpp SET lease_until = NULL
                WHERE id = $1 AND lease_owner = $2 AND state = $3
                ",
            )
            .bind(id)
            .bind(&*self.owner)
            .bind(ToXmppState::Pending)
            .execute(pool)
            .await
            .map(|_| ())
            .with_context(|| format!("Releasing delivery {id}")))?;
        }
        Ok(())
    }

    /// Counts a failed attempt and schedules the next one, for anyone.
    pub async fn to_xmpp_retry(&self, id: i64, at: Millis, error: &str) -> anyhow::Result<()> {
        let _timed = Timed::start(&meters().store.to_xmpp_retry);
        let deferred = on_backend!(&self.pool, |pool| sqlx::query(
            "
            UPDATE to_xmpp
            SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2, updated_at = $3,
                lease_until = NULL
            WHERE id = $4 AND lease_owner = $5
            ",
        )
        .bind(at.0)
        .bind(error)
        .bind(Millis::now().0)
        .bind(id)
        .bind(&*self.owner)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .with_context(|| format!("Deferring delivery {id}"))?;
        if deferred == 0 {
            self.lease_lost(id);
        }
        Ok(())
    }

    /// Says that an outcome for delivery `id` changed nothing.
    fn lease_lost(&self, id: i64) {
        warn!(
            delivery = id,
            instance = &*self.owner,
            "Outcome not recorded: another instance holds the delivery now, or it ended already."
        );
    }

    /// Gives a delivery up; `report`, a delivery status notification to
    /// the mail's sender, is queued in the same transaction, so that it
    /// goes out exactly once.
    pub async fn to_xmpp_failed(
        &self,
        id: i64,
        error: &str,
        report: Option<&NewMail<'_>>,
    ) -> anyhow::Result<()> {
        let _timed = Timed::start(&meters().store.to_xmpp_failed);
        let now = Millis::now();
        let queued = on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let failed = give_up((&mut *tx).into(), &TO_XMPP, id, &self.owner, error, now).await?;
            if !failed {
                self.lease_lost(id);
            }
            let mut queued = false;
            if let (true, Some(report)) = (failed, report) {
                queued = insert_mail((&mut *tx).into(), report, now).await?.is_some();
            }
            tx.commit()
                .await
                .with_context(|| format!("Committing the failure of delivery {id}"))?;
            queued
        });
        if queued {
            self.wake.to_mail.notify_one();
        }
        Ok(())
    }
}

/// Queues a notice of the gateway's to a user. The caller wakes the
/// runner once its transaction is committed.
pub(super) async fn insert_notice(
    tx: Conn<'_>,
    notice: &Notice,
    now: Millis,
) -> anyhow::Result<()> {
    on_backend!(tx, |tx| sqlx::query(
        "
        INSERT INTO to_xmpp (recipient, notice_from, notice_subject, notice_body, state,
                             next_attempt_at, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ",
    )
    .bind(notice.recipient.as_str())
    .bind(notice.from.as_str())
    .bind(&notice.subject)
    .bind(&notice.body)
    .bind(ToXmppState::Pending)
    .bind(now.0)
    .bind(now.0)
    .bind(now.0)
    .execute(tx)
    .await
    .map(|_| ())
    .context("Queueing notice"))?;
    Ok(())
}

/// Queues a XEP-0184 receipt to `recipient` (the bare JID of its `to`).
pub(super) async fn insert_receipt(
    tx: Conn<'_>,
    recipient: &str,
    receipt: &Receipt,
    now: Millis,
) -> anyhow::Result<()> {
    on_backend!(tx, |tx| sqlx::query(
        "
        INSERT INTO to_xmpp (recipient, notice_from, receipt_to, receipt_id, state,
                             next_attempt_at, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ",
    )
    .bind(recipient)
    .bind(&receipt.from)
    .bind(&receipt.to)
    .bind(&receipt.id)
    .bind(ToXmppState::Pending)
    .bind(now.0)
    .bind(now.0)
    .bind(now.0)
    .execute(tx)
    .await
    .map(|_| ())
    .context("Queueing a receipt"))?;
    Ok(())
}

/// Marks deliveries done, in the caller's transaction: one statement per
/// delivery on SQLite (in-process, each is cheap), one for all on
/// PostgreSQL (each statement is a round trip to the server).
/// Only deliveries leased to `owner` change; returns how many did.
async fn mark_delivered(
    tx: Conn<'_>,
    ids: &[i64],
    owner: &str,
    now: Millis,
) -> anyhow::Result<u64> {
    const SET: &str = "
        UPDATE to_xmpp
        SET state = $1, attempts = attempts + 1, last_error = '', updated_at = $2,
            lease_until = NULL";
    if ids.is_empty() {
        return Ok(0);
    }
    // Only the constant fragments are formatted in.
    let sql = format!(
        "{SET} WHERE id IN ({}) AND lease_owner = $4",
        super::json_ids_sql(tx.kind(), 3)
    );
    let marked = on_backend!(tx, |tx| sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ToXmppState::Delivered)
        .bind(now.0)
        .bind(super::json_ids(ids))
        .bind(owner)
        .execute(tx)
        .await
        .context("Marking deliveries done")?
        .rows_affected());
    Ok(marked)
}

/// Inserts an inbound mail with one pending delivery per recipient, in
/// the caller's transaction; returns the mail's id. A recipient who has
/// a delivery of the same Message-ID already gets none. PostgreSQL does
/// it in one statement (one round trip).
pub(super) async fn insert_inbound(
    tx: Conn<'_>,
    mail: &InboundMail,
    now: Millis,
) -> anyhow::Result<i64> {
    let message_id = mail.message_id();
    insert_inbound_raw(tx, mail, mail.raw.clone(), message_id, now).await
}

/// Inserts `mail` (whose own `raw` is not read) with the bytes `raw`.
async fn insert_inbound_raw(
    tx: Conn<'_>,
    mail: &InboundMail,
    raw: Vec<u8>,
    message_id: Option<String>,
    now: Millis,
) -> anyhow::Result<i64> {
    if let Backend::Postgres(tx) = tx {
        let recipients: Vec<&str> = mail.recipients.iter().map(|r| r.as_str()).collect();
        return sqlx::query_scalar(
            "
            WITH m AS (
                INSERT INTO inbound_mail (mail_from, client_ip, raw, received_at, auth, warning)
                VALUES ($1, $2, $3, $4, $5, $6)
                RETURNING id
            ), d AS (
                INSERT INTO to_xmpp (mail_id, recipient, state, next_attempt_at, created_at,
                                     updated_at, message_id)
                SELECT m.id, r.recipient, $7, $4, $4, $4, $9
                FROM m, UNNEST($8::TEXT[]) WITH ORDINALITY AS r (recipient, n)
                ORDER BY r.n
                ON CONFLICT DO NOTHING
            )
            SELECT id FROM m
            ",
        )
        .bind(&mail.mail_from)
        .bind(&mail.client_ip)
        .bind(raw)
        .bind(now.0)
        .bind(&mail.auth)
        .bind(&mail.warning)
        .bind(ToXmppState::Pending)
        .bind(recipients)
        .bind(&message_id)
        .fetch_one(tx)
        .await
        .context("Storing inbound mail");
    }
    on_backend!(tx, |tx| {
        let mail_id: i64 = sqlx::query_scalar(
            "
        INSERT INTO inbound_mail (mail_from, client_ip, raw, received_at, auth, warning)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING id
        ",
        )
        .bind(&mail.mail_from)
        .bind(&mail.client_ip)
        .bind(raw)
        .bind(now.0)
        .bind(&mail.auth)
        .bind(&mail.warning)
        .fetch_one(&mut *tx)
        .await
        .context("Storing inbound mail")?;
        for rcpt in &mail.recipients {
            sqlx::query(
                "
            INSERT INTO to_xmpp (mail_id, recipient, state, next_attempt_at, created_at, updated_at,
                                 message_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT DO NOTHING
            ",
            )
            .bind(mail_id)
            .bind(rcpt.as_str())
            .bind(ToXmppState::Pending)
            .bind(now.0)
            .bind(now.0)
            .bind(now.0)
            .bind(&message_id)
            .execute(&mut *tx)
            .await
            .context("Queueing delivery to XMPP")?;
        }
        Ok(mail_id)
    })
}

#[cfg(test)]
mod tests;
