//! The durable store (sqlx, SQLite in WAL mode with synchronous commits):
//! registered users, correspondents, and the two queues. Every state change
//! of a queued item is one statement or one transaction.

mod attachments;
mod bounces;
mod commit;
mod health;
mod messages;
mod queue;
mod users;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jid::BareJid;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use attachments::SharedRecord;
pub use commit::{Committer, OutcomeCommitter};
pub use messages::MessageRecord;
pub use queue::{InboundMail, MailOutcome, NewMail, Notice, ToMailItem, ToXmppBody, ToXmppItem};

/// Milliseconds since the Unix epoch, the store's clock unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Millis {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Millis(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn after(self, wait: Duration) -> Millis {
        Millis(
            self.0
                .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

/// What a user chose in the registration form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserOptions {
    /// Follow a mail with one message per attachment whose body is its
    /// URL (clients such as Conversations show a file only then).
    pub oob_each_file: bool,
    /// Also send formatted text as XHTML-IM (XEP-0071, deprecated).
    pub xhtml_im: bool,
}

/// The address (original case) and display name behind an escaped JID,
/// as last seen in mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub jid: BareJid,
    pub address: String,
    pub name: String,
}

pub(crate) async fn upsert_contact(
    conn: &mut sqlx::SqliteConnection,
    contact: &Contact,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO contacts (jid, address, display_name, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (jid) DO UPDATE SET address = excluded.address, \
         display_name = excluded.display_name, updated_at = excluded.updated_at \
         WHERE address != excluded.address OR display_name != excluded.display_name",
    )
    .bind(contact.jid.as_str())
    .bind(&contact.address)
    .bind(&contact.name)
    .bind(Millis::now().0)
    .execute(conn)
    .await
    .with_context(|| format!("Remembering contact {}", contact.jid))?;
    Ok(())
}

/// Handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    users: users::UserCache,
}

impl Store {
    /// Opens (creating if needed) the database named by a `sqlite:` URL and
    /// brings its schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("Parsing store URL {url}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("Opening store {url}"))?;
        sqlx::migrate!("src/store/migrations")
            .run(&pool)
            .await
            .context("Migrating the store schema")?;
        Ok(Store {
            pool,
            users: users::UserCache::default(),
        })
    }

    /// Waits for running statements and closes the database.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The mail address and display name last seen behind an escaped JID.
    pub async fn contact(&self, jid: &BareJid) -> anyhow::Result<Option<(String, String)>> {
        sqlx::query_as("SELECT address, display_name FROM contacts WHERE jid = ?")
            .bind(jid.as_str())
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("Looking up contact {jid}"))
    }
}

/// A store in a fresh temporary directory, for tests.
#[cfg(test)]
pub(crate) async fn scratch() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("facteur.db").display());
    (Store::open(&url).await.expect("scratch store"), dir)
}
