//! The OpenPGP key each user publishes (`openpgp_keys`), checked and
//! minimised by `crate::keys` before it comes here: one per user, found
//! by JID (the key IQ, the commands) or by domain and WKD hash (the Web
//! Key Directory).

use anyhow::Context;
use jid::BareJid;

use super::{Millis, Store};
use crate::keys::wkd;

/// How a key was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The ad-hoc command "OpenPGP key".
    Command,
    /// The key IQ (`<keys xmlns='urn:xmpp:mail:0'/>`).
    Iq,
    /// `facteur keys import`.
    Cli,
    /// The user's XEP-0373 PEP nodes.
    Pep,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Command => "command",
            KeySource::Iq => "iq",
            KeySource::Cli => "cli",
            KeySource::Pep => "pep",
        }
    }
}

/// A user's key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub user: BareJid,
    /// Upper-case hex.
    pub fingerprint: String,
    /// The minimised certificate, binary.
    pub cert: Vec<u8>,
    pub revoked: bool,
    /// `command`, `iq`, `cli` or `pep`.
    pub source: String,
    pub updated_at: Millis,
}

type Row = (String, String, Vec<u8>, bool, String, i64);

const COLUMNS: &str = "jid, fingerprint, cert, revoked, source, updated_at";

fn stored(row: Row) -> anyhow::Result<StoredKey> {
    let (jid, fingerprint, cert, revoked, source, updated_at) = row;
    Ok(StoredKey {
        user: BareJid::new(&jid).with_context(|| format!("Stored key owner {jid}"))?,
        fingerprint,
        cert,
        revoked,
        source,
        updated_at: Millis(updated_at),
    })
}

impl Store {
    /// Publishes `key` as `user`'s, in place of any before it.
    pub async fn put_key(
        &self,
        user: &BareJid,
        key: &crate::keys::Published,
        source: KeySource,
    ) -> anyhow::Result<()> {
        let local = user.node().map(|n| n.as_str()).unwrap_or_default();
        let hash = wkd::hash(local)?;
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO openpgp_keys (jid, domain, wkd_hash, fingerprint, cert, revoked,
                                      source, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (jid) DO UPDATE SET
                fingerprint = excluded.fingerprint, cert = excluded.cert,
                revoked = excluded.revoked, source = excluded.source,
                updated_at = excluded.updated_at
            ",
        )
        .bind(user.as_str())
        .bind(user.domain().as_str())
        .bind(&hash)
        .bind(&key.fingerprint)
        .bind(&key.cert)
        .bind(key.revoked)
        .bind(source.as_str())
        .bind(Millis::now().0)
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Storing the key of {user}"))
    }

    /// `user`'s key, if she published one.
    pub async fn key(&self, user: &BareJid) -> anyhow::Result<Option<StoredKey>> {
        let sql = format!("SELECT {COLUMNS} FROM openpgp_keys WHERE jid = $1");
        let row: Option<Row> = on_backend!(&self.pool, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(user.as_str())
        .fetch_optional(pool)
        .await)
        .with_context(|| format!("Reading the key of {user}"))?;
        row.map(stored).transpose()
    }

    /// The key at WKD hash `hash` of `domain` (any case); `local`, when
    /// the request names it (`?l=`), must be the owner's local part too.
    pub async fn key_by_wkd(
        &self,
        domain: &str,
        hash: &str,
        local: Option<&str>,
    ) -> anyhow::Result<Option<StoredKey>> {
        let sql = format!("SELECT {COLUMNS} FROM openpgp_keys WHERE domain = $1 AND wkd_hash = $2");
        let rows: Vec<Row> = on_backend!(&self.pool, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(domain.to_ascii_lowercase())
        .bind(hash)
        .fetch_all(pool)
        .await)
        .context("Reading a key by its WKD hash")?;
        for row in rows {
            let key = stored(row)?;
            let owner = key.user.node().map(|n| n.as_str()).unwrap_or_default();
            if local.is_none_or(|l| l.eq_ignore_ascii_case(owner)) {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// Every published key, by JID.
    pub async fn keys(&self) -> anyhow::Result<Vec<StoredKey>> {
        let sql = format!("SELECT {COLUMNS} FROM openpgp_keys ORDER BY jid");
        let rows: Vec<Row> = on_backend!(&self.pool, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .fetch_all(pool)
        .await)
        .context("Listing keys")?;
        rows.into_iter().map(stored).collect()
    }

    /// Stops serving `user`'s key; whether there was one.
    pub async fn remove_key(&self, user: &BareJid) -> anyhow::Result<bool> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "DELETE FROM openpgp_keys WHERE jid = $1"
        )
        .bind(user.as_str())
        .execute(pool)
        .await
        .map(|done| done.rows_affected() > 0))
        .with_context(|| format!("Removing the key of {user}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Published;
    use crate::store::testing::store_test;

    fn key(fingerprint: &str, revoked: bool) -> Published {
        Published {
            fingerprint: fingerprint.into(),
            cert: fingerprint.as_bytes().to_vec(),
            revoked,
        }
    }

    store_test! {
    async fn one_key_per_user_found_by_jid_or_wkd_hash(store, scratch) {
        let alice = BareJid::new("alice@example.org").expect("jid");
        let bob = BareJid::new("bob@example.org").expect("jid");
        assert_eq!(store.key(&alice).await.expect("read"), None);
        store.put_key(&alice, &key("AAAA", false), KeySource::Cli).await.expect("put");
        store.put_key(&bob, &key("BBBB", false), KeySource::Cli).await.expect("put");
        let first = store.key(&alice).await.expect("read").expect("alice's");
        assert_eq!((first.fingerprint.as_str(), first.cert.as_slice()), ("AAAA", &b"AAAA"[..]));
        assert_eq!((first.source.as_str(), first.revoked), ("cli", false));

        // A revocation replaces the key.
        store.put_key(&alice, &key("AAAA", true), KeySource::Cli).await.expect("put");
        let revoked = store.key(&alice).await.expect("read").expect("alice's");
        assert!(revoked.revoked);

        let hash = wkd::hash("alice").expect("hash");
        let found = store
            .key_by_wkd("Example.ORG", &hash, Some("Alice"))
            .await
            .expect("read")
            .expect("found");
        assert_eq!(found.user, alice);
        assert_eq!(store.key_by_wkd("example.org", &hash, None).await.expect("read"), Some(found));
        assert_eq!(
            store.key_by_wkd("example.org", &hash, Some("bob")).await.expect("read"),
            None,
            "the hash of another local part"
        );
        assert_eq!(store.key_by_wkd("example.net", &hash, None).await.expect("read"), None);

        let listed: Vec<String> = store
            .keys()
            .await
            .expect("listed")
            .into_iter()
            .map(|k| k.user.to_string())
            .collect();
        assert_eq!(listed, ["alice@example.org", "bob@example.org"]);

        // Unregistering stops serving the key; a key of a user who was
        // never registered (users = "all") stays.
        store.register(&bob).await.expect("registered");
        assert!(store.unregister(&bob).await.expect("unregistered"));
        assert_eq!(store.key(&bob).await.expect("read"), None);
        assert!(!store.unregister(&alice).await.expect("unregistered"));
        assert!(store.key(&alice).await.expect("read").is_some());
        assert!(store.remove_key(&alice).await.expect("removed"));
        assert!(!store.remove_key(&alice).await.expect("removed"));
        assert_eq!(store.key(&alice).await.expect("read"), None);
        assert_eq!(store.key_by_wkd("example.org", &hash, None).await.expect("read"), None);
    }
    }
}
