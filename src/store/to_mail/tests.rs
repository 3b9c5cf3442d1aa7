//! The outgoing queue against a scratch store: queued once, failed once,
//! bounced once, and the XMPP runner woken for every notice.

use std::time::Duration;

use super::*;
use crate::store::testing::store_test;
use crate::store::xmpp_mail::Refused;
use crate::store::ToXmppBody;

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("valid")
}

fn mail(sender: &BareJid) -> NewMail<'_> {
    NewMail {
        sender,
        mail_from: "alice@example.test",
        rcpt: "bob@example.net",
        message_id: "m@x",
        raw: b"raw",
        stanza: "",
        submission: None,
    }
}

fn bounce(status: &str, diagnostic: &str) -> Bounce {
    Bounce {
        recipient: Some("bob@example.net".into()),
        status: Some(status.into()),
        diagnostic: diagnostic.into(),
        permanent: true,
        original_message_id: None,
    }
}

async fn woken(wait: impl std::future::Future<Output = ()>) -> bool {
    tokio::time::timeout(Duration::from_secs(2), wait)
        .await
        .is_ok()
}

store_test! {
    async fn failed_mail_queues_one_notice_and_wakes_the_xmpp_runner(store, scratch) {
        let sender = jid("alice@example.test");
        let id = store
            .queue_mail(&mail(&sender), None)
            .await
            .expect("queued");
        assert!(woken(store.to_mail_committed()).await);
        let notice = Notice::undelivered(
            &jid("mail.example.test"),
            "alice@example.test",
            "bob@example.net",
            "550 no",
        )
        .expect("notice");
        let failed = MailOutcome::Failed {
            id,
            error: "550 no".into(),
            notice: Some(notice),
        };
        store.due_to_mail(Millis::now(), 100).await.expect("taken");
        store
            .apply_mail_outcomes(std::slice::from_ref(&failed))
            .await
            .expect("failed");
        assert!(woken(store.to_xmpp_committed()).await);
        assert!(store
            .due_to_mail(Millis::now(), 10)
            .await
            .expect("due")
            .is_empty());
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 1);
        let ToXmppBody::Notice(notice) = &due[0].body else {
            panic!("not a notice: {:?}", due[0].body);
        };
        assert_eq!(notice.from, jid("bob\\40example.net@mail.example.test"));
        assert_eq!(
            notice.body,
            "Your mail to bob@example.net could not be delivered: 550 no"
        );
        // The same outcome again (a mail failed already) tells no one twice.
        store.apply_mail_outcomes(&[failed]).await.expect("again");
        assert_eq!(
            store
                .due_to_xmpp(Millis::now(), 10)
                .await
                .expect("due")
                .len(),
            1
        );
    }
}

store_test! {
    async fn the_same_stanza_is_queued_once(store, scratch) {
        let sender = jid("alice@example.test");
        let first = store
            .queue_mail(&mail(&sender), None)
            .await
            .expect("queued");
        assert!(woken(store.to_mail_committed()).await);
        assert_eq!(
            store
                .queue_mail(&mail(&sender), None)
                .await
                .expect("queued again"),
            first
        );
        assert!(
            !woken(store.to_mail_committed()).await,
            "nothing new to send"
        );
        let other = NewMail {
            rcpt: "carol@example.net",
            ..mail(&sender)
        };
        assert_ne!(store.queue_mail(&other, None).await.expect("queued"), first);
        assert_eq!(
            store
                .due_to_mail(Millis::now(), 10)
                .await
                .expect("due")
                .len(),
            2
        );
    }
}

store_test! {
    async fn a_bounce_tells_the_sender_once(store, scratch) {
        let alice = jid("alice@example.test");
        let gateway = jid("mail.example.test");
        let id = store.queue_mail(&mail(&alice), None).await.expect("queued");
        store
            .apply_mail_outcomes(&[MailOutcome::Sent(id)])
            .await
            .expect("sent");
        let bounce = bounce("5.1.1", "User unknown");
        let told = store
            .mail_bounced(id, &bounce, &gateway)
            .await
            .expect("first");
        assert_eq!(
            told,
            Some(Bounced {
                rcpt: "bob@example.net".into(),
                reason: "5.1.1 User unknown".into()
            })
        );
        assert!(woken(store.to_xmpp_committed()).await);
        assert_eq!(
            store
                .mail_bounced(id, &bounce, &gateway)
                .await
                .expect("second"),
            None
        );
        assert_eq!(
            store
                .mail_bounced(id + 100, &bounce, &gateway)
                .await
                .expect("unknown"),
            None
        );
        let counts = store.queue_counts().await.expect("counts");
        assert!(
            counts.contains(&("to_mail".into(), "failed".into(), 1)),
            "{counts:?}"
        );
        let due = store.due_to_xmpp(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 1);
        let ToXmppBody::Notice(notice) = &due[0].body else {
            panic!("not a notice: {:?}", due[0].body);
        };
        assert_eq!(notice.recipient, alice);
        assert_eq!(notice.subject, "Undelivered mail");
        assert_eq!(
            notice.body,
            "Your mail to bob@example.net could not be delivered: 5.1.1 User unknown"
        );
    }
}

#[test]
fn a_status_the_diagnostic_quotes_is_not_repeated() {
    assert_eq!(
        bounce_reason(&bounce("5.1.1", "550 5.1.1 User unknown")),
        "550 5.1.1 User unknown"
    );
    assert_eq!(
        bounce_reason(&bounce("5.2.2", "Mailbox full")),
        "5.2.2 Mailbox full"
    );
}

