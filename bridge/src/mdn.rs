//! RFC 8098 message disposition notifications ⇄ XEP-0333 chat markers: an
//! MDN that says a mail of the user's was `displayed` reaches the user's
//! client as a `<displayed/>` marker on the message it sent, instead of a
//! chat message that only says so in prose.

use mail_parser::{MessageParser, MimeHeaders};
use xmpp_parsers::message::{Id, Message, MessageType};
use xmpp_parsers::minidom::Element;

/// XEP-0333 Chat Markers.
pub const NS_CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0334 Message Processing Hints.
const NS_HINTS: &str = "urn:xmpp:hints";

/// What an MDN says about one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition {
    /// The Message-ID of the mail it is about, without angle brackets.
    pub original_message_id: String,
    /// Whether that mail was displayed (RFC 8098 §3.2.6.2 `displayed`);
    /// `deleted`, `dispatched` and `processed` are not.
    pub displayed: bool,
}

/// The disposition a mail reports, if it is an RFC 8098 MDN: a
/// multipart/report whose message/disposition-notification part names the
/// original by Original-Message-ID (else the report's In-Reply-To).
pub fn mail_disposition(raw: &[u8]) -> Option<Disposition> {
    if !raw
        .windows(24)
        .any(|w| w.eq_ignore_ascii_case(b"disposition-notification"))
    {
        return None;
    }
    let message = MessageParser::default().parse(raw)?;
    let is_report = message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    if !is_report {
        return None;
    }
    let report = message.parts.iter().find(|part| {
        part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("disposition-notification")
                        || s.eq_ignore_ascii_case("global-disposition-notification")
                })
        })
    })?;
    let fields = String::from_utf8_lossy(report.contents()).into_owned();
    let mut original = None;
    let mut disposition = None;
    for line in fields.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "original-message-id" => original = clean(value),
            "disposition" => disposition = Some(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    let original_message_id = original.or_else(|| {
        message
            .in_reply_to()
            .as_text_list()
            .and_then(|ids| ids.first().and_then(|id| clean(id)))
    })?;
    // "action-mode/sending-mode; disposition-type/modifier"
    let kind = disposition?
        .split_once(';')
        .map(|(_, kind)| kind.split('/').next().unwrap_or_default().trim().to_owned())?;
    Some(Disposition {
        original_message_id,
        displayed: kind == "displayed",
    })
}

fn clean(id: &str) -> Option<String> {
    let id: String = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .take(998)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// The XEP-0333 `<displayed/>` marker from `from` to `to`, on the message
/// `to`'s client knows by `target`.
pub fn displayed_stanza(from: jid::Jid, to: jid::Jid, id: &str, target: &str) -> Message {
    let mut message = Message::new_with_type(MessageType::Chat, Some(to));
    message.from = Some(from);
    message.id = Some(Id(id.to_owned()));
    message.payloads.push(
        Element::builder("displayed", NS_CHAT_MARKERS)
            .attr(
                xmpp_parsers::minidom::rxml::xml_ncname!("id").into(),
                target,
            )
            .build(),
    );
    message
        .payloads
        .push(Element::builder("store", NS_HINTS).build());
    message
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/mdn")
            .join(name);
        std::fs::read(path).expect("fixture")
    }

    #[test]
    fn thunderbird_return_receipt_becomes_a_displayed_marker() {
        let found = mail_disposition(&fixture("thunderbird-displayed.eml")).expect("an MDN");
        assert_eq!(
            found,
            Disposition {
                original_message_id: "alice-original@mail.example.test".into(),
                displayed: true,
            }
        );
        let stanza = displayed_stanza(
            jid::Jid::new("bob\\40example.net@mail.example.test").expect("jid"),
            jid::Jid::new("alice@example.test").expect("jid"),
            "facteur-9-1700000000000",
            "origin-of-alice",
        );
        let xml = format!("{}\n", String::from(&Element::from(stanza)));
        let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/mdn/thunderbird-displayed.xml");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &xml).expect("golden written");
        }
        assert_eq!(xml, std::fs::read_to_string(golden).expect("golden"));
    }

    #[test]
    fn deleted_is_not_displayed_and_dsns_are_not_mdns() {
        let found = mail_disposition(&fixture("deleted-unread.eml")).expect("an MDN");
        assert!(!found.displayed);
        let dsn = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/bounce/postfix-dsn-user-unknown.eml"),
        )
        .expect("dsn");
        assert_eq!(mail_disposition(&dsn), None);
    }
}
