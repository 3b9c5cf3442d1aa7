//! The retry of deliveries to XMPP follows `[xmpp]`, not `[outbound]`.

use super::*;
use crate::store::{scratch, InboundMail};

/// A runner whose link never comes up: `retry` is called by hand.
async fn runner(config: &str) -> (ToXmpp, tempfile::TempDir) {
    let config = Arc::new(Config::parse(config).expect("config"));
    let (store, dir) = scratch().await;
    let (intake, _) = tokio::sync::mpsc::channel(1);
    let (_link, link) = crate::component::Link::new(config.clone(), intake);
    let runner = ToXmpp {
        config,
        store,
        files: FileStore::new(&dir.path().join("files")),
        link,
    };
    (runner, dir)
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
    let mail = InboundMail {
        mail_from: "bob@example.net".into(),
        raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
        recipients: vec![BareJid::new("alice@example.test").expect("jid")],
        ..InboundMail::default()
    };
    runner.store.accept_mails(&[mail]).await.expect("accepted");
    let due = runner
        .store
        .due_to_xmpp(Millis::now(), 10)
        .await
        .expect("due");
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
