//! The write probe behind `/health`: one row rewritten in its own
//! transaction, so that a store that cannot commit says so before a mail
//! finds out.

use anyhow::Context;

use super::Store;

impl Store {
    /// Commits one small write. Fails when the database cannot be
    /// written: the file made read-only or immutable, an I/O error, a
    /// closed pool.
    pub async fn probe_write(&self) -> anyhow::Result<()> {
        // The counter changes every time, so the commit always writes.
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO health_probe (id, probes) VALUES (1, 1)
            ON CONFLICT (id) DO UPDATE SET probes = health_probe.probes + 1
            ",
        )
        .execute(pool)
        .await
        .map(|_| ()))
        .context("Writing the health probe")?;
        Ok(())
    }
}
