//! What the user asks of mail taken from IMAP (`imap_messages`): \Seen
//! set on what their client displayed, a move to Junk of what they
//! reported as spam, and the mailbox that answers to a mail leave
//! through.

use anyhow::Context;
use jid::BareJid;
use sqlx::Row;

use super::super::Store;
use super::{u32_of, ImapMailbox, JunkToMove, SeenToSet};

impl Store {
    /// The user's client displayed (or received) the message it knows as
    /// `stanza_id`: if it came from IMAP and is not marked yet, \Seen is
    /// to be set on it, and its mailbox's follower is woken. Returns the
    /// mailbox's id then.
    pub async fn imap_seen_wanted(
        &self,
        user: &BareJid,
        stanza_id: &str,
    ) -> anyhow::Result<Option<i64>> {
        let id: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "
            UPDATE imap_messages SET seen = 1
            WHERE user_jid = $1 AND stanza_id = $2 AND seen = 0
            RETURNING mailbox_id
            ",
        )
        .bind(user.as_str())
        .bind(stanza_id)
        .fetch_optional(pool)
        .await)
        .with_context(|| format!("Marking {stanza_id} seen"))?;
        if let Some(id) = id {
            self.imap_waker(id).notify_one();
        }
        Ok(id)
    }

    /// Whether the user's message their client knows as `stanza_id` came
    /// from IMAP.
    pub async fn imap_message_known(
        &self,
        user: &BareJid,
        stanza_id: &str,
    ) -> anyhow::Result<bool> {
        let found: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT mailbox_id FROM imap_messages WHERE user_jid = $1 AND stanza_id = $2",
        )
        .bind(user.as_str())
        .bind(stanza_id)
        .fetch_optional(pool)
        .await)
        .context("Looking up a mail from IMAP")?;
        Ok(found.is_some())
    }

    /// The messages of mailbox `id` that \Seen is to be set on.
    pub async fn imap_seen_to_set(&self, id: i64) -> anyhow::Result<Vec<SeenToSet>> {
        self.imap_wanted(id, Wanted::Seen).await
    }

    /// \Seen was set on these messages of mailbox `id` (or they are
    /// gone from the server): nothing more to do for them.
    pub async fn imap_seen_set(&self, id: i64, stanza_ids: &[String]) -> anyhow::Result<()> {
        self.imap_done(id, stanza_ids, Wanted::Seen).await
    }

    /// The mailbox whose submission server answers to a mail leave
    /// through: the first of `message_ids` (the answered mail's, then
    /// those it refers to, without angle brackets) that came to `user`
    /// from a mailbox with an outgoing server.
    pub async fn imap_answer_route(
        &self,
        user: &BareJid,
        message_ids: &[&str],
    ) -> anyhow::Result<Option<ImapMailbox>> {
        for message_id in message_ids.iter().filter(|m| !m.is_empty()) {
            let id: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
                "
                SELECT m.id FROM imap_messages i JOIN imap_mailboxes m ON m.id = i.mailbox_id
                WHERE i.user_jid = $1 AND i.message_id = $2 AND m.smtp_host <> ''
                ORDER BY i.created_at DESC
                LIMIT 1
                ",
            )
            .bind(user.as_str())
            .bind(*message_id)
            .fetch_optional(pool)
            .await)
            .context("Looking up the mailbox of an answered mail")?;
            if let Some(id) = id {
                return self.imap_mailbox(user, id).await;
            }
        }
        Ok(None)
    }

    /// The user reported the mail with `message_id` (without angle
    /// brackets) as spam: if it came from IMAP, it is to be moved to the
    /// Junk folder, and its mailbox's follower is woken. Returns the
    /// mailbox's id then.
    pub async fn imap_junk_wanted(
        &self,
        user: &BareJid,
        message_id: &str,
    ) -> anyhow::Result<Option<i64>> {
        let message_id = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        let ids: Vec<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "
            UPDATE imap_messages SET junk = 1
            WHERE user_jid = $1 AND message_id = $2 AND junk = 0
            RETURNING mailbox_id
            ",
        )
        .bind(user.as_str())
        .bind(message_id)
        .fetch_all(pool)
        .await)
        .with_context(|| format!("Marking {message_id} as junk"))?;
        for id in &ids {
            self.imap_waker(*id).notify_one();
        }
        Ok(ids.first().copied())
    }

    /// The messages of mailbox `id` to move to the Junk folder.
    pub async fn imap_junk_to_move(&self, id: i64) -> anyhow::Result<Vec<JunkToMove>> {
        self.imap_wanted(id, Wanted::Junk).await
    }

    /// These messages of mailbox `id` were moved to Junk (or are gone):
    /// nothing more to do for them.
    pub async fn imap_junk_moved(&self, id: i64, stanza_ids: &[String]) -> anyhow::Result<()> {
        self.imap_done(id, stanza_ids, Wanted::Junk).await
    }

    /// The messages of mailbox `id` that `wanted` is asked of.
    async fn imap_wanted(&self, id: i64, wanted: Wanted) -> anyhow::Result<Vec<SeenToSet>> {
        let sql = format!(
            "
            SELECT stanza_id, folder, uid_validity, uid FROM imap_messages
            WHERE mailbox_id = $1 AND {column} = 1
            ORDER BY folder, uid
            ",
            column = wanted.column()
        );
        on_backend!(&self.pool, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_all(pool)
                .await
                .context(wanted.reading())?;
            let mut found = Vec::with_capacity(rows.len());
            for row in rows {
                found.push(SeenToSet {
                    stanza_id: row.try_get("stanza_id")?,
                    folder: row.try_get("folder")?,
                    uid_validity: u32_of(row.try_get("uid_validity")?),
                    uid: u32_of(row.try_get("uid")?),
                });
            }
            Ok(found)
        })
    }

    /// `wanted` was done on these messages of mailbox `id` (or they are
    /// gone from the server).
    async fn imap_done(
        &self,
        id: i64,
        stanza_ids: &[String],
        wanted: Wanted,
    ) -> anyhow::Result<()> {
        let sql = format!(
            "UPDATE imap_messages SET {column} = 2 WHERE mailbox_id = $1 AND stanza_id = $2",
            column = wanted.column()
        );
        for stanza_id in stanza_ids {
            on_backend!(&self.pool, |pool| sqlx::query(sqlx::AssertSqlSafe(
                sql.clone()
            ))
            .bind(id)
            .bind(stanza_id)
            .execute(pool)
            .await
            .map(|_| ()))
            .context(wanted.remembering())?;
        }
        Ok(())
    }
}

/// What the user asked of a message taken from IMAP, each kept in a
/// column of `imap_messages`: 0 nothing, 1 wanted, 2 done.
#[derive(Clone, Copy)]
enum Wanted {
    /// \Seen set on it.
    Seen,
    /// Moved to the Junk folder.
    Junk,
}

impl Wanted {
    fn column(self) -> &'static str {
        match self {
            Wanted::Seen => "seen",
            Wanted::Junk => "junk",
        }
    }

    fn reading(self) -> &'static str {
        match self {
            Wanted::Seen => "Reading the flags to set",
            Wanted::Junk => "Reading the mail to move to Junk",
        }
    }

    fn remembering(self) -> &'static str {
        match self {
            Wanted::Seen => "Remembering a flag set",
            Wanted::Junk => "Remembering a move to Junk",
        }
    }
}
