//! Mail owed to SMTP peers (`to_mail`): one row per outgoing message and
//! recipient, what became of each delivery attempt, and the bounces that
//! come back for it (RFC 3464). A failure tells the XMPP sender with a
//! notice queued in the same transaction; every commit that adds a row to
//! a queue wakes that queue's runner.

use anyhow::Context;
use facteur_bridge::bounce::Bounce;
use facteur_bridge::{mailbox_to_jid, MailAddress};
use jid::BareJid;
use tracing::warn;

use super::messages::{insert_message, MessageRecord};
use super::receipts::queue_receipts;
use super::to_xmpp::{insert_notice, Notice};
use super::{give_up, Backend, Conn, Millis, Store, TO_MAIL};
use crate::telemetry::{meters, Timed};

/// Where a mail owed to a peer stands; stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Encode, sqlx::Decode)]
#[sqlx(rename_all = "lowercase")]
pub enum ToMailState {
    /// Due at `next_attempt_at`.
    Queued,
    /// Accepted by the peer.
    Sent,
    /// Given up, refused, or bounced later; `last_error` says why.
    Failed,
}

/// How a queued mail travels (doc/xmpp-mail.md §7); stored as its
/// lower-case name, '' while not decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Encode, sqlx::Decode)]
#[sqlx(rename_all = "lowercase")]
pub enum MailRoute {
    #[sqlx(rename = "")]
    Undecided,
    Smtp,
    Xmpp,
}

stored_as_text!(ToMailState, MailRoute);

/// A user to tell, once, that a correspondent reads mail over XMPP.
#[derive(Debug, Clone)]
pub struct Told {
    pub peer: String,
    pub notice: Notice,
}

/// What became of one attempt to deliver a queued mail.
#[derive(Debug, Clone)]
pub enum MailOutcome {
    /// The way the mail goes, recorded before it goes: once it has gone
    /// one way it never goes the other.
    Routed {
        id: i64,
        route: MailRoute,
    },
    /// Sent: the receipts the mail owes are queued with the outcome.
    Sent(i64),
    /// Sent through a relay asked for a delivery report: the receipts
    /// wait for the report.
    SentAwaitingReport(i64),
    /// Sent as XMPP-Mail; the author is told about the correspondent
    /// unless they were before.
    SentAsXmpp {
        id: i64,
        told: Option<Told>,
    },
    /// XMPP-Mail failed for now: the mail goes by SMTP instead, at once.
    Rerouted {
        id: i64,
        error: String,
    },
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

/// An outgoing mail about to be queued.
#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    pub sender: &'a BareJid,
    pub mail_from: &'a str,
    pub rcpt: &'a str,
    pub message_id: &'a str,
    pub raw: &'a [u8],
    /// The mail as an XMPP message (`facteur_bridge::native`), when it
    /// may travel as XMPP-Mail; empty otherwise.
    pub stanza: &'a str,
    /// The attached mailbox whose submission server it leaves through
    /// (an answer to mail from that mailbox); `None`: the normal route.
    pub submission: Option<i64>,
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
    pub route: MailRoute,
    /// See [`NewMail::stanza`].
    pub stanza: String,
    /// See [`NewMail::submission`].
    pub submission: Option<i64>,
}

/// A bounce that told a sender their mail failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounced {
    pub rcpt: String,
    pub reason: String,
}

impl Notice {
    /// Tells `sender` (a bare JID) that their mail to `rcpt` could not be
    /// delivered, in their conversation with `rcpt`.
    pub fn undelivered(
        gateway: &BareJid,
        sender: &str,
        rcpt: &str,
        reason: &str,
    ) -> anyhow::Result<Notice> {
        let from = MailAddress::parse(rcpt)
            .ok()
            .and_then(|rcpt| mailbox_to_jid(&rcpt, gateway.domain()).ok())
            .unwrap_or_else(|| gateway.clone());
        Ok(Notice {
            recipient: BareJid::new(sender).with_context(|| format!("Stored sender {sender}"))?,
            from,
            subject: "Undelivered mail".into(),
            body: format!("Your mail to {rcpt} could not be delivered: {reason}"),
        })
    }
}

/// A bounce's reason in the sender's words: its status, unless the
/// diagnostic quotes it already, then the diagnostic.
fn bounce_reason(bounce: &Bounce) -> String {
    match &bounce.status {
        Some(status) if !bounce.diagnostic.contains(status.as_str()) => {
            format!("{status} {}", bounce.diagnostic)
        }
        _ => bounce.diagnostic.clone(),
    }
}

