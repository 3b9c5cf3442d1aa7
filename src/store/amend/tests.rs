//! Withdrawals against a scratch store (each database): a mail waiting for its retry is
//! withdrawn and never due again; one due now or sent has left; each
//! outcome tells the author once, or not at all.

use std::time::Duration;

use super::*;
use crate::store::testing::store_test;
use crate::store::to_mail::NewMail;
use crate::store::{MailOutcome, OwedReceipt, ToXmppBody};

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("valid")
}

async fn queued(store: &Store, author: &BareJid, message_id: &str) -> i64 {
    store
        .queue_mail(
            &NewMail {
                sender: author,
                mail_from: "alice@example.test",
                rcpt: "bob@example.net",
                message_id,
                raw: b"raw",
                stanza: "",
                submission: None,
            },
            None,
        )
        .await
        .expect("queued")
}

async fn notices(store: &Store) -> Vec<String> {
    store
        .due_to_xmpp(Millis::now(), 10)
        .await
        .expect("due")
        .into_iter()
        .filter_map(|item| match item.body {
            ToXmppBody::Notice(notice) => Some(notice.body),
            _ => None,
        })
        .collect()
}

store_test! {
    async fn a_mail_waiting_for_its_retry_is_withdrawn(store, scratch) {
        let alice = jid("alice@example.test");
        let bob = jid("bob\\40example.net@mail.example.test");
        let id = queued(&store, &alice, "m1@x").await;
        let retry = Millis::now().after(Duration::from_secs(600));
        store.due_to_mail(Millis::now(), 100).await.expect("taken");
        store
            .apply_mail_outcomes(&[MailOutcome::Retry {
                id,
                at: retry,
                error: "451 later".into(),
            }])
            .await
            .expect("deferred");
        store
            .owe_receipts(&[OwedReceipt {
                sender: alice.to_string(),
                message_id: "m1@x".into(),
                rcpt: "bob@example.net".into(),
                stanza_id: "s1".into(),
                author_jid: "alice@example.test/phone".into(),
                contact_jid: bob.to_string(),
            }])
            .await
            .expect("owed");
        let leaving_until = Millis::now().after(Duration::from_secs(5));
        let outcome = store
            .withdraw_mail(&alice, &bob, "bob@example.net", "m1@x", leaving_until)
            .await
            .expect("withdrawn");
        assert_eq!(outcome, Withdrawal::Withdrawn);
        // A mail that never leaves owes no receipt.
        assert!(store
            .take_receipts("alice@example.test", "m1@x", "bob@example.net")
            .await
            .expect("taken")
            .is_empty());
        assert!(store
            .due_to_mail(retry.after(Duration::from_secs(1)), 10)
            .await
            .expect("due")
            .is_empty());
        assert_eq!(
            notices(&store).await,
            ["Your retracted message to bob@example.net was still waiting to leave: it was withdrawn and not sent."]
        );
        // A second retraction finds it failed: nobody is told twice.
        let again = store
            .withdraw_mail(&alice, &bob, "bob@example.net", "m1@x", leaving_until)
            .await
            .expect("again");
        assert_eq!(again, Withdrawal::Failed);
        assert_eq!(notices(&store).await.len(), 1);
    }
}

store_test! {
    async fn a_mail_due_now_or_sent_cannot_be_unsent(store, scratch) {
        let alice = jid("alice@example.test");
        let bob = jid("bob\\40example.net@mail.example.test");
        queued(&store, &alice, "due@x").await;
        let sent = queued(&store, &alice, "sent@x").await;
        store.due_to_mail(Millis::now(), 100).await.expect("taken");
        store
            .apply_mail_outcomes(&[MailOutcome::Sent(sent)])
            .await
            .expect("sent");
        let leaving_until = Millis::now().after(Duration::from_secs(5));
        for message_id in ["due@x", "sent@x"] {
            let outcome = store
                .withdraw_mail(&alice, &bob, "bob@example.net", message_id, leaving_until)
                .await
                .expect("asked");
            assert_eq!(outcome, Withdrawal::Left, "{message_id}");
        }
        // Still due: the runner may hold it, and will send it.
        assert_eq!(
            store
                .due_to_mail(Millis::now(), 10)
                .await
                .expect("due")
                .len(),
            1
        );
        let told = notices(&store).await;
        assert_eq!(told.len(), 2);
        assert!(
            told.iter().all(|t| t.contains("mail cannot be unsent")),
            "{told:?}"
        );
        // Another author's Message-ID, or none queued: nothing, no one told.
        let outcome = store
            .withdraw_mail(
                &jid("eve@example.test"),
                &bob,
                "bob@example.net",
                "sent@x",
                leaving_until,
            )
            .await
            .expect("asked");
        assert_eq!(outcome, Withdrawal::Unknown);
        assert_eq!(notices(&store).await.len(), 2);
    }
}

store_test! {
    async fn a_correction_replaces_a_waiting_mail_else_is_queued_as_a_reply(store, scratch) {
        let alice = jid("alice@example.test");
        let bob = jid("bob\\40example.net@mail.example.test");
        let id = queued(&store, &alice, "orig@x").await;
        let retry = Millis::now().after(Duration::from_secs(600));
        store.due_to_mail(Millis::now(), 100).await.expect("taken");
        store
            .apply_mail_outcomes(&[MailOutcome::Retry {
                id,
                at: retry,
                error: "451 later".into(),
            }])
            .await
            .expect("deferred");
        let reply = NewMail {
            sender: &alice,
            mail_from: "alice@example.test",
            rcpt: "bob@example.net",
            message_id: "fix@x",
            raw: b"reply",
            stanza: "",
            submission: None,
        };
        let record = MessageRecord {
            user: alice.clone(),
            message_id: "fix@x".into(),
            peer: bob.clone(),
            stanza_id: "fix".into(),
            author: alice.clone(),
            thread: "t".into(),
            references: vec!["orig@x".into()],
        };
        let replacement = Replacement {
            message_id: "orig@x",
            raw: b"corrected",
            stanza: "",
        };
        let leaving_until = Millis::now().after(Duration::from_secs(5));
        let corrected = store
            .queue_correction(&replacement, &reply, &record, leaving_until)
            .await
            .expect("corrected");
        assert_eq!(corrected, Corrected::Replaced(id));
        let due = store
            .due_to_mail(retry.after(Duration::from_secs(1)), 10)
            .await
            .expect("due");
        assert_eq!(
            due.iter()
                .map(|m| (m.message_id.as_str(), m.raw.as_slice()))
                .collect::<Vec<_>>(),
            [("orig@x", b"corrected".as_slice())]
        );
        // Once it has left, the next correction is a mail of its own.
        store.due_to_mail(Millis::now(), 100).await.expect("taken");
        store
            .apply_mail_outcomes(&[MailOutcome::Sent(id)])
            .await
            .expect("sent");
        let corrected = store
            .queue_correction(&replacement, &reply, &record, leaving_until)
            .await
            .expect("corrected");
        let Corrected::Queued(reply_id) = corrected else {
            panic!("{corrected:?}");
        };
        assert_ne!(reply_id, id);
        let due = store.due_to_mail(Millis::now(), 10).await.expect("due");
        assert_eq!(
            due.iter()
                .map(|m| (m.message_id.as_str(), m.raw.as_slice()))
                .collect::<Vec<_>>(),
            [("fix@x", b"reply".as_slice())]
        );
        assert_eq!(
            store
                .message_by_stanza_id(&alice, "fix")
                .await
                .expect("found")
                .map(|m| m.references),
            Some(vec!["orig@x".to_owned()])
        );
    }
}
