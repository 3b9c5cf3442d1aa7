//! The durable store (sqlx): SQLite in WAL mode with synchronous commits,
//! or PostgreSQL with its default synchronous commits. One file per table
//! group: registered users, contacts, messages, shared attachments,
//! secrets, the users' OpenPGP keys, the two queues, and what XMPP-Mail learnt from other domains
//! and took from their gateways (`xmpp_mail`, `handoffs`). Every state
//! change of a queued item is one statement or one transaction, and
//! whoever commits new work into a queue wakes that queue's runner
//! through the store.
//!
//! Each statement is written once, in the SQL both databases speak (`$N`
//! parameters, `ON CONFLICT`, `RETURNING`, BIGINT/TEXT/blob columns), and
//! `on_backend!` expands the code around it once per database, so that
//! each runs on its own sqlx driver, with no dispatch but one `match`.
//! The few statements that differ are spelt out per database side by side.

/// Runs `$body` with `$b` bound to the SQLite or the PostgreSQL side of
/// a [`Backend`] (a pool or a connection): the body is compiled once per
/// database, with that database's types. The body is not a closure: `?`
/// and `return` leave the enclosing function.
macro_rules! on_backend {
    ($on:expr, |$b:ident| $body:expr) => {
        match $on {
            $crate::store::Backend::Sqlite($b) => $body,
            $crate::store::Backend::Postgres($b) => $body,
        }
    };
}

/// Implements `sqlx::Type` for enums stored as their name in a TEXT
/// column (their `Encode` and `Decode` are derived), on both databases.
macro_rules! stored_as_text {
    ($($ty:ty),* $(,)?) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }
    )*};
}

pub mod admin;
mod amend;
mod attachments;
mod autocrypt;
mod commit;
mod contacts;
mod gauges;
mod handoffs;
mod health;
mod imap;
mod iq_answers;
mod jobs;
mod key_cache;
mod keys;
#[cfg(test)]
mod lease_tests;
mod messages;
mod read_receipts;
mod receipts;
mod secrets;
mod spam;
pub mod spam_lists;
mod spam_verdicts;
pub mod sweep;
#[cfg(test)]
pub(crate) mod testing;
mod to_mail;
mod to_xmpp;
mod users;
mod xmpp_mail;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};
use tokio::sync::Notify;

pub use amend::{Corrected, Replacement};
pub use attachments::SharedRecord;
pub use autocrypt::PeerKey;
pub use commit::{Committer, OutcomeCommitter};
pub use contacts::Contact;
pub use handoffs::{HandoffTaken, NewHandoff};
pub use imap::{
    FolderStart, ImapMailbox, MailboxState, NewImapMailbox, SeenToSet, Submission, Taken, TlsMode,
};
pub use key_cache::CachedKey;
pub use keys::KeySource;
pub use messages::MessageRecord;
pub use read_receipts::MdnRequest;
pub use receipts::{envelope_id, OwedReceipt};
pub use spam::Verdict;
pub use spam_verdicts::{HeldMail, MailSpam, RecentMail, RecipientSpam};
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
    /// Mail an RFC 8098 read notification when the user's client marks
    /// displayed a mail that asked for one (the user's consent, RFC 8098
    /// §2.1).
    pub send_mdn: bool,
    /// Whether outgoing mail is encrypted to the recipient's key.
    pub encrypt: Encrypt,
}

/// The per-user option `encrypt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encrypt {
    /// Mail goes as written.
    #[default]
    Off,
    /// Mail is encrypted when the recipient's key is known.
    Opportunistic,
    /// Mail is sent only encrypted: without a known key, not at all.
    Required,
}

impl Encrypt {
    pub fn as_str(self) -> &'static str {
        match self {
            Encrypt::Off => "off",
            Encrypt::Opportunistic => "opportunistic",
            Encrypt::Required => "required",
        }
    }

    /// The option named `name`; `off` for anything else.
    pub fn named(name: &str) -> Encrypt {
        match name.trim() {
            "opportunistic" => Encrypt::Opportunistic,
            "required" => Encrypt::Required,
            _ => Encrypt::Off,
        }
    }
}

/// One wake-up per queue. A `Notify` keeps one permit when its runner is
/// not waiting yet, so work committed while the runner is busy is never
/// missed.
#[derive(Default)]
struct Wake {
    to_xmpp: Notify,
    to_mail: Notify,
    /// A user registered: her blocklist is due to be read.
    registered: Notify,
    /// One per followed IMAP mailbox, by id: work for its follower
    /// (flags to set).
    imap: std::sync::Mutex<std::collections::HashMap<i64, Arc<Notify>>>,
}

