//! The store forgets what nothing needs any more: finished queue items
//! once operators had `keep_finished` to inspect them, inbound mail (the
//! raw bytes) once no delivery is pending and no attachment link leads
//! into it, thread metadata after `keep_threads`, XMPP-Mail answers once
//! expired, handoffs taken after `keep_finished`, receipts owed for
//! mail that is no longer queued after `keep_finished`, and read
//! notifications asked for but never sent after `keep_threads`. Rows go in small
//! transactions, so that accepting mail never waits long behind a sweep.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::to_mail::ToMailState;
use super::to_xmpp::ToXmppState;
use super::{Millis, Store};

/// Rows deleted per transaction.
const BATCH: i64 = 500;

/// A parameter of a sweeping statement.
#[derive(Debug, Clone, Copy)]
enum Param {
    Int(i64),
    ToXmpp(ToXmppState),
    ToMail(ToMailState),
}

/// How long each kind of row is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Delivered, sent and failed queue items, after their last change.
    pub keep_finished: Duration,
    /// Thread metadata (`messages`), after it was recorded.
    pub keep_threads: Duration,
}

/// How many rows a sweep deleted, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub to_xmpp: u64,
    pub to_mail: u64,
    pub inbound_mail: u64,
    /// Thread metadata, and read notifications asked for with it, and
    /// where mail from IMAP lives.
    pub messages: u64,
    /// Expired XMPP-Mail answers and old handoffs.
    pub xmpp_mail: u64,
    /// Receipts still owed for mail no longer queued (it failed, or was
    /// withdrawn, or its receipt could not be sent).
    pub receipts: u64,
}

impl Swept {
    fn total(&self) -> u64 {
        self.to_xmpp
            + self.to_mail
            + self.inbound_mail
            + self.messages
            + self.xmpp_mail
            + self.receipts
    }
}