/// The queue's notices to XMPP users, as (recipient, body).
async fn notices(store: &Store) -> Vec<(String, String)> {
    store
        .due_to_xmpp(Millis::now().after(Duration::from_secs(60)), 100)
        .await
        .expect("due")
        .into_iter()
        .filter_map(|item| match item.body {
            ToXmppBody::Notice(notice) => Some((item.recipient, notice.body)),
            _ => None,
        })
        .collect()
}

store_test! {
    async fn a_route_once_taken_is_kept_and_late_errors_fail_or_reroute_xmpp_mail(store, scratch) {
        let sender = jid("alice@example.test");
        let gateway = jid("mail.example.test");
        let first = store
            .queue_mail(&mail(&sender), None)
            .await
            .expect("queued");
        let other = NewMail {
            rcpt: "carol@example.net",
            ..mail(&sender)
        };
        let second = store.queue_mail(&other, None).await.expect("queued");
        let items = store.due_to_mail(Millis::now(), 10).await.expect("due");
        assert!(items.iter().all(|i| i.route == MailRoute::Undecided));
        // Mail being delivered is not handed out again.
        let others = store
            .due_to_mail_except(Millis::now(), 10, &[first])
            .await
            .expect("due");
        assert_eq!(others.iter().map(|i| i.id).collect::<Vec<_>>(), [second]);
        let created: Vec<Millis> = items.iter().map(|i| i.created_at).collect();
        for id in [first, second] {
            store
                .apply_mail_outcomes(&[
                    MailOutcome::Routed {
                        id,
                        route: MailRoute::Xmpp,
                    },
                    MailOutcome::SentAsXmpp { id, told: None },
                ])
                .await
                .expect("sent");
        }
        // A temporary error: the mail is queued again, for SMTP, at once.
        let refused = store
            .xmpp_mail_refused(first, created[0], false, "wait", &gateway)
            .await
            .expect("refused");
        assert_eq!(refused, Refused::Rerouted);
        let due = store.due_to_mail(Millis::now(), 10).await.expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].id, due[0].route), (first, MailRoute::Smtp));
        // Not sent as XMPP any more: later errors for it change nothing.
        for permanent in [true, false] {
            let again = store
                .xmpp_mail_refused(first, created[0], permanent, "again", &gateway)
                .await
                .expect("refused");
            assert_eq!(again, Refused::Nothing);
        }
        // A permanent error fails the mail and tells its author once; an id
        // with another creation time is not this mail.
        let wrong = store
            .xmpp_mail_refused(second, Millis(1), true, "forbidden", &gateway)
            .await
            .expect("refused");
        assert_eq!(wrong, Refused::Nothing);
        for _ in 0..2 {
            store
                .xmpp_mail_refused(second, created[1], true, "forbidden", &gateway)
                .await
                .expect("refused");
        }
        assert_eq!(
            notices(&store).await,
            vec![(
                "alice@example.test".to_owned(),
                "Your mail to carol@example.net could not be delivered: forbidden".to_owned()
            )]
        );
    }
}

store_test! {
    async fn the_author_is_told_once_per_correspondent(store, scratch) {
        let sender = jid("alice@example.test");
        let told = |rcpt: &str| Told {
            peer: rcpt.to_owned(),
            notice: Notice {
                recipient: sender.clone(),
                from: jid("mail.example.test"),
                subject: "Mail over XMPP".into(),
                body: format!("{rcpt} reads mail over XMPP"),
            },
        };
        for (rcpt, message_id) in [
            ("bob@example.net", "m1@x"),
            ("bob@example.net", "m2@x"),
            ("carol@example.net", "m3@x"),
        ] {
            let mail = NewMail {
                rcpt,
                message_id,
                ..mail(&sender)
            };
            let id = store.queue_mail(&mail, None).await.expect("queued");
            store.due_to_mail(Millis::now(), 100).await.expect("taken");
            store
                .apply_mail_outcomes(&[MailOutcome::SentAsXmpp {
                    id,
                    told: Some(told(rcpt)),
                }])
                .await
                .expect("sent");
        }
        let bodies: Vec<String> = notices(&store).await.into_iter().map(|(_, b)| b).collect();
        assert_eq!(
            bodies,
            vec![
                "bob@example.net reads mail over XMPP".to_owned(),
                "carol@example.net reads mail over XMPP".to_owned()
            ]
        );
    }
}

store_test! {
    async fn a_rerouted_mail_goes_by_smtp_and_a_deferred_one_keeps_its_route(store, scratch) {
        let alice = jid("alice@example.test");
        let queued = store.queue_mail(&mail(&alice), None).await;
        let id = queued.expect("queued");
        store.due_to_mail(Millis::now(), 10).await.expect("due");
        let rerouted = vec![
            MailOutcome::Routed {
                id,
                route: MailRoute::Xmpp,
            },
            MailOutcome::Rerouted {
                id,
                error: "no gateway answers".into(),
            },
        ];
        let deferred = vec![MailOutcome::Retry {
            id,
            at: Millis::now(),
            error: "451 later".into(),
        }];
        // Either way tried again at once, by SMTP, one attempt more.
        for (outcomes, attempts) in [(rerouted, 1), (deferred, 2)] {
            store
                .apply_mail_outcomes(&outcomes)
                .await
                .expect("recorded");
            let due = store.due_to_mail(Millis::now(), 10).await.expect("due");
            assert_eq!(due.len(), 1);
            assert_eq!((due[0].route, due[0].attempts), (MailRoute::Smtp, attempts));
        }
    }
}
