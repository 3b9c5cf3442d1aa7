//! RFC 8098 message disposition notifications ⇄ XEP-0333 chat markers: an
//! MDN that says a mail of the user's was `displayed` reaches the user's
//! client as a `<displayed/>` marker on the message it sent, instead of a
//! chat message that only says so in prose; and, for a user who chose so,
//! the `displayed` marker the user's client sends on a mail that asked for
//! a read notification (`Disposition-Notification-To`) is mailed as the
//! MDN (`manual-action/MDN-sent-manually; displayed`).

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use mail_parser::{MessageParser, MimeHeaders};
use xmpp_parsers::message::{Id, Message, MessageType};
use xmpp_parsers::minidom::Element;

use crate::xml_text::{one_line, truncate_utf8};
use crate::{Error, MailAddress};

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
    if !mentions(raw, b"disposition-notification") {
        return None;
    }
    let message = MessageParser::default().parse(raw)?;
    if !is_report(&message) {
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

/// A read notification an inbound mail asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRequest {
    /// The first address of Disposition-Notification-To.
    pub notify_to: MailAddress,
    /// The mail's Message-ID, without angle brackets.
    pub message_id: String,
    /// The mail's subject, one line.
    pub subject: String,
}

/// The read notification `raw` asks for, if any (RFC 8098 §2.1): none
/// for a mail without a Message-ID, nor for one that is itself a report
/// (multipart/report: an MDN or a DSN) or was sent automatically
/// (`Auto-Submitted` other than `no`, RFC 3834), so that notifications
/// never answer notifications.
pub fn receipt_request(raw: &[u8]) -> Option<ReceiptRequest> {
    if !mentions(raw, b"disposition-notification-to") {
        return None;
    }
    let message = MessageParser::default().parse(raw)?;
    let automatic = message.header_raw("Auto-Submitted").is_some_and(|v| {
        let kind = v.split(['(', ';']).next().unwrap_or_default();
        !kind.trim().eq_ignore_ascii_case("no")
    });
    if is_report(&message) || automatic {
        return None;
    }
    let notify_to = first_address(message.header_raw("Disposition-Notification-To")?)?;
    let message_id = message.message_id().and_then(clean)?;
    let subject = one_line(message.subject().unwrap_or_default());
    Some(ReceiptRequest {
        notify_to,
        message_id,
        subject: truncate_utf8(&subject, 200).to_owned(),
    })
}

/// Whether `raw` holds `word` anywhere, in any case: mail that cannot be
/// what is looked for is passed over without a parse.
fn mentions(raw: &[u8], word: &[u8]) -> bool {
    raw.windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// Whether `message` is a multipart/report (an MDN or a DSN).
fn is_report(message: &mail_parser::Message<'_>) -> bool {
    message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    })
}

/// The first valid address of a mailbox list (`Name <a@b>, c@d`); a
/// quoted display name holding a comma spoils nothing but its own entry.
fn first_address(list: &str) -> Option<MailAddress> {
    list.split(',').find_map(|entry| {
        let entry = entry.trim();
        let address = match (entry.rfind('<'), entry.rfind('>')) {
            (Some(open), Some(close)) if open < close => entry.get(open + 1..close)?,
            _ => entry,
        };
        MailAddress::parse(address.trim()).ok()
    })
}

/// The id of the message a XEP-0333 `displayed` marker names, if the
/// stanza is one.
pub fn stanza_displayed(message: &Message) -> Option<String> {
    message
        .payloads
        .iter()
        .find(|p| p.is("displayed", NS_CHAT_MARKERS))
        .and_then(|p| p.attr("id"))
        .map(one_line)
        .filter(|id| !id.is_empty())
}

/// The XEP-0333 `<markable/>` element: the client may send markers for
/// the message that carries it.
pub fn markable() -> Element {
    Element::builder("markable", NS_CHAT_MARKERS).build()
}

/// An RFC 8098 MDN saying that the user displayed a mail.
#[derive(Debug, Clone)]
pub struct DisplayedReport<'a> {
    /// The user, who displayed the mail: From and Final-Recipient.
    pub from: &'a MailAddress,
    /// The Disposition-Notification-To address of the mail.
    pub to: &'a MailAddress,
    /// The mail's Message-ID, without angle brackets.
    pub original_message_id: &'a str,
    /// The mail's subject.
    pub original_subject: &'a str,
    /// Reporting-UA: the gateway's host name.
    pub reporting_ua: &'a str,
    /// Message-ID of the MDN, without angle brackets.
    pub message_id: &'a str,
    /// Date of the MDN, seconds since the Unix epoch.
    pub date: i64,
}

