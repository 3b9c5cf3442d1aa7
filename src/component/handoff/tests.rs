//! Handoffs: the shape checks, their order, the mail made, and what is
//! committed and answered once the author's domain has been asked.

use std::time::Duration;

use mail_parser::MessageParser;

use super::*;
use crate::store::{scratch, ToXmppBody};

const GATEWAY: &str = "[component]\njid = \"mail.b.test\"\nsecret = \"s\"\n\
    [mail]\ndomains = [\"b.test\"]\n[xmpp_mail]\nstep_timeout = \"50ms\"\nmax_size = 4096\n";

fn config() -> Arc<Config> {
    Arc::new(Config::parse(GATEWAY).expect("config"))
}

/// A handoff from mail.a.test as §7.2 shows it; `addresses` and `mail`
/// are the XML of those elements.
fn handoff_with(addresses: &str, mail: &str) -> Message {
    let xml = format!(
        "<message xmlns='jabber:component:accept' type='normal' from='mail.a.test' \
         to='mail.b.test' id='mail-5f2c'>\
         <subject>Lunch</subject><body>Shall we meet at noon?</body><thread>9b1e</thread>\
         <addresses xmlns='http://jabber.org/protocol/address'>{addresses}</addresses>\
         <origin-id xmlns='urn:xmpp:sid:0' id='mail-5f2c'/>{mail}\
         <request xmlns='urn:xmpp:receipts'/></message>"
    );
    let element: Element = xml.parse().expect("xml");
    Message::try_from(element).expect("message")
}

const ADDRESSES: &str = "<address type='ofrom' jid='alice@a.test' desc='Alice A.'/>\
    <address type='to' jid='bob@b.test'/>";
const MAIL: &str = "<mail xmlns='urn:xmpp:mail:0' message-id='abc@a.test' date='1764547200'>\
    <in-reply-to>&lt;parent@b.test&gt;</in-reply-to>\
    <references>&lt;root@a.test&gt; &lt;parent@b.test&gt;</references></mail>";

fn handoff() -> Message {
    handoff_with(ADDRESSES, MAIL)
}

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("jid")
}

/// Handoffs taken by a gateway for b.test whose link never comes up:
/// every question to another server goes unanswered.
async fn handoffs() -> (Arc<Handoffs>, tempfile::TempDir) {
    let config = config();
    let (store, dir) = scratch().await;
    let (intake, _) = tokio::sync::mpsc::channel(1);
    let (late_errors, _) = tokio::sync::mpsc::channel(1);
    let live = crate::config::Live::fixed(config.clone());
    let (_link, link) = crate::component::Link::new(live.clone(), intake, late_errors);
    let handoffs = Handoffs {
        discovery: Discovery {
            own: config.component.jid.clone().into(),
            link: link.clone(),
            step: Duration::from_millis(50),
        },
        config: live,
        store,
        link,
        tracker: TaskTracker::new(),
    };
    (Arc::new(handoffs), dir)
}

/// What mail.a.test's domain was found to say of it, kept in the store.
async fn listing(handoffs: &Handoffs, status: AnswerStatus) {
    let answer = Answer {
        status,
        gateway: "mail.a.test".into(),
        max_size: 0,
        handoff: false,
        expires_at: Millis::now().after(Duration::from_secs(60)),
    };
    handoffs
        .store
        .remember_xmpp_mail_answer(AnswerKind::Lists, "a.test mail.a.test", &answer)
        .await
        .expect("kept");
}

fn xml(message: &Message) -> String {
    String::from(&Element::from(message.clone()))
}

fn assert_error(reply: Option<Message>, type_: &str, condition: &str) {
    let reply = reply.expect("an error");
    let xml = xml(&reply);
    assert!(xml.contains("type='error'"), "{xml}");
    assert!(xml.contains(&format!("type='{type_}'")), "{xml}");
    assert!(xml.contains(&format!("<{condition} ")), "{xml}");
    assert!(xml.contains("id='mail-5f2c'"), "{xml}");
}

#[test]
fn a_handoff_is_told_from_users_messages() {
    let config = config();
    assert!(is_handoff(&config, &handoff()));
    let mut to_contact = handoff();
    to_contact.to = Some(jid("alice\\40a.test@mail.b.test").into());
    assert!(!is_handoff(&config, &to_contact), "mail to a contact");
    let mut plain = handoff();
    plain
        .payloads
        .retain(|p| !p.is("addresses", NS_ADDRESS) && !p.is("mail", NS_MAIL));
    assert!(!is_handoff(&config, &plain), "a chat with the gateway");
}

