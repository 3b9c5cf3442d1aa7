//! Registered users, their options and their spam thresholds, with a
//! short-lived cache ([`Recent`], also used for the senders they block and
//! for XMPP-Mail answers):
//! every RCPT, every accepted mail and every delivery asks, registrations
//! are rare. A change made through this store is seen at once; one made by
//! another process (the `facteur users` command, another instance) within
//! `CACHE_TIME`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use facteur_policy::spam::Thresholds;
use jid::BareJid;

use super::{Millis, Store, UserOptions};

/// How long an answer is reused.
pub(super) const CACHE_TIME: Duration = Duration::from_secs(1);
/// Entries kept before the cache is emptied (a flood of unknown RCPTs).
const CACHE_MAX: usize = 10_000;

/// What the store says of a registered user.
#[derive(Debug, Clone, Copy)]
pub(super) struct UserRow {
    pub options: UserOptions,
    pub spam: Thresholds,
}

/// Per key (a user, say), the last answer of one kind read from the
/// store, reused for [`CACHE_TIME`].
#[derive(Clone)]
pub(super) struct Recent<V>(Arc<Mutex<HashMap<String, (Instant, V)>>>);

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent(Arc::default())
    }
}

impl<V: Clone> Recent<V> {
    pub(super) fn get(&self, key: &str) -> Option<V> {
        let cache = self.0.lock().ok()?;
        let (read, value) = cache.get(key)?;
        (read.elapsed() < CACHE_TIME).then(|| value.clone())
    }

    pub(super) fn put(&self, key: &str, value: V) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key.to_owned(), (Instant::now(), value));
        }
    }

    pub(super) fn forget(&self, key: &str) {
        if let Ok(mut cache) = self.0.lock() {
            cache.remove(key);
        }
    }
}

/// Each user's row (`None`: not registered).
pub(super) type UserCache = Recent<Option<UserRow>>;

