//! Keys of others found before sending (`openpgp_key_cache`), and the
//! lookups that found nothing, each kept until it expires.

use anyhow::Context;

use super::{Millis, Store};

/// What a lookup found for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedKey {
    /// Where it was found: `iq`, `wkd-advanced`, `wkd-direct`; `none`
    /// when nothing was.
    pub source: String,
    /// Upper-case hex; empty when nothing was found.
    pub fingerprint: String,
    /// Binary; empty when nothing was found.
    pub cert: Vec<u8>,
}

impl Store {
    /// What was found for `addr` (any case), unless it expired at `now`.
    pub async fn cached_key(&self, addr: &str, now: Millis) -> anyhow::Result<Option<CachedKey>> {
        let addr = addr.to_lowercase();
        let row: Option<(String, String, Vec<u8>)> = on_backend!(&self.pool, |pool| {
            sqlx::query_as(
                "SELECT source, fingerprint, cert FROM openpgp_key_cache
                 WHERE addr = $1 AND expires_at > $2",
            )
            .bind(&addr)
            .bind(now.0)
            .fetch_optional(pool)
            .await
        })
        .with_context(|| format!("Reading the key found for {addr}"))?;
        Ok(row.map(|(source, fingerprint, cert)| CachedKey {
            source,
            fingerprint,
            cert,
        }))
    }

    /// Keeps what was found for `addr` until `expires_at`, in place of
    /// what was kept before.
    pub async fn cache_key(
        &self,
        addr: &str,
        found: &CachedKey,
        expires_at: Millis,
    ) -> anyhow::Result<()> {
        let addr = addr.to_lowercase();
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO openpgp_key_cache (addr, source, fingerprint, cert, expires_at,
                                           updated_at)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (addr) DO UPDATE SET
                source = excluded.source, fingerprint = excluded.fingerprint,
                cert = excluded.cert, expires_at = excluded.expires_at,
                updated_at = excluded.updated_at
            "
        )
        .bind(&addr)
        .bind(&found.source)
        .bind(&found.fingerprint)
        .bind(&found.cert)
        .bind(expires_at.0)
        .bind(Millis::now().0)
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Keeping the key found for {addr}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
        async fn found_keys_and_failures_expire(store, scratch) {
            let now = Millis(1_000_000);
            assert_eq!(store.cached_key("bob@example.net", now).await.expect("read"), None);
            let found = CachedKey {
                source: "wkd-advanced".into(),
                fingerprint: "AA".into(),
                cert: b"AA".to_vec(),
            };
            store.cache_key("Bob@Example.NET", &found, Millis(now.0 + 10)).await.expect("kept");
            assert_eq!(
                store.cached_key("bob@example.net", now).await.expect("read"),
                Some(found)
            );
            assert_eq!(
                store.cached_key("bob@example.net", Millis(now.0 + 10)).await.expect("read"),
                None,
                "expired"
            );
            let nothing = CachedKey {
                source: "none".into(),
                fingerprint: String::new(),
                cert: Vec::new(),
            };
            store.cache_key("bob@example.net", &nothing, Millis(now.0 + 20)).await.expect("kept");
            assert_eq!(
                store.cached_key("BOB@example.net", now).await.expect("read"),
                Some(nothing)
            );
        }
    }
}
