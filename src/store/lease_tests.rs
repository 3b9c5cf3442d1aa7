//! Two instances on one store: an item taken by one is not taken by the
//! other while its lease lasts, an expired lease makes it due for the
//! other, the first one's late outcome then changes nothing, and renewal
//! keeps an item with its owner.

use std::time::Duration;

use jid::BareJid;

use super::testing::store_test;
use super::{InboundMail, MailOutcome, Millis, NewMail, Store};

const LEASE: Duration = Duration::from_secs(60);

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("valid")
}

async fn queue_one_mail(store: &Store) -> i64 {
    let sender = jid("alice@example.test");
    store
        .queue_mail(
            &NewMail {
                sender: &sender,
                mail_from: "alice@example.test",
                rcpt: "bob@example.net",
                message_id: "m@x",
                raw: b"raw",
                stanza: "",
                submission: None,
            },
            None,
        )
        .await
        .expect("queued")
}

async fn accept_one_mail(store: &Store) {
    store
        .accept_mails(&[InboundMail {
            mail_from: "bob@example.net".into(),
            client_ip: "127.0.0.1".into(),
            raw: b"Subject: hi\r\n\r\nhi\r\n".to_vec(),
            recipients: vec![jid("alice@example.test")],
            ..InboundMail::default()
        }])
        .await
        .expect("accepted");
}

/// The count of `queue` items in `state`.
async fn count(store: &Store, queue: &str, state: &str) -> i64 {
    store
        .queue_counts()
        .await
        .expect("counts")
        .into_iter()
        .find(|(q, s, _)| q == queue && s == state)
        .map_or(0, |(_, _, n)| n)
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> i64) -> Vec<i64> {
    items.iter().map(id).collect()
}

store_test! {
    async fn outgoing_mail_is_taken_by_one_instance_at_a_time(store, scratch) {
        let a = store.as_instance("a").with_lease(LEASE);
        let b = store.as_instance("b").with_lease(LEASE);
        let id = queue_one_mail(&a).await;
        let now = Millis::now();

        let taken = a.due_to_mail(now, 10).await.expect("due");
        assert_eq!(ids(&taken, |i| i.id), vec![id]);
        // Leased to a: not b's, but a takes it again (an attempt that
        // ended without an outcome).
        assert!(b.due_to_mail(now, 10).await.expect("due").is_empty());
        assert_eq!(ids(&a.due_to_mail(now, 10).await.expect("due"), |i| i.id), vec![id]);

        // a's lease runs out: b takes it.
        let later = now.after(LEASE + Duration::from_secs(1));
        assert_eq!(ids(&b.due_to_mail(later, 10).await.expect("due"), |i| i.id), vec![id]);
        assert!(a.due_to_mail(now, 10).await.expect("due").is_empty());

        // a's late outcomes change nothing: b owns the mail.
        a.apply_mail_outcomes(&[MailOutcome::Sent(id)]).await.expect("applied");
        a.apply_mail_outcomes(&[MailOutcome::Retry {
            id,
            at: now.after(Duration::from_secs(3600)),
            error: "late".into(),
        }])
        .await
        .expect("applied");
        a.apply_mail_outcomes(&[MailOutcome::Failed { id, error: "late".into(), notice: None }])
            .await
            .expect("applied");
        assert_eq!(count(&store, "to_mail", "queued").await, 1);
        assert_eq!(
            ids(&b.due_to_mail(later, 10).await.expect("due"), |i| i.attempts.into()),
            vec![0],
        );

        // b's outcome counts.
        b.apply_mail_outcomes(&[MailOutcome::Sent(id)]).await.expect("applied");
        assert_eq!(count(&store, "to_mail", "sent").await, 1);
        assert_eq!(count(&store, "to_mail", "queued").await, 0);
    }
}

store_test! {
    async fn a_deferred_mail_is_due_again_for_any_instance(store, scratch) {
        let a = store.as_instance("a").with_lease(LEASE);
        let b = store.as_instance("b").with_lease(LEASE);
        let id = queue_one_mail(&a).await;
        let now = Millis::now();
        assert_eq!(a.due_to_mail(now, 10).await.expect("due").len(), 1);
        a.apply_mail_outcomes(&[MailOutcome::Retry { id, at: now, error: "451".into() }])
            .await
            .expect("applied");
        let taken = b.due_to_mail(Millis::now(), 10).await.expect("due");
        assert_eq!(ids(&taken, |i| i.id), vec![id]);
        assert_eq!(taken[0].attempts, 1);
    }
}

