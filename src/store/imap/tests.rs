//! Attached mailboxes against a scratch store: attached again, detached,
//! mail taken once per UID in the transaction that queues it, resyncs,
//! and the pause after refused logins with its one notice.

use super::*;
use crate::store::testing::store_test;
use crate::store::ToXmppBody;
use facteur_bridge::threading::stanza_id_for_mail;

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("valid")
}

fn inbox(uid_validity: u32, last_uid: u32) -> FolderStart {
    FolderStart {
        name: "INBOX".into(),
        uid_validity,
        last_uid,
    }
}

async fn attach(store: &Store, folders: &[FolderStart], password: &[u8]) -> i64 {
    store
        .imap_attach(&NewImapMailbox {
            user: &jid("alice@example.test"),
            host: "imap.example.net",
            port: 993,
            tls: TlsMode::Implicit,
            username: "alice",
            password,
            folders,
            submission: None,
        })
        .await
        .expect("attached")
}

fn mail(id: &str) -> InboundMail {
    InboundMail {
        mail_from: "bob@example.net".into(),
        client_ip: "imap.example.net".into(),
        raw: format!("Message-ID: <{id}>\r\nSubject: x\r\n\r\nhi\r\n").into_bytes(),
        recipients: vec![jid("alice@example.test")],
        ..InboundMail::default()
    }
}

fn notice() -> Notice {
    Notice {
        recipient: jid("alice@example.test"),
        from: jid("mail.example.test"),
        subject: "Mailbox paused".into(),
        body: "Attach it again with the new password.".into(),
    }
}

store_test! {
    async fn a_mailbox_attached_again_keeps_what_was_taken(store, scratch) {
        let id = attach(&store, &[inbox(7, 41)], b"sealed-1").await;
        assert!(store
            .imap_take(id, "INBOX", 7, 42, Millis(1000), Taken::Skip)
            .await
            .expect("taken"));
        let sent = FolderStart { name: "Sent".into(), uid_validity: 3, last_uid: 9 };
        let again = attach(&store, &[inbox(7, 50), sent], b"sealed-2").await;
        assert_eq!(again, id);
        let listed = store.imap_mailboxes(None).await.expect("listed");
        assert_eq!(listed.len(), 1);
        let mailbox = &listed[0];
        assert_eq!(mailbox.password, b"sealed-2");
        assert_eq!(mailbox.folders, ["INBOX", "Sent"]);
        assert_eq!((mailbox.state, mailbox.tls, mailbox.port), (MailboxState::Active, TlsMode::Implicit, 993));
        assert!(!format!("{mailbox:?}").contains("sealed-2"));
        let folders = store.imap_folders(id).await.expect("folders");
        assert_eq!(
            folders.iter().map(|f| (f.name.as_str(), f.uid_validity, f.last_uid)).collect::<Vec<_>>(),
            [("INBOX", 7, 42), ("Sent", 3, 9)]
        );
        // Attached with INBOX alone: Sent is no longer followed.
        attach(&store, &[inbox(7, 0)], b"sealed-2").await;
        assert_eq!(store.imap_folders(id).await.expect("folders").len(), 1);
        assert!(store.imap_mailboxes(Some(&jid("bob@example.test"))).await.expect("none").is_empty());
        assert!(store
            .imap_detach(&jid("alice@example.test"), "imap.example.net", "alice")
            .await
            .expect("detached"));
        assert!(!store
            .imap_detach(&jid("alice@example.test"), "imap.example.net", "alice")
            .await
            .expect("detached"));
        assert!(store.imap_mailboxes(None).await.expect("listed").is_empty());
        assert!(store.imap_folders(id).await.expect("folders").is_empty());
    }
}

store_test! {
    async fn a_message_is_queued_once_with_its_folder_state(store, scratch) {
        let id = attach(&store, &[inbox(7, 10)], b"sealed").await;
        // Mail dated after the attach.
        let base = Millis::now().after(std::time::Duration::from_secs(3600)).0;
        let (t5, t6, t7) = (Millis(base + 5000), Millis(base + 6000), Millis(base + 7000));
        let one = mail("one@example.net");
        assert!(store.imap_take(id, "INBOX", 7, 11, t5, Taken::Mail(&one, None)).await.expect("taken"));
        // The same UID again (a crash before the follower knew), an older
        // UID, or a UID of another UIDVALIDITY: nothing is queued.
        let two = mail("two@example.net");
        for (validity, uid) in [(7, 11), (7, 3), (8, 12)] {
            assert!(!store.imap_take(id, "INBOX", validity, uid, t6, Taken::Mail(&two, None)).await.expect("not taken"));
        }
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 1);
        assert!(matches!(&due[0].body, ToXmppBody::Mail { raw, .. } if raw == &one.raw));
        let folder = &store.imap_folders(id).await.expect("folders")[0];
        assert_eq!((folder.last_uid, folder.last_date), (11, t5));

        // UIDVALIDITY changes: UIDs start again, mail after 5000 only.
        store.imap_resync(id, "INBOX", 8).await.expect("resync");
        let folder = &store.imap_folders(id).await.expect("folders")[0];
        assert_eq!((folder.uid_validity, folder.last_uid, folder.since_date), (8, 0, t5));
        assert!(store.imap_take(id, "INBOX", 8, 2, t7, Taken::Mail(&two, None)).await.expect("taken"));
        store.imap_caught_up(id, "INBOX", 8, 5).await.expect("caught up");
        let folder = &store.imap_folders(id).await.expect("folders")[0];
        assert_eq!((folder.last_uid, folder.last_date, folder.since_date), (5, t7, Millis(0)));
        assert_eq!(store.due_to_xmpp(Millis::now(), 10).await.expect("due").len(), 2);
    }
}