impl Store {
    pub async fn register(&self, user: &BareJid) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO users (jid, registered_at)
            VALUES ($1, $2)
            ON CONFLICT (jid) DO NOTHING
            ",
        )
        .bind(user.as_str())
        .bind(Millis::now().0)
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Registering {user}"))?;
        self.users.forget(user.as_str());
        self.wake.registered.notify_one();
        Ok(())
    }

    /// Unregisters a user; her IMAP mailboxes are detached and the
    /// OpenPGP key she published is no longer served (she no longer uses
    /// the gateway). Whether she was registered.
    pub async fn unregister(&self, user: &BareJid) -> anyhow::Result<bool> {
        // The user's IMAP mailboxes go with the registration, in the
        // same transaction: nothing more is fetched for them.
        let done = on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            for sql in [
                "DELETE FROM imap_folders WHERE mailbox_id IN
                     (SELECT id FROM imap_mailboxes WHERE user_jid = $1)",
                "DELETE FROM imap_mailboxes WHERE user_jid = $1",
            ] {
                sqlx::query(sql)
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("Detaching the mailboxes of {user}"))?;
            }
            let done = sqlx::query("DELETE FROM users WHERE jid = $1")
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .with_context(|| format!("Unregistering {user}"))?
                .rows_affected();
            if done > 0 {
                sqlx::query("DELETE FROM openpgp_keys WHERE jid = $1")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("Removing the key of {user}"))?;
            }
            tx.commit()
                .await
                .with_context(|| format!("Unregistering {user}"))?;
            done
        });
        self.users.forget(user.as_str());
        Ok(done > 0)
    }

    /// A registered user's options; `None` for a user who is not.
    pub async fn user_options(&self, user: &BareJid) -> anyhow::Result<Option<UserOptions>> {
        Ok(self.user_row(user).await?.map(|row| row.options))
    }

    /// A registered user's row, from the cache or the store.
    pub(super) async fn user_row(&self, user: &BareJid) -> anyhow::Result<Option<UserRow>> {
        if let Some(row) = self.users.get(user.as_str()) {
            return Ok(row);
        }
        type Columns = (bool, bool, bool, String, f64, f64, f64);
        let row: Option<Columns> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT oob_each_file, xhtml_im, send_mdn, encrypt,
                    spam_mark, spam_quarantine, spam_reject
             FROM users WHERE jid = $1"
        )
        .bind(user.as_str())
        .fetch_optional(pool)
        .await)
        .with_context(|| format!("Looking up user {user}"))?;
        let row = row.map(
            |(oob_each_file, xhtml_im, send_mdn, encrypt, mark, quarantine, reject)| UserRow {
                options: UserOptions {
                    oob_each_file,
                    xhtml_im,
                    send_mdn,
                    encrypt: super::Encrypt::named(&encrypt),
                },
                spam: Thresholds {
                    mark,
                    quarantine,
                    reject,
                },
            },
        );
        self.users.put(user.as_str(), row);
        Ok(row)
    }

    /// Registers a user (again) with these options.
    pub async fn register_with(&self, user: &BareJid, options: UserOptions) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO users (jid, registered_at, oob_each_file, xhtml_im, send_mdn, encrypt)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (jid) DO UPDATE SET
                oob_each_file = excluded.oob_each_file,
                xhtml_im = excluded.xhtml_im,
                send_mdn = excluded.send_mdn,
                encrypt = excluded.encrypt
            ",
        )
        .bind(user.as_str())
        .bind(Millis::now().0)
        .bind(options.oob_each_file)
        .bind(options.xhtml_im)
        .bind(options.send_mdn)
        .bind(options.encrypt.as_str())
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Registering {user}"))?;
        self.users.forget(user.as_str());
        self.wake.registered.notify_one();
        Ok(())
    }

    pub async fn is_registered(&self, user: &BareJid) -> anyhow::Result<bool> {
        Ok(self.user_options(user).await?.is_some())
    }

    /// Registered users, in JID order.
    pub async fn users(&self) -> anyhow::Result<Vec<String>> {
        let rows: Vec<(String,)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT jid FROM users ORDER BY jid"
        )
        .fetch_all(pool)
        .await)
        .context("Listing users")?;
        Ok(rows.into_iter().map(|(jid,)| jid).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
        async fn changes_through_the_store_are_seen_at_once(store, scratch) {
            let alice = BareJid::new("alice@example.test").expect("jid");
            assert!(!store.is_registered(&alice).await.expect("lookup"));
            store.register(&alice).await.expect("register");
            assert!(store.is_registered(&alice).await.expect("lookup"));
            let options = UserOptions {
                oob_each_file: true,
                xhtml_im: false,
                send_mdn: true,
                encrypt: crate::store::Encrypt::Opportunistic,
            };
            store.register_with(&alice, options).await.expect("options");
            assert_eq!(
                store.user_options(&alice).await.expect("lookup"),
                Some(options)
            );
            assert!(store.unregister(&alice).await.expect("unregister"));
            assert!(!store.is_registered(&alice).await.expect("lookup"));
        }
    }

    store_test! {
        async fn registering_twice_and_unregistering_twice(store, scratch) {
            let alice = BareJid::new("alice@example.test").expect("jid");
            assert!(!store.is_registered(&alice).await.expect("query"));
            store.register(&alice).await.expect("register");
            store.register(&alice).await.expect("register twice");
            assert!(store.is_registered(&alice).await.expect("query"));
            assert!(store.unregister(&alice).await.expect("unregister"));
            assert!(!store.unregister(&alice).await.expect("unregister twice"));
        }
    }

    store_test! {
        async fn another_process_is_seen_within_the_cache_time(store, scratch) {
            let alice = BareJid::new("alice@example.test").expect("jid");
            assert!(!store.is_registered(&alice).await.expect("lookup"));
            let other = scratch.open().await;
            other.register(&alice).await.expect("register");
            tokio::time::sleep(CACHE_TIME + Duration::from_millis(50)).await;
            assert!(store.is_registered(&alice).await.expect("lookup"));
        }
    }
}
