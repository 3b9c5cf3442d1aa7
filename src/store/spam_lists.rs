//! Shared spam lists in the store: the entries of the consumed lists (as
//! the instance holding the component link last heard them), the lists'
//! trust weights, and the gateway's own published list with its
//! subscribers. Every instance reads them; see `spam::lists`.

use std::collections::BTreeMap;

use anyhow::Context;
use facteur_policy::spam::shared::{next_weight, Feedback};

use super::{Millis, Store};

/// A list's weight and what moved it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListWeight {
    pub list: String,
    pub weight: f64,
    pub confirmed: i64,
    pub contradicted: i64,
}

impl Store {
    /// Takes `items` as the whole of `list`, in one transaction.
    pub async fn replace_list_entries(&self, list: &str, items: &[String]) -> anyhow::Result<()> {
        let now = Millis::now().0;
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            sqlx::query("DELETE FROM spam_list_entries WHERE list = $1")
                .bind(list)
                .execute(&mut *tx)
                .await
                .context("Forgetting the list's entries")?;
            for item in items {
                sqlx::query(
                    "
                    INSERT INTO spam_list_entries (list, item, created_at) VALUES ($1, $2, $3)
                    ON CONFLICT (list, item) DO NOTHING
                    ",
                )
                .bind(list)
                .bind(item)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("Keeping a list entry")?;
            }
            tx.commit().await.context("Committing")
        })
        .with_context(|| format!("Replacing the entries of list {list}"))
    }

    /// Adds `item` to `list` (a publish event).
    pub async fn add_list_entry(&self, list: &str, item: &str) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO spam_list_entries (list, item, created_at) VALUES ($1, $2, $3)
            ON CONFLICT (list, item) DO NOTHING
            "
        )
        .bind(list)
        .bind(item)
        .bind(Millis::now().0)
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Adding {item} to list {list}"))
    }

    /// Removes `item` from `list` (a retract event); whether it was there.
    pub async fn remove_list_entry(&self, list: &str, item: &str) -> anyhow::Result<bool> {
        let done = on_backend!(&self.pool, |pool| sqlx::query(
            "DELETE FROM spam_list_entries WHERE list = $1 AND item = $2"
        )
        .bind(list)
        .bind(item)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .with_context(|| format!("Removing {item} from list {list}"))?;
        Ok(done > 0)
    }

    /// Which of `items` each list holds: (list, item) pairs, in order.
    pub async fn listed(&self, items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        // Few items per mail (an address hash, an IP, some domains).
        for chunk in items.chunks(64) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT list, item FROM spam_list_entries WHERE item IN ({}) ORDER BY list, item",
                marks.join(", ")
            );
            let rows: Vec<(String, String)> = on_backend!(&self.pool, |pool| {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                for item in chunk {
                    query = query.bind(item);
                }
                query.fetch_all(pool).await
            })
            .context("Looking up shared list entries")?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Entries per list.
    pub async fn list_entry_counts(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT list, COUNT(*) FROM spam_list_entries GROUP BY list"
        )
        .fetch_all(pool)
        .await)
        .context("Counting shared list entries")?;
        Ok(rows.into_iter().collect())
    }

    /// Gives each list its starting weight, unless it has one already.
    pub async fn start_list_weights(&self, lists: &[(String, f64)]) -> anyhow::Result<()> {
        let now = Millis::now().0;
        for (list, weight) in lists {
            on_backend!(&self.pool, |pool| sqlx::query(
                "
                INSERT INTO spam_list_weights (list, weight, updated_at) VALUES ($1, $2, $3)
                ON CONFLICT (list) DO NOTHING
                "
            )
            .bind(list)
            .bind(weight)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))
            .with_context(|| format!("Starting the weight of list {list}"))?;
        }
        Ok(())
    }

    /// Every list's weight, by name.
    pub async fn list_weights(&self) -> anyhow::Result<Vec<ListWeight>> {
        let rows: Vec<(String, f64, i64, i64)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT list, weight, confirmed, contradicted FROM spam_list_weights ORDER BY list"
        )
        .fetch_all(pool)
        .await)
        .context("Reading shared list weights")?;
        Ok(rows
            .into_iter()
            .map(|(list, weight, confirmed, contradicted)| ListWeight {
                list,
                weight,
                confirmed,
                contradicted,
            })
            .collect())
    }

    /// Moves `list`'s weight after a user's feedback; the new weight, or
    /// `None` for a list without one.
    pub async fn move_list_weight(
        &self,
        list: &str,
        feedback: Feedback,
    ) -> anyhow::Result<Option<f64>> {
        let (confirmed, contradicted) = match feedback {
            Feedback::Confirms => (1, 0),
            Feedback::Contradicts => (0, 1),
        };
        // Compare and set: feedback on several instances at once never
        // loses a step.
        for _ in 0..8 {
            let old: Option<f64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
                "SELECT weight FROM spam_list_weights WHERE list = $1"
            )
            .bind(list)
            .fetch_optional(pool)
            .await)
            .with_context(|| format!("Reading the weight of list {list}"))?;
            let Some(old) = old else {
                return Ok(None);
            };
            let new = next_weight(old, feedback);
            let done = on_backend!(&self.pool, |pool| sqlx::query(
                "
                UPDATE spam_list_weights
                SET weight = $2, confirmed = confirmed + $4, contradicted = contradicted + $5,
                    updated_at = $6
                WHERE list = $1 AND weight = $3
                "
            )
            .bind(list)
            .bind(new)
            .bind(old)
            .bind(confirmed)
            .bind(contradicted)
            .bind(Millis::now().0)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
            .with_context(|| format!("Moving the weight of list {list}"))?;
            if done > 0 {
                return Ok(Some(new));
            }
        }
        anyhow::bail!("The weight of list {list} kept changing under this update")
    }

    /// The verdict `user` last gave on `sender`'s mail `message_id`.
    pub async fn feedback_verdict(
        &self,
        user: &jid::BareJid,
        sender: &str,
        message_id: &str,
    ) -> anyhow::Result<Option<String>> {
        on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT verdict FROM spam_reports WHERE user_jid = $1 AND sender = $2 AND message_id = $3"
        )
        .bind(user.as_str())
        .bind(sender.trim().to_ascii_lowercase())
        .bind(message_id)
        .fetch_optional(pool)
        .await)
        .with_context(|| format!("Reading {user}'s feedback on {sender}"))
    }

    /// The items of `node` of the published list, with their reporters.
    pub async fn published_items(&self, node: &str) -> anyhow::Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT item, reporters FROM spam_published_items WHERE node = $1 ORDER BY item"
        )
        .bind(node)
        .fetch_all(pool)
        .await)
        .with_context(|| format!("Reading the published node {node}"))?;
        Ok(rows.into_iter().collect())
    }

    /// Publishes `add` and retracts `remove` in `node`, in one transaction.
    pub async fn change_published(
        &self,
        node: &str,
        add: &[(String, i64)],
        remove: &[String],
    ) -> anyhow::Result<()> {
        let now = Millis::now().0;
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            for item in remove {
                sqlx::query("DELETE FROM spam_published_items WHERE node = $1 AND item = $2")
                    .bind(node)
                    .bind(item)
                    .execute(&mut *tx)
                    .await
                    .context("Retracting an item")?;
            }
            for (item, reporters) in add {
                sqlx::query(
                    "
                    INSERT INTO spam_published_items (node, item, reporters, published_at)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (node, item) DO UPDATE SET reporters = excluded.reporters
                    ",
                )
                .bind(node)
                .bind(item)
                .bind(reporters)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("Publishing an item")?;
            }
            tx.commit().await.context("Committing")
        })
        .with_context(|| format!("Changing the published node {node}"))
    }

    /// Subscribes `jid` to `node` of the published list.
    pub async fn subscribe_to_list(&self, node: &str, jid: &str) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO spam_list_subscribers (node, jid, subscribed_at) VALUES ($1, $2, $3)
            ON CONFLICT (node, jid) DO NOTHING
            "
        )
        .bind(node)
        .bind(jid)
        .bind(Millis::now().0)
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| format!("Subscribing {jid} to {node}"))
    }

    /// Unsubscribes `jid` from `node`; whether it was subscribed.
    pub async fn unsubscribe_from_list(&self, node: &str, jid: &str) -> anyhow::Result<bool> {
        let done = on_backend!(&self.pool, |pool| sqlx::query(
            "DELETE FROM spam_list_subscribers WHERE node = $1 AND jid = $2"
        )
        .bind(node)
        .bind(jid)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .with_context(|| format!("Unsubscribing {jid} from {node}"))?;
        Ok(done > 0)
    }

    /// Who subscribed to `node`.
    pub async fn list_subscribers(&self, node: &str) -> anyhow::Result<Vec<String>> {
        on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT jid FROM spam_list_subscribers WHERE node = $1 ORDER BY jid"
        )
        .bind(node)
        .fetch_all(pool)
        .await)
        .with_context(|| format!("Reading the subscribers of {node}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
        async fn list_entries_weights_and_subscribers_are_kept(store, scratch) {
            store
                .replace_list_entries("bl", &["evil.test".into(), "bad.test".into()])
                .await
                .expect("replaced");
            store.add_list_entry("bl", "worse.test").await.expect("added");
            assert!(store.remove_list_entry("bl", "bad.test").await.expect("removed"));
            assert!(!store.remove_list_entry("bl", "bad.test").await.expect("gone"));
            let found = store
                .listed(&["evil.test".into(), "good.test".into(), "worse.test".into()])
                .await
                .expect("listed");
            assert_eq!(
                found,
                vec![
                    ("bl".to_owned(), "evil.test".to_owned()),
                    ("bl".to_owned(), "worse.test".to_owned())
                ]
            );
            store.replace_list_entries("bl", &[]).await.expect("emptied");
            assert!(store.listed(&["evil.test".into()]).await.expect("listed").is_empty());

            store.start_list_weights(&[("bl".into(), 0.5)]).await.expect("started");
            // A restart keeps the weight learnt.
            assert_eq!(
                store.move_list_weight("bl", Feedback::Contradicts).await.expect("moved"),
                Some(0.4)
            );
            store.start_list_weights(&[("bl".into(), 0.5)]).await.expect("started again");
            let weights = store.list_weights().await.expect("weights");
            assert_eq!(weights[0].weight, 0.4);
            assert_eq!(weights[0].contradicted, 1);
            assert_eq!(
                store.move_list_weight("none", Feedback::Confirms).await.expect("none"),
                None
            );

            store.subscribe_to_list("n", "mail.b.test").await.expect("subscribed");
            store.subscribe_to_list("n", "mail.b.test").await.expect("twice");
            assert_eq!(store.list_subscribers("n").await.expect("read"), vec!["mail.b.test"]);
            assert!(store.unsubscribe_from_list("n", "mail.b.test").await.expect("gone"));
            store
                .change_published("n", &[("evil.test".into(), 3)], &[])
                .await
                .expect("published");
            store
                .change_published("n", &[("x.test".into(), 4)], &["evil.test".into()])
                .await
                .expect("changed");
            assert_eq!(
                store.published_items("n").await.expect("read").into_iter().collect::<Vec<_>>(),
                vec![("x.test".to_owned(), 4)]
            );
        }
    }
}