/// The MDN as RFC 5322 bytes, shaped as Thunderbird writes its return
/// receipts (and reads them): multipart/report;
/// report-type=disposition-notification with a human-readable text/plain
/// part and a message/disposition-notification part (Reporting-UA,
/// Final-Recipient, Original-Message-ID, Disposition:
/// manual-action/MDN-sent-manually; displayed), In-Reply-To the mail,
/// Auto-Submitted: auto-replied (RFC 3834), so that it is never answered.
pub fn displayed_report(report: &DisplayedReport<'_>) -> Result<Vec<u8>, Error> {
    let original: String = report
        .original_message_id
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>'))
        .collect();
    if original.is_empty() {
        return Err(Error::Unparsable);
    }
    let ua: String = report
        .reporting_ua
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    let subject = one_line(report.original_subject);
    let human = format!(
        "This is a Return Receipt for the mail that you sent to {from}.\r\n\r\n\
         Note: This Return Receipt only acknowledges that the message was\r\n\
         displayed on the recipient's computer. There is no guarantee that the\r\n\
         recipient has read or understood the message contents.\r\n",
        from = report.from
    );
    let fields = format!(
        "Reporting-UA: {ua}; facteur\r\n\
         Final-Recipient: rfc822;{from}\r\n\
         Original-Message-ID: <{original}>\r\n\
         Disposition: manual-action/MDN-sent-manually; displayed\r\n",
        from = report.from
    );
    let parts = vec![
        MimePart::new(
            ContentType::new("text/plain").attribute("charset", "utf-8"),
            human,
        ),
        // RFC 8098 §3.1: 7bit, readable without MIME.
        MimePart::new(
            ContentType::new("message/disposition-notification"),
            fields.into_bytes(),
        )
        .transfer_encoding("7bit"),
    ];
    let subject = match subject.is_empty() {
        true => "Return Receipt (displayed)".to_owned(),
        false => format!("Return Receipt (displayed) - {subject}"),
    };
    MessageBuilder::new()
        .from(Address::from(report.from.to_string()))
        .to(report.to.to_string())
        .subject(Text::new(subject))
        .date(report.date)
        .message_id(report.message_id.to_owned())
        .in_reply_to(original.clone())
        .references(original)
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(MimePart::new(
            ContentType::new("multipart/report")
                .attribute("report-type", "disposition-notification"),
            parts,
        ))
        .write_to_vec()
        .map_err(|_| Error::Unparsable)
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

    /// The boundary mail-builder drew, as a fixed word.
    fn fixed_boundary(raw: &[u8]) -> String {
        let text = String::from_utf8(raw.to_vec()).expect("utf-8");
        let at = text.find("boundary=\"").expect("a boundary") + "boundary=\"".len();
        let end = text[at..].find('"').expect("quoted") + at;
        let boundary = text[at..end].to_owned();
        text.replace(&boundary, "BOUNDARY")
    }

    #[test]
    fn a_read_notification_is_asked_for_by_ordinary_mail_only() {
        let mail = b"From: Bob <bob@example.net>\r\nTo: alice@example.test\r\n\
            Subject: Dinner\r\nMessage-ID: <dinner-1@example.net>\r\n\
            Disposition-Notification-To: \"Bob, at home\" <bob@example.net>\r\n\r\nHello\r\n";
        let request = receipt_request(mail).expect("asked");
        assert_eq!(request.notify_to.to_string(), "bob@example.net");
        assert_eq!(request.message_id, "dinner-1@example.net");
        assert_eq!(request.subject, "Dinner");
        let automatic = [&b"Auto-Submitted: auto-replied\r\n"[..], &mail[..]].concat();
        assert_eq!(receipt_request(&automatic), None);
        let human = [&b"Auto-Submitted: no\r\n"[..], &mail[..]].concat();
        assert!(receipt_request(&human).is_some());
        let nameless =
            String::from_utf8_lossy(mail).replace("Message-ID: <dinner-1@example.net>\r\n", "");
        assert_eq!(receipt_request(nameless.as_bytes()), None);
        // An MDN that asks for one itself is never answered.
        let mdn = fixture("thunderbird-displayed.eml");
        let asking = [
            &b"Disposition-Notification-To: bob@example.net\n"[..],
            &mdn[..],
        ]
        .concat();
        assert_eq!(receipt_request(&asking), None);
        assert_eq!(receipt_request(b"Subject: hi\r\n\r\nno request\r\n"), None);
    }

    #[test]
    fn the_mdn_sent_is_one_thunderbird_reads_as_displayed() {
        let alice = MailAddress::parse("alice@example.test").expect("address");
        let bob = MailAddress::parse("bob@example.net").expect("address");
        let raw = displayed_report(&DisplayedReport {
            from: &alice,
            to: &bob,
            original_message_id: "<dinner-1@example.net>",
            original_subject: "Dinner\r\nBcc: eve@example.org",
            reporting_ua: "mail.example.test",
            message_id: "mdn-1@mail.example.test",
            date: 1_700_000_000,
        })
        .expect("an MDN");
        assert_eq!(
            mail_disposition(&raw),
            Some(Disposition {
                original_message_id: "dinner-1@example.net".into(),
                displayed: true,
            })
        );
        // Never a notification for a notification.
        assert_eq!(
            receipt_request(
                &[
                    &b"Disposition-Notification-To: bob@example.net\r\n"[..],
                    &raw[..]
                ]
                .concat()
            ),
            None
        );
        let text = fixed_boundary(&raw);
        assert!(!text.contains("\nBcc:"), "{text}");
        let golden =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mdn/facteur-displayed.eml");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &text).expect("golden written");
        }
        assert_eq!(text, std::fs::read_to_string(golden).expect("golden"));
    }

    #[test]
    fn displayed_markers_name_their_message() {
        let stanza: Element = "<message xmlns='jabber:component:accept' to='bob\\40example.net@mail.example.test' id='m1'>\
            <displayed xmlns='urn:xmpp:chat-markers:0' id='facteur-9'/></message>"
            .parse()
            .expect("xml");
        let message = Message::try_from(stanza).expect("message");
        assert_eq!(stanza_displayed(&message).as_deref(), Some("facteur-9"));
        let chat: Element =
            "<message xmlns='jabber:component:accept' id='m2'><body>hi</body></message>"
                .parse()
                .expect("xml");
        assert_eq!(
            stanza_displayed(&Message::try_from(chat).expect("message")),
            None
        );
    }
}
