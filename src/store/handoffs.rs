//! Mail handed over by other domains' gateways (doc/xmpp-mail.md §7.2):
//! committed like mail received by SMTP, with a row in `handoffs` that
//! recognises the same handoff sent again (same author, Message-ID and
//! recipient), which is acknowledged and not stored twice.

use anyhow::Context;
use jid::BareJid;

use super::to_xmpp::{insert_inbound, InboundMail};
use super::{Conn, Millis, Store};

/// A handoff about to be committed.
#[derive(Debug, Clone)]
pub struct NewHandoff<'a> {
    /// The author (`ofrom`).
    pub author: &'a BareJid,
    /// The mail's Message-ID, without angle brackets.
    pub message_id: &'a str,
    /// The recipient, a served user.
    pub rcpt: &'a BareJid,
    /// The gateway that handed the mail over.
    pub gateway: &'a BareJid,
    /// The mail, trace header included.
    pub raw: &'a [u8],
}

/// What became of a handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffTaken {
    /// Committed now, as this inbound mail.
    New(i64),
    /// Taken before, as this inbound mail; nothing stored now.
    Again(i64),
}

impl Store {
    /// Commits a handoff for delivery to its recipient, with its
    /// `handoffs` row, in one transaction: either both are durable or
    /// neither. A handoff taken before is not stored again.
    pub async fn accept_handoff(&self, handoff: &NewHandoff<'_>) -> anyhow::Result<HandoffTaken> {
        let now = Millis::now();
        on_backend!(&self.pool, |pool| {
            let mut tx = pool.begin().await.context("Starting transaction")?;
            if let Some(mail_id) = taken((&mut *tx).into(), handoff).await? {
                return Ok(HandoffTaken::Again(mail_id));
            }
            let mail = InboundMail {
                mail_from: handoff.author.to_string(),
                client_ip: handoff.gateway.to_string(),
                raw: handoff.raw.to_vec(),
                recipients: vec![handoff.rcpt.clone()],
                // §9.3: mail that came by XMPP-Mail has no SMTP checks to show.
                auth: String::new(),
                warning: String::new(),
                spam: Default::default(),
            };
            let mail_id = insert_inbound((&mut *tx).into(), &mail, now).await?;
            let inserted = sqlx::query(
                "
            INSERT INTO handoffs (author, message_id, rcpt, mail_id, received_at)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (author, message_id, rcpt) DO NOTHING
            ",
            )
            .bind(handoff.author.as_str())
            .bind(handoff.message_id)
            .bind(handoff.rcpt.as_str())
            .bind(mail_id)
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .context("Recording a handoff")?
            .rows_affected();
            if inserted == 0 {
                // The same handoff was committed meanwhile: this copy goes.
                tx.rollback().await.context("Dropping a repeated handoff")?;
                let mut conn = pool.acquire().await.context("Reading handoffs")?;
                let mail_id = taken((&mut *conn).into(), handoff)
                    .await?
                    .context("A handoff vanished while taken")?;
                return Ok(HandoffTaken::Again(mail_id));
            }
            tx.commit().await.context("Committing a handoff")?;
            self.wake.to_xmpp.notify_one();
            Ok(HandoffTaken::New(mail_id))
        })
    }
}

/// The inbound mail a handoff became, if it was taken before.
async fn taken(conn: Conn<'_>, handoff: &NewHandoff<'_>) -> anyhow::Result<Option<i64>> {
    on_backend!(conn, |conn| sqlx::query_scalar(
        "SELECT mail_id FROM handoffs WHERE author = $1 AND message_id = $2 AND rcpt = $3",
    )
    .bind(handoff.author.as_str())
    .bind(handoff.message_id)
    .bind(handoff.rcpt.as_str())
    .fetch_optional(conn)
    .await)
    .context("Reading handoffs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;
    use crate::store::ToXmppBody;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).expect("jid")
    }

    store_test! {
        async fn a_handoff_sent_again_is_stored_once(store, scratch) {
            let (alice, bob, gateway) = (jid("alice@a.test"), jid("bob@b.test"), jid("mail.a.test"));
            let handoff = NewHandoff {
                author: &alice,
                message_id: "abc@a.test",
                rcpt: &bob,
                gateway: &gateway,
                raw: b"Message-ID: <abc@a.test>\r\n\r\nhi\r\n",
            };
            let first = store.accept_handoff(&handoff).await.expect("stored");
            let HandoffTaken::New(mail_id) = first else {
                panic!("first handoff taken as {first:?}");
            };
            assert_eq!(
                store.accept_handoff(&handoff).await.expect("stored"),
                HandoffTaken::Again(mail_id)
            );
            let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
            assert_eq!(due.len(), 1, "one delivery, not two");
            assert_eq!(due[0].recipient, "bob@b.test");
            let ToXmppBody::Mail {
                mail_from,
                auth,
                warning,
                ..
            } = &due[0].body
            else {
                panic!("a mail");
            };
            assert_eq!(mail_from, "alice@a.test");
            assert!(auth.is_empty() && warning.is_empty());

            // Another recipient or another Message-ID is another handoff.
            let carol = jid("carol@b.test");
            let other = NewHandoff {
                rcpt: &carol,
                ..handoff.clone()
            };
            assert!(matches!(
                store.accept_handoff(&other).await.expect("stored"),
                HandoffTaken::New(id) if id != mail_id
            ));
            let later = NewHandoff {
                message_id: "def@a.test",
                raw: b"Message-ID: <def@a.test>\r\n\r\nhi\r\n",
                ..handoff
            };
            assert!(matches!(
                store.accept_handoff(&later).await.expect("stored"),
                HandoffTaken::New(_)
            ));
            assert_eq!(
                store
                    .due_to_xmpp(Millis::now(), 10)
                    .await
                    .expect("due")
                    .len(),
                3
            );
        }
    }
}
