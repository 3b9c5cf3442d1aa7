//! The retry of deliveries to XMPP follows `[xmpp]`, not `[outbound]`;
//! what threads an answer is stored before the stanza leaves.

use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::store::{scratch, InboundMail};

/// A runner whose link never comes up: `retry` is called by hand.
async fn runner(config: &str) -> (ToXmpp, tempfile::TempDir) {
    let config = Arc::new(Config::parse(config).expect("config"));
    let (store, dir) = scratch().await;
    let (intake, _) = tokio::sync::mpsc::channel(1);
    let (late_errors, _) = tokio::sync::mpsc::channel(1);
    let config = Live::fixed(config);
    let (_link, link) = crate::component::Link::new(config.clone(), intake, late_errors);
    let runner = ToXmpp {
        config,
        store,
        files: FileStore::new(&dir.path().join("files")),
        link,
    };
    (runner, dir)
}

/// Accepts one mail from bob to alice; its delivery, now due.
async fn accepted(runner: &ToXmpp, raw: &[u8]) -> Vec<ToXmppItem> {
    let mail = InboundMail {
        mail_from: "bob@example.net".into(),
        raw: raw.to_vec(),
        recipients: vec![BareJid::new("alice@example.test").expect("jid")],
        ..InboundMail::default()
    };
    runner.store.accept_mails(&[mail]).await.expect("accepted");
    runner
        .store
        .due_to_xmpp(Millis::now(), 10)
        .await
        .expect("due")
}

#[tokio::test]
async fn a_refused_stanza_waits_as_xmpp_retry_keys_say() {
    let (runner, _dir) = runner(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"example.test\"]\n\
         [outbound]\nretry_initial = \"1h\"\nretry_max = \"1h\"\n\
         [xmpp]\nretry_initial = \"10s\"\nretry_max = \"10s\"\n",
    )
    .await;
    let due = accepted(&runner, b"Subject: x\r\n\r\nhi\r\n").await;
    let before = Millis::now();
    runner
        .retry(&due[0], "resource-constraint")
        .await
        .expect("stored");
    let next = runner
        .store
        .next_to_xmpp()
        .await
        .expect("store")
        .expect("still pending");
    // 10 s and up to a tenth more of jitter; [outbound] would say an hour.
    let wait = next.since(before);
    assert!(
        wait >= Duration::from_secs(10) && wait <= Duration::from_secs(12),
        "{wait:?}"
    );
}

#[tokio::test]
async fn an_answer_finds_its_mail_before_the_server_confirms_it() {
    let (runner, _dir) = runner(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"example.test\"]\n",
    )
    .await;
    let alice = BareJid::new("alice@example.test").expect("jid");
    let due = accepted(
        &runner,
        b"From: bob@example.net\r\nMessage-ID: <m1@example.net>\r\nSubject: x\r\n\r\nhi\r\n",
    )
    .await;
    let store = runner.store.clone();
    // The link never runs: the server never confirms the stanza.
    let batch = tokio::spawn(async move { runner.deliver_batch(due).await });
    let stanza_id = stanza_id_for_mail("m1@example.net");
    let mut found = None;
    for _ in 0..100 {
        found = store
            .message_by_stanza_id(&alice, &stanza_id)
            .await
            .expect("store");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    batch.abort();
    let found = found.expect("the mail is known before the server confirms it");
    assert_eq!(found.message_id, "m1@example.net");
}

#[tokio::test]
async fn a_handoff_reaches_its_user_from_the_authors_contact_without_auth() {
    use crate::component::handoff::{stated, to_mail};
    use crate::store::NewHandoff;

    let (runner, _dir) = runner(
        "[component]\njid = \"mail.b.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"b.test\"]\n",
    )
    .await;
    let xml = "<message xmlns='jabber:component:accept' type='normal' from='mail.a.test' \
        to='mail.b.test' id='mail-5f2c'><subject>Lunch</subject><body>At noon?</body>\
        <addresses xmlns='http://jabber.org/protocol/address'>\
        <address type='ofrom' jid='alice@a.test'/><address type='to' jid='bob@b.test'/>\
        </addresses><mail xmlns='urn:xmpp:mail:0' message-id='abc@a.test' date='1764547200'>\
        <auth spf='pass' dkim='pass' dmarc='pass' arc='none'/></mail></message>";
    let element: xmpp_parsers::minidom::Element = xml.parse().expect("xml");
    let message = Message::try_from(element).expect("message");
    let stated = stated(&message).expect("a handoff");
    let gateway = BareJid::new("mail.a.test").expect("jid");
    let (message_id, raw) = to_mail(
        &message,
        &stated,
        &gateway,
        &runner.config.get(),
        1_764_547_300,
    )
    .expect("mail");
    runner
        .store
        .accept_handoff(&NewHandoff {
            author: &stated.ofrom,
            message_id: &message_id,
            rcpt: &stated.rcpt,
            gateway: &gateway,
            raw: &raw,
        })
        .await
        .expect("taken");
    let due = runner
        .store
        .due_to_xmpp(Millis::now(), 10)
        .await
        .expect("due");
    let Ok(made) = runner.stanza(&due[0]).await else {
        panic!("a stanza");
    };
    let stanza = String::from(&xmpp_parsers::minidom::Element::from(made.message));
    assert!(
        stanza.contains("from='alice\\40a.test@mail.b.test'") && stanza.contains("to='bob@b.test'"),
        "{stanza}"
    );
    assert!(
        stanza.contains("<mail xmlns='urn:xmpp:mail:0' date='1764547200' message-id='abc@a.test'"),
        "{stanza}"
    );
    // The sender's claim of SPF and DKIM results is not passed on (§9.3).
    assert!(!stanza.contains("<auth"), "{stanza}");
    assert!(stanza.contains("<body>At noon?"), "{stanza}");
}
