//! What administrators see and do in the two queues: the `facteur queue`
//! commands and their ad-hoc twins (XEP-0050). An item is named by its
//! queue and id, e.g. `to_mail:42`.

use std::fmt;
use std::str::FromStr;

use anyhow::Context;
use sqlx::{AssertSqlSafe, Row};

use super::to_mail::ToMailState;
use super::to_xmpp::ToXmppState;
use super::{Millis, Store};

/// Items listed at most when no limit is given.
pub const LIST_LIMIT: u32 = 100;

/// Why an item deleted by an administrator was given up.
const DELETED: &str = "Deleted by an administrator";

/// One of the two durable queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Stanzas owed to XMPP users.
    ToXmpp,
    /// Mail owed to SMTP peers (and XMPP-Mail gateways).
    ToMail,
}

impl Queue {
    pub fn name(self) -> &'static str {
        match self {
            Queue::ToXmpp => "to_xmpp",
            Queue::ToMail => "to_mail",
        }
    }
}

/// An item of a queue, as administrators name it: `to_mail:42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemId {
    pub queue: Queue,
    pub id: i64,
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.queue.name(), self.id)
    }
}

impl FromStr for ItemId {
    type Err = String;

    fn from_str(s: &str) -> Result<ItemId, String> {
        let bad = || format!("{s:?} is not a queue item: to_mail:ID or to_xmpp:ID");
        let (queue, id) = s.trim().split_once(':').ok_or_else(bad)?;
        let queue = match queue {
            "to_mail" => Queue::ToMail,
            "to_xmpp" => Queue::ToXmpp,
            _ => return Err(bad()),
        };
        let id = id
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(bad)?;
        Ok(ItemId { queue, id })
    }
}

/// What an administrator sees of a queued item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub item: ItemId,
    /// `queued`, `sent` or `failed` in `to_mail`; `pending`, `delivered`
    /// or `failed` in `to_xmpp`.
    pub state: String,
    /// The XMPP sender (`to_mail`), the envelope sender or the notice's
    /// author (`to_xmpp`; '' for the null sender).
    pub from: String,
    /// The mail recipient (`to_mail`) or the XMPP user (`to_xmpp`).
    pub to: String,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub created_at: Millis,
    pub last_error: String,
    /// Bytes of the mail (or of the notice's text).
    pub size: i64,
}

/// A queued item with its message, for `show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDetail {
    pub entry: QueueEntry,
    pub message_id: String,
    pub subject: String,
    /// The SMTP client an inbound mail came from ('' for the rest).
    pub client: String,
}

/// Counts for the statistics command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub users: i64,
    /// Per queue and state.
    pub queues: Vec<(String, String, i64)>,
    /// Per queue, when its oldest waiting item was queued.
    pub oldest_waiting: Vec<(Queue, Option<Millis>)>,
}

/// A store time as RFC 3339, UTC, to the second.
pub fn timestamp(at: Millis) -> String {
    mail_parser::DateTime::from_timestamp(at.0.div_euclid(1000)).to_rfc3339()
}

impl QueueEntry {
    /// One line, as `facteur queue list` prints it: the item, its state,
    /// when it was queued, who writes to whom, then `size=`, `attempts=`,
    /// `next=` while it waits, and last `error=` (the rest of the line)
    /// when an attempt failed.
    pub fn line(&self) -> String {
        let from = if self.from.is_empty() {
            "<>"
        } else {
            &self.from
        };
        let mut line = format!(
            "{} {} {} {from} -> {} size={} attempts={}",
            self.item,
            self.state,
            timestamp(self.created_at),
            self.to,
            self.size,
            self.attempts,
        );
        if self.state == "queued" || self.state == "pending" {
            line.push_str(&format!(" next={}", timestamp(self.next_attempt_at)));
        }
        if !self.last_error.is_empty() {
            line.push_str(" error=");
            line.push_str(&self.last_error.replace(['\r', '\n'], " "));
        }
        line
    }
}

impl QueueDetail {
    /// `(name, label, value)` of each thing shown, in order.
    pub fn fields(&self) -> Vec<(&'static str, &'static str, String)> {
        let e = &self.entry;
        vec![
            ("item", "Item", e.item.to_string()),
            ("state", "State", e.state.clone()),
            ("from", "From", e.from.clone()),
            ("to", "To", e.to.clone()),
            ("message-id", "Message-ID", self.message_id.clone()),
            ("subject", "Subject", self.subject.clone()),
            ("client", "Client", self.client.clone()),
            ("size", "Size (bytes)", e.size.to_string()),
            ("queued", "Queued", timestamp(e.created_at)),
            ("attempts", "Attempts", e.attempts.to_string()),
            ("next-attempt", "Next attempt", timestamp(e.next_attempt_at)),
            ("last-error", "Last error", e.last_error.clone()),
        ]
    }
}

