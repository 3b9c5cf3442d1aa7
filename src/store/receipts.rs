//! XEP-0184 receipts owed for outgoing mail. A receipt says that the mail
//! was delivered: it is owed when the stanza is taken, and sent when the
//! recipient's mail server accepts the mail or the other XMPP-Mail domain
//! confirms it. A mail that fails owes nothing: its author gets the notice.

use anyhow::Context;

use super::{Millis, Store};

/// A receipt owed for the mail (`sender`, `message_id`, `rcpt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedReceipt {
    pub sender: String,
    pub message_id: String,
    pub rcpt: String,
    /// The id of the message that asked for it.
    pub stanza_id: String,
    /// The full JID it goes to.
    pub author_jid: String,
    /// The JID it comes from.
    pub contact_jid: String,
}

impl Store {
    /// Records receipts owed; one already owed stays as it is.
    pub async fn owe_receipts(&self, receipts: &[OwedReceipt]) -> anyhow::Result<()> {
        let now = Millis::now();
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            for r in receipts {
                sqlx::query(
                    "
                    INSERT INTO mail_receipts (sender, message_id, rcpt, stanza_id, author_jid,
                                               contact_jid, created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT DO NOTHING
                    ",
                )
                .bind(&r.sender)
                .bind(&r.message_id)
                .bind(&r.rcpt)
                .bind(&r.stanza_id)
                .bind(&r.author_jid)
                .bind(&r.contact_jid)
                .bind(now.0)
                .execute(&mut *tx)
                .await
                .context("Recording a receipt owed")?;
            }
            tx.commit().await.context("Committing receipts owed")
        })
    }

    /// Takes the receipts owed for a mail, which owes none afterwards.
    pub async fn take_receipts(
        &self,
        sender: &str,
        message_id: &str,
        rcpt: &str,
    ) -> anyhow::Result<Vec<OwedReceipt>> {
        let rows: Vec<(String, String, String)> = on_backend!(&self.pool, |pool| sqlx::query_as(
            "
            DELETE FROM mail_receipts
            WHERE sender = $1 AND message_id = $2 AND rcpt = $3
            RETURNING stanza_id, author_jid, contact_jid
            ",
        )
        .bind(sender)
        .bind(message_id)
        .bind(rcpt)
        .fetch_all(pool)
        .await
        .with_context(|| format!("Taking the receipts of mail {message_id}")))?;
        Ok(rows
            .into_iter()
            .map(|(stanza_id, author_jid, contact_jid)| OwedReceipt {
                sender: sender.to_owned(),
                message_id: message_id.to_owned(),
                rcpt: rcpt.to_owned(),
                stanza_id,
                author_jid,
                contact_jid,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
    async fn a_receipt_is_owed_once_and_taken_once(store, scratch) {
        let owed = OwedReceipt {
            sender: "alice@example.test".into(),
            message_id: "m@x".into(),
            rcpt: "bob@example.net".into(),
            stanza_id: "s1".into(),
            author_jid: "alice@example.test/phone".into(),
            contact_jid: "bob\\40example.net@mail.example.test".into(),
        };
        store
            .owe_receipts(&[owed.clone(), owed.clone()])
            .await
            .expect("owed");
        let taken = store
            .take_receipts("alice@example.test", "m@x", "bob@example.net")
            .await
            .expect("taken");
        assert_eq!(taken, [owed]);
        assert!(store
            .take_receipts("alice@example.test", "m@x", "bob@example.net")
            .await
            .expect("taken")
            .is_empty());
    }
    }
}
