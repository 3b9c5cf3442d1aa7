//! Read notifications (RFC 8098 MDNs) asked for by inbound mail
//! (`Disposition-Notification-To`): remembered with the stanza id the
//! user's client knows the mail by, and taken once, when the user's client
//! marks that message displayed and the MDN is queued.

use anyhow::Context;
use jid::BareJid;

use super::{Millis, Store};

/// A read notification an inbound mail asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnRequest {
    /// The user who got the mail.
    pub user: BareJid,
    /// The id of the message the user's client got.
    pub stanza_id: String,
    /// The correspondent's JID, which the client's marker goes to.
    pub peer: BareJid,
    /// The mail's Message-ID, without angle brackets.
    pub message_id: String,
    pub subject: String,
    /// The Disposition-Notification-To address.
    pub notify_to: String,
    /// The user's address the mail came to (Final-Recipient).
    pub final_recipient: String,
}

impl Store {
    /// Remembers a read notification asked for; the first one for a
    /// message stays.
    pub async fn remember_mdn_request(&self, request: &MdnRequest) -> anyhow::Result<()> {
        on_backend!(&self.pool, |pool| sqlx::query(
            "
            INSERT INTO mdn_requests (user_jid, stanza_id, peer_jid, message_id, subject,
                                      notify_to, final_recipient, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (user_jid, stanza_id) DO NOTHING
            ",
        )
        .bind(request.user.as_str())
        .bind(&request.stanza_id)
        .bind(request.peer.as_str())
        .bind(&request.message_id)
        .bind(&request.subject)
        .bind(&request.notify_to)
        .bind(&request.final_recipient)
        .bind(Millis::now().0)
        .execute(pool)
        .await
        .map(|_| ()))
        .with_context(|| {
            format!(
                "Remembering the read notification for {}",
                request.message_id
            )
        })
    }

    /// Takes the read notification asked for by the message from `peer`
    /// that `user`'s client knows as `stanza_id`: it is asked for no more
    /// afterwards.
    pub async fn take_mdn_request(
        &self,
        user: &BareJid,
        peer: &BareJid,
        stanza_id: &str,
    ) -> anyhow::Result<Option<MdnRequest>> {
        let row: Option<(String, String, String, String, String)> =
            on_backend!(&self.pool, |pool| sqlx::query_as(
                "
                DELETE FROM mdn_requests
                WHERE user_jid = $1 AND stanza_id = $2 AND peer_jid = $3
                RETURNING peer_jid, message_id, subject, notify_to, final_recipient
                ",
            )
            .bind(user.as_str())
            .bind(stanza_id)
            .bind(peer.as_str())
            .fetch_optional(pool)
            .await)
            .with_context(|| format!("Taking the read notification for {stanza_id}"))?;
        let Some((peer, message_id, subject, notify_to, final_recipient)) = row else {
            return Ok(None);
        };
        Ok(Some(MdnRequest {
            user: user.clone(),
            stanza_id: stanza_id.to_owned(),
            peer: BareJid::new(&peer).with_context(|| format!("Stored peer {peer}"))?,
            message_id,
            subject,
            notify_to,
            final_recipient,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test! {
    async fn a_read_notification_is_taken_once(store, scratch) {
        let alice = BareJid::new("alice@example.test").expect("jid");
        let request = MdnRequest {
            user: alice.clone(),
            stanza_id: "facteur-1".into(),
            peer: BareJid::new("bob\\40example.net@mail.example.test").expect("jid"),
            message_id: "dinner-1@example.net".into(),
            subject: "Dinner".into(),
            notify_to: "bob@example.net".into(),
            final_recipient: "alice@example.test".into(),
        };
        store.remember_mdn_request(&request).await.expect("remembered");
        let mut again = request.clone();
        again.notify_to = "eve@example.org".into();
        store.remember_mdn_request(&again).await.expect("remembered");
        let peer = request.peer.clone();
        assert_eq!(
            store.take_mdn_request(&alice, &peer, "facteur-2").await.expect("taken"),
            None
        );
        let bob = BareJid::new("bob@example.test").expect("jid");
        assert_eq!(
            store.take_mdn_request(&bob, &peer, "facteur-1").await.expect("taken"),
            None,
            "another user's message"
        );
        assert_eq!(
            store.take_mdn_request(&alice, &bob, "facteur-1").await.expect("taken"),
            None,
            "a marker sent to another correspondent"
        );
        assert_eq!(
            store.take_mdn_request(&alice, &peer, "facteur-1").await.expect("taken"),
            Some(request)
        );
        assert_eq!(
            store.take_mdn_request(&alice, &peer, "facteur-1").await.expect("taken"),
            None
        );
    }
    }
}
