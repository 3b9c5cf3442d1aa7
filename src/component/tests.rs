//! Tests of the link's timing and of the intake beside a fake link: a
//! `Link` that is never run, whose commands the test answers itself.

use std::sync::Arc;
use std::time::Duration;

use jid::BareJid;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza::Stanza;

use super::intake::Intake;
use super::*;
use crate::config::{Config, Live};
use crate::store::{Millis, Store, ToMailItem};

#[test]
fn reconnect_waits_grow_to_the_cap() {
    let max = Duration::from_secs(60);
    assert_eq!(reconnect_wait(1, max, 0.0), Duration::from_secs(1));
    assert_eq!(reconnect_wait(3, max, 0.0), Duration::from_secs(4));
    assert_eq!(reconnect_wait(30, max, 0.0), max);
    assert!(reconnect_wait(30, max, 0.99) >= max.mul_f64(0.75));
    assert_eq!(
        reconnect_wait(5, Duration::from_millis(500), 0.0),
        Duration::from_millis(500)
    );
}

fn config() -> Arc<Config> {
    Arc::new(
        Config::parse("[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n")
            .expect("config"),
    )
}

/// A user's server as seen through a link that is never run: vCard
/// requests for `silent` are never answered, every other user is called
/// by its local part capitalised.
fn fake_servers(link: Link, silent: BareJid) {
    let Link { mut commands, .. } = link;
    tokio::spawn(async move {
        let mut unanswered = Vec::new();
        while let Some(command) = commands.recv().await {
            let Command::Request { iq, done } = command else {
                continue;
            };
            let Some(user) = iq.to().map(|j| j.to_bare()) else {
                continue;
            };
            if user == silent {
                unanswered.push(done);
                continue;
            }
            let node = user.node().map(|n| n.as_str()).unwrap_or_default();
            let name = node[..1].to_uppercase() + &node[1..];
            let vcard = Element::builder("vCard", ns::VCARD)
                .append(Element::builder("FN", ns::VCARD).append(name).build())
                .build();
            let _ = done.send(Iq::Result {
                from: iq.to().cloned(),
                to: iq.from().cloned(),
                id: iq.id().to_owned(),
                payload: Some(vcard),
            });
        }
    });
}

fn chat(from: &str, body: &str) -> Stanza {
    let to = Jid::new("bob\\40example.net@mail.example.test").expect("jid");
    let mut message = Message::new_with_type(MessageType::Chat, Some(to))
        .with_body(Default::default(), body.to_owned());
    message.from = Some(Jid::new(from).expect("jid"));
    Stanza::Message(message)
}

/// The queued mail from `sender`, if any yet.
async fn queued_from(store: &Store, sender: &str) -> Option<ToMailItem> {
    let due = store.due_to_mail(Millis::now().after(Duration::from_secs(60)), 100);
    due.await
        .expect("store")
        .into_iter()
        .find(|item| item.mail_from == sender)
}

async fn wait_for_mail(store: &Store, sender: &str, within: Duration) -> Option<ToMailItem> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some(item) = queued_from(store, sender).await {
            return Some(item);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn from_header(item: &ToMailItem) -> String {
    String::from_utf8_lossy(&item.raw)
        .lines()
        .find(|l| l.starts_with("From:"))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_silent_server_delays_no_one_elses_mail() {
    let config = config();
    let (store, _dir) = crate::store::scratch().await;
    let alice = BareJid::new("alice@example.test").expect("jid");
    let carol = BareJid::new("carol@example.test").expect("jid");
    store.register(&alice).await.expect("register");
    store.register(&carol).await.expect("register");
    let (unused, _) = mpsc::channel(1);
    let (late_errors, _) = mpsc::channel(1);
    let (link, handle) = Link::new(Live::fixed(config.clone()), unused, late_errors);
    fake_servers(link, alice.clone());
    let tracker = TaskTracker::new();
    let intake = Intake::new(
        Live::fixed(config.clone()),
        store.clone(),
        handle,
        Arc::new(crate::dkim::Signers::load(&config.dkim).expect("signers")),
        crate::fetch::Fetcher::new(&config.http).expect("fetcher"),
        tracker.clone(),
        None,
    );
    let (stanzas, intake_rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    tracker.spawn(intake.run(intake_rx, shutdown.clone()));

    // Alice's server never answers; both mails come in one burst.
    stanzas
        .send(chat("alice@example.test/phone", "first"))
        .await
        .expect("send");
    stanzas
        .send(chat("carol@example.test/pc", "second"))
        .await
        .expect("send");

    let mail = wait_for_mail(&store, "carol@example.test", Duration::from_secs(1)).await;
    let mail = mail.expect("carol's mail queued while alice's lookup waits");
    assert_eq!(from_header(&mail), "From: \"Carol\" <carol@example.test>");
    assert!(
        queued_from(&store, "alice@example.test").await.is_none(),
        "alice's lookup is still pending"
    );

    // Once the wait is over, alice's mail goes out with what is known.
    let wait = lookups::LOOKUP_WAIT + Duration::from_secs(2);
    let mail = wait_for_mail(&store, "alice@example.test", wait).await;
    let mail = mail.expect("alice's mail queued without her name");
    assert_eq!(from_header(&mail), "From: <alice@example.test>");

    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
