//! Forwarded blocks and reports, as facteur's Prosody module and
//! mod_report_forward send them.

use super::*;
use xmpp_parsers::minidom::Element;

fn config() -> Config {
    Config::parse(
        "[component]\njid = \"mail.a.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"a.test\"]\n",
    )
    .expect("config")
}

fn message(from: &str, payloads: &str) -> Message {
    let xml = format!(
        "<message xmlns='jabber:component:accept' from='{from}' to='mail.a.test' id='f1'>{payloads}</message>"
    );
    Message::try_from(xml.parse::<Element>().expect("xml")).expect("message")
}

fn alice() -> BareJid {
    BareJid::new("alice@a.test").expect("jid")
}

const REPORT: &str = "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>\
    <jid xmlns='urn:xmpp:jid:0'>spammer\\40evil.test@mail.a.test</jid></report>";

#[test]
fn the_module_s_block_with_a_report_is_a_reported_block() {
    let blocked = "<blocked xmlns='urn:xmpp:mail:0' by='alice@a.test' jid='spammer\\40evil.test@mail.a.test'/>";
    let forwarded = "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' \
        from='spammer\\40evil.test@mail.a.test' to='alice@a.test'><body>Win</body>\
        <mail xmlns='urn:xmpp:mail:0' message-id='win@evil.test'/></message></forwarded>";
    let read = read(
        &config(),
        &message("a.test", &format!("{REPORT}{forwarded}{blocked}")),
    );
    assert_eq!(
        read,
        Ok(Forwarded::Block {
            user: alice(),
            item: BlockItem::Address("spammer@evil.test".into()),
            reported: true,
            message_id: "win@evil.test".into(),
        })
    );
    let plain = read_plain(
        "<blocked xmlns='urn:xmpp:mail:0' by='alice@a.test' jid='evil.test@mail.a.test'/>",
    );
    assert_eq!(
        plain,
        Ok(Forwarded::Block {
            user: alice(),
            item: BlockItem::Domain("evil.test".into()),
            reported: false,
            message_id: String::new(),
        })
    );
}

fn read_plain(payloads: &str) -> Result<Forwarded, Ignored> {
    read(&config(), &message("a.test", payloads))
}

#[test]
fn unblocks_name_an_item_or_everything() {
    assert_eq!(
        read_plain("<unblocked xmlns='urn:xmpp:mail:0' by='alice@a.test' jid='spammer\\40evil.test@mail.a.test'/>"),
        Ok(Forwarded::Unblock {
            user: alice(),
            item: Some(BlockItem::Address("spammer@evil.test".into())),
        })
    );
    assert_eq!(
        read_plain("<unblocked xmlns='urn:xmpp:mail:0' by='alice@a.test'/>"),
        Ok(Forwarded::Unblock {
            user: alice(),
            item: None
        })
    );
}

#[test]
fn mod_report_forward_s_report_names_its_user_by_the_reported_message() {
    let forwarded = "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2026-12-07T10:00:00Z'/>\
        <message xmlns='jabber:client' from='spammer\\40evil.test@mail.a.test' to='alice@a.test/phone'>\
        <body>Win</body></message></forwarded>";
    assert_eq!(
        read_plain(&format!(
            "<body>SPAM/ABUSE REPORT</body>{REPORT}{forwarded}"
        )),
        Ok(Forwarded::Block {
            user: alice(),
            item: BlockItem::Address("spammer@evil.test".into()),
            reported: true,
            message_id: String::new(),
        })
    );
    assert_eq!(read_plain(REPORT), Err(Ignored::NoReporter));
}

#[test]
fn feedback_from_anyone_but_the_server_or_about_others_is_ignored() {
    let blocked = "<blocked xmlns='urn:xmpp:mail:0' by='alice@a.test' jid='spammer\\40evil.test@mail.a.test'/>";
    for from in ["pubsub.a.test", "alice@a.test", "a.test/x", "b.test"] {
        assert_eq!(
            read(&config(), &message(from, blocked)),
            Err(Ignored::NotFromServer),
            "{from}"
        );
    }
    assert_eq!(
        read_plain("<blocked xmlns='urn:xmpp:mail:0' by='mallory@b.test' jid='spammer\\40evil.test@mail.a.test'/>"),
        Err(Ignored::NoReporter)
    );
    assert_eq!(
        read_plain("<blocked xmlns='urn:xmpp:mail:0' by='alice@a.test' jid='bob@b.test'/>"),
        Err(Ignored::NotOurs)
    );
    assert_eq!(
        read_plain("<blocked xmlns='urn:xmpp:mail:0' by='alice@a.test'/>"),
        Err(Ignored::Malformed("<blocked/> without a jid"))
    );
}

fn feedback_iq(from: &str, attrs: &str) -> Iq {
    let xml = format!(
        "<iq xmlns='jabber:component:accept' type='set' id='fb1' from='{from}' to='mail.a.test'>\
         <feedback xmlns='urn:xmpp:mail:0' {attrs}/></iq>"
    );
    Iq::try_from(xml.parse::<Element>().expect("xml")).expect("iq")
}

