//! The administrators' view of the queues against a scratch store.

use jid::BareJid;

use super::*;
use crate::store::testing::store_test;
use crate::store::{InboundMail, NewMail};

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("valid")
}

async fn one_of_each(store: &Store) -> (ItemId, ItemId) {
    let sender = jid("alice@example.test");
    let raw = b"Message-ID: <m1@example.test>\r\nSubject: Lunch?\r\n\r\nAt noon.\r\n";
    let mail = NewMail {
        sender: &sender,
        mail_from: "alice@example.test",
        rcpt: "bob@example.net",
        message_id: "<m1@example.test>",
        raw,
        stanza: "",
        submission: None,
    };
    let out = store.queue_mails(&[(mail, None)]).await.expect("queued")[0];
    let inbound = InboundMail {
        mail_from: "carol@example.net".into(),
        client_ip: "192.0.2.1".into(),
        raw: b"Message-ID: <in1@example.net>\r\nSubject: Hello\r\n\r\nHi.\r\n".to_vec(),
        recipients: vec![jid("alice@example.test")],
        ..InboundMail::default()
    };
    store.accept_mails(&[inbound]).await.expect("accepted");
    let to_xmpp = store.queue_list(10).await.expect("listed");
    let inbound = to_xmpp
        .iter()
        .find(|e| e.item.queue == Queue::ToXmpp)
        .expect("to_xmpp item")
        .item;
    (
        ItemId {
            queue: Queue::ToMail,
            id: out,
        },
        inbound,
    )
}

#[test]
fn item_ids_round_trip_and_bad_ones_are_refused() {
    let item: ItemId = "to_mail:42".parse().expect("item");
    assert_eq!(
        item,
        ItemId {
            queue: Queue::ToMail,
            id: 42
        }
    );
    assert_eq!(item.to_string(), "to_mail:42");
    assert_eq!(
        "to_xmpp:7".parse::<ItemId>().expect("item").queue,
        Queue::ToXmpp
    );
    for bad in [
        "42",
        "to_mail:",
        "to_mail:x",
        "to_mail:-1",
        "to_mail:0",
        "queue:1",
    ] {
        assert!(bad.parse::<ItemId>().is_err(), "{bad}");
    }
}

store_test! {
    async fn list_and_show_what_waits(store, scratch) {
        let (out, inbound) = one_of_each(&store).await;
        let listed = store.queue_list(10).await.expect("listed");
        assert_eq!(listed.len(), 2);
        let mail = listed
            .iter()
            .find(|e| e.item == out)
            .expect("to_mail listed");
        assert_eq!(
            (mail.state.as_str(), mail.from.as_str(), mail.to.as_str()),
            ("queued", "alice@example.test", "bob@example.net")
        );
        let shown = store.queue_show(out).await.expect("read").expect("shown");
        assert_eq!(shown.message_id, "m1@example.test");
        assert_eq!(shown.subject, "Lunch?");
        assert_eq!(shown.entry.size, 60);
        let shown = store
            .queue_show(inbound)
            .await
            .expect("read")
            .expect("shown");
        assert_eq!(
            (shown.entry.from.as_str(), shown.entry.to.as_str()),
            ("carol@example.net", "alice@example.test")
        );
        assert_eq!(
            (shown.message_id.as_str(), shown.subject.as_str()),
            ("in1@example.net", "Hello")
        );
        let missing = ItemId {
            queue: Queue::ToMail,
            id: out.id + 100,
        };
        assert_eq!(store.queue_show(missing).await.expect("read"), None);
        assert_eq!(store.queue_list(1).await.expect("listed").len(), 1);
    }
}

store_test! {
    async fn retry_makes_a_waiting_item_due_and_delete_gives_it_up(store, scratch) {
        let (out, inbound) = one_of_each(&store).await;
        let later = Millis::now().after(std::time::Duration::from_secs(3600));
        store.due_to_mail(Millis::now(), 100).await.expect("taken");
        store
            .apply_mail_outcomes(&[crate::store::MailOutcome::Retry {
                id: out.id,
                at: later,
                error: "451 busy".into(),
            }])
            .await
            .expect("deferred");
        let now = Millis::now();
        assert!(store.due_to_mail(now, 10).await.expect("due").is_empty());
        assert!(store.queue_retry(out, now).await.expect("retried"));
        assert_eq!(store.due_to_mail(now, 10).await.expect("due").len(), 1);

        assert!(store.queue_delete(out, now).await.expect("deleted"));
        assert!(store.due_to_mail(now, 10).await.expect("due").is_empty());
        let shown = store.queue_show(out).await.expect("read").expect("kept");
        assert_eq!(
            (shown.entry.state.as_str(), shown.entry.last_error.as_str()),
            ("failed", "Deleted by an administrator")
        );
        // A finished item is neither retried nor deleted again.
        assert!(!store.queue_retry(out, now).await.expect("read"));
        assert!(!store.queue_delete(out, now).await.expect("read"));

        assert!(store.queue_delete(inbound, now).await.expect("deleted"));
        assert!(store.due_to_xmpp(now, 10).await.expect("due").is_empty());
        let stats = store.stats().await.expect("stats");
        assert_eq!(
            stats.queues,
            vec![
                ("to_mail".to_owned(), "failed".to_owned(), 1),
                ("to_xmpp".to_owned(), "failed".to_owned(), 1),
            ]
        );
        assert_eq!(
            stats.oldest_waiting,
            vec![(Queue::ToXmpp, None), (Queue::ToMail, None)]
        );
    }
}