impl Stats {
    /// `(name, label, value)` of each figure, in order; ages as of `now`.
    pub fn fields(&self, now: Millis) -> Vec<(String, String, String)> {
        let mut fields = vec![(
            "users".to_owned(),
            "Registered users".to_owned(),
            self.users.to_string(),
        )];
        for (queue, state, count) in &self.queues {
            fields.push((
                format!("{queue}.{state}"),
                format!("{queue} {state}"),
                count.to_string(),
            ));
        }
        for (queue, oldest) in &self.oldest_waiting {
            let age = oldest.map_or(0, |at| now.since(at).as_secs());
            fields.push((
                format!("{}.oldest-seconds", queue.name()),
                format!("{} oldest waiting item, seconds", queue.name()),
                age.to_string(),
            ));
        }
        fields
    }
}

fn entry<R: Row>(queue: Queue, row: &R) -> anyhow::Result<QueueEntry>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(QueueEntry {
        item: ItemId {
            queue,
            id: row.try_get("id")?,
        },
        state: row.try_get("state")?,
        from: row.try_get("sender")?,
        to: row.try_get("rcpt")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: Millis(row.try_get("next_attempt_at")?),
        created_at: Millis(row.try_get("created_at")?),
        last_error: row.try_get("last_error")?,
        size: row.try_get("size")?,
    })
}

// The statements below are built from these constants and a table name
// from `Queue::name`: nothing of the input reaches their text.

/// The columns of a `to_mail` entry, then its message.
const TO_MAIL: &str = "
    SELECT id, state, sender, rcpt, attempts, next_attempt_at, created_at,
           last_error, CAST(length(raw) AS BIGINT) AS size, message_id, raw, '' AS client_ip
    FROM to_mail";

/// The columns of a `to_xmpp` entry, then its mail (none for a notice).
const TO_XMPP: &str = "
    SELECT d.id, d.state, COALESCE(m.mail_from, d.notice_from) AS sender,
           d.recipient AS rcpt, d.attempts, d.next_attempt_at, d.created_at,
           d.last_error,
           CAST(COALESCE(length(m.raw), length(d.notice_body)) AS BIGINT) AS size,
           d.notice_subject, m.raw, COALESCE(m.client_ip, '') AS client_ip
    FROM to_xmpp d LEFT JOIN inbound_mail m ON m.id = d.mail_id";

impl Store {
    /// The items waiting in both queues, oldest first, at most `limit`.
    pub async fn queue_list(&self, limit: u32) -> anyhow::Result<Vec<QueueEntry>> {
        let mut entries = on_backend!(&self.pool, |pool| {
            let to_mail = sqlx::query(AssertSqlSafe(format!(
                "{TO_MAIL} WHERE state = $1 ORDER BY created_at, id LIMIT $2"
            )))
            .bind(ToMailState::Queued)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .context("Listing to_mail")?;
            let to_xmpp = sqlx::query(AssertSqlSafe(format!(
                "{TO_XMPP} WHERE d.state = $1 ORDER BY d.created_at, d.id LIMIT $2"
            )))
            .bind(ToXmppState::Pending)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .context("Listing to_xmpp")?;
            let mut entries = Vec::with_capacity(to_mail.len() + to_xmpp.len());
            for row in &to_mail {
                entries.push(entry(Queue::ToMail, row)?);
            }
            for row in &to_xmpp {
                entries.push(entry(Queue::ToXmpp, row)?);
            }
            entries
        });
        entries.sort_by_key(|e| (e.created_at, e.item.queue.name(), e.item.id));
        entries.truncate(limit as usize);
        Ok(entries)
    }