/// One thing per database: a pool, a connection.
#[derive(Clone)]
pub(crate) enum Backend<S, P> {
    Sqlite(S),
    Postgres(P),
}

type Pool = Backend<SqlitePool, PgPool>;

impl<S, P> Backend<S, P> {
    /// Which database this is.
    fn kind(&self) -> Kind {
        match self {
            Backend::Sqlite(_) => Kind::Sqlite,
            Backend::Postgres(_) => Kind::Postgres,
        }
    }
}

/// A connection (or a transaction's) that helpers shared by several
/// transactions write through.
pub(crate) type Conn<'c> = Backend<&'c mut SqliteConnection, &'c mut PgConnection>;

/// A queue: its table, the state of its items still to be done, and
/// what an item is called in errors.
pub(crate) struct Queue {
    table: &'static str,
    waiting: &'static str,
    item: &'static str,
}

/// Mail owed to peers.
pub(crate) const TO_MAIL: Queue = Queue {
    table: "to_mail",
    waiting: "queued",
    item: "mail",
};

/// Stanzas owed to users.
pub(crate) const TO_XMPP: Queue = Queue {
    table: "to_xmpp",
    waiting: "pending",
    item: "delivery",
};

/// Gives up item `id` of `queue` after an attempt that ended in `error`,
/// in the caller's transaction, if it is still waiting and `owner` holds
/// it: whether it did.
pub(crate) async fn give_up(
    tx: Conn<'_>,
    queue: &Queue,
    id: i64,
    owner: &str,
    error: &str,
    now: Millis,
) -> anyhow::Result<bool> {
    let Queue {
        table,
        waiting,
        item,
    } = *queue;
    // Only the constant table name is formatted in.
    let sql = format!(
        "UPDATE {table}
         SET state = 'failed', attempts = attempts + 1, last_error = $1, updated_at = $2,
             lease_until = NULL
         WHERE id = $3 AND state = $4 AND lease_owner = $5"
    );
    let failed = on_backend!(tx, |tx| sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(error)
        .bind(now.0)
        .bind(id)
        .bind(waiting)
        .bind(owner)
        .execute(tx)
        .await
        .map(|done| done.rows_affected())
        .with_context(|| format!("Failing {item} {id}")))?;
    Ok(failed == 1)
}

impl<'c> From<&'c mut SqliteConnection> for Conn<'c> {
    fn from(conn: &'c mut SqliteConnection) -> Self {
        Backend::Sqlite(conn)
    }
}

impl<'c> From<&'c mut PgConnection> for Conn<'c> {
    fn from(conn: &'c mut PgConnection) -> Self {
        Backend::Postgres(conn)
    }
}

/// Connections a PostgreSQL store keeps at most.
const PG_CONNECTIONS: u32 = 8;

/// The database a store URL names, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    /// `sqlite:…`, or `postgres://…` (also spelt `postgresql://…`).
    pub fn of(url: &str) -> Option<Kind> {
        if url.starts_with("sqlite:") {
            Some(Kind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Kind::Postgres)
        } else {
            None
        }
    }
}

/// The ids of a JSON array bound as parameter `$n`, as each database
/// reads it (`id NOT IN (…)`): a list of any length is one parameter of
/// one prepared statement.
fn json_ids_sql(kind: Kind, n: u8) -> String {
    match kind {
        Kind::Sqlite => format!("SELECT value FROM json_each(${n})"),
        Kind::Postgres => format!("SELECT jsonb_array_elements_text(${n}::JSONB)::BIGINT"),
    }
}

/// `ids` as a JSON array.
fn json_ids(ids: &[i64]) -> String {
    let mut json = String::with_capacity(2 + ids.len() * 8);
    json.push('[');
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push_str(&id.to_string());
    }
    json.push(']');
    json
}

/// How long an item taken from a queue stays reserved for the instance
/// that took it, unless renewed ([`Store::with_lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    users: users::UserCache,
    blocks: spam::BlockCache,
    /// XMPP-Mail answers read lately (`None`: none kept).
    answers: users::Recent<Option<xmpp_mail::Answer>>,
    wake: Arc<Wake>,
    /// This instance, as the owner of the queue items it takes.
    owner: Arc<str>,
    /// How long a taken item stays reserved without renewal.
    lease: Duration,
}