impl Store {
    /// Deletes what `retention` no longer keeps at `now`, batch by batch,
    /// until nothing is left to delete or `stop` is cancelled.
    pub async fn sweep(
        &self,
        now: Millis,
        retention: &Retention,
        stop: &CancellationToken,
    ) -> anyhow::Result<Swept> {
        let finished = now.before(retention.keep_finished).0;
        let threads = now.before(retention.keep_threads).0;
        // The newest row of a queue table is never deleted: SQLite would
        // give its id to the next row, and ids are known outside (return
        // paths carry them, bounces come back with them). `rowid` is
        // SQLite's own, and a column of the same name in PostgreSQL.
        let swept = Swept {
            to_xmpp: self
                .delete_ended(
                    "to_xmpp",
                    [
                        Param::ToXmpp(ToXmppState::Delivered),
                        Param::ToXmpp(ToXmppState::Failed),
                    ],
                    finished,
                    stop,
                )
                .await?,
            to_mail: self
                .delete_ended(
                    "to_mail",
                    [
                        Param::ToMail(ToMailState::Sent),
                        Param::ToMail(ToMailState::Failed),
                    ],
                    finished,
                    stop,
                )
                .await?,
            // Any link row keeps the mail, expired or not: the link's
            // (mail_id, part_index) must not meet a later mail's.
            inbound_mail: self
                .delete_batches(
                    "inbound_mail",
                    "
                    DELETE FROM inbound_mail WHERE id IN (
                        SELECT m.id FROM inbound_mail m
                        WHERE NOT EXISTS (SELECT 1 FROM to_xmpp d WHERE d.mail_id = m.id)
                          AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.mail_id = m.id)
                          AND NOT EXISTS (SELECT 1 FROM spam_held h WHERE h.mail_id = m.id)
                          AND m.id < (SELECT MAX(id) FROM inbound_mail)
                        LIMIT $1)
                    ",
                    &[],
                    stop,
                )
                .await?,
            messages: self
                .delete_batches(
                    "messages",
                    "
                    DELETE FROM messages WHERE rowid IN (
                        SELECT rowid FROM messages WHERE created_at < $1 LIMIT $2)
                    ",
                    &[Param::Int(threads)],
                    stop,
                )
                .await?
                // Read notifications asked for live as long as the thread
                // metadata of the mail that asked.
                + self
                    .delete_batches(
                        "mdn_requests",
                        "
                        DELETE FROM mdn_requests WHERE (user_jid, stanza_id) IN (
                            SELECT user_jid, stanza_id FROM mdn_requests
                            WHERE created_at < $1 LIMIT $2)
                        ",
                        &[Param::Int(threads)],
                        stop,
                    )
                    .await?
                // So does where a mail from IMAP lives, unless \Seen is
                // still to be set on it.
                + self
                    .delete_batches(
                        "imap_messages",
                        "
                        DELETE FROM imap_messages WHERE (user_jid, stanza_id) IN (
                            SELECT user_jid, stanza_id FROM imap_messages
                            WHERE created_at < $1 AND seen <> 1 LIMIT $2)
                        ",
                        &[Param::Int(threads)],
                        stop,
                    )
                    .await?,
            xmpp_mail: self
                .delete_batches(
                    "xmpp_mail_answers",
                    "
                    DELETE FROM xmpp_mail_answers WHERE rowid IN (
                        SELECT rowid FROM xmpp_mail_answers WHERE expires_at < $1 LIMIT $2)
                    ",
                    &[Param::Int(now.0)],
                    stop,
                )
                .await?
                + self
                    .delete_batches(
                        "handoffs",
                        "
                        DELETE FROM handoffs WHERE rowid IN (
                            SELECT rowid FROM handoffs WHERE received_at < $1 LIMIT $2)
                        ",
                        &[Param::Int(finished)],
                        stop,
                    )
                    .await?,
            // A receipt owed for a mail still queued stays, however old.
            receipts: self
                .delete_batches(
                    "mail_receipts",
                    "
                    DELETE FROM mail_receipts
                    WHERE (sender, message_id, rcpt, stanza_id) IN (
                        SELECT r.sender, r.message_id, r.rcpt, r.stanza_id FROM mail_receipts r
                        WHERE r.created_at < $1
                          AND NOT EXISTS (
                              SELECT 1 FROM to_mail m
                              WHERE m.sender = r.sender AND m.message_id = r.message_id
                                AND m.rcpt = r.rcpt AND m.state = $2)
                        LIMIT $3)
                    ",
                    &[Param::Int(finished), Param::ToMail(ToMailState::Queued)],
                    stop,
                )
                .await?,
        };
        Ok(swept)
    }

    /// Deletes the items of queue `table` that ended (in one of the
    /// states `ended`) before `before`, but its newest row.
    async fn delete_ended(
        &self,
        table: &'static str,
        ended: [Param; 2],
        before: i64,
        stop: &CancellationToken,
    ) -> anyhow::Result<u64> {
        // Only the constant table name is formatted in.
        let sql = format!(
            "
            DELETE FROM {table} WHERE id IN (
                SELECT id FROM {table}
                WHERE state IN ($1, $2) AND updated_at < $3
                  AND id < (SELECT MAX(id) FROM {table})
                LIMIT $4)
            "
        );
        let [first, second] = ended;
        self.delete_batches(table, &sql, &[first, second, Param::Int(before)], stop)
            .await
    }

    /// Runs `sql` with `params`, then the batch size as its last
    /// parameter, until it deletes less than a batch; each run is its own
    /// transaction. Only constant SQL comes here.
    async fn delete_batches(
        &self,
        table: &str,
        sql: &str,
        params: &[Param],
        stop: &CancellationToken,
    ) -> anyhow::Result<u64> {
        let mut deleted = 0;
        while !stop.is_cancelled() {
            let done = on_backend!(&self.pool, |pool| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for param in params {
                    query = match *param {
                        Param::Int(value) => query.bind(value),
                        Param::ToXmpp(state) => query.bind(state),
                        Param::ToMail(state) => query.bind(state),
                    };
                }
                query
                    .bind(BATCH)
                    .execute(pool)
                    .await
                    .with_context(|| format!("Sweeping {table}"))?
                    .rows_affected()
            });
            deleted += done;
            if done < BATCH.unsigned_abs() {
                break;
            }
            // Between two batches, others get the write lock.
            tokio::task::yield_now().await;
        }
        Ok(deleted)
    }
}

/// Sweeps the store every `every` until `shutdown`; the first sweep runs
/// at start. Of the instances sharing a store, the one holding the job's
/// lease sweeps.
pub async fn run(store: Store, retention: Retention, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        // One instance of a cluster sweeps.
        if !store
            .runs_job("store-sweep", every, "Sweeping the store failed.")
            .await
        {
            continue;
        }
        match store.sweep(Millis::now(), &retention, &shutdown).await {
            Ok(swept) if swept.total() > 0 => info!(
                to_xmpp = swept.to_xmpp,
                to_mail = swept.to_mail,
                inbound_mail = swept.inbound_mail,
                messages = swept.messages,
                xmpp_mail = swept.xmpp_mail,
                receipts = swept.receipts,
                "Store swept."
            ),
            Ok(_) => {}
            Err(e) => warn!(error = format!("{e:#}"), "Sweeping the store failed."),
        }
    }
}

#[cfg(test)]
mod tests;