    /// One item, in whatever state, with its message's identity.
    pub async fn queue_show(&self, item: ItemId) -> anyhow::Result<Option<QueueDetail>> {
        let sql = match item.queue {
            Queue::ToMail => format!("{TO_MAIL} WHERE id = $1"),
            Queue::ToXmpp => format!("{TO_XMPP} WHERE d.id = $1"),
        };
        on_backend!(&self.pool, |pool| {
            let Some(row) = sqlx::query(AssertSqlSafe(sql))
                .bind(item.id)
                .fetch_optional(pool)
                .await
                .with_context(|| format!("Reading {item}"))?
            else {
                return Ok(None);
            };
            let entry = entry(item.queue, &row)?;
            let raw: Option<Vec<u8>> = row.try_get("raw")?;
            let headers = raw
                .as_deref()
                .and_then(|raw| mail_parser::MessageParser::new().parse_headers(raw));
            let (mut message_id, mut subject) = match &headers {
                Some(mail) => (
                    mail.message_id().unwrap_or_default().to_owned(),
                    mail.subject().unwrap_or_default().to_owned(),
                ),
                None => (String::new(), String::new()),
            };
            match item.queue {
                Queue::ToMail => {
                    let stored: String = row.try_get("message_id")?;
                    message_id = stored
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned();
                }
                Queue::ToXmpp if raw.is_none() => subject = row.try_get("notice_subject")?,
                Queue::ToXmpp => {}
            }
            Ok(Some(QueueDetail {
                entry,
                message_id,
                subject,
                client: row.try_get("client_ip")?,
            }))
        })
    }

    /// Makes a waiting item due now. False when it is not waiting.
    pub async fn queue_retry(&self, item: ItemId, now: Millis) -> anyhow::Result<bool> {
        let done = self
            .waiting_item(item, "SET next_attempt_at = $1, updated_at = $1", now, None)
            .await?;
        if done {
            match item.queue {
                Queue::ToMail => self.wake.to_mail.notify_one(),
                Queue::ToXmpp => self.wake.to_xmpp.notify_one(),
            }
        }
        Ok(done)
    }

    /// Gives a waiting item up without telling anyone: it leaves the
    /// queue, and the sweep deletes it with the other finished items.
    /// False when it is not waiting (a delivery already under way still
    /// ends as it would have).
    pub async fn queue_delete(&self, item: ItemId, now: Millis) -> anyhow::Result<bool> {
        self.waiting_item(
            item,
            "SET state = $4, last_error = $5, updated_at = $1",
            now,
            Some(DELETED),
        )
        .await
    }

    /// Runs `set` on `item` if it is waiting: `$1` is `now`, `$4` the
    /// failed state and `$5` `error`.
    async fn waiting_item(
        &self,
        item: ItemId,
        set: &str,
        now: Millis,
        error: Option<&str>,
    ) -> anyhow::Result<bool> {
        let table = item.queue.name();
        let sql = format!("UPDATE {table} {set} WHERE id = $2 AND state = $3");
        let done = on_backend!(&self.pool, |pool| {
            let query = sqlx::query(AssertSqlSafe(sql)).bind(now.0).bind(item.id);
            let query = match item.queue {
                Queue::ToMail => query.bind(ToMailState::Queued),
                Queue::ToXmpp => query.bind(ToXmppState::Pending),
            };
            let query = match (item.queue, error) {
                (_, None) => query,
                (Queue::ToMail, Some(error)) => query.bind(ToMailState::Failed).bind(error),
                (Queue::ToXmpp, Some(error)) => query.bind(ToXmppState::Failed).bind(error),
            };
            query
                .execute(pool)
                .await
                .with_context(|| format!("Updating {item}"))?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Registered users, items per queue and state, and the oldest
    /// waiting item of each queue.
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let queues = self.queue_counts().await?;
        let (users, oldest_mail, oldest_xmpp): (i64, Option<i64>, Option<i64>) =
            on_backend!(&self.pool, |pool| {
                let users = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(pool)
                    .await
                    .context("Counting users")?;
                let oldest_mail =
                    sqlx::query_scalar("SELECT MIN(created_at) FROM to_mail WHERE state = $1")
                        .bind(ToMailState::Queued)
                        .fetch_one(pool)
                        .await
                        .context("Reading the oldest of to_mail")?;
                let oldest_xmpp =
                    sqlx::query_scalar("SELECT MIN(created_at) FROM to_xmpp WHERE state = $1")
                        .bind(ToXmppState::Pending)
                        .fetch_one(pool)
                        .await
                        .context("Reading the oldest of to_xmpp")?;
                (users, oldest_mail, oldest_xmpp)
            });
        Ok(Stats {
            users,
            queues,
            oldest_waiting: vec![
                (Queue::ToXmpp, oldest_xmpp.map(Millis)),
                (Queue::ToMail, oldest_mail.map(Millis)),
            ],
        })
    }
}

#[cfg(test)]
mod tests;
