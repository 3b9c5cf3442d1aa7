//! The durable store (sqlx, SQLite in WAL mode with synchronous commits),
//! one file per table group: registered users, contacts, messages, shared
//! attachments, secrets, the two queues, and what XMPP-Mail learnt from
//! other domains and took from their gateways (`xmpp_mail`, `handoffs`).
//! Every state change of a queued item is one statement or one
//! transaction, and whoever commits new work into a queue wakes that
//! queue's runner through the store.

pub mod admin;
mod attachments;
mod commit;
mod contacts;
mod gauges;
mod handoffs;
mod health;
mod messages;
mod secrets;
pub mod sweep;
mod to_mail;
mod to_xmpp;
mod users;
mod xmpp_mail;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::Notify;

pub use attachments::SharedRecord;
pub use commit::{Committer, OutcomeCommitter};
pub use contacts::Contact;
pub use handoffs::{HandoffTaken, NewHandoff};
pub use messages::MessageRecord;
pub use to_mail::{MailOutcome, MailRoute, NewMail, ToMailItem, Told};
pub use to_xmpp::{InboundMail, Notice, ToXmppBody, ToXmppItem};
pub use xmpp_mail::{Answer, AnswerKind, AnswerStatus, Refused};

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

    pub fn before(self, wait: Duration) -> Millis {
        Millis(
            self.0
                .saturating_sub(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
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

/// One wake-up per queue. A `Notify` keeps one permit when its runner is
/// not waiting yet, so work committed while the runner is busy is never
/// missed.
#[derive(Default)]
struct Wake {
    to_xmpp: Notify,
    to_mail: Notify,
}

/// Handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    users: users::UserCache,
    wake: Arc<Wake>,
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
            wake: Arc::default(),
        })
    }

    /// Waits for running statements and closes the database.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Resolves once new work has been committed into `to_xmpp` (at once
    /// if some was while nobody waited).
    pub async fn to_xmpp_committed(&self) {
        self.wake.to_xmpp.notified().await;
    }

    /// Resolves once new work has been committed into `to_mail` (at once
    /// if some was while nobody waited).
    pub async fn to_mail_committed(&self) {
        self.wake.to_mail.notified().await;
    }

    /// Counts items per queue and state, for tests and operators.
    pub async fn queue_counts(&self) -> anyhow::Result<Vec<(String, String, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "
            SELECT 'to_xmpp', state, COUNT(*) FROM to_xmpp GROUP BY state
            UNION ALL
            SELECT 'to_mail', state, COUNT(*) FROM to_mail GROUP BY state
            ORDER BY 1, 2
            ",
        )
        .fetch_all(&self.pool)
        .await
        .context("Counting queues")?;
        Ok(rows)
    }
}

/// A store in a fresh temporary directory, for tests.
#[cfg(test)]
pub(crate) async fn scratch() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("facteur.db").display());
    (Store::open(&url).await.expect("scratch store"), dir)
}