store_test! {
    async fn renewal_keeps_an_outgoing_mail_with_its_instance(store, scratch) {
        let a = store.as_instance("a").with_lease(LEASE);
        let b = store.as_instance("b").with_lease(LEASE);
        let c = store.as_instance("c").with_lease(LEASE);
        queue_one_mail(&a).await;
        accept_one_mail(&a).await;
        // Taken with a lease that runs out in 10 s.
        let short = a.clone().with_lease(Duration::from_secs(10));
        let now = Millis::now();
        assert_eq!(short.due_to_mail(now, 10).await.expect("due").len(), 1);
        assert_eq!(short.due_to_xmpp(now, 10).await.expect("due").len(), 1);
        let soon = Millis::now().after(Duration::from_secs(30));
        // Unrenewed, it would be b's in 30 s; c has no lease to renew.
        assert_eq!(c.renew_leases().await.expect("renewed"), 0);
        assert_eq!(a.renew_leases().await.expect("renewed"), 2);
        assert!(b.due_to_mail(soon, 10).await.expect("due").is_empty());
        assert!(b.due_to_xmpp(soon, 10).await.expect("due").is_empty());
        // Renewed for one lease from now, not longer.
        let past = Millis::now().after(LEASE + Duration::from_secs(1));
        assert_eq!(b.due_to_mail(past, 10).await.expect("due").len(), 1);
        assert_eq!(b.due_to_xmpp(past, 10).await.expect("due").len(), 1);
    }
}

store_test! {
    async fn a_delivery_to_xmpp_is_taken_by_one_instance_at_a_time(store, scratch) {
        let a = store.as_instance("a").with_lease(LEASE);
        let b = store.as_instance("b").with_lease(LEASE);
        accept_one_mail(&a).await;
        accept_one_mail(&a).await;
        let now = Millis::now();

        // a takes one, b the other; neither takes the other's.
        let first = ids(&a.due_to_xmpp(now, 1).await.expect("due"), |i| i.id);
        let second = ids(&b.due_to_xmpp(now, 10).await.expect("due"), |i| i.id);
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
        assert_eq!(a.due_to_xmpp(now, 10).await.expect("due").len(), 1);

        // a's lease runs out: b takes a's too, and a's late outcomes
        // change nothing.
        let later = now.after(LEASE + Duration::from_secs(1));
        let both = ids(&b.due_to_xmpp(later, 10).await.expect("due"), |i| i.id);
        assert_eq!(both.len(), 2);
        a.to_xmpp_delivered(&first, &[], &[]).await.expect("applied");
        a.to_xmpp_retry(first[0], now, "late").await.expect("applied");
        a.to_xmpp_failed(first[0], "late", None).await.expect("applied");
        assert_eq!(count(&store, "to_xmpp", "pending").await, 2);
        assert!(a.due_to_xmpp(later, 10).await.expect("due").is_empty());

        // b's outcomes count.
        b.to_xmpp_delivered(&both, &[], &[]).await.expect("applied");
        assert_eq!(count(&store, "to_xmpp", "delivered").await, 2);
    }
}

store_test! {
    async fn a_restart_frees_the_leases_of_its_dead_predecessor_only(store, scratch) {
        let pid = std::process::id();
        let me = store.as_instance(&format!("host-a:{pid}:new"));
        let owners = [
            format!("host-a:{pid}:old"),   // this pid, earlier run: gone
            "host-a:999999999:x".to_owned(), // no such process: gone
            "host-a:1:x".to_owned(),         // a live process of this host
            "host-b:999999999:x".to_owned(), // another host: not ours to judge
        ];
        for (n, owner) in owners.iter().enumerate() {
            let sender = jid(&format!("user{n}@example.test"));
            store
                .queue_mail(
                    &NewMail {
                        sender: &sender,
                        mail_from: "alice@example.test",
                        rcpt: "bob@example.net",
                        message_id: "m@x",
                        raw: b"raw",
                        stanza: "",
                        submission: None,
                    },
                    None,
                )
                .await
                .expect("queued");
            let taken = store.as_instance(owner).due_to_mail(Millis::now(), 1).await.expect("due");
            assert_eq!(taken.len(), 1);
        }
        assert_eq!(me.release_dead_leases().await.expect("freed"), 2);
        let due = me.due_to_mail(Millis::now(), 10).await.expect("due");
        assert_eq!(
            due.iter().map(|i| i.sender.as_str()).collect::<Vec<_>>(),
            vec!["user0@example.test", "user1@example.test"]
        );
    }
}