impl Store {
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
        let _timed = Timed::start(&meters().store.queue_mails);
        let now = Millis::now();
        // An explicit transaction: with RETURNING in autocommit mode, SQLite
        // reports a failed commit (a full disk) only when the statement is
        // reset, after the id has been read, and sqlx would not tell.
        let mut ids = Vec::with_capacity(mails.len());
        let mut fresh = false;
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            for (mail, record) in mails {
                let id = match insert_mail((&mut *tx).into(), mail, now).await? {
                Some(id) => {
                    fresh = true;
                    id
                }
                None => sqlx::query_scalar(
                    "SELECT id FROM to_mail WHERE sender = $1 AND message_id = $2 AND rcpt = $3",
                )
                .bind(mail.sender.as_str())
                .bind(mail.message_id)
                .bind(mail.rcpt)
                .fetch_one(&mut *tx)
                .await
                .context("Finding the queued copy of an outgoing mail")?,
            };
                if let Some(record) = record {
                    insert_message((&mut *tx).into(), record).await?;
                }
                ids.push(id);
            }
            tx.commit().await.context("Committing outgoing mail")?;
        });
        if fresh {
            self.wake.to_mail.notify_one();
        }
        Ok(ids)
    }

    /// Takes queued mail that is due, oldest first (see
    /// [`Store::due_to_mail_except`]).
    #[cfg(test)]
    pub async fn due_to_mail(&self, now: Millis, limit: u32) -> anyhow::Result<Vec<ToMailItem>> {
        self.due_to_mail_except(now, limit, &[]).await
    }

    /// Takes queued mail that is due, oldest first, but for `busy` (mail
    /// this instance is delivering already): each is leased to this
    /// instance until `now` plus the lease, in one statement. Mail leased
    /// to another instance is left to it until its lease runs out; mail
    /// leased to this one is taken again (an attempt that ended without
    /// an outcome).
    pub async fn due_to_mail_except(
        &self,
        now: Millis,
        limit: u32,
        busy: &[i64],
    ) -> anyhow::Result<Vec<ToMailItem>> {
        // SQLite has one writer at a time: what it selects is not taken
        // by another before the update. PostgreSQL skips the rows another
        // instance is taking at the same moment.
        let lock = match self.pool {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let busy_ids = super::json_ids_sql(self.pool.kind(), 3);
        // Only the constant fragments above are formatted in.
        let sql = format!(
            "
            UPDATE to_mail SET lease_owner = $5, lease_until = $6
            WHERE id IN (
                SELECT id FROM to_mail
                WHERE state = $1 AND next_attempt_at <= $2
                  AND (lease_until IS NULL OR lease_until < $2 OR lease_owner = $5)
                  AND id NOT IN ({busy_ids})
                ORDER BY id
                LIMIT $4
                {lock}
            )
            RETURNING id, sender, mail_from, rcpt, message_id, raw, attempts, created_at,
                      route, stanza, submission
            "
        );
        let mut items = on_backend!(&self.pool, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ToMailState::Queued)
                .bind(now.0)
                .bind(super::json_ids(busy))
                .bind(i64::from(limit))
                .bind(&*self.owner)
                .bind(now.after(self.lease).0)
                .fetch_all(pool)
                .await
                .context("Taking due outgoing mail")?;
            rows.into_iter()
                .map(to_mail_item)
                .collect::<anyhow::Result<Vec<_>>>()?
        });
        items.sort_by_key(|item| item.id);
        Ok(items)
    }

    /// When the next queued mail is due for this instance, if any: mail
    /// leased to another instance is due when its lease runs out.
    pub async fn next_to_mail(&self) -> anyhow::Result<Option<Millis>> {
        self.next_due(&TO_MAIL, "Finding the next due mail").await
    }

    /// Records what became of delivery attempts, in one transaction. A
    /// failed mail's notice to its sender is queued in the same
    /// transaction: the sender is told exactly once.
    pub async fn apply_mail_outcomes(&self, outcomes: &[MailOutcome]) -> anyhow::Result<()> {
        let _timed = Timed::start(&meters().store.mail_outcomes);
        let now = Millis::now();
        let mut noticed = false;
        // Outcomes that changed nothing: the mail is leased to another
        // instance now (this one's lease ran out), or it ended already.
        let mut lost = Vec::new();
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            for outcome in outcomes {
                match outcome {
                    MailOutcome::Routed { id, route } => {
                        let routed = sqlx::query(
                            "UPDATE to_mail SET route = $1, updated_at = $2
                             WHERE id = $3 AND lease_owner = $4",
                        )
                        .bind(route)
                        .bind(now.0)
                        .bind(id)
                        .bind(&*self.owner)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("Routing mail {id}"))?;
                        if routed.rows_affected() == 0 {
                            lost.push(*id);
                        }
                    }
                    MailOutcome::SentAsXmpp { id, told } => {
                        if !end_attempt((&mut *tx).into(), *id, &self.owner, &Attempt::Sent, now)
                            .await?
                        {
                            lost.push(*id);
                            continue;
                        }
                        if queue_receipts((&mut *tx).into(), *id, now).await? > 0 {
                            noticed = true;
                        }
                        if let Some(told) = told {
                            let first = sqlx::query(
                                "INSERT INTO xmpp_mail_told (\"user\", peer) VALUES ($1, $2)
                             ON CONFLICT DO NOTHING",
                            )
                            .bind(told.notice.recipient.as_str())
                            .bind(&told.peer)
                            .execute(&mut *tx)
                            .await
                            .context("Recording a user told")?;
                            if first.rows_affected() == 1 {
                                insert_notice((&mut *tx).into(), &told.notice, now).await?;
                                noticed = true;
                            }
                        }
                    }
                    MailOutcome::Rerouted { id, error } => {
                        let later = Attempt::Later {
                            route: Some(MailRoute::Smtp),
                            at: now,
                            error,
                        };
                        if !end_attempt((&mut *tx).into(), *id, &self.owner, &later, now).await? {
                            lost.push(*id);
                        }
                    }
                    MailOutcome::Sent(id) => {
                        if !end_attempt((&mut *tx).into(), *id, &self.owner, &Attempt::Sent, now)
                            .await?
                        {
                            lost.push(*id);
                        } else if queue_receipts((&mut *tx).into(), *id, now).await? > 0 {
                            noticed = true;
                        }
                    }
                    MailOutcome::SentAwaitingReport(id) => {
                        if !end_attempt((&mut *tx).into(), *id, &self.owner, &Attempt::Sent, now)
                            .await?
                        {
                            lost.push(*id);
                        }
                    }
                    MailOutcome::Retry { id, at, error } => {
                        let later = Attempt::Later {
                            route: None,
                            at: *at,
                            error,
                        };
                        if !end_attempt((&mut *tx).into(), *id, &self.owner, &later, now).await? {
                            lost.push(*id);
                        }
                    }
                    MailOutcome::Failed { id, error, notice } => {
                        let failed =
                            give_up((&mut *tx).into(), &TO_MAIL, *id, &self.owner, error, now)
                                .await?;
                        if !failed {
                            lost.push(*id);
                        }
                        // A mail no longer queued (a bounce failed it first)
                        // has told its sender already.
                        if let (true, Some(notice)) = (failed, notice) {
                            insert_notice((&mut *tx).into(), notice, now).await?;
                            noticed = true;
                        }
                    }
                }
            }
            tx.commit().await.context("Committing delivery outcomes")?;
        });
        for id in lost {
            warn!(
                queue_id = id,
                instance = &*self.owner,
                "Outcome not recorded: another instance holds the mail now, or it ended already."
            );
        }
        if noticed {
            self.wake.to_xmpp.notify_one();
        }
        Ok(())
    }

    /// Records that mail `id` bounced (a permanent failure reported by
    /// `bounce`) and queues the notice to its sender, from `gateway`'s
    /// domain, in the same transaction. Nothing is done when the queue no
    /// longer has the mail or it had failed already: a second bounce for
    /// it tells the sender nothing new. Returns what the sender was told.
    pub async fn mail_bounced(
        &self,
        id: i64,
        bounce: &Bounce,
        gateway: &BareJid,
    ) -> anyhow::Result<Option<Bounced>> {
        let reason = bounce_reason(bounce);
        let now = Millis::now();
        // Written first, read back with RETURNING: a read that became a
        // write could meet a concurrent writer's newer snapshot.
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let failed: Option<(String, String)> = sqlx::query_as(
                "
            UPDATE to_mail
            SET state = $1, last_error = $2, updated_at = $3
            WHERE id = $4 AND state != $5
            RETURNING sender, rcpt
            ",
            )
            .bind(ToMailState::Failed)
            .bind(&reason)
            .bind(now.0)
            .bind(id)
            .bind(ToMailState::Failed)
            .fetch_optional(&mut *tx)
            .await
            .with_context(|| format!("Recording the bounce of mail {id}"))?;
            let Some((sender, rcpt)) = failed else {
                return Ok(None);
            };
            let notice = Notice::undelivered(gateway, &sender, &rcpt, &reason)?;
            insert_notice((&mut *tx).into(), &notice, now).await?;
            tx.commit().await.context("Committing a bounce")?;
            self.wake.to_xmpp.notify_one();
            Ok(Some(Bounced { rcpt, reason }))
        })
    }
}

