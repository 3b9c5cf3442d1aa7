//! The inbound queue against a scratch store: accepted, delivered,
//! deferred, failed with its report, and the runners woken.

use std::time::Duration;

use super::*;
use crate::store::testing::store_test;

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("valid")
}

fn mail_to(recipients: &[&str]) -> InboundMail {
    InboundMail {
        mail_from: "bob@example.net".into(),
        client_ip: "127.0.0.1".into(),
        raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
        recipients: recipients.iter().map(|r| jid(r)).collect(),
        ..InboundMail::default()
    }
}

store_test! {
    async fn deliveries_in_flight_are_not_taken_again(store, scratch) {
        store
            .accept_mails(&vec![mail_to(&["alice@example.test"]); 3])
            .await
            .expect("accepted");
        let first = store.due_to_xmpp_except(Millis::now(), 2, &[]).await.expect("due");
        assert_eq!(first.len(), 2);
        let busy: Vec<i64> = first.iter().map(|item| item.id).collect();
        // Sent and waiting for the server: only the third is taken.
        let next = store.due_to_xmpp_except(Millis::now(), 10, &busy).await.expect("due");
        assert_eq!(next.iter().map(|item| item.id).collect::<Vec<_>>(), vec![busy[1] + 1]);
        // A batch that ended without an outcome is taken again.
        let again = store.due_to_xmpp_except(Millis::now(), 10, &[]).await.expect("due");
        assert_eq!(again.len(), 3);
    }
}

store_test! {
    async fn inbound_mail_waits_until_delivered(store, scratch) {
        let mail = mail_to(&["alice@example.test", "carol@example.test"]);
        let ids = store
            .accept_mails(&[mail.clone(), mail])
            .await
            .expect("accepted");
        assert_eq!(ids.len(), 2);
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 4);
        // Mail by mail, recipient by recipient, in the order they came.
        let order: Vec<(i64, &str)> = due
            .iter()
            .map(|item| match &item.body {
                ToXmppBody::Mail { mail_id, .. } => (*mail_id, item.recipient.as_str()),
                ToXmppBody::Notice(_) | ToXmppBody::Receipt(_) => panic!("a mail"),
            })
            .collect();
        assert_eq!(
            order,
            [
                (ids[0], "alice@example.test"),
                (ids[0], "carol@example.test"),
                (ids[1], "alice@example.test"),
                (ids[1], "carol@example.test"),
            ]
        );
        store
            .to_xmpp_delivered(&[due[2].id, due[3].id], &[], &[])
            .await
            .expect("delivered");
        store
            .to_xmpp_delivered(&[due[0].id], &[], &[])
            .await
            .expect("delivered");
        store
            .to_xmpp_retry(
                due[1].id,
                Millis::now().after(Duration::from_secs(60)),
                "wait",
            )
            .await
            .expect("retry");
        assert!(store
            .due_to_xmpp(Millis::now(), 10)
            .await
            .expect("due")
            .is_empty());
        let next = store
            .next_to_xmpp()
            .await
            .expect("next")
            .expect("one pending");
        assert!(next > Millis::now());
        let counts = store.queue_counts().await.expect("counts");
        assert_eq!(
            counts,
            [
                ("to_xmpp".into(), "delivered".into(), 3),
                ("to_xmpp".into(), "pending".into(), 1)
            ]
        );
    }
}

store_test! {
    async fn accepted_mail_wakes_the_runner(store, scratch) {
        let woken = tokio::time::timeout(Duration::from_millis(50), store.to_xmpp_committed());
        assert!(woken.await.is_err(), "nothing was committed yet");
        store
            .accept_mails(&[mail_to(&["alice@example.test"])])
            .await
            .expect("accepted");
        // Committed before anyone waited: the wake-up is kept.
        tokio::time::timeout(Duration::from_secs(5), store.to_xmpp_committed())
            .await
            .expect("woken");
    }
}

store_test! {
    async fn a_failed_delivery_queues_its_report_once_and_wakes_the_mail_runner(store, scratch) {
        store
            .accept_mails(&[mail_to(&["alice@example.test"])])
            .await
            .expect("accepted");
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        let gateway = jid("mail.example.test");
        let report = NewMail {
            sender: &gateway,
            mail_from: "",
            rcpt: "bob@example.net",
            message_id: "report-1@mx.example.test",
            raw: b"report",
            stanza: "",
            submission: None,
        };
        store
            .to_xmpp_failed(due[0].id, "gone", Some(&report))
            .await
            .expect("failed");
        tokio::time::timeout(Duration::from_secs(5), store.to_mail_committed())
            .await
            .expect("woken");
        store
            .to_xmpp_failed(due[0].id, "gone", Some(&report))
            .await
            .expect("failed again");
        let counts = store.queue_counts().await.expect("counts");
        assert!(
            counts.contains(&("to_mail".into(), "queued".into(), 1)),
            "{counts:?}"
        );
        assert!(
            counts.contains(&("to_xmpp".into(), "failed".into(), 1)),
            "{counts:?}"
        );
    }
}

store_test! {
    async fn a_mail_accepted_again_is_delivered_once_per_recipient(store, scratch) {
        let with_id = |id: &str, recipients: &[&str]| InboundMail {
            raw: format!("Message-ID: <{id}>\r\nSubject: x\r\n\r\nhi\r\n").into_bytes(),
            ..mail_to(recipients)
        };
        let due = |store: Store| async move {
            let mut due: Vec<(String, String)> = store
                .due_to_xmpp(Millis::now(), 100)
                .await
                .expect("due")
                .into_iter()
                .map(|item| match item.body {
                    ToXmppBody::Mail { raw, .. } => {
                        let first = String::from_utf8_lossy(&raw).lines().next().map(str::to_owned);
                        (item.recipient, first.unwrap_or_default())
                    }
                    ToXmppBody::Notice(_) | ToXmppBody::Receipt(_) => panic!("a notice"),
                })
                .collect();
            due.sort();
            due
        };
        store
            .accept_mails(&[with_id("m1@x", &["alice@example.test"])])
            .await
            .expect("accepted");
        // Again (a retry to another instance), in one group with others:
        // alice has it already, carol not; m2 is another mail.
        store
            .accept_mails(&[
                with_id("m1@x", &["alice@example.test", "carol@example.test"]),
                with_id("m2@x", &["alice@example.test"]),
            ])
            .await
            .expect("accepted");
        // Delivered since: still not queued again.
        let first = store.due_to_xmpp(Millis::now(), 1).await.expect("due");
        store.to_xmpp_delivered(&[first[0].id], &[], &[]).await.expect("delivered");
        store
            .accept_mails(&[with_id("m1@x", &["alice@example.test"])])
            .await
            .expect("accepted");
        // Mail without a Message-ID is never taken for another.
        store
            .accept_mails(&[mail_to(&["alice@example.test"]), mail_to(&["alice@example.test"])])
            .await
            .expect("accepted");
        assert_eq!(
            due(store.clone()).await,
            vec![
                ("alice@example.test".to_owned(), "Message-ID: <m2@x>".to_owned()),
                ("alice@example.test".to_owned(), "Subject: x".to_owned()),
                ("alice@example.test".to_owned(), "Subject: x".to_owned()),
                ("carol@example.test".to_owned(), "Message-ID: <m1@x>".to_owned()),
            ]
        );
    }
}
