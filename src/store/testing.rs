//! Stores for tests, on both databases: `store_test!` runs a test once
//! on SQLite and once on PostgreSQL. PostgreSQL is the server named by
//! `FACTEUR_TEST_PG` (a URL to a database the tests may create databases
//! from), or else a private cluster that the first test starts with
//! `tests/peers/pg-cluster` and that stops when the test process ends.
//! Each test gets a fresh database of its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use sqlx::{Connection, Executor, PgConnection};

use super::{Kind, Store};

/// Defines a store test that runs once per database, as
/// `NAME::sqlite` and `NAME::postgres`:
/// `store_test! { async fn NAME(store, scratch) { … } }`, where `store` is
/// a fresh [`Store`] and `scratch` the [`Scratch`] it lives in.
macro_rules! store_test {
    ($(#[$meta:meta])* async fn $name:ident($store:ident, $scratch:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(unused_variables)]
            async fn run($store: $crate::store::Store, $scratch: &$crate::store::testing::Scratch) $body

            #[tokio::test]
            async fn sqlite() {
                let scratch = $crate::store::testing::Scratch::new($crate::store::Kind::Sqlite).await;
                run(scratch.open().await, &scratch).await;
            }

            #[tokio::test]
            async fn postgres() {
                let scratch = $crate::store::testing::Scratch::new($crate::store::Kind::Postgres).await;
                run(scratch.open().await, &scratch).await;
            }
        }
    };
}
pub(crate) use store_test;

/// An empty database for one test: a SQLite file in a temporary
/// directory, or a PostgreSQL database of its own.
pub(crate) struct Scratch {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// The database to drop at the end, on a server the tests share.
    drop: Option<(String, String)>,
}

impl Scratch {
    pub async fn new(kind: Kind) -> Scratch {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                Scratch {
                    url: format!("sqlite://{}", dir.path().join("facteur.db").display()),
                    _dir: Some(dir),
                    drop: None,
                }
            }
            Kind::Postgres => {
                let (admin, shared) = pg_server();
                let name = fresh_name();
                let mut conn = PgConnection::connect(admin)
                    .await
                    .expect("connecting to the test PostgreSQL server");
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .await
                    .expect("creating a test database");
                conn.close().await.expect("closing");
                Scratch {
                    url: with_database(admin, &name),
                    _dir: None,
                    drop: shared.then(|| (admin.clone(), name)),
                }
            }
        }
    }

    /// Opens (another handle on) the store.
    pub async fn open(&self) -> Store {
        Store::open(&self.url).await.expect("scratch store")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A private cluster goes with its databases; a shared server
        // keeps nothing of the tests.
        let Some((admin, name)) = self.drop.take() else {
            return;
        };
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .await?;
                conn.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("Dropping a test database: {e}");
        }
    }
}

/// The URL of a database on the test server, and whether the server is
/// shared (`FACTEUR_TEST_PG`) rather than the tests' own.
fn pg_server() -> (&'static String, bool) {
    static SERVER: OnceLock<(String, bool)> = OnceLock::new();
    let (url, shared) = SERVER.get_or_init(|| match std::env::var("FACTEUR_TEST_PG") {
        Ok(url) if !url.is_empty() => (url, true),
        _ => (start_cluster(), false),
    });
    (url, *shared)
}

/// Starts a private cluster that stops when this process ends.
fn start_cluster() -> String {
    let dir = tempfile::Builder::new()
        .prefix("facteur-pg-")
        .tempdir()
        .expect("temporary directory")
        .keep();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pg-cluster");
    let out = std::process::Command::new(script)
        .arg("start")
        .arg(&dir)
        .arg("--watch")
        .arg(std::process::id().to_string())
        // Tests need no durability across a crash of the machine.
        .args(["--", "-c fsync=off -c max_connections=300"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running tests/peers/pg-cluster");
    assert!(out.status.success(), "tests/peers/pg-cluster start failed");
    String::from_utf8(out.stdout)
        .expect("URL")
        .trim()
        .to_owned()
}

/// A database name no other test of any process uses.
fn fresh_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "facteur_test_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}
