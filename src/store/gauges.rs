//! What `/metrics` reads from the store when it is scraped: the items of
//! each queue by state, and the age of each queue's oldest due item, in
//! one statement (the counts come from the queues' `(state,
//! next_attempt_at)` indexes; only due items are read for their age).

use std::time::Duration;

use anyhow::Context;

use super::to_mail::ToMailState;
use super::to_xmpp::ToXmppState;
use super::{Millis, Store};

/// Items per (queue, state), and the age of each queue's oldest item due
/// at `now` (queues with none due are left out).
pub struct QueueGauges {
    pub counts: Vec<(String, String, i64)>,
    pub oldest_due: Vec<(String, Duration)>,
}

impl Store {
    pub async fn queue_gauges(&self, now: Millis) -> anyhow::Result<QueueGauges> {
        let rows: Vec<(String, String, i64, Option<i64>)> =
            on_backend!(&self.pool, |pool| sqlx::query_as(
                "
            SELECT 'to_xmpp', state, COUNT(*), CAST(NULL AS BIGINT) FROM to_xmpp GROUP BY state
            UNION ALL
            SELECT 'to_mail', state, COUNT(*), CAST(NULL AS BIGINT) FROM to_mail GROUP BY state
            UNION ALL
            SELECT 'to_xmpp', '', 0, MIN(created_at) FROM to_xmpp
                WHERE state = $2 AND next_attempt_at <= $1
            UNION ALL
            SELECT 'to_mail', '', 0, MIN(created_at) FROM to_mail
                WHERE state = $3 AND next_attempt_at <= $1
            ",
            )
            .bind(now.0)
            .bind(ToXmppState::Pending)
            .bind(ToMailState::Queued)
            .fetch_all(pool)
            .await)
            .context("Reading queue gauges")?;
        let mut gauges = QueueGauges {
            counts: Vec::new(),
            oldest_due: Vec::new(),
        };
        for (queue, state, count, oldest) in rows {
            match (state.is_empty(), oldest) {
                (false, _) => gauges.counts.push((queue, state, count)),
                (true, Some(created_at)) => gauges
                    .oldest_due
                    .push((queue, now.since(Millis(created_at)))),
                (true, None) => {}
            }
        }
        Ok(gauges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;
    use crate::store::{InboundMail, NewMail};

    store_test! {
        async fn counts_and_the_oldest_due_item(store, scratch) {
            let empty = store.queue_gauges(Millis::now()).await.expect("gauges");
            assert!(empty.counts.is_empty() && empty.oldest_due.is_empty());

            let mail = InboundMail {
                mail_from: "bob@example.net".into(),
                client_ip: "127.0.0.1".into(),
                raw: b"Subject: x\r\n\r\nx\r\n".to_vec(),
                recipients: vec![jid::BareJid::new("alice@example.test").expect("jid")],
                ..InboundMail::default()
            };
            store.accept_mails(&[mail]).await.expect("accepted");
            let alice = jid::BareJid::new("alice@example.test").expect("jid");
            let out = NewMail {
                sender: &alice,
                mail_from: "alice@example.test",
                rcpt: "bob@example.net",
                message_id: "m@x",
                raw: b"raw",
                stanza: "",
                submission: None,
            };
            store.queue_mail(&out, None).await.expect("queued");
            let later = Millis::now().after(Duration::from_secs(60));
            let gauges = store.queue_gauges(later).await.expect("gauges");
            assert_eq!(
                gauges.counts,
                vec![
                    ("to_xmpp".to_owned(), "pending".to_owned(), 1),
                    ("to_mail".to_owned(), "queued".to_owned(), 1)
                ]
            );
            let queues: Vec<&str> = gauges.oldest_due.iter().map(|(q, _)| q.as_str()).collect();
            assert_eq!(queues, ["to_xmpp", "to_mail"]);
            for (_, age) in &gauges.oldest_due {
                assert!(
                    (Duration::from_secs(59)..Duration::from_secs(62)).contains(age),
                    "{age:?}"
                );
            }
            // Not due yet: no age, while the items are still counted.
            let now = store.queue_gauges(Millis(0)).await.expect("gauges");
            assert!(now.oldest_due.is_empty() && now.counts.len() == 2);
        }
    }
}
