//! The two queues: stanzas owed to XMPP users (`to_xmpp`) and mail owed to
//! SMTP peers (`to_mail`).

use anyhow::Context;
use jid::BareJid;
use sqlx::Row;

use super::messages::{insert_message, MessageRecord};
use super::{upsert_contact, Contact, Millis, Store};

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
    },
    /// A notice from the gateway.
    Notice(Notice),
}

/// A message the gateway itself sends a user.
#[derive(Debug, Clone)]
pub struct Notice {
    pub recipient: BareJid,
    pub from: BareJid,
    pub subject: String,
    pub body: String,
}

/// What became of one attempt to deliver a queued mail.
#[derive(Debug, Clone)]
pub enum MailOutcome {
    Sent(i64),
    Retry {
        id: i64,
        at: Millis,
        error: String,
    },
    /// Given up; the notice goes to the sender (none for a delivery
    /// status notification, which has no sender to tell).
    Failed {
        id: i64,
        error: String,
        notice: Option<Notice>,
    },
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
}

/// An outgoing mail about to be queued.
#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    pub sender: &'a BareJid,
    pub mail_from: &'a str,
    pub rcpt: &'a str,
    pub message_id: &'a str,
    pub raw: &'a [u8],
}

/// One mail owed to an SMTP peer.
#[derive(Debug, Clone)]
pub struct ToMailItem {
    pub id: i64,
    pub sender: String,
    pub mail_from: String,
    pub rcpt: String,
    pub message_id: String,
    pub raw: Vec<u8>,
    pub attempts: u32,
    pub created_at: Millis,
}

impl Store {
    /// Commits inbound mails, each with one pending delivery per
    /// recipient, in one transaction (one fsync for all). Returns their ids.
    pub async fn accept_mails(&self, mails: &[InboundMail]) -> anyhow::Result<Vec<i64>> {
        let now = Millis::now();
        let mut tx = self.pool.begin().await.context("Starting transaction")?;
        let mut ids = Vec::with_capacity(mails.len());
        for mail in mails {
            let mail_id: i64 = sqlx::query_scalar(
                "INSERT INTO inbound_mail (mail_from, client_ip, raw, received_at, auth, warning) \
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(&mail.mail_from)
            .bind(&mail.client_ip)
            .bind(&mail.raw)
            .bind(now.0)
            .bind(&mail.auth)
            .bind(&mail.warning)
            .fetch_one(&mut *tx)
            .await
            .context("Storing inbound mail")?;
            for rcpt in &mail.recipients {
                sqlx::query(
                    "INSERT INTO to_xmpp (mail_id, recipient, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(mail_id)
                .bind(rcpt.as_str())
                .bind(now.0)
                .bind(now.0)
                .bind(now.0)
                .execute(&mut *tx)
                .await
                .context("Queueing delivery to XMPP")?;
            }
            ids.push(mail_id);
        }
        tx.commit().await.context("Committing inbound mail")?;
        Ok(ids)
    }

    /// Pending deliveries to XMPP users that are due, oldest first.
    pub async fn due_to_xmpp(&self, now: Millis, limit: u32) -> anyhow::Result<Vec<ToXmppItem>> {
        let rows = sqlx::query(
            "SELECT d.id, d.recipient, d.attempts, d.created_at, d.mail_id, d.notice_from, \
             d.notice_subject, d.notice_body, m.mail_from, m.raw, m.auth, m.warning \
             FROM to_xmpp d LEFT JOIN inbound_mail m ON m.id = d.mail_id \
             WHERE d.state = 'pending' AND d.next_attempt_at <= ? ORDER BY d.id LIMIT ?",
        )
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("Loading due deliveries to XMPP")?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let recipient: String = row.try_get("recipient")?;
            let mail_id: Option<i64> = row.try_get("mail_id")?;
            let body = match mail_id {
                Some(mail_id) => ToXmppBody::Mail {
                    mail_id,
                    mail_from: row.try_get("mail_from")?,
                    raw: row.try_get("raw")?,
                    auth: row.try_get("auth")?,
                    warning: row.try_get("warning")?,
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
            };
            items.push(ToXmppItem {
                id: row.try_get("id")?,
                recipient,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                created_at: Millis(row.try_get("created_at")?),
                body,
            });
        }
        Ok(items)
    }

    /// When the next pending delivery to XMPP is due, if any.
    pub async fn next_to_xmpp(&self) -> anyhow::Result<Option<Millis>> {
        next_due(
            self,
            "SELECT MIN(next_attempt_at) FROM to_xmpp WHERE state = 'pending'",
        )
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
        let now = Millis::now();
        let mut tx = self.pool.begin().await.context("Starting transaction")?;
        for id in ids {
            sqlx::query("UPDATE to_xmpp SET state = 'delivered', attempts = attempts + 1, last_error = '', updated_at = ? WHERE id = ?")
                .bind(now.0)
                .bind(id)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("Marking delivery {id} done"))?;
        }
        for message in messages {
            insert_message(&mut tx, message).await?;
        }
        for contact in contacts {
            upsert_contact(&mut tx, contact).await?;
        }
        tx.commit().await.context("Committing deliveries")?;
        Ok(())
    }

    /// Counts a failed attempt and schedules the next one.
    pub async fn to_xmpp_retry(&self, id: i64, at: Millis, error: &str) -> anyhow::Result<()> {
        set_state(self, "UPDATE to_xmpp SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?", id, Some((at, error))).await
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
        let now = Millis::now();
        let mut tx = self.pool.begin().await.context("Starting transaction")?;
        let failed = sqlx::query("UPDATE to_xmpp SET state = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ? AND state = 'pending'")
            .bind(error)
            .bind(now.0)
            .bind(id)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("Failing delivery {id}"))?;
        if let (1, Some(report)) = (failed.rows_affected(), report) {
            insert_mail(&mut tx, report, now).await?;
        }
        tx.commit()
            .await
            .with_context(|| format!("Committing the failure of delivery {id}"))?;
        Ok(())
    }

