//! The messages a user got or sent, for threading replies both ways.

use anyhow::Context;
use jid::BareJid;

use super::{Backend, Conn, Millis, Store};

/// One message of a user's conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub user: BareJid,
    pub message_id: String,
    pub peer: BareJid,
    pub stanza_id: String,
    pub author: BareJid,
    pub thread: String,
    pub references: Vec<String>,
}

const COLUMNS: &str = "user_jid, message_id, peer_jid, stanza_id, author_jid, thread, refs";

fn record<R: sqlx::Row>(row: R) -> anyhow::Result<MessageRecord>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let jid = |column: &str| -> anyhow::Result<BareJid> {
        let text: String = row.try_get(column)?;
        BareJid::new(&text).with_context(|| format!("Stored {column} {text}"))
    };
    let refs: String = row.try_get("refs")?;
    Ok(MessageRecord {
        user: jid("user_jid")?,
        message_id: row.try_get("message_id")?,
        peer: jid("peer_jid")?,
        stanza_id: row.try_get("stanza_id")?,
        author: jid("author_jid")?,
        thread: row.try_get("thread")?,
        references: refs.split_whitespace().map(str::to_owned).collect(),
    })
}

/// Remembers a message; the first record of a Message-ID stays.
pub(crate) async fn insert_message(conn: Conn<'_>, message: &MessageRecord) -> anyhow::Result<()> {
    // Only the constant column list is formatted in.
    on_backend!(conn, |conn| sqlx::query(sqlx::AssertSqlSafe(format!(
        "
        INSERT INTO messages ({COLUMNS}, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (user_jid, message_id) DO NOTHING
        "
    )))
    .bind(message.user.as_str())
    .bind(&message.message_id)
    .bind(message.peer.as_str())
    .bind(&message.stanza_id)
    .bind(message.author.as_str())
    .bind(&message.thread)
    .bind(message.references.join(" "))
    .bind(Millis::now().0)
    .execute(conn)
    .await
    .map(|_| ()))
    .with_context(|| format!("Remembering message {}", message.message_id))?;
    Ok(())
}

/// Remembers messages (see [`insert_message`]) in one statement: each
/// statement is a round trip to the server, or to SQLite's own thread.
pub(crate) async fn insert_messages(
    conn: Conn<'_>,
    messages: &[MessageRecord],
) -> anyhow::Result<()> {
    match conn {
        Backend::Sqlite(conn) if !messages.is_empty() => {
            let refs: Vec<String> = messages.iter().map(|m| m.references.join(" ")).collect();
            let rows: Vec<[&str; 7]> = messages
                .iter()
                .zip(&refs)
                .map(|(m, refs)| {
                    [
                        m.user.as_str(),
                        &m.message_id,
                        m.peer.as_str(),
                        &m.stanza_id,
                        m.author.as_str(),
                        &m.thread,
                        refs,
                    ]
                })
                .collect();
            let rows = serde_json::to_string(&rows).context("Remembering messages")?;
            // Only the constant column list is formatted in. `WHERE true`
            // tells SQLite's parser that ON CONFLICT is the upsert clause.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "
                INSERT INTO messages ({COLUMNS}, created_at)
                SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                       json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                       json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                       json_extract(value, '$[6]'), $2
                FROM json_each($1) WHERE true
                ON CONFLICT (user_jid, message_id) DO NOTHING
                "
            )))
            .bind(rows)
            .bind(Millis::now().0)
            .execute(conn)
            .await
            .context("Remembering messages")?;
        }
        Backend::Postgres(conn) if !messages.is_empty() => {
            let column =
                |f: fn(&MessageRecord) -> String| messages.iter().map(f).collect::<Vec<_>>();
            // Only the constant column list is formatted in.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "
                INSERT INTO messages ({COLUMNS}, created_at)
                SELECT *, $8 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[],
                                         $5::TEXT[], $6::TEXT[], $7::TEXT[])
                ON CONFLICT (user_jid, message_id) DO NOTHING
                "
            )))
            .bind(column(|m| m.user.as_str().to_owned()))
            .bind(column(|m| m.message_id.clone()))
            .bind(column(|m| m.peer.as_str().to_owned()))
            .bind(column(|m| m.stanza_id.clone()))
            .bind(column(|m| m.author.as_str().to_owned()))
            .bind(column(|m| m.thread.clone()))
            .bind(column(|m| m.references.join(" ")))
            .bind(Millis::now().0)
            .execute(conn)
            .await
            .context("Remembering messages")?;
        }
        Backend::Sqlite(_) | Backend::Postgres(_) => {}
    }
    Ok(())
}