#[test]
fn the_stanza_states_author_recipient_and_mail() {
    let stated = stated(&handoff()).expect("well-formed");
    assert_eq!(stated.ofrom, jid("alice@a.test"));
    assert_eq!(stated.ofrom_name.as_deref(), Some("Alice A."));
    assert_eq!(stated.rcpt, jid("bob@b.test"));
    assert_eq!(
        stated.mail,
        MailMeta {
            message_id: Some("abc@a.test".into()),
            date: Some(1_764_547_200),
            in_reply_to: vec!["parent@b.test".into()],
            references: vec!["root@a.test".into(), "parent@b.test".into()],
        }
    );
}

#[test]
fn malformed_handoffs_are_bad_requests() {
    let to = "<address type='to' jid='bob@b.test'/>";
    let ofrom = "<address type='ofrom' jid='alice@a.test'/>";
    let cases = [
        (to.to_owned(), MAIL.to_owned()),
        (format!("{ofrom}{ofrom}{to}"), MAIL.to_owned()),
        (
            format!("<address type='ofrom' jid='alice@a.test/phone'/>{to}"),
            MAIL.to_owned(),
        ),
        (
            format!("<address type='ofrom' jid='a.test'/>{to}"),
            MAIL.to_owned(),
        ),
        (ofrom.to_owned(), MAIL.to_owned()),
        (
            format!("{ofrom}{to}<address type='to' jid='carol@b.test'/>"),
            MAIL.to_owned(),
        ),
        (ADDRESSES.to_owned(), String::new()),
        (
            ADDRESSES.to_owned(),
            "<mail xmlns='urn:xmpp:mail:0' date='yesterday'/>".to_owned(),
        ),
        (
            ADDRESSES.to_owned(),
            "<mail xmlns='urn:xmpp:mail:0' message-id='&lt;abc@a.test&gt;'/>".to_owned(),
        ),
        (
            ADDRESSES.to_owned(),
            "<mail xmlns='urn:xmpp:mail:0' message-id='abc @a.test'/>".to_owned(),
        ),
    ];
    for (addresses, mail) in cases {
        let fault = stated(&handoff_with(&addresses, &mail))
            .expect_err(&format!("refused: {addresses} {mail}"));
        assert_eq!(
            fault.condition,
            DefinedCondition::BadRequest,
            "{addresses} {mail}"
        );
        assert_eq!(fault.type_, ErrorType::Modify);
    }
    // Other addresses (cc) are no matter; a mail without date or id is.
    let fine = handoff_with(
        &format!("{ADDRESSES}<address type='cc' jid='carol@c.test'/>"),
        "<mail xmlns='urn:xmpp:mail:0'/>",
    );
    assert!(stated(&fine).is_ok());
}

#[test]
fn the_mail_is_the_stanza_as_rfc5322() {
    let mut message = handoff();
    message.payloads.push(
        "<x xmlns='jabber:x:oob'><url>https://up.a.test/f/photo.jpg</url></x>"
            .parse()
            .expect("xml"),
    );
    message.bodies.insert(
        Default::default(),
        "Shall we meet at noon?\nhttps://up.a.test/f/photo.jpg".into(),
    );
    let stated = stated(&message).expect("well-formed");
    let (message_id, raw) = to_mail(
        &message,
        &stated,
        &jid("mail.a.test"),
        &config(),
        1_800_000_000,
    )
    .expect("mail");
    assert_eq!(message_id, "abc@a.test");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("Received: from mail.a.test\r\n\tby mail.b.test (facteur) with XMPP-Mail\r\n\tfor <bob@b.test>;\r\n\t"),
        "{text}"
    );
    assert!(text.contains("Message-ID: <abc@a.test>\r\n"), "{text}");
    assert!(text.contains("In-Reply-To: <parent@b.test>\r\n"), "{text}");
    assert!(
        text.contains("References: <root@a.test> <parent@b.test>\r\n"),
        "{text}"
    );
    assert!(!text.contains("Jabber-ID"), "{text}");
    let parsed = MessageParser::default().parse(&raw).expect("parses");
    let from = parsed.from().and_then(|a| a.first()).expect("from");
    assert_eq!(from.address(), Some("alice@a.test"));
    assert_eq!(from.name(), Some("Alice A."));
    let to = parsed.to().and_then(|a| a.first()).expect("to");
    assert_eq!(to.address(), Some("bob@b.test"));
    assert_eq!(parsed.subject(), Some("Lunch"));
    assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_764_547_200));
    let body = parsed.body_text(0).expect("text");
    assert!(body.contains("Shall we meet at noon?"), "{body}");
    assert!(
        body.contains("https://up.a.test/f/photo.jpg"),
        "a link: {body}"
    );
    assert_eq!(parsed.attachment_count(), 0, "nothing fetched");

    // Without a message-id, the stanza's id makes one: the same each time.
    let bare = handoff_with(ADDRESSES, "<mail xmlns='urn:xmpp:mail:0'/>");
    let stated = super::stated(&bare).expect("well-formed");
    let (first, raw) = to_mail(
        &bare,
        &stated,
        &jid("mail.a.test"),
        &config(),
        1_800_000_000,
    )
    .expect("mail");
    let (again, _) = to_mail(
        &bare,
        &stated,
        &jid("mail.a.test"),
        &config(),
        1_800_000_100,
    )
    .expect("mail");
    assert_eq!(first, again);
    let parsed = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_800_000_000));
}

