use facteur_policy::spam::{Thresholds, Verdict as SpamVerdict};
use jid::BareJid;

use super::*;
use crate::store::testing::store_test;
use crate::store::{InboundMail, MailSpam, RecipientSpam, ToXmppBody, Verdict};

fn jid(text: &str) -> BareJid {
    BareJid::new(text).expect("jid")
}

fn mail(recipients: &[(&BareJid, SpamVerdict)]) -> InboundMail {
    InboundMail {
        mail_from: "Spammer@Evil.test".into(),
        client_ip: "192.0.2.7".into(),
        raw: b"Message-ID: <m1@evil.test>\r\nSubject: Cheap\r\n\r\nbuy\r\n".to_vec(),
        recipients: recipients
            .iter()
            .filter(|(_, v)| *v != SpamVerdict::Quarantine)
            .map(|(r, _)| (*r).clone())
            .collect(),
        spam: MailSpam {
            message_id: "m1@evil.test".into(),
            subject: "Cheap".into(),
            tokens: vec![1, 2, 3],
            recipients: recipients
                .iter()
                .map(|(r, v)| RecipientSpam {
                    recipient: (*r).clone(),
                    points: 7.5,
                    reasons: "bayes:0.97".into(),
                    verdict: *v,
                })
                .collect(),
        },
        ..InboundMail::default()
    }
}

store_test! {
    async fn thresholds_are_stored_per_user(store, scratch) {
        let alice = jid("alice@example.test");
        assert_eq!(store.spam_thresholds(&alice).await.expect("read"), Thresholds::default());
        let low = Thresholds { mark: 1.0, quarantine: 0.0, reject: 2.5 };
        assert!(!store.set_spam_thresholds(&alice, &low).await.expect("set"), "not registered");
        store.register(&alice).await.expect("registered");
        assert_eq!(store.spam_thresholds(&alice).await.expect("read"), Thresholds::default());
        assert!(store.set_spam_thresholds(&alice, &low).await.expect("set"));
        assert_eq!(store.spam_thresholds(&alice).await.expect("read"), low);
    }
}

store_test! {
    async fn models_are_versioned_and_count_feedback(store, scratch) {
        assert_eq!(store.spam_model("").await.expect("read"), None);
        assert_eq!(store.spam_model_version("").await.expect("read"), 0);
        assert_eq!(store.save_spam_model("", b"one", 0).await.expect("saved"), 1);
        assert_eq!(store.save_spam_model("alice@example.test", b"a", 1).await.expect("saved"), 1);
        assert_eq!(store.save_spam_model("alice@example.test", b"ab", 1).await.expect("saved"), 2);
        let own = store.spam_model("alice@example.test").await.expect("read").expect("model");
        assert_eq!((own.bytes.as_slice(), own.feedbacks, own.version), (b"ab".as_slice(), 2, 2));
        assert_eq!(store.spam_model_version("").await.expect("read"), 1);
    }
}

store_test! {
    async fn quarantined_mail_is_held_then_released(store, scratch) {
        let alice = jid("alice@example.test");
        let bob = jid("bob@example.test");
        let ids = store
            .accept_mails(&[mail(&[(&alice, SpamVerdict::Quarantine), (&bob, SpamVerdict::Mark)])])
            .await
            .expect("accepted");
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 1, "only bob's is delivered");
        assert_eq!(due[0].recipient, "bob@example.test");
        let ToXmppBody::Mail { spam, .. } = &due[0].body else { panic!("a mail") };
        assert_eq!(spam.as_deref(), Some("7.5 bayes:0.97"));
        let held = store.held_mails(Some(&alice), false).await.expect("held");
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].sender.as_str(), held[0].subject.as_str(), held[0].mail_id), ("spammer@evil.test", "Cheap", ids[0]));
        assert!(store.held_mails(Some(&bob), false).await.expect("held").is_empty());
        // The held mail's bytes outlive the sweep of delivered mail.
        let recent = store.recent_mails(&alice, 10).await.expect("recent");
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].tokens, vec![1, 2, 3]);
        assert_eq!(recent[0].client_ip, "192.0.2.7");
        let by_id = store.recent_mail(&alice, None, Some("m1@evil.test")).await.expect("found");
        assert_eq!(by_id.map(|r| r.id), Some(recent[0].id));
        assert_eq!(store.recent_mail(&alice, None, Some("other@x")).await.expect("lookup"), None);
        // Another user cannot release it.
        assert_eq!(store.release_held(&bob, held[0].id).await.expect("release"), None);
        let released = store.release_held(&alice, held[0].id).await.expect("release");
        assert_eq!(released.map(|r| r.mail_id), Some(ids[0]));
        assert!(store.held_mails(Some(&alice), false).await.expect("held").is_empty());
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert!(due.iter().any(|d| d.recipient == "alice@example.test"));
        assert_eq!(store.release_held(&alice, held[0].id).await.expect("release"), None);
    }
}