store_test! {
    async fn three_refused_logins_pause_with_one_notice(store, scratch) {
        let id = attach(&store, &[inbox(1, 0)], b"sealed").await;
        let reason = "Authentication failed.";
        assert_eq!(store.imap_login_refused(id, 3, reason, &notice()).await.expect("counted"), (1, false));
        store.imap_login_ok(id).await.expect("ok");
        for n in 1..=2 {
            assert_eq!(store.imap_login_refused(id, 3, reason, &notice()).await.expect("counted"), (n, false));
        }
        assert!(store.due_to_xmpp(Millis::now(), 10).await.expect("due").is_empty());
        assert_eq!(store.imap_login_refused(id, 3, reason, &notice()).await.expect("counted"), (3, true));
        // A paused mailbox counts nothing more and tells nothing more.
        assert_eq!(store.imap_login_refused(id, 3, reason, &notice()).await.expect("counted"), (0, false));
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 1);
        assert!(matches!(&due[0].body, ToXmppBody::Notice(n) if n.subject == "Mailbox paused"));
        let mailbox = &store.imap_mailboxes(None).await.expect("listed")[0];
        assert_eq!((mailbox.state, mailbox.reason.as_str(), mailbox.auth_failures), (MailboxState::Paused, reason, 3));
        // Attached again (the new password): active, nothing counted.
        attach(&store, &[inbox(1, 0)], b"sealed-new").await;
        let mailbox = &store.imap_mailboxes(None).await.expect("listed")[0];
        assert_eq!((mailbox.state, mailbox.auth_failures, mailbox.reason.as_str()), (MailboxState::Active, 0, ""));
    }
}

store_test! {
    async fn unregistering_detaches_the_users_mailboxes(store, scratch) {
        store.register(&jid("alice@example.test")).await.expect("registered");
        let id = attach(&store, &[inbox(1, 0)], b"sealed").await;
        assert!(store.unregister(&jid("alice@example.test")).await.expect("unregistered"));
        assert!(store.imap_mailboxes(None).await.expect("listed").is_empty());
        assert!(store.imap_folders(id).await.expect("folders").is_empty());
    }
}

store_test! {
    async fn a_mail_displayed_is_to_be_seen_once_on_its_folder(store, scratch) {
        let id = attach(&store, &[inbox(7, 10)], b"sealed").await;
        let date = Millis::now();
        let one = mail("one@example.net");
        assert!(store
            .imap_take(id, "INBOX", 7, 11, date, Taken::Mail(&one, Some("one-1@example.net")))
            .await
            .expect("taken"));
        let two = mail("two@example.net");
        assert!(store.imap_take(id, "INBOX", 7, 12, date, Taken::Mail(&two, None)).await.expect("taken"));
        let alice = jid("alice@example.test");
        let stanza_id = stanza_id_for_mail("one-1@example.net");
        assert!(store.imap_message_known(&alice, &stanza_id).await.expect("known"));
        assert!(!store.imap_message_known(&jid("bob@example.test"), &stanza_id).await.expect("known"));
        assert!(store.imap_seen_to_set(id).await.expect("to set").is_empty());

        let waker = store.imap_waker(id);
        assert_eq!(store.imap_seen_wanted(&alice, "mail-other").await.expect("wanted"), None);
        assert_eq!(store.imap_seen_wanted(&alice, &stanza_id).await.expect("wanted"), Some(id));
        // The follower is woken, even though it was not waiting yet.
        tokio::time::timeout(std::time::Duration::from_secs(1), waker.notified())
            .await
            .expect("woken");
        let wanted = SeenToSet {
            stanza_id: stanza_id.clone(),
            folder: "INBOX".into(),
            uid_validity: 7,
            uid: 11,
        };
        assert_eq!(store.imap_seen_to_set(id).await.expect("to set"), vec![wanted]);
        // A second marker for the same message: nothing more to do.
        assert_eq!(store.imap_seen_wanted(&alice, &stanza_id).await.expect("wanted"), None);
        store.imap_seen_set(id, std::slice::from_ref(&stanza_id)).await.expect("set");
        assert!(store.imap_seen_to_set(id).await.expect("to set").is_empty());
        assert_eq!(store.imap_seen_wanted(&alice, &stanza_id).await.expect("wanted"), None);
    }
}