#[tokio::test]
async fn checks_in_the_loop_come_in_order() {
    let (handoffs, _dir) = handoffs().await;
    handoffs
        .store
        .register(&jid("bob@b.test"))
        .await
        .expect("registered");
    let reply = handoffs.take(handoff_with(ADDRESSES, "")).await;
    let reply = xml(&reply.expect("an error"));
    assert!(reply.contains("to='mail.a.test'") && reply.contains("from='mail.b.test'"));
    // From a served domain, or naming an author of one: forbidden.
    let mut from_served = handoff();
    from_served.from = Some(jid("b.test").into());
    assert_error(handoffs.take(from_served).await, "auth", "forbidden");
    let served_author = handoff_with(
        "<address type='ofrom' jid='carol@b.test'/><address type='to' jid='bob@b.test'/>",
        MAIL,
    );
    assert_error(handoffs.take(served_author).await, "auth", "forbidden");
    // Larger than max-size.
    let mut large = handoff();
    large.bodies.insert(Default::default(), "x".repeat(5000));
    assert_error(handoffs.take(large).await, "modify", "not-acceptable");
    // A recipient who takes no XMPP-Mail.
    let unregistered = handoff_with(
        "<address type='ofrom' jid='alice@a.test'/><address type='to' jid='dave@b.test'/>",
        MAIL,
    );
    assert_error(
        handoffs.take(unregistered).await,
        "cancel",
        "item-not-found",
    );
    let elsewhere = handoff_with(
        "<address type='ofrom' jid='alice@a.test'/><address type='to' jid='eve@c.test'/>",
        MAIL,
    );
    assert_error(handoffs.take(elsewhere).await, "cancel", "item-not-found");
    // Malformed: answered before anything else.
    let mut no_sender = handoff_with(ADDRESSES, "");
    assert_error(
        handoffs.take(no_sender.clone()).await,
        "modify",
        "bad-request",
    );
    no_sender.from = None;
    let reply = handoffs.take(no_sender).await.expect("an error");
    assert!(xml(&reply).contains("<bad-request "));
    // A good one is left to a task: no answer from the loop.
    assert!(handoffs.take(handoff()).await.is_none());
    assert!(
        handoffs
            .store
            .due_to_xmpp(Millis::now(), 10)
            .await
            .expect("due")
            .is_empty(),
        "nothing stored by refused handoffs"
    );
}

#[tokio::test]
async fn a_listed_gateway_hands_over_once_and_gets_its_receipt() {
    let (handoffs, _dir) = handoffs().await;
    handoffs
        .store
        .register(&jid("bob@b.test"))
        .await
        .expect("registered");
    listing(&handoffs, AnswerStatus::Listed).await;
    let message = handoff();
    let checked = handoffs.check(&message).await.expect("checked");
    let reply = handoffs.finish(&message, checked).await.expect("a receipt");
    let receipt = xml(&reply);
    assert!(
        receipt.contains("<received xmlns='urn:xmpp:receipts' id='mail-5f2c'/>"),
        "{receipt}"
    );
    assert!(receipt.contains("to='mail.a.test'") && receipt.contains("from='mail.b.test'"));
    // Sent again: acknowledged again, stored once.
    let checked = handoffs.check(&message).await.expect("checked");
    let again = handoffs.finish(&message, checked).await.expect("a receipt");
    assert!(xml(&again).contains("<received "), "{}", xml(&again));
    let due = handoffs
        .store
        .due_to_xmpp(Millis::now(), 10)
        .await
        .expect("due");
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].recipient, "bob@b.test");
    let ToXmppBody::Mail {
        mail_from,
        auth,
        raw,
        ..
    } = &due[0].body
    else {
        panic!("a mail");
    };
    assert_eq!(mail_from, "alice@a.test");
    assert!(auth.is_empty(), "no <auth/> for XMPP-Mail");
    assert!(String::from_utf8_lossy(raw).contains("Message-ID: <abc@a.test>"));
    // Mail back to alice goes by handoff, through her gateway.
    let writer = handoffs
        .store
        .xmpp_mail_answer(AnswerKind::Rcpt, "alice@a.test", Millis::now())
        .await
        .expect("store")
        .expect("remembered");
    assert_eq!(writer.status, AnswerStatus::Accept);
    assert_eq!(writer.gateway, "mail.a.test");
    assert!(writer.handoff);

    // Without a request, no receipt.
    let mut quiet = handoff_with(
        ADDRESSES,
        "<mail xmlns='urn:xmpp:mail:0' message-id='other@a.test'/>",
    );
    quiet
        .payloads
        .retain(|p| !p.is("request", xmpp_parsers::ns::RECEIPTS));
    let checked = handoffs.check(&quiet).await.expect("checked");
    assert!(handoffs.finish(&quiet, checked).await.is_none());
    assert_eq!(
        handoffs
            .store
            .due_to_xmpp(Millis::now(), 10)
            .await
            .expect("due")
            .len(),
        2
    );
}

