//! XEP-0184 receipts owed for outgoing mail. A receipt says that the mail
//! was delivered: it is owed when the stanza is taken, and sent when the
//! recipient's mail server accepts the mail, the other XMPP-Mail domain
//! confirms it, or (mail sent through a relay with RFC 3461
//! `NOTIFY=SUCCESS`) a positive delivery report comes back for it. A mail
//! that fails owes nothing: its author gets the notice.

use anyhow::Context;
use facteur_bridge::bounce::Delivered;

use super::to_mail::ToMailState;
use super::to_xmpp::{insert_receipt, Receipt};
use super::{Conn, Millis, Store};

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

    /// Whether the mail (`sender`, `message_id`, `rcpt`) owes a receipt.
    pub async fn owes_receipts(
        &self,
        sender: &str,
        message_id: &str,
        rcpt: &str,
    ) -> anyhow::Result<bool> {
        let found: Option<i64> = on_backend!(&self.pool, |pool| sqlx::query_scalar(
            "
            SELECT CAST(1 AS BIGINT) FROM mail_receipts
            WHERE sender = $1 AND message_id = $2 AND rcpt = $3
            LIMIT 1
            ",
        )
        .bind(sender)
        .bind(message_id)
        .bind(rcpt)
        .fetch_optional(pool)
        .await
        .with_context(|| format!("Looking up the receipts of mail {message_id}")))?;
        Ok(found.is_some())
    }

    /// A positive delivery report came to the return path of mail `id`:
    /// when it names the mail's recipient (and its envelope id, if it
    /// gives one, is the mail's), the receipts the mail owes are taken and
    /// queued to their authors, in one transaction. A mail that failed, or
    /// one the queue no longer has, gets none. Returns how many were
    /// queued.
    pub async fn mail_reported_delivered(
        &self,
        id: i64,
        report: &Delivered,
    ) -> anyhow::Result<usize> {
        if report
            .envelope_id
            .as_deref()
            .is_some_and(|envid| envid != envelope_id(id))
        {
            return Ok(0);
        }
        let now = Millis::now();
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            let mail: Option<(String, String, String)> = sqlx::query_as(
                "
                SELECT sender, message_id, rcpt FROM to_mail
                WHERE id = $1 AND state != $2
                ",
            )
            .bind(id)
            .bind(ToMailState::Failed)
            .fetch_optional(&mut *tx)
            .await
            .with_context(|| format!("Looking up mail {id}"))?;
            let Some((sender, message_id, rcpt)) = mail else {
                return Ok(0);
            };
            if !report.recipients.iter().any(|r| r.is(&rcpt)) {
                return Ok(0);
            }
            // Taken and queued together: a second report finds none owed.
            let owed: Vec<(String, String, String)> = sqlx::query_as(
                "
                DELETE FROM mail_receipts
                WHERE sender = $1 AND message_id = $2 AND rcpt = $3
                RETURNING stanza_id, author_jid, contact_jid
                ",
            )
            .bind(&sender)
            .bind(&message_id)
            .bind(&rcpt)
            .fetch_all(&mut *tx)
            .await
            .with_context(|| format!("Taking the receipts of mail {message_id}"))?;
            for (stanza_id, author_jid, contact_jid) in &owed {
                let recipient = jid::Jid::new(author_jid)
                    .map(|jid| jid.to_bare().to_string())
                    .with_context(|| format!("Stored author {author_jid}"))?;
                let receipt = Receipt {
                    to: author_jid.clone(),
                    from: contact_jid.clone(),
                    id: stanza_id.clone(),
                };
                insert_receipt((&mut *tx).into(), &recipient, &receipt, now).await?;
            }
            tx.commit().await.context("Committing receipts")?;
            if !owed.is_empty() {
                self.wake.to_xmpp.notify_one();
            }
            Ok(owed.len())
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

/// Takes the receipts sent mail `id` owes and queues them to their
/// authors, in the caller's transaction (the one that records the mail
/// sent): queued, a receipt reaches its author even when the link or the
/// instance goes down before it is confirmed. Returns how many.
pub(super) async fn queue_receipts(tx: Conn<'_>, id: i64, now: Millis) -> anyhow::Result<usize> {
    on_backend!(tx, |tx| {
        let owed: Vec<(String, String, String)> = sqlx::query_as(
            "
            DELETE FROM mail_receipts
            WHERE (sender, message_id, rcpt) IN (
                SELECT sender, message_id, rcpt FROM to_mail WHERE id = $1
            )
            RETURNING stanza_id, author_jid, contact_jid
            ",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .with_context(|| format!("Taking the receipts of mail {id}"))?;
        for (stanza_id, author_jid, contact_jid) in &owed {
            let Ok(recipient) = jid::Jid::new(author_jid).map(|jid| jid.to_bare().to_string())
            else {
                continue;
            };
            let receipt = Receipt {
                to: author_jid.clone(),
                from: contact_jid.clone(),
                id: stanza_id.clone(),
            };
            insert_receipt((&mut *tx).into(), &recipient, &receipt, now).await?;
        }
        Ok(owed.len())
    })
}

/// The RFC 3461 ENVID mail `id` is sent with, when it asks for a
/// delivery report: its queue id, which the return path signs as well.
pub fn envelope_id(id: i64) -> String {
    id.to_string()
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

    store_test! {
    async fn a_delivery_report_queues_the_receipts_once(store, scratch) {
        use facteur_bridge::bounce::DeliveredRecipient;
        use crate::store::{NewMail, ToXmppBody};

        let sender = jid::BareJid::new("alice@example.test").expect("jid");
        let mail = NewMail {
            sender: &sender,
            mail_from: "alice@example.test",
            rcpt: "bob@example.net",
            message_id: "m@x",
            raw: b"raw",
            stanza: "",
            submission: None,
        };
        let id = store.queue_mail(&mail, None).await.expect("queued");
        let owed = OwedReceipt {
            sender: "alice@example.test".into(),
            message_id: "m@x".into(),
            rcpt: "bob@example.net".into(),
            stanza_id: "s1".into(),
            author_jid: "alice@example.test/phone".into(),
            contact_jid: "bob\\40example.net@mail.example.test".into(),
        };
        store.owe_receipts(&[owed]).await.expect("owed");
        assert!(store.owes_receipts("alice@example.test", "m@x", "bob@example.net").await.expect("owes"));
        let report = |envid: Option<&str>, rcpt: &str| Delivered {
            envelope_id: envid.map(str::to_owned),
            recipients: vec![DeliveredRecipient {
                original: Some(rcpt.to_owned()),
                final_recipient: None,
            }],
        };
        // Another recipient, another envelope id: not this mail's report.
        let other_envid = envelope_id(id + 1);
        assert_eq!(store.mail_reported_delivered(id, &report(None, "carol@example.net")).await.expect("report"), 0);
        assert_eq!(store.mail_reported_delivered(id, &report(Some(&other_envid), "bob@example.net")).await.expect("report"), 0);
        let envid = envelope_id(id);
        assert_eq!(store.mail_reported_delivered(id, &report(Some(&envid), "BOB@example.net")).await.expect("report"), 1);
        assert_eq!(store.mail_reported_delivered(id, &report(Some(&envid), "bob@example.net")).await.expect("report"), 0, "a second report sends nothing");
        assert!(!store.owes_receipts("alice@example.test", "m@x", "bob@example.net").await.expect("owes"));
        let due = store.due_to_xmpp(Millis::now().after(std::time::Duration::from_secs(1)), 10).await.expect("due");
        let receipts: Vec<_> = due
            .iter()
            .map(|item| match &item.body {
                ToXmppBody::Receipt(receipt) => (item.recipient.clone(), receipt.clone()),
                _ => panic!("a receipt"),
            })
            .collect();
        assert_eq!(
            receipts,
            [(
                "alice@example.test".to_owned(),
                Receipt {
                    to: "alice@example.test/phone".into(),
                    from: "bob\\40example.net@mail.example.test".into(),
                    id: "s1".into(),
                }
            )]
        );
    }
    }

    store_test! {
    async fn a_sent_mail_queues_its_receipts_with_the_outcome(store, scratch) {
        use crate::store::{MailOutcome, NewMail, ToXmppBody};

        let sender = jid::BareJid::new("alice@example.test").expect("jid");
        let owe = |message_id: &str, stanza_id: &str| OwedReceipt {
            sender: "alice@example.test".into(),
            message_id: message_id.into(),
            rcpt: "bob@example.net".into(),
            stanza_id: stanza_id.into(),
            author_jid: "alice@example.test/phone".into(),
            contact_jid: "bob\\40example.net@mail.example.test".into(),
        };
        let mut ids = Vec::new();
        for message_id in ["m1@x", "m2@x"] {
            let mail = NewMail {
                sender: &sender,
                mail_from: "alice@example.test",
                rcpt: "bob@example.net",
                message_id,
                raw: b"raw",
                stanza: "",
                submission: None,
            };
            ids.push(store.queue_mail(&mail, None).await.expect("queued"));
        }
        store.owe_receipts(&[owe("m1@x", "s1"), owe("m2@x", "s2")]).await.expect("owed");
        assert_eq!(store.due_to_mail(Millis::now(), 10).await.expect("due").len(), 2);
        store
            .apply_mail_outcomes(&[MailOutcome::Sent(ids[0]), MailOutcome::SentAwaitingReport(ids[1])])
            .await
            .expect("applied");
        // Queued, not only sent: the receipt outlives the link and the
        // instance.
        let due = store.due_to_xmpp(Millis::now().after(std::time::Duration::from_secs(1)), 10).await.expect("due");
        let receipts: Vec<_> = due
            .iter()
            .map(|item| match &item.body {
                ToXmppBody::Receipt(receipt) => receipt.id.clone(),
                _ => panic!("a receipt"),
            })
            .collect();
        assert_eq!(receipts, ["s1"]);
        assert!(!store.owes_receipts("alice@example.test", "m1@x", "bob@example.net").await.expect("owes"));
        // The other waits for its delivery report.
        assert!(store.owes_receipts("alice@example.test", "m2@x", "bob@example.net").await.expect("owes"));
    }
    }
}