store_test! {
    async fn held_mail_expires_and_digests_are_noted(store, scratch) {
        let alice = jid("alice@example.test");
        store.accept_mails(&[mail(&[(&alice, SpamVerdict::Quarantine)])]).await.expect("accepted");
        let held = store.held_mails(None, true).await.expect("held");
        assert_eq!(held.len(), 1);
        let notice = crate::store::Notice {
            recipient: alice.clone(),
            from: jid("mail.example.test"),
            subject: "Held".into(),
            body: "Held: Cheap".into(),
        };
        store.queue_digest(&notice, &[held[0].id]).await.expect("noted");
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert!(due.iter().any(|d| matches!(&d.body, ToXmppBody::Notice(n) if n.body == "Held: Cheap")));
        assert!(store.held_mails(None, true).await.expect("held").is_empty());
        assert_eq!(store.held_mails(None, false).await.expect("held").len(), 1);
        let long_ago = Millis::now().before(std::time::Duration::from_secs(3600));
        assert_eq!(store.expire_spam(long_ago).await.expect("expired"), 0);
        assert_eq!(store.expire_spam(Millis::now().after(std::time::Duration::from_secs(1))).await.expect("expired"), 1);
        assert!(store.held_mails(None, false).await.expect("held").is_empty());
        assert!(store.recent_mails(&alice, 10).await.expect("recent").is_empty());
    }
}

store_test! {
    async fn reports_count_distinct_users(store, scratch) {
        let users: Vec<BareJid> = ["a", "b", "c"].iter().map(|u| jid(&format!("{u}@example.test"))).collect();
        for (n, user) in users.iter().enumerate() {
            store.record_report(user, &format!("s{n}@Evil.test"), "", "192.0.2.9", Verdict::Spam).await.expect("recorded");
        }
        store.record_report(&users[0], "s0@evil.test", "", "", Verdict::Spam).await.expect("again");
        store.record_report(&users[2], "x@good.test", "", "192.0.2.9", Verdict::Ham).await.expect("ham");
        let listed = store.reports_by_distinct_users(3).await.expect("counted");
        assert_eq!(listed, vec![
            ("domain".to_owned(), "evil.test".to_owned()),
            ("ip".to_owned(), "192.0.2.9".to_owned()),
        ]);
        assert_eq!(store.reports_by_distinct_users(1).await.expect("counted").len(), 5);
        // Feedback without a known mail counts by address and domain.
        for user in &users {
            store.record_feedback(user, "X@Other.test", "m@other.test", Verdict::Spam).await.expect("recorded");
        }
        let listed = store.reports_by_distinct_users(3).await.expect("counted");
        assert_eq!(listed, vec![
            ("address".to_owned(), "x@other.test".to_owned()),
            ("domain".to_owned(), "evil.test".to_owned()),
            ("domain".to_owned(), "other.test".to_owned()),
            ("ip".to_owned(), "192.0.2.9".to_owned()),
        ]);
    }
}