fn condition(iq: &Iq) -> Option<DefinedCondition> {
    match iq {
        Iq::Error { error, .. } => Some(error.defined_condition.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn feedback_is_recorded_for_mail_the_user_received_only() {
    let (store, _dir) = crate::store::scratch().await;
    store.register(&alice()).await.expect("registered");
    let spammer = BareJid::new("spammer\\40evil.test@mail.a.test").expect("jid");
    store
        .remember_message(&crate::store::MessageRecord {
            user: alice(),
            message_id: "win@evil.test".into(),
            peer: spammer.clone(),
            stanza_id: "facteur-1".into(),
            author: spammer,
            thread: "t".into(),
            references: Vec::new(),
        })
        .await
        .expect("remembered");
    let config = config();
    let answer = |from: &'static str, attrs: &'static str| {
        let store = store.clone();
        let config = &config;
        async move { super::answer(config, &store, feedback_iq(from, attrs)).await }
    };
    let ok = answer(
        "alice@a.test/phone",
        "verdict='spam' message-id='win@evil.test'",
    )
    .await;
    assert!(matches!(ok, Iq::Result { .. }), "{ok:?}");
    assert_eq!(
        store
            .spam_reporters("spammer@evil.test")
            .await
            .expect("counted"),
        1
    );
    assert_eq!(
        condition(
            &answer(
                "alice@a.test/phone",
                "verdict='spam' message-id='other@evil.test'"
            )
            .await
        ),
        Some(DefinedCondition::ItemNotFound)
    );
    assert_eq!(
        condition(
            &answer(
                "mallory@a.test/x",
                "verdict='spam' message-id='win@evil.test'"
            )
            .await
        ),
        Some(DefinedCondition::RegistrationRequired)
    );
    assert_eq!(
        condition(
            &answer(
                "alice@a.test/phone",
                "verdict='maybe' message-id='win@evil.test'"
            )
            .await
        ),
        Some(DefinedCondition::BadRequest)
    );
    let ham = answer(
        "alice@a.test/phone",
        "verdict='ham' message-id='win@evil.test'",
    )
    .await;
    assert!(matches!(ham, Iq::Result { .. }), "{ham:?}");
    assert_eq!(
        store
            .spam_reporters("spammer@evil.test")
            .await
            .expect("counted"),
        0
    );
}

#[tokio::test]
async fn a_report_of_mail_from_imap_moves_it_to_junk_and_a_plain_block_does_not() {
    use crate::store::{FolderStart, InboundMail, Millis, NewImapMailbox, Taken, TlsMode};
    let (store, _dir) = crate::store::scratch().await;
    store.register(&alice()).await.expect("registered");
    let id = store
        .imap_attach(&NewImapMailbox {
            user: &alice(),
            host: "imap.example.net",
            port: 993,
            tls: TlsMode::Implicit,
            username: "alice",
            password: b"sealed",
            folders: &[FolderStart {
                name: "INBOX".into(),
                uid_validity: 7,
                last_uid: 10,
            }],
            submission: None,
        })
        .await
        .expect("attached");
    for (uid, message_id) in [(11, "win@evil.test"), (12, "ham@evil.test")] {
        let mail = InboundMail {
            mail_from: "spammer@evil.test".into(),
            raw: format!("Message-ID: <{message_id}>\r\nSubject: x\r\n\r\nhi\r\n").into_bytes(),
            recipients: vec![alice()],
            ..InboundMail::default()
        };
        assert!(store
            .imap_take(
                id,
                "INBOX",
                7,
                uid,
                Millis::now(),
                Taken::Mail(&mail, Some(message_id))
            )
            .await
            .expect("taken"));
    }
    let forwarded = |message_id: &str| {
        format!(
            "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' \
             from='spammer\\40evil.test@mail.a.test' to='alice@a.test'><body>Win</body>\
             <mail xmlns='urn:xmpp:mail:0' message-id='{message_id}'/></message></forwarded>"
        )
    };
    let blocked =
        "<blocked xmlns='urn:xmpp:mail:0' by='alice@a.test' jid='spammer\\40evil.test@mail.a.test'/>";
    // A block without a report leaves the mail where it is.
    take(
        &config(),
        &store,
        &message(
            "a.test",
            &format!("{}{blocked}", forwarded("ham@evil.test")),
        ),
    )
    .await;
    assert!(store.imap_junk_to_move(id).await.expect("read").is_empty());
    take(
        &config(),
        &store,
        &message(
            "a.test",
            &format!("{REPORT}{}{blocked}", forwarded("win@evil.test")),
        ),
    )
    .await;
    let moving: Vec<u32> = store
        .imap_junk_to_move(id)
        .await
        .expect("read")
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(moving, vec![11]);
}