impl Store {
    /// Opens the database named by a `sqlite:` URL (creating the file if
    /// needed) or a `postgres://` URL (the database must exist), and
    /// brings its schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        let pool = match Kind::of(url) {
            Some(Kind::Sqlite) => Backend::Sqlite(open_sqlite(url).await?),
            Some(Kind::Postgres) => Backend::Postgres(open_postgres(url).await?),
            None => anyhow::bail!(
                "Store URL {} is neither sqlite: nor postgres://",
                without_password(url)
            ),
        };
        Ok(Store {
            pool,
            users: users::UserCache::default(),
            blocks: spam::BlockCache::default(),
            answers: users::Recent::default(),
            wake: Arc::default(),
            owner: instance_id().into(),
            lease: DEFAULT_LEASE,
        })
    }

    /// The same store, with items taken from the queues reserved for
    /// `lease` (renewed every third of it while they are worked on).
    pub fn with_lease(mut self, lease: Duration) -> Store {
        self.lease = lease;
        self
    }

    /// Whether several instances may share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.pool, Backend::Postgres(_))
    }

    /// This instance's id (`host:pid:random`), the owner of its leases.
    pub fn instance(&self) -> &str {
        &self.owner
    }

    /// The same database as another instance would see it, for tests.
    #[cfg(test)]
    pub(crate) fn as_instance(&self, owner: &str) -> Store {
        Store {
            owner: owner.into(),
            wake: Arc::default(),
            ..self.clone()
        }
    }

    /// Frees the leases of the earlier runs of this instance: those of
    /// the same host whose process is gone (or has this one's pid, as in
    /// a restarted container), so that what they were working on is due
    /// at once rather than when their leases run out. Returns how many.
    pub async fn release_dead_leases(&self) -> anyhow::Result<u64> {
        let Some((host, rest)) = self.owner.split_once(':') else {
            return Ok(0);
        };
        let me = rest.split(':').next().unwrap_or_default();
        let owners: Vec<String> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT lease_owner FROM to_mail WHERE lease_until IS NOT NULL
             UNION
             SELECT lease_owner FROM to_xmpp WHERE lease_until IS NOT NULL"
        )
        .fetch_all(pool)
        .await
        .context("Reading leases")?);
        let mut freed = 0;
        for owner in owners {
            let pid = owner.split(':').nth(1).unwrap_or_default();
            let gone = owner != *self.owner
                && owner.split_once(':').map(|(h, _)| h) == Some(host)
                && (pid == me
                    || !std::path::Path::new("/proc").join(pid).exists()
                    || pid.is_empty());
            if !gone {
                continue;
            }
            on_backend!(&self.pool, |pool| {
                for sql in [
                    "UPDATE to_mail SET lease_until = NULL WHERE lease_owner = $1",
                    "UPDATE to_xmpp SET lease_until = NULL WHERE lease_owner = $1",
                ] {
                    freed += sqlx::query(sql)
                        .bind(&owner)
                        .execute(pool)
                        .await
                        .context("Freeing leases")?
                        .rows_affected();
                }
            });
        }
        Ok(freed)
    }

    /// Extends the leases of the items this instance is working on, in
    /// both queues; returns how many it still holds.
    pub async fn renew_leases(&self) -> anyhow::Result<u64> {
        let now = Millis::now();
        let until = now.after(self.lease);
        let mut held = 0;
        // On PostgreSQL, a renewal must not wait for a row an outcome is
        // being committed for: the two would lock the same rows in
        // different orders and deadlock. It skips them: an item being
        // finished needs no lease, and one whose outcome fails keeps two
        // thirds of its lease until the next renewal.
        let lock = match self.pool {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let statements = [TO_MAIL, TO_XMPP].map(|Queue { table, waiting, .. }| {
            // Only the constant fragments above are formatted in.
            format!(
                "UPDATE {table} SET lease_until = $1 WHERE id IN (
                     SELECT id FROM {table}
                     WHERE lease_owner = $2 AND lease_until IS NOT NULL AND state = '{waiting}'
                     {lock}
                 )"
            )
        });
        on_backend!(&self.pool, |pool| {
            for sql in &statements {
                let sql = sqlx::AssertSqlSafe(sql.clone());
                held += sqlx::query(sql)
                    .bind(until.0)
                    .bind(&*self.owner)
                    .execute(pool)
                    .await
                    .context("Renewing leases")?
                    .rows_affected();
            }
        });
        Ok(held)
    }

    /// When the next waiting item of `queue` is due for this instance, if
    /// any: one leased to another instance is due when its lease runs
    /// out. `what` names the question in errors.
    async fn next_due(&self, queue: &Queue, what: &'static str) -> anyhow::Result<Option<Millis>> {
        let Queue { table, waiting, .. } = *queue;
        // Only the constant table name is formatted in.
        let sql = format!(
            "SELECT MIN(CASE WHEN lease_owner <> $2 AND lease_until > next_attempt_at
                             THEN lease_until ELSE next_attempt_at END)
             FROM {table} WHERE state = $1"
        );
        let next: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(waiting)
        .bind(&*self.owner)
        .fetch_one(pool)
        .await
        .context(what)?);
        Ok(next.map(Millis))
    }

    /// Waits for running statements and closes the database.
    pub async fn close(&self) {
        on_backend!(&self.pool, |pool| pool.close().await);
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

    /// Resolves once a user has registered (at once if one did while
    /// nobody waited).
    pub async fn user_registered(&self) {
        self.wake.registered.notified().await;
    }

    /// Counts items per queue and state, for tests and operators.
    pub async fn queue_counts(&self) -> anyhow::Result<Vec<(String, String, i64)>> {
        let sql = "
            SELECT 'to_xmpp', state, COUNT(*) FROM to_xmpp GROUP BY state
            UNION ALL
            SELECT 'to_mail', state, COUNT(*) FROM to_mail GROUP BY state
            ORDER BY 1, 2
            ";
        on_backend!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await
            .context("Counting queues"))
    }
}

