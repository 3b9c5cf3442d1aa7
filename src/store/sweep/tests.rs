//! What a sweep removes and what it keeps, with the clock passed in.

use jid::BareJid;

use super::*;
use crate::store::testing::store_test;
use crate::store::{InboundMail, MailOutcome, MessageRecord, NewMail, SharedRecord};

const DAY: Duration = Duration::from_secs(24 * 3600);

const RETENTION: Retention = Retention {
    keep_finished: Duration::from_secs(7 * 24 * 3600),
    keep_threads: Duration::from_secs(365 * 24 * 3600),
};

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("jid")
}

async fn ids(store: &Store, table: &str) -> Vec<i64> {
    // Only the test's constant table names are formatted in.
    on_backend!(&store.pool, |pool| sqlx::query_scalar(sqlx::AssertSqlSafe(
        format!("SELECT id FROM {table} ORDER BY id")
    ))
    .fetch_all(pool)
    .await
    .expect("ids"))
}

async fn sweep(store: &Store, days: u32) -> Swept {
    store
        .sweep(
            Millis::now().after(DAY * days),
            &RETENTION,
            &CancellationToken::new(),
        )
        .await
        .expect("swept")
}

/// Four inbound mails: 1 delivered, 2 pending, 3 delivered with a link
/// to one of its attachments, 4 delivered (the newest).
async fn inbound(store: &Store) {
    let mail = InboundMail {
        mail_from: "bob@example.net".into(),
        client_ip: "127.0.0.1".into(),
        raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
        recipients: vec![jid("alice@example.test")],
        ..InboundMail::default()
    };
    let mails = store
        .accept_mails(&[mail.clone(), mail.clone(), mail.clone(), mail])
        .await
        .expect("accepted");
    assert_eq!(mails, [1, 2, 3, 4]);
    let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
    let delivered: Vec<i64> = due
        .iter()
        .filter(|item| !matches!(item.body, crate::store::ToXmppBody::Mail { mail_id: 2, .. }))
        .map(|item| item.id)
        .collect();
    store
        .to_xmpp_delivered(&delivered, &[], &[])
        .await
        .expect("delivered");
    let file = SharedRecord {
        sha256: "ab".into(),
        name: "r.pdf".into(),
        content_type: "application/pdf".into(),
        size: 9,
    };
    store.share_attachment(3, 0, &file).await.expect("shared");
}

/// Four outgoing mails: 1 sent, 2 failed, 3 queued, 4 sent (the newest);
/// and one thread record.
async fn outgoing(store: &Store) {
    let alice = jid("alice@example.test");
    let record = MessageRecord {
        user: alice.clone(),
        message_id: "m1@example.test".into(),
        peer: jid("bob\\40example.net@mail.example.test"),
        stanza_id: "s1".into(),
        author: alice.clone(),
        thread: "t1".into(),
        references: vec![],
    };
    let mut ids = Vec::new();
    for n in 1..=4 {
        let message_id = format!("m{n}@example.test");
        let mail = NewMail {
            sender: &alice,
            mail_from: "alice@example.test",
            rcpt: "bob@example.net",
            message_id: &message_id,
            raw: b"raw",
            stanza: "",
            submission: None,
        };
        let record = (n == 1).then_some(&record);
        ids.push(store.queue_mail(&mail, record).await.expect("queued"));
    }
    store.due_to_mail(Millis::now(), 100).await.expect("taken");
    store
        .apply_mail_outcomes(&[
            MailOutcome::Sent(ids[0]),
            MailOutcome::Failed {
                id: ids[1],
                error: "550 no".into(),
                notice: None,
            },
            MailOutcome::Sent(ids[3]),
        ])
        .await
        .expect("outcomes");
}

store_test! {
    async fn finished_items_go_after_keep_finished_and_pending_ones_stay(store, scratch) {
        inbound(&store).await;
        outgoing(&store).await;

        assert_eq!(sweep(&store, 6).await, Swept::default(), "all kept a week");

        let swept = sweep(&store, 8).await;
        assert_eq!(
            swept,
            Swept {
                to_xmpp: 2,
                to_mail: 2,
                inbound_mail: 1,
                messages: 0,
                xmpp_mail: 0,
                receipts: 0,
            }
        );
        // The pending delivery (of mail 2) and the newest row stay; the mail
        // with a link and the pending one keep their bytes.
        assert_eq!(ids(&store, "to_xmpp").await, [2, 4]);
        assert_eq!(ids(&store, "inbound_mail").await, [2, 3, 4]);
        assert_eq!(ids(&store, "to_mail").await, [3, 4]);
        assert_eq!(
            store.due_to_mail(Millis::now(), 10).await.expect("due")[0].id,
            3
        );
        assert_eq!(
            store.due_to_xmpp(Millis::now(), 10).await.expect("due")[0].id,
            2
        );

        // Once the link expires (the HTTP side's retention), the bytes go.
        store
            .expire_attachments(Millis::now().after(DAY))
            .await
            .expect("expired");
        assert_eq!(sweep(&store, 8).await.inbound_mail, 1);
        assert_eq!(ids(&store, "inbound_mail").await, [2, 4]);
    }
}

