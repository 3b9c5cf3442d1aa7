//! Secrets the gateway makes for itself once (`secrets`), such as the key
//! that signs return paths (see `crate::return_path`).

use anyhow::Context;
use ring::rand::{SecureRandom, SystemRandom};

use super::{Millis, Store};

impl Store {
    /// The secret called `name`, made (32 random bytes) the first time.
    pub async fn secret(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| anyhow::anyhow!("No random numbers for a new secret"))?;
        // Two processes starting at once both try: the first one's stays.
        on_backend!(&self.pool, |pool| {
            sqlx::query(
                "
            INSERT INTO secrets (name, value, created_at)
            VALUES ($1, $2, $3)
            ON CONFLICT (name) DO NOTHING
            ",
            )
            .bind(name)
            .bind(&fresh[..])
            .bind(Millis::now().0)
            .execute(pool)
            .await
            .with_context(|| format!("Making secret {name}"))?;
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await
                .with_context(|| format!("Reading secret {name}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::store_test;

    store_test! {
        async fn a_secret_is_made_once(store, scratch) {
            let first = store.secret("return-path").await.expect("secret");
            assert_eq!(first.len(), 32);
            assert_eq!(store.secret("return-path").await.expect("again"), first);
            assert_ne!(store.secret("other").await.expect("other"), first);
        }
    }
}
