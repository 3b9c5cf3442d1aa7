//! What `/metrics` reads from the store when it is scraped: the items of
//! each queue by state, and the age of each queue's oldest due item, in
//! one statement (the counts come from the queues' `(state,
//! next_attempt_at)` indexes; only due items are read for their age).

use std::time::Duration;

use anyhow::Context;

use super::{Millis, Store};

/// Items per (queue, state), and the age of each queue's oldest item due
/// at `now` (queues with none due are left out).
pub struct QueueGauges {
    pub counts: Vec<(String, String, i64)>,
    pub oldest_due: Vec<(String, Duration)>,
}

impl Store {
    pub async fn queue_gauges(&self, now: Millis) -> anyhow::Result<QueueGauges> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "
            SELECT 'to_xmpp', state, COUNT(*), NULL FROM to_xmpp GROUP BY state
            UNION ALL
            SELECT 'to_mail', state, COUNT(*), NULL FROM to_mail GROUP BY state
            UNION ALL
            SELECT 'to_xmpp', '', 0, MIN(created_at) FROM to_xmpp
                WHERE state = 'pending' AND next_attempt_at <= ?1
            UNION ALL
            SELECT 'to_mail', '', 0, MIN(created_at) FROM to_mail
                WHERE state = 'queued' AND next_attempt_at <= ?1
            ",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await
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
    use crate::store::{scratch, InboundMail};

    #[tokio::test]
    async fn counts_and_the_oldest_due_item() {
        let (store, _dir) = scratch().await;
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
        let later = Millis::now().after(Duration::from_secs(60));
        let gauges = store.queue_gauges(later).await.expect("gauges");
        assert_eq!(
            gauges.counts,
            vec![("to_xmpp".to_owned(), "pending".to_owned(), 1)]
        );
        let [(queue, age)] = gauges.oldest_due.as_slice() else {
            panic!("one queue with a due item: {:?}", gauges.oldest_due);
        };
        assert_eq!(queue, "to_xmpp");
        assert!(
            (Duration::from_secs(59)..Duration::from_secs(62)).contains(age),
            "{age:?}"
        );
    }
}
