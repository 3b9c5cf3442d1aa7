//! Bounces of mail facteur sent, and the secrets that match them to the
//! queue (see `crate::return_path`).

use anyhow::Context;
use ring::rand::{SecureRandom, SystemRandom};

use super::queue::insert_notice;
use super::{Millis, Notice, Store};

/// What the queue knows of a mail a bounce is about.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    /// Bare JID of the XMPP sender.
    pub sender: String,
    pub rcpt: String,
}

impl Store {
    /// The secret called `name`, made (32 random bytes) the first time.
    pub async fn secret(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| anyhow::anyhow!("No random numbers for a new secret"))?;
        sqlx::query(
            "INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&fresh[..])
        .bind(Millis::now().0)
        .execute(&self.pool)
        .await
        .with_context(|| format!("Making secret {name}"))?;
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .with_context(|| format!("Reading secret {name}"))
    }

    /// The queued mail `id`, if the queue still has it.
    pub async fn queued_mail(&self, id: i64) -> anyhow::Result<Option<QueuedMail>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT sender, rcpt FROM to_mail WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .with_context(|| format!("Looking up queued mail {id}"))?;
        Ok(row.map(|(sender, rcpt)| QueuedMail { sender, rcpt }))
    }

    /// Records that mail `id` bounced, and queues the notice to its sender
    /// in the same transaction, unless the mail had failed already (a
    /// second bounce for it tells the sender nothing new). Returns whether
    /// the notice was queued.
    pub async fn mail_bounced(
        &self,
        id: i64,
        error: &str,
        notice: &Notice,
    ) -> anyhow::Result<bool> {
        let now = Millis::now();
        let mut tx = self.pool.begin().await.context("Starting transaction")?;
        let failed = sqlx::query(
            "UPDATE to_mail SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ? AND state != 'failed'",
        )
        .bind(error)
        .bind(now.0)
        .bind(id)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("Recording the bounce of mail {id}"))?;
        let told = failed.rows_affected() == 1;
        if told {
            insert_notice(&mut tx, notice, now).await?;
        }
        tx.commit().await.context("Committing a bounce")?;
        Ok(told)
    }
}

#[cfg(test)]
mod tests {
    use jid::BareJid;

    use crate::store::{scratch, NewMail};

    use super::*;

    #[tokio::test]
    async fn a_secret_is_made_once() {
        let (store, _dir) = scratch().await;
        let first = store.secret("return-path").await.expect("secret");
        assert_eq!(first.len(), 32);
        assert_eq!(store.secret("return-path").await.expect("again"), first);
        assert_ne!(store.secret("other").await.expect("other"), first);
    }

    #[tokio::test]
    async fn a_bounce_tells_the_sender_once() {
        let (store, _dir) = scratch().await;
        let alice = BareJid::new("alice@example.test").expect("jid");
        let id = store
            .queue_mail(
                &NewMail {
                    sender: &alice,
                    mail_from: "alice@example.test",
                    rcpt: "bob@example.net",
                    message_id: "m1@example.test",
                    raw: b"Subject: x\r\n\r\nx\r\n",
                },
                None,
            )
            .await
            .expect("queued");
        let queued = store.queued_mail(id).await.expect("found").expect("some");
        assert_eq!(queued.rcpt, "bob@example.net");
        let notice = Notice {
            recipient: alice.clone(),
            from: BareJid::new("bob\\40example.net@mail.example.test").expect("jid"),
            subject: "Undelivered mail".into(),
            body: "no such user".into(),
        };
        assert!(store
            .mail_bounced(id, "5.1.1", &notice)
            .await
            .expect("first"));
        assert!(!store
            .mail_bounced(id, "5.1.1", &notice)
            .await
            .expect("second"));
        let counts = store.queue_counts().await.expect("counts");
        assert!(
            counts.contains(&("to_mail".into(), "failed".into(), 1)),
            "{counts:?}"
        );
        assert!(
            counts.contains(&("to_xmpp".into(), "pending".into(), 1)),
            "{counts:?}"
        );
        assert_eq!(
            store
                .queued_mail(id + 100)
                .await
                .expect("lookup")
                .map(|q| q.sender),
            None
        );
    }
}