impl Store {
    /// Remembers a message; the first record of a Message-ID stays.
    #[cfg(test)]
    pub async fn remember_message(&self, message: &MessageRecord) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| {
            let mut conn = pool.acquire().await.context("Connecting to the store")?;
            insert_message((&mut *conn).into(), message).await
        })
    }

    async fn find_message(
        &self,
        condition: &'static str,
        user: &BareJid,
        value: &str,
    ) -> anyhow::Result<Option<MessageRecord>> {
        // `condition` is one of the constant strings of the callers below.
        on_backend!(&self.pool, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "
            SELECT {COLUMNS} FROM messages
            WHERE user_jid = $1 AND {condition}
            ORDER BY created_at DESC, rowid DESC
            LIMIT 1
            "
            )))
            .bind(user.as_str())
            .bind(value)
            .fetch_optional(pool)
            .await
            .context("Looking up a message")?;
            row.map(record).transpose()
        })
    }

    /// The user's message with this Message-ID.
    pub async fn message_by_id(
        &self,
        user: &BareJid,
        message_id: &str,
    ) -> anyhow::Result<Option<MessageRecord>> {
        self.find_message("message_id = $2", user, message_id).await
    }

    /// The user's message their client knows by `stanza_id`.
    pub async fn message_by_stanza_id(
        &self,
        user: &BareJid,
        stanza_id: &str,
    ) -> anyhow::Result<Option<MessageRecord>> {
        self.find_message("stanza_id = $2", user, stanza_id).await
    }

    /// The latest message of a thread of the user's.
    pub async fn latest_in_thread(
        &self,
        user: &BareJid,
        thread: &str,
    ) -> anyhow::Result<Option<MessageRecord>> {
        self.find_message("thread = $2", user, thread).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).expect("jid")
    }

    store_test! {
        async fn messages_are_found_by_id_stanza_and_thread(store, scratch) {
            let alice = jid("alice@example.test");
            let bob = jid("bob\\40example.net@mail.example.test");
            let first = MessageRecord {
                user: alice.clone(),
                message_id: "a@example.net".into(),
                peer: bob.clone(),
                stanza_id: "mail-1".into(),
                author: bob.clone(),
                thread: "t1".into(),
                references: vec![],
            };
            let second = MessageRecord {
                message_id: "b@mail.example.test".into(),
                stanza_id: "s2".into(),
                author: alice.clone(),
                references: vec!["a@example.net".into()],
                ..first.clone()
            };
            store.remember_message(&first).await.expect("stored");
            store.remember_message(&second).await.expect("stored");
            store.remember_message(&first).await.expect("stored twice");
            assert_eq!(
                store
                    .message_by_id(&alice, "a@example.net")
                    .await
                    .expect("q"),
                Some(first.clone())
            );
            assert_eq!(
                store.message_by_stanza_id(&alice, "s2").await.expect("q"),
                Some(second.clone())
            );
            assert_eq!(
                store.latest_in_thread(&alice, "t1").await.expect("q"),
                Some(second)
            );
            assert_eq!(
                store.message_by_id(&bob, "a@example.net").await.expect("q"),
                None
            );
        }
    }

    store_test! {
        async fn a_batch_keeps_the_first_record_of_each_message(store, scratch) {
            let alice = jid("alice@example.test");
            let bob = jid("bob\\40example.net@mail.example.test");
            let first = MessageRecord {
                user: alice.clone(),
                message_id: "a@example.net".into(),
                peer: bob.clone(),
                stanza_id: "mail-1".into(),
                author: bob.clone(),
                thread: "t1".into(),
                references: vec!["x@example.net".into(), "y@example.net".into()],
            };
            let again = MessageRecord {
                stanza_id: "mail-1-again".into(),
                ..first.clone()
            };
            let other = MessageRecord {
                message_id: "b@example.net".into(),
                stanza_id: "mail-2".into(),
                references: vec![],
                ..first.clone()
            };
            store
                .to_xmpp_delivered(&[], &[first.clone(), again.clone(), other.clone()], &[])
                .await
                .expect("stored");
            store
                .to_xmpp_delivered(&[], &[again], &[])
                .await
                .expect("stored again");
            assert_eq!(
                store.message_by_id(&alice, "a@example.net").await.expect("q"),
                Some(first)
            );
            assert_eq!(
                store.message_by_stanza_id(&alice, "mail-1-again").await.expect("q"),
                None
            );
            assert_eq!(
                store.message_by_stanza_id(&alice, "mail-2").await.expect("q"),
                Some(other)
            );
            // Nothing to remember is no statement at all.
            store.to_xmpp_delivered(&[], &[], &[]).await.expect("nothing");
        }
    }
}