store_test! {
    async fn an_answer_leaves_through_the_outgoing_server_of_the_mailbox_it_answers(store, scratch) {
        let alice = jid("alice@example.test");
        let outgoing = Submission {
            host: "smtp.example.net".into(),
            port: 587,
            tls: TlsMode::Starttls,
            username: "alice".into(),
            password: b"sealed-smtp".to_vec(),
            from: "alice@example.net".into(),
            sent_copy: false,
        };
        let id = store
            .imap_attach(&NewImapMailbox {
                user: &alice,
                host: "imap.example.net",
                port: 993,
                tls: TlsMode::Implicit,
                username: "alice",
                password: b"sealed",
                folders: &[inbox(7, 10)],
                submission: Some(&outgoing),
            })
            .await
            .expect("attached");
        let [stored] = &store.imap_mailboxes(Some(&alice)).await.expect("read")[..] else {
            panic!("one mailbox");
        };
        let back = stored.submission.as_ref().expect("an outgoing server");
        assert_eq!(
            (back.host.as_str(), back.port, back.tls, back.username.as_str(), &back.password[..]),
            ("smtp.example.net", 587, TlsMode::Starttls, "alice", &b"sealed-smtp"[..])
        );
        assert_eq!((back.from.as_str(), back.sent_copy), ("alice@example.net", false));
        assert!(!format!("{stored:?}").contains("sealed-smtp"));

        let one = mail("one@example.net");
        assert!(store
            .imap_take(id, "INBOX", 7, 11, Millis::now(), Taken::Mail(&one, Some("one@example.net")))
            .await
            .expect("taken"));
        // The answered mail, or one it refers to, came from the mailbox.
        let route = |ids: &'static [&'static str]| {
            let store = store.clone();
            let alice = alice.clone();
            async move { store.imap_answer_route(&alice, ids).await.expect("route").map(|m| m.id) }
        };
        assert_eq!(route(&["one@example.net"]).await, Some(id));
        assert_eq!(route(&["mine@example.test", "one@example.net"]).await, Some(id));
        assert_eq!(route(&["other@example.net"]).await, None);
        assert_eq!(
            store.imap_answer_route(&jid("bob@example.test"), &["one@example.net"]).await.expect("route").map(|m| m.id),
            None
        );

        // Attached again without an outgoing server: answers take the
        // normal route.
        attach(&store, &[inbox(7, 10)], b"sealed").await;
        assert!(store.imap_mailboxes(Some(&alice)).await.expect("read")[0].submission.is_none());
        assert_eq!(route(&["one@example.net"]).await, None);
    }
}

store_test! {
    async fn a_mail_reported_as_spam_is_to_be_moved_to_junk_once(store, scratch) {
        let id = attach(&store, &[inbox(7, 10)], b"sealed").await;
        let one = mail("one@example.net");
        assert!(store
            .imap_take(id, "INBOX", 7, 11, Millis::now(), Taken::Mail(&one, Some("one@example.net")))
            .await
            .expect("taken"));
        let alice = jid("alice@example.test");
        let waker = store.imap_waker(id);
        assert_eq!(store.imap_junk_wanted(&alice, "other@example.net").await.expect("wanted"), None);
        assert!(store.imap_junk_to_move(id).await.expect("to move").is_empty());
        assert_eq!(store.imap_junk_wanted(&alice, "<one@example.net>").await.expect("wanted"), Some(id));
        tokio::time::timeout(std::time::Duration::from_secs(1), waker.notified())
            .await
            .expect("woken");
        let stanza_id = stanza_id_for_mail("one@example.net");
        assert_eq!(
            store.imap_junk_to_move(id).await.expect("to move"),
            vec![JunkToMove { stanza_id: stanza_id.clone(), folder: "INBOX".into(), uid_validity: 7, uid: 11 }]
        );
        // Reported again: nothing more to do.
        assert_eq!(store.imap_junk_wanted(&alice, "one@example.net").await.expect("wanted"), None);
        store.imap_junk_moved(id, std::slice::from_ref(&stanza_id)).await.expect("moved");
        assert!(store.imap_junk_to_move(id).await.expect("to move").is_empty());
        // \Seen is another matter: still wanted when displayed.
        assert_eq!(store.imap_seen_wanted(&alice, &stanza_id).await.expect("wanted"), Some(id));
    }
}
