//! The `[store]` section: where the durable queues, users and thread
//! metadata are kept (SQLite, or PostgreSQL), how long finished work is kept, and how
//! long an idle queue runner sleeps.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;

/// The shortest lease of a queue item.
const MIN_LEASE: Duration = Duration::from_secs(3);

/// The store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    /// Longest sleep of a queue runner with nothing due; work committed
    /// into its queue wakes it at once.
    pub poll_interval: Duration,
    /// How long delivered, sent and failed queue items are kept.
    pub keep_finished: Duration,
    /// How long thread metadata (`messages`) is kept.
    pub keep_threads: Duration,
    /// How often the store deletes what it no longer keeps.
    pub sweep_interval: Duration,
    /// How long a queue item taken by an instance stays reserved for it;
    /// renewed every third of it while the instance works on the item.
    pub lease: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    url: String,
    poll_interval: String,
    keep_finished: String,
    keep_threads: String,
    sweep_interval: String,
    lease: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: "sqlite:///var/lib/facteur/facteur.db".into(),
            poll_interval: "5s".into(),
            keep_finished: "7d".into(),
            keep_threads: "365d".into(),
            sweep_interval: "1h".into(),
            lease: "60s".into(),
        }
    }
}

impl RawStore {
    pub(super) fn check(self, p: &mut Problems) -> StoreConfig {
        match crate::store::Kind::of(&self.url) {
            Some(crate::store::Kind::Sqlite) => {}
            Some(crate::store::Kind::Postgres) => {
                if let Err(e) = sqlx::postgres::PgConnectOptions::from_str(&self.url) {
                    p.add("store.url", format!("not a PostgreSQL URL: {e}"));
                }
            }
            None => p.add(
                "store.url",
                "must be a sqlite: or a postgres:// URL, e.g. \
                 sqlite:///var/lib/facteur/facteur.db or postgres://facteur@db.example/facteur",
            ),
        }
        let lease = p.duration("store.lease", &self.lease);
        if lease < MIN_LEASE {
            p.add(
                "store.lease",
                "must be at least 3s (it is renewed every third of it)",
            );
        }
        StoreConfig {
            poll_interval: p.duration("store.poll_interval", &self.poll_interval),
            keep_finished: p.duration("store.keep_finished", &self.keep_finished),
            keep_threads: p.duration("store.keep_threads", &self.keep_threads),
            sweep_interval: p.duration("store.sweep_interval", &self.sweep_interval),
            lease: lease.max(MIN_LEASE),
            url: self.url,
        }
    }
}
