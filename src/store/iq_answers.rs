//! IQ answers handed from one instance to another (`iq_answers`): where
//! several instances bind one component domain, the XMPP server may hand
//! the answer to one instance's IQ to another. That one leaves it here,
//! for the instance the IQ's id names; the owner takes it at its next
//! look. Answers left for an instance that is gone are removed after
//! [`KEEP_ANSWERS`].

use std::time::Duration;

use anyhow::Context;

use super::{Millis, Store};

/// How long an answer waits for its instance: far longer than any IQ is
/// waited for.
pub const KEEP_ANSWERS: Duration = Duration::from_secs(60);

impl Store {
    /// Leaves the answer `stanza` (serialised XML) to IQ `id` for
    /// instance `owner`.
    pub async fn hand_over_answer(
        &self,
        id: &str,
        owner: &str,
        stanza: &str,
    ) -> anyhow::Result<()> {
        let now = Millis::now();
        on_backend!(&self.pool, |pool| sqlx::query(
            "INSERT INTO iq_answers (id, owner, stanza, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(id)
        .bind(owner)
        .bind(stanza)
        .bind(now.0)
        .execute(pool)
        .await
        .map(|_| ())
        .with_context(|| format!("Handing over the answer to IQ {id}")))?;
        Ok(())
    }

    /// Takes the answers other instances left for this one, oldest first,
    /// and removes those left too long ago for anyone.
    pub async fn take_answers(&self) -> anyhow::Result<Vec<String>> {
        let stale = Millis::now().before(KEEP_ANSWERS);
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let mut taken: Vec<(i64, String)> = sqlx::query_as(
                "DELETE FROM iq_answers WHERE owner = $1 RETURNING created_at, stanza",
            )
            .bind(&*self.owner)
            .fetch_all(&mut *tx)
            .await
            .context("Taking IQ answers")?;
            sqlx::query("DELETE FROM iq_answers WHERE created_at < $1")
                .bind(stale.0)
                .execute(&mut *tx)
                .await
                .context("Removing IQ answers nobody took")?;
            tx.commit().await.context("Committing IQ answers taken")?;
            taken.sort_by_key(|(at, _)| *at);
            Ok(taken.into_iter().map(|(_, stanza)| stanza).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::store_test;

    store_test! {
        async fn an_answer_goes_to_the_instance_it_names_once(store, scratch) {
            let a = store.as_instance("host:1:a");
            let b = store.as_instance("host:2:b");
            b.hand_over_answer("ping-1@host:1:a", "host:1:a", "<iq id='ping-1@host:1:a'/>")
                .await
                .expect("handed over");
            assert!(b.take_answers().await.expect("taken").is_empty());
            assert_eq!(
                a.take_answers().await.expect("taken"),
                vec!["<iq id='ping-1@host:1:a'/>".to_owned()]
            );
            assert!(a.take_answers().await.expect("taken").is_empty());
        }
    }
}