/// Renews this instance's leases every third of the lease, until
/// `shutdown`. A renewal that fails is retried at the next tick: the
/// leases run out only if the store stays unreachable for two of them.
pub async fn keep_leases(store: Store, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(store.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = store.renew_leases().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "Store unavailable; leases not renewed."
            );
        }
    }
}

/// An id for this process among the instances sharing a store:
/// `host:pid:random`.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Opens a SQLite store: WAL, synchronous commits, foreign keys.
async fn open_sqlite(url: &str) -> anyhow::Result<SqlitePool> {
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
    sqlx::migrate!("src/store/migrations/sqlite")
        .run(&pool)
        .await
        .context("Migrating the store schema")?;
    Ok(pool)
}

/// Opens a PostgreSQL store, with the server's durability settings
/// (`synchronous_commit` is on unless its operator turned it off).
async fn open_postgres(url: &str) -> anyhow::Result<PgPool> {
    let shown = without_password(url);
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("Parsing store URL {shown}"))?
        .application_name("facteur");
    let pool = PgPoolOptions::new()
        .max_connections(PG_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| format!("Opening store {shown}"))?;
    sqlx::migrate!("src/store/migrations/postgres")
        .run(&pool)
        .await
        .context("Migrating the store schema")?;
    Ok(pool)
}

/// A store URL fit for logs and errors: its password, if any, as `***`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A SQLite store in a fresh temporary directory, for tests.
#[cfg(test)]
pub(crate) async fn scratch() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("facteur.db").display());
    (Store::open(&url).await.expect("scratch store"), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        for (url, shown) in [
            (
                "postgres://facteur:s3cret@db.example.test:5432/facteur?sslmode=require",
                "postgres://facteur:***@db.example.test:5432/facteur?sslmode=require",
            ),
            (
                "postgres://facteur@db.example.test/facteur",
                "postgres://facteur@db.example.test/facteur",
            ),
            (
                "postgres:///facteur?host=/run/postgresql",
                "postgres:///facteur?host=/run/postgresql",
            ),
            (
                "sqlite:///var/lib/facteur/facteur.db",
                "sqlite:///var/lib/facteur/facteur.db",
            ),
        ] {
            assert_eq!(without_password(url), shown);
        }
        assert_eq!(Kind::of("postgresql://db/facteur"), Some(Kind::Postgres));
        assert_eq!(Kind::of("mysql://db/facteur"), None);
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_by_name() {
        let error = Store::open("mysql://root:pw@db/facteur")
            .await
            .err()
            .expect("refused");
        assert_eq!(
            error.to_string(),
            "Store URL mysql://root:***@db/facteur is neither sqlite: nor postgres://"
        );
    }
}
