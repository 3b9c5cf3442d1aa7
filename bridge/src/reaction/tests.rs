//! Reactions against their fixtures: Delta Chat's RFC 9078 mails in
//! `fixtures/reaction/*.eml` with the stanza each becomes beside it
//! (`NAME.xml`), and the XEP-0444 stanzas of `fixtures/clients/` with the
//! mail each becomes (`fixtures/reaction/NAME.eml`). `UPDATE_GOLDEN=1`
//! rewrites the outputs.

use std::path::PathBuf;

use super::*;
use crate::testing::client_stanza;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn golden(path: PathBuf, made: &[u8]) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, made).expect("golden written");
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
    assert_eq!(
        String::from_utf8_lossy(made),
        String::from_utf8_lossy(&want),
        "{} differs",
        path.display()
    );
}

fn jid(s: &str) -> jid::Jid {
    jid::Jid::new(s).expect("jid")
}

#[test]
fn delta_chat_reactions_become_xep_0444_stanzas() {
    for name in [
        "deltachat-thumbs-up",
        "deltachat-three-emoji",
        "deltachat-withdrawn",
    ] {
        let raw = std::fs::read(fixtures().join(format!("reaction/{name}.eml"))).expect("eml");
        let reaction = mail_reaction(&raw).expect(name);
        assert_eq!(reaction.in_reply_to, "alice-original@mail.example.test");
        let stanza = reaction_stanza(
            jid("bob\\40example.net@mail.example.test"),
            jid("alice@example.test"),
            "facteur-7-1700000000000",
            "origin-of-alice",
            &reaction.emoji,
        );
        let xml = String::from(&Element::from(stanza));
        golden(
            fixtures().join(format!("reaction/{name}.xml")),
            format!("{xml}\n").as_bytes(),
        );
    }
    let raw = std::fs::read(fixtures().join("reaction/deltachat-three-emoji.eml")).expect("eml");
    assert_eq!(
        mail_reaction(&raw).expect("reaction").emoji,
        ["❤\u{fe0f}", "👍🏽", "🇫🇷"]
    );
}

#[test]
fn xep_0444_reactions_become_rfc_9078_mails() {
    let from = MailAddress::parse("alice@example.test").expect("from");
    let to = MailAddress::parse("bob@example.net").expect("to");
    for name in ["conversations-reaction", "xep0444-reaction-with-fallback"] {
        let reaction = stanza_reaction(&client_stanza(name)).expect(name);
        assert_eq!(reaction.id, "REACTED-ID");
        let raw = reaction_mail(&ReactionMail {
            from: &from,
            to: &to,
            message_id: "reaction@mail.example.test",
            in_reply_to: "cake@example.net",
            references: &["cake@example.net".to_owned()],
            emoji: &reaction.emoji,
            jabber_id: Some("alice@example.test"),
            date: 1_700_000_000,
        })
        .expect("mail");
        // What an RFC 9078 reader finds in it is what was sent.
        let back = mail_reaction(&raw).expect("a reaction mail");
        assert_eq!(back.in_reply_to, "cake@example.net");
        assert_eq!(back.emoji, reaction.emoji, "{name}");
        golden(fixtures().join(format!("reaction/{name}.eml")), &raw);
    }
}

#[test]
fn mails_without_a_reaction_part_or_parent_are_not_reactions() {
    assert_eq!(
        mail_reaction(b"From: b@x\r\nIn-Reply-To: <p@x>\r\nContent-Type: text/plain\r\n\r\n\xf0\x9f\x91\x8d\r\n"),
        None
    );
    assert_eq!(
        mail_reaction(b"From: b@x\r\nContent-Type: text/plain\r\nContent-Disposition: reaction\r\n\r\n\xf0\x9f\x91\x8d\r\n"),
        None
    );
    let plain = Message::try_from(
        "<message xmlns='jabber:component:accept'><body>\u{1F44D}</body></message>"
            .parse::<Element>()
            .expect("xml"),
    )
    .expect("message");
    assert_eq!(stanza_reaction(&plain), None);
}
