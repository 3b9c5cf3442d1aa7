//! Keys of others as the `Autocrypt` header of their mail carried them
//! (`autocrypt_peers`), one per address: a header replaces the one kept
//! only when its mail's effective date is later (Autocrypt's
//! `last_seen_autocrypt`).

use anyhow::Context;

use super::{Millis, Store};

/// A key seen in an `Autocrypt` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKey {
    /// Lower-cased.
    pub addr: String,
    /// Effective date of the mail that carried it, seconds.
    pub last_seen: i64,
    /// Upper-case hex.
    pub fingerprint: String,
    /// Binary.
    pub cert: Vec<u8>,
    pub prefer_mutual: bool,
}

impl Store {
    /// Keeps `key` for its address unless a key seen at the same date or
    /// later is kept already; whether it was kept.
    pub async fn autocrypt_seen(&self, key: &PeerKey) -> anyhow::Result<bool> {
        let addr = key.addr.to_lowercase();
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO autocrypt_peers (addr, last_seen, fingerprint, cert, prefer_mutual,
                                         updated_at)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (addr) DO UPDATE SET
                last_seen = excluded.last_seen, fingerprint = excluded.fingerprint,
                cert = excluded.cert, prefer_mutual = excluded.prefer_mutual,
                updated_at = excluded.updated_at
            WHERE excluded.last_seen > autocrypt_peers.last_seen
            "
        )
        .bind(&addr)
        .bind(key.last_seen)
        .bind(&key.fingerprint)
        .bind(&key.cert)
        .bind(key.prefer_mutual)
        .bind(Millis::now().0)
        .execute(pool)
        .await
        .map(|done| done.rows_affected() > 0))
        .with_context(|| format!("Keeping the Autocrypt key of {addr}"))
    }

    /// The key kept for `addr` (any case), if any.
    pub async fn autocrypt_key(&self, addr: &str) -> anyhow::Result<Option<PeerKey>> {
        let addr = addr.to_lowercase();
        let row: Option<(String, i64, String, Vec<u8>, bool)> =
            on_backend!(&self.pool, |pool| sqlx::query_as(
                "SELECT addr, last_seen, fingerprint, cert, prefer_mutual
                 FROM autocrypt_peers WHERE addr = $1"
            )
            .bind(&addr)
            .fetch_optional(pool)
            .await)
            .with_context(|| format!("Reading the Autocrypt key of {addr}"))?;
        Ok(row.map(
            |(addr, last_seen, fingerprint, cert, prefer_mutual)| PeerKey {
                addr,
                last_seen,
                fingerprint,
                cert,
                prefer_mutual,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    fn seen(at: i64, fingerprint: &str) -> PeerKey {
        PeerKey {
            addr: "Bob@Example.NET".into(),
            last_seen: at,
            fingerprint: fingerprint.into(),
            cert: fingerprint.as_bytes().to_vec(),
            prefer_mutual: false,
        }
    }

    store_test! {
        async fn the_newest_header_wins(store, scratch) {
            assert_eq!(store.autocrypt_key("bob@example.net").await.expect("read"), None);
            assert!(store.autocrypt_seen(&seen(100, "AA")).await.expect("kept"));
            // Older, or as old: the key kept stays.
            assert!(!store.autocrypt_seen(&seen(50, "BB")).await.expect("seen"));
            assert!(!store.autocrypt_seen(&seen(100, "CC")).await.expect("seen"));
            let kept = store.autocrypt_key("BOB@example.net").await.expect("read").expect("kept");
            assert_eq!((kept.addr.as_str(), kept.last_seen, kept.fingerprint.as_str()),
                       ("bob@example.net", 100, "AA"));
            assert!(store.autocrypt_seen(&seen(101, "DD")).await.expect("kept"));
            let kept = store.autocrypt_key("bob@example.net").await.expect("read").expect("kept");
            assert_eq!((kept.last_seen, kept.cert), (101, b"DD".to_vec()));
        }
    }
}