    /// Queues an outgoing mail; it is due at once. The same mail queued
    /// again (same sender, Message-ID and recipient) is not queued twice:
    /// the first one's id comes back.
    #[cfg(test)]
    pub async fn queue_mail(
        &self,
        mail: &NewMail<'_>,
        record: Option<&MessageRecord>,
    ) -> anyhow::Result<i64> {
        let ids = self.queue_mails(&[(mail.clone(), record)]).await?;
        ids.first().copied().context("Queueing outgoing mail")
    }

    /// Queues several outgoing mails (see [`Store::queue_mail`]) in one
    /// transaction.
    pub async fn queue_mails(
        &self,
        mails: &[(NewMail<'_>, Option<&MessageRecord>)],
    ) -> anyhow::Result<Vec<i64>> {
        let now = Millis::now();
        // An explicit transaction: with RETURNING in autocommit mode, SQLite
        // reports a failed commit (a full disk) only when the statement is
        // reset, after the id has been read, and sqlx would not tell.
        let mut tx = self.pool.begin().await.context("Starting transaction")?;
        let mut ids = Vec::with_capacity(mails.len());
        for (mail, record) in mails {
            let id = match insert_mail(&mut tx, mail, now).await? {
                Some(id) => id,
                None => sqlx::query_scalar(
                    "SELECT id FROM to_mail WHERE sender = ? AND message_id = ? AND rcpt = ?",
                )
                .bind(mail.sender.as_str())
                .bind(mail.message_id)
                .bind(mail.rcpt)
                .fetch_one(&mut *tx)
                .await
                .context("Finding the queued copy of an outgoing mail")?,
            };
            if let Some(record) = record {
                insert_message(&mut tx, record).await?;
            }
            ids.push(id);
        }
        tx.commit().await.context("Committing outgoing mail")?;
        Ok(ids)
    }

    /// Queued mail that is due, oldest first.
    pub async fn due_to_mail(&self, now: Millis, limit: u32) -> anyhow::Result<Vec<ToMailItem>> {
        let rows = sqlx::query(
            "SELECT id, sender, mail_from, rcpt, message_id, raw, attempts, created_at FROM to_mail \
             WHERE state = 'queued' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("Loading due outgoing mail")?;
        rows.into_iter()
            .map(|row| {
                Ok(ToMailItem {
                    id: row.try_get("id")?,
                    sender: row.try_get("sender")?,
                    mail_from: row.try_get("mail_from")?,
                    rcpt: row.try_get("rcpt")?,
                    message_id: row.try_get("message_id")?,
                    raw: row.try_get("raw")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    created_at: Millis(row.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// When the next queued mail is due, if any.
    pub async fn next_to_mail(&self) -> anyhow::Result<Option<Millis>> {
        next_due(
            self,
            "SELECT MIN(next_attempt_at) FROM to_mail WHERE state = 'queued'",
        )
        .await
    }

    /// Records what became of delivery attempts, in one transaction. A
    /// failed mail's notice to its sender is queued in the same
    /// transaction: the sender is told exactly once.
    pub async fn apply_mail_outcomes(&self, outcomes: &[MailOutcome]) -> anyhow::Result<()> {
        let now = Millis::now();
        let mut tx = self.pool.begin().await.context("Starting transaction")?;
        for outcome in outcomes {
            match outcome {
                MailOutcome::Sent(id) => {
                    sqlx::query("UPDATE to_mail SET state = 'sent', attempts = attempts + 1, last_error = '', updated_at = ? WHERE id = ?")
                        .bind(now.0)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("Marking mail {id} sent"))?;
                }
                MailOutcome::Retry { id, at, error } => {
                    sqlx::query("UPDATE to_mail SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?")
                        .bind(at.0)
                        .bind(error)
                        .bind(now.0)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("Deferring mail {id}"))?;
                }
                MailOutcome::Failed { id, error, notice } => {
                    sqlx::query("UPDATE to_mail SET state = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ? AND state = 'queued'")
                        .bind(error)
                        .bind(now.0)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("Failing mail {id}"))?;
                    if let Some(notice) = notice {
                        insert_notice(&mut tx, notice, now).await?;
                    }
                }
            }
        }
        tx.commit().await.context("Committing delivery outcomes")?;
        Ok(())
    }

    /// Counts items per queue and state, for tests and operators.
    pub async fn queue_counts(&self) -> anyhow::Result<Vec<(String, String, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT 'to_xmpp', state, COUNT(*) FROM to_xmpp GROUP BY state \
             UNION ALL SELECT 'to_mail', state, COUNT(*) FROM to_mail GROUP BY state ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await
        .context("Counting queues")?;
        Ok(rows)
    }
}

/// Queues one outgoing mail; `None` when the same mail (sender,
/// Message-ID, recipient) is queued already.
pub(super) async fn insert_mail(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    mail: &NewMail<'_>,
    now: Millis,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO to_mail (sender, mail_from, rcpt, message_id, raw, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sender, message_id, rcpt) DO NOTHING RETURNING id",
    )
    .bind(mail.sender.as_str())
    .bind(mail.mail_from)
    .bind(mail.rcpt)
    .bind(mail.message_id)
    .bind(mail.raw)
    .bind(now.0)
    .bind(now.0)
    .bind(now.0)
    .fetch_optional(&mut **tx)
    .await
    .context("Queueing outgoing mail")
}

pub(super) async fn insert_notice(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    notice: &Notice,
    now: Millis,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO to_xmpp (recipient, notice_from, notice_subject, notice_body, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(notice.recipient.as_str())
    .bind(notice.from.as_str())
    .bind(&notice.subject)
    .bind(&notice.body)
    .bind(now.0)
    .bind(now.0)
    .bind(now.0)
    .execute(&mut **tx)
    .await
    .context("Queueing notice")?;
    Ok(())
}

async fn next_due(store: &Store, sql: &'static str) -> anyhow::Result<Option<Millis>> {
    let next: Option<i64> = sqlx::query_scalar(sql)
        .fetch_one(&store.pool)
        .await
        .context("Finding the next due item")?;
    Ok(next.map(Millis))
}

async fn set_state(
    store: &Store,
    sql: &'static str,
    id: i64,
    retry: Option<(Millis, &str)>,
) -> anyhow::Result<()> {
    let mut query = sqlx::query(sql);
    if let Some((at, error)) = retry {
        query = query.bind(at.0).bind(error);
    }
    query
        .bind(Millis::now().0)
        .bind(id)
        .execute(&store.pool)
        .await
        .with_context(|| format!("Updating queue item {id}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).expect("valid")
    }

    #[tokio::test]
    async fn inbound_mail_waits_until_delivered() {
        let (store, _dir) = scratch().await;
        let mail = InboundMail {
            mail_from: "bob@example.net".into(),
            client_ip: "127.0.0.1".into(),
            raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            recipients: vec![jid("alice@example.test"), jid("carol@example.test")],
            ..InboundMail::default()
        };
        let ids = store
            .accept_mails(&[mail.clone(), mail])
            .await
            .expect("accepted");
        assert_eq!(ids.len(), 2);
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 4);
        store
            .to_xmpp_delivered(&[due[2].id, due[3].id], &[], &[])
            .await
            .expect("delivered");
        store
            .to_xmpp_delivered(&[due[0].id], &[], &[])
            .await
            .expect("delivered");
        store
            .to_xmpp_retry(
                due[1].id,
                Millis::now().after(std::time::Duration::from_secs(60)),
                "wait",
            )
            .await
            .expect("retry");
        assert!(store
            .due_to_xmpp(Millis::now(), 10)
            .await
            .expect("due")
            .is_empty());
        let next = store
            .next_to_xmpp()
            .await
            .expect("next")
            .expect("one pending");
        assert!(next > Millis::now());
    }

    #[tokio::test]
    async fn failed_mail_queues_one_notice() {
        let (store, _dir) = scratch().await;
        let sender = jid("alice@example.test");
        let id = store
            .queue_mail(
                &NewMail {
                    sender: &sender,
                    mail_from: "alice@example.test",
                    rcpt: "bob@example.net",
                    message_id: "m@x",
                    raw: b"raw",
                },
                None,
            )
            .await
            .expect("queued");
        let notice = Notice {
            recipient: sender.clone(),
            from: jid("mail.example.test"),
            subject: "s".into(),
            body: "b".into(),
        };
        store
            .apply_mail_outcomes(&[MailOutcome::Failed {
                id,
                error: "550 no".into(),
                notice: Some(notice),
            }])
            .await
            .expect("failed");
        assert!(store
            .due_to_mail(Millis::now(), 10)
            .await
            .expect("due")
            .is_empty());
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 1);
        assert!(matches!(&due[0].body, ToXmppBody::Notice(n) if n.body == "b"));
    }

    #[tokio::test]
    async fn the_same_stanza_is_queued_once() {
        let (store, _dir) = scratch().await;
        let sender = jid("alice@example.test");
        let mail = NewMail {
            sender: &sender,
            mail_from: "alice@example.test",
            rcpt: "bob@example.net",
            message_id: "m@x",
            raw: b"raw",
        };
        let first = store.queue_mail(&mail, None).await.expect("queued");
        assert_eq!(
            store.queue_mail(&mail, None).await.expect("queued again"),
            first
        );
        let other = NewMail {
            rcpt: "carol@example.net",
            ..mail
        };
        assert_ne!(store.queue_mail(&other, None).await.expect("queued"), first);
        assert_eq!(
            store
                .due_to_mail(Millis::now(), 10)
                .await
                .expect("due")
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn registration() {
        let (store, _dir) = scratch().await;
        let alice = jid("alice@example.test");
        assert!(!store.is_registered(&alice).await.expect("query"));
        store.register(&alice).await.expect("register");
        store.register(&alice).await.expect("register twice");
        assert!(store.is_registered(&alice).await.expect("query"));
        assert!(store.unregister(&alice).await.expect("unregister"));
        assert!(!store.unregister(&alice).await.expect("unregister twice"));
    }
}
