//! Which stored file each attachment link leads to.

use anyhow::Context;
use rand::Rng;

use super::{Millis, Store};

/// What a link serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecord {
    pub sha256: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

impl Store {
    /// The token of an attachment's link: made once per part of a mail,
    /// the same on every retry.
    pub async fn share_attachment(
        &self,
        mail_id: i64,
        index: usize,
        file: &SharedRecord,
    ) -> anyhow::Result<String> {
        let token = format!("{:032x}", rand::rng().random::<u128>());
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            sqlx::query(
            "
            INSERT INTO attachments (token, mail_id, part_index, sha256, name, content_type, size, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (mail_id, part_index) DO NOTHING
            ",
        )
        .bind(&token)
        .bind(mail_id)
        .bind(i64::try_from(index).unwrap_or(i64::MAX))
        .bind(&file.sha256)
        .bind(&file.name)
        .bind(&file.content_type)
        .bind(i64::try_from(file.size).unwrap_or(i64::MAX))
        .bind(Millis::now().0)
        .execute(&mut *tx)
        .await
        .context("Sharing an attachment")?;
            let token: String = sqlx::query_scalar(
                "SELECT token FROM attachments WHERE mail_id = $1 AND part_index = $2",
            )
            .bind(mail_id)
            .bind(i64::try_from(index).unwrap_or(i64::MAX))
            .fetch_one(&mut *tx)
            .await
            .context("Reading an attachment's token")?;
            tx.commit().await.context("Committing an attachment")?;
            Ok(token)
        })
    }

    /// What the link with `token` serves, if it was made at or after
    /// `since`: a link outlives its retention by no more than the wait
    /// for the next expiry sweep otherwise.
    pub async fn shared(&self, token: &str, since: Millis) -> anyhow::Result<Option<SharedRecord>> {
        let row: Option<(String, String, String, i64)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "SELECT sha256, name, content_type, size FROM attachments WHERE token = $1 AND created_at >= $2",
        )
        .bind(token)
        .bind(since.0)
        .fetch_optional(pool)
        .await)
        .context("Looking up an attachment")?;
        Ok(row.map(|(sha256, name, content_type, size)| SharedRecord {
            sha256,
            name,
            content_type,
            size: u64::try_from(size).unwrap_or(0),
        }))
    }

    /// Forgets links older than `before`; returns the files no link
    /// leads to any more.
    pub async fn expire_attachments(&self, before: Millis) -> anyhow::Result<Vec<String>> {
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let expired: Vec<String> = sqlx::query_scalar(
                "DELETE FROM attachments WHERE created_at < $1 RETURNING sha256",
            )
            .bind(before.0)
            .fetch_all(&mut *tx)
            .await
            .context("Expiring attachments")?;
            let mut orphans = Vec::new();
            for sha in expired {
                let left: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM attachments WHERE sha256 = $1")
                        .bind(&sha)
                        .fetch_one(&mut *tx)
                        .await
                        .context("Counting links to a file")?;
                if left == 0 && !orphans.contains(&sha) {
                    orphans.push(sha);
                }
            }
            tx.commit()
                .await
                .context("Committing expired attachments")?;
            Ok(orphans)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
        async fn one_token_per_part_and_expiry(store, scratch) {
            let file = SharedRecord {
                sha256: "ab".into(),
                name: "r.pdf".into(),
                content_type: "application/pdf".into(),
                size: 9,
            };
            let token = store.share_attachment(1, 0, &file).await.expect("shared");
            assert_eq!(token.len(), 32);
            assert_eq!(
                store.share_attachment(1, 0, &file).await.expect("again"),
                token
            );
            let other = store
                .share_attachment(2, 0, &file)
                .await
                .expect("other mail");
            assert_ne!(other, token);
            let since = Millis(0);
            assert_eq!(
                store.shared(&token, since).await.expect("q"),
                Some(file.clone())
            );
            assert_eq!(store.shared("nope", since).await.expect("q"), None);
            // A link older than the retention is not served, swept or not.
            let later = Millis::now().after(std::time::Duration::from_secs(1));
            assert_eq!(store.shared(&token, later).await.expect("q"), None);
            let orphans = store
                .expire_attachments(Millis::now().after(std::time::Duration::from_secs(1)))
                .await
                .expect("expired");
            assert_eq!(orphans, ["ab"]);
            assert_eq!(store.shared(&token, since).await.expect("q"), None);
        }
    }
}