#[tokio::test]
async fn an_unlisted_gateway_delivers_nothing() {
    let (handoffs, _dir) = handoffs().await;
    handoffs
        .store
        .register(&jid("bob@b.test"))
        .await
        .expect("registered");
    listing(&handoffs, AnswerStatus::Unlisted).await;
    let message = handoff();
    let checked = handoffs.check(&message).await.expect("checked");
    assert_error(
        handoffs.finish(&message, checked).await,
        "auth",
        "forbidden",
    );
    assert!(handoffs
        .store
        .due_to_xmpp(Millis::now(), 10)
        .await
        .expect("due")
        .is_empty());
    assert_eq!(
        handoffs
            .store
            .xmpp_mail_answer(AnswerKind::Rcpt, "alice@a.test", Millis::now())
            .await
            .expect("store"),
        None
    );
}

#[tokio::test]
async fn an_author_domain_that_does_not_answer_makes_the_sender_wait() {
    let (handoffs, _dir) = handoffs().await;
    handoffs
        .store
        .register(&jid("bob@b.test"))
        .await
        .expect("registered");
    let message = handoff();
    let checked = handoffs.check(&message).await.expect("checked");
    assert_error(
        handoffs.finish(&message, checked).await,
        "wait",
        "remote-server-timeout",
    );
    assert!(handoffs
        .store
        .due_to_xmpp(Millis::now(), 10)
        .await
        .expect("due")
        .is_empty());
    // No answer is no answer: nothing kept, asked again next time.
    assert_eq!(
        handoffs
            .store
            .xmpp_mail_answer(AnswerKind::Lists, "a.test mail.a.test", Millis::now())
            .await
            .expect("store"),
        None
    );
}

#[test]
fn what_facteur_hands_off_facteur_takes() {
    use facteur_bridge::native::{self, MailMeta as Sent};

    let xml = "<message xmlns='jabber:component:accept' type='chat' id='c1' \
        from='alice@a.test/phone' to='bob\\40b.test@mail.a.test'>\
        <subject>Lunch</subject><body>https://up.a.test/f/menu.pdf</body>\
        <x xmlns='jabber:x:oob'><url>https://up.a.test/f/menu.pdf</url></x></message>";
    let author = Message::try_from(xml.parse::<Element>().expect("xml")).expect("message");
    let references = ["root@b.test".to_owned(), "parent@b.test".to_owned()];
    let sent = native::mail_message(
        &author,
        &Sent {
            message_id: "abc@a.test",
            date: 1_764_547_200,
            thread: "t1",
            in_reply_to: Some("parent@b.test"),
            references: &references,
        },
    );
    let (gateway, alice, bob) = (jid("mail.a.test"), jid("alice@a.test"), jid("bob@b.test"));
    let handed = native::handoff(sent, &gateway, &jid("mail.b.test"), &alice, &bob);
    assert!(is_handoff(&config(), &handed));
    let stated = stated(&handed).expect("well-formed");
    assert_eq!((&stated.ofrom, &stated.rcpt), (&alice, &bob));
    assert_eq!(stated.mail.references, references);
    let (message_id, raw) =
        to_mail(&handed, &stated, &gateway, &config(), 1_800_000_000).expect("a mail");
    assert_eq!(message_id, "abc@a.test");
    let parsed = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(parsed.subject(), Some("Lunch"));
    let body = parsed.body_text(0).expect("text");
    assert!(body.contains("https://up.a.test/f/menu.pdf"), "{body}");
    assert!(receipt(&handed).is_some(), "the sender asks for a receipt");
}

#[tokio::test]
async fn the_authors_domain_itself_needs_no_listing() {
    let (handoffs, _dir) = handoffs().await;
    handoffs
        .store
        .register(&jid("bob@b.test"))
        .await
        .expect("registered");
    let mut message = handoff();
    message.from = Some(jid("a.test").into());
    let checked = handoffs.check(&message).await.expect("checked");
    // The link never answers: nothing was asked.
    let reply = handoffs.finish(&message, checked).await.expect("a receipt");
    assert!(xml(&reply).contains("<received "), "{}", xml(&reply));
    assert_eq!(
        handoffs
            .store
            .due_to_xmpp(Millis::now(), 10)
            .await
            .expect("due")
            .len(),
        1
    );
}