/// A `to_mail` row as an item.
fn to_mail_item<R: sqlx::Row>(row: R) -> anyhow::Result<ToMailItem>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> MailRoute: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ToMailItem {
        id: row.try_get("id")?,
        sender: row.try_get("sender")?,
        mail_from: row.try_get("mail_from")?,
        rcpt: row.try_get("rcpt")?,
        message_id: row.try_get("message_id")?,
        raw: row.try_get("raw")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        created_at: Millis(row.try_get("created_at")?),
        route: row.try_get("route")?,
        stanza: row.try_get("stanza")?,
        submission: row.try_get("submission")?,
    })
}

/// What became of an attempt at a mail.
enum Attempt<'a> {
    Sent,
    /// Failed: the mail is tried again at `at`, by `route` where given,
    /// else by the route it had.
    Later {
        route: Option<MailRoute>,
        at: Millis,
        error: &'a str,
    },
}

/// Records what became of an attempt at mail `id`, leased to `owner`;
/// false when `owner` no longer holds it.
async fn end_attempt(
    tx: Conn<'_>,
    id: i64,
    owner: &str,
    attempt: &Attempt<'_>,
    now: Millis,
) -> anyhow::Result<bool> {
    // A mail tried again keeps its state: a bounce may have failed it
    // meanwhile.
    let (state, route, at, error) = match *attempt {
        Attempt::Sent => (Some(ToMailState::Sent), None, None, ""),
        Attempt::Later { route, at, error } => (None, route, Some(at.0), error),
    };
    let ended = on_backend!(tx, |tx| sqlx::query(
        "
        UPDATE to_mail
        SET state = COALESCE($1, state), route = COALESCE($2, route), attempts = attempts + 1,
            next_attempt_at = COALESCE($3, next_attempt_at), last_error = $4, updated_at = $5,
            lease_until = NULL
        WHERE id = $6 AND lease_owner = $7
        ",
    )
    .bind(state)
    .bind(route)
    .bind(at)
    .bind(error)
    .bind(now.0)
    .bind(id)
    .bind(owner)
    .execute(tx)
    .await
    .map(|done| done.rows_affected())
    .with_context(|| match attempt {
        Attempt::Sent => format!("Marking mail {id} sent"),
        Attempt::Later { route: Some(_), .. } => format!("Rerouting mail {id}"),
        Attempt::Later { route: None, .. } => format!("Deferring mail {id}"),
    }))?;
    Ok(ended == 1)
}

/// Queues one outgoing mail; `None` when the same mail (sender,
/// Message-ID, recipient) is queued already. The caller wakes the runner
/// once its transaction is committed.
pub(super) async fn insert_mail(
    tx: Conn<'_>,
    mail: &NewMail<'_>,
    now: Millis,
) -> anyhow::Result<Option<i64>> {
    on_backend!(tx, |tx| sqlx::query_scalar(
        "
        INSERT INTO to_mail (sender, mail_from, rcpt, message_id, raw, stanza, state,
                             next_attempt_at, created_at, updated_at, submission)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (sender, message_id, rcpt) DO NOTHING
        RETURNING id
        ",
    )
    .bind(mail.sender.as_str())
    .bind(mail.mail_from)
    .bind(mail.rcpt)
    .bind(mail.message_id)
    .bind(mail.raw)
    .bind(mail.stanza)
    .bind(ToMailState::Queued)
    .bind(now.0)
    .bind(now.0)
    .bind(now.0)
    .bind(mail.submission)
    .fetch_optional(tx)
    .await
    .context("Queueing outgoing mail"))
}

#[cfg(test)]
mod tests;