store_test! {
    async fn a_delivery_given_back_is_due_at_once_for_another_instance(store, scratch) {
        let a = store.as_instance("a").with_lease(LEASE);
        let b = store.as_instance("b").with_lease(LEASE);
        accept_one_mail(&a).await;
        let now = Millis::now();
        let taken = ids(&a.due_to_xmpp(now, 10).await.expect("due"), |i| i.id);
        assert!(b.due_to_xmpp(now, 10).await.expect("due").is_empty());
        // b cannot give back what it does not hold.
        b.to_xmpp_release(&taken).await.expect("released");
        assert!(b.due_to_xmpp(now, 10).await.expect("due").is_empty());
        a.to_xmpp_release(&taken).await.expect("released");
        assert_eq!(ids(&b.due_to_xmpp(now, 10).await.expect("due"), |i| i.id), taken);
    }
}

store_test! {
    async fn work_leased_to_another_instance_is_due_when_its_lease_runs_out(store, scratch) {
        let a = store.as_instance("a").with_lease(LEASE);
        let b = store.as_instance("b").with_lease(LEASE);
        queue_one_mail(&a).await;
        accept_one_mail(&a).await;
        let now = Millis::now();
        assert_eq!(a.due_to_mail(now, 10).await.expect("due").len(), 1);
        assert_eq!(a.due_to_xmpp(now, 10).await.expect("due").len(), 1);

        // For b, nothing is due before a's leases run out: it sleeps until
        // then instead of asking the store again at once.
        let lease_end = Some(now.after(LEASE));
        assert_eq!(b.next_to_mail().await.expect("next"), lease_end);
        assert_eq!(b.next_to_xmpp().await.expect("next"), lease_end);
        // For a, what it leased is due as before.
        assert!(a.next_to_mail().await.expect("next") <= Some(now));
        assert!(a.next_to_xmpp().await.expect("next") <= Some(now));
    }
}

/// On PostgreSQL, a renewal does not wait for a row whose outcome another
/// transaction is committing: the two, locking rows in different orders,
/// could otherwise deadlock.
#[tokio::test]
async fn renewal_does_not_wait_for_an_outcome_being_committed() {
    use sqlx::{Connection, Executor};

    let scratch = super::testing::Scratch::new(super::Kind::Postgres).await;
    let a = scratch.open().await.as_instance("a").with_lease(LEASE);
    let sender = jid("alice@example.test");
    for message_id in ["m1@x", "m2@x"] {
        a.queue_mail(
            &NewMail {
                sender: &sender,
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
        .expect("queued");
    }
    let taken = a.due_to_mail(Millis::now(), 10).await.expect("due");
    assert_eq!(taken.len(), 2);
    let mut outcome = sqlx::PgConnection::connect(&scratch.url)
        .await
        .expect("connected");
    outcome.execute("BEGIN").await.expect("begun");
    outcome
        .execute(sqlx::AssertSqlSafe(format!(
            "UPDATE to_mail SET updated_at = 0 WHERE id = {}",
            taken[1].id
        )))
        .await
        .expect("row locked");
    let renewed = tokio::time::timeout(Duration::from_secs(5), a.renew_leases())
        .await
        .expect("the renewal waited for the locked row")
        .expect("renewed");
    assert_eq!(renewed, 1, "the locked row is skipped, the other renewed");
    outcome.execute("ROLLBACK").await.expect("rolled back");
    assert_eq!(a.renew_leases().await.expect("renewed"), 2);
}