store_test! {
    async fn thread_metadata_has_its_own_retention(store, scratch) {
        outgoing(&store).await;
        let alice = jid("alice@example.test");
        assert_eq!(sweep(&store, 364).await.messages, 0);
        assert!(store
            .message_by_id(&alice, "m1@example.test")
            .await
            .expect("lookup")
            .is_some());
        assert_eq!(sweep(&store, 366).await.messages, 1);
        assert!(store
            .message_by_id(&alice, "m1@example.test")
            .await
            .expect("lookup")
            .is_none());
    }
}

store_test! {
    async fn a_sweep_goes_on_past_one_batch_and_stops_when_told(store, scratch) {
        let mail = InboundMail {
            mail_from: "bob@example.net".into(),
            client_ip: "127.0.0.1".into(),
            raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            recipients: vec![jid("alice@example.test")],
            ..InboundMail::default()
        };
        let many = vec![mail; 1201];
        store.accept_mails(&many).await.expect("accepted");
        let due = store.due_to_xmpp(Millis::now(), 2000).await.expect("due");
        let ids: Vec<i64> = due.iter().map(|item| item.id).collect();
        store
            .to_xmpp_delivered(&ids, &[], &[])
            .await
            .expect("delivered");
        let stopped = CancellationToken::new();
        stopped.cancel();
        let none = store
            .sweep(Millis::now().after(DAY * 8), &RETENTION, &stopped)
            .await
            .expect("swept");
        assert_eq!(none, Swept::default());
        let swept = sweep(&store, 8).await;
        assert_eq!((swept.to_xmpp, swept.inbound_mail), (1200, 1200));
    }
}

store_test! {
    async fn receipts_owed_go_once_their_mail_is_no_longer_queued(store, scratch) {
        outgoing(&store).await;
        let owed = |n: u32| crate::store::receipts::OwedReceipt {
            sender: "alice@example.test".into(),
            message_id: format!("m{n}@example.test"),
            rcpt: "bob@example.net".into(),
            stanza_id: format!("s{n}"),
            author_jid: "alice@example.test/phone".into(),
            contact_jid: "bob\\40example.net@mail.example.test".into(),
        };
        // Mail 2 failed, mail 3 is still queued.
        store.owe_receipts(&[owed(2), owed(3)]).await.expect("owed");

        assert_eq!(sweep(&store, 6).await.receipts, 0, "kept a week");
        assert_eq!(sweep(&store, 8).await.receipts, 1);
        let taken = |n: u32| {
            let store = store.clone();
            async move {
                store
                    .take_receipts("alice@example.test", &format!("m{n}@example.test"), "bob@example.net")
                    .await
                    .expect("taken")
            }
        };
        assert_eq!(taken(2).await, []);
        assert_eq!(taken(3).await, [owed(3)]);
    }
}

store_test! {
    async fn read_notifications_asked_for_go_with_the_thread_metadata(store, scratch) {
        let alice = jid::BareJid::new("alice@example.test").expect("jid");
        let peer = jid::BareJid::new("bob\\40example.net@mail.example.test").expect("jid");
        let request = crate::store::MdnRequest {
            user: alice.clone(),
            stanza_id: "facteur-1".into(),
            peer: peer.clone(),
            message_id: "dinner-1@example.net".into(),
            subject: "Dinner".into(),
            notify_to: "bob@example.net".into(),
            final_recipient: "alice@example.test".into(),
        };
        store.remember_mdn_request(&request).await.expect("remembered");
        let days = u32::try_from(RETENTION.keep_threads.as_secs() / DAY.as_secs()).expect("days");
        assert_eq!(sweep(&store, days - 1).await.messages, 0);
        assert_eq!(sweep(&store, days + 1).await.messages, 1);
        assert_eq!(
            store.take_mdn_request(&alice, &peer, "facteur-1").await.expect("taken"),
            None
        );
    }
}

store_test! {
    async fn where_imap_mail_lives_goes_with_the_thread_metadata(store, scratch) {
        use crate::store::{FolderStart, NewImapMailbox, Taken, TlsMode};
        let alice = BareJid::new("alice@example.test").expect("jid");
        let id = store
            .imap_attach(&NewImapMailbox {
                user: &alice,
                host: "imap.example.net",
                port: 993,
                tls: TlsMode::Implicit,
                username: "alice",
                password: b"sealed",
                folders: &[FolderStart { name: "INBOX".into(), uid_validity: 7, last_uid: 0 }],
                submission: None,
            })
            .await
            .expect("attached");
        let mail = InboundMail {
            mail_from: "bob@example.net".into(),
            raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            recipients: vec![alice.clone()],
            ..InboundMail::default()
        };
        for (uid, message_id) in [(1, "read@example.net"), (2, "unread@example.net")] {
            store
                .imap_take(id, "INBOX", 7, uid, Millis::now(), Taken::Mail(&mail, Some(message_id)))
                .await
                .expect("taken");
        }
        let read = facteur_bridge::threading::stanza_id_for_mail("read@example.net");
        assert_eq!(store.imap_seen_wanted(&alice, &read).await.expect("wanted"), Some(id));
        let days = u32::try_from(RETENTION.keep_threads.as_secs() / DAY.as_secs()).expect("days");
        assert_eq!(sweep(&store, days - 1).await.messages, 0);
        // The one whose \Seen is still to be set stays.
        assert_eq!(sweep(&store, days + 1).await.messages, 1);
        assert_eq!(store.imap_seen_to_set(id).await.expect("to set").len(), 1);
        let unread = facteur_bridge::threading::stanza_id_for_mail("unread@example.net");
        assert!(!store.imap_message_known(&alice, &unread).await.expect("known"));
    }
}
