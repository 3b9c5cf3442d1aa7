//! XMPP chat message → RFC 5322 mail: `text/plain; format=flowed` in
//! UTF-8, a sanitised HTML alternative when the message is styled or
//! carries HTML, and the shared files as attachments.
//!
//! Header values that come from the stanza (subject, display name, JID)
//! lose CR, LF and other controls here, before mail-builder encodes them
//! (RFC 2047 where needed): nothing a sender types can add a header.

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;

use crate::body::{flow, sanitize_html, styled_to_html};
use crate::xml_text::one_line;

use crate::{Error, MailAddress};

/// What an outgoing mail is made of, as the daemon knows it.
#[derive(Debug, Clone)]
pub struct OutgoingMail<'a> {
    /// The XMPP sender's own address: the only possible From.
    pub from: &'a MailAddress,
    /// Display name for From, when the user has one.
    pub from_name: Option<&'a str>,
    /// The recipient.
    pub to: &'a MailAddress,
    /// `<subject>` of the stanza.
    pub subject: Option<&'a str>,
    /// `<body>` of the stanza.
    pub body: &'a str,
    /// Message-ID without angle brackets, fixed once when queued.
    pub message_id: &'a str,
    /// The Message-ID this answers, without angle brackets.
    pub in_reply_to: Option<&'a str>,
    /// References, oldest first, without angle brackets.
    pub references: &'a [String],
    /// HTML the sender's client sent (XEP-0481 or XHTML-IM), unsanitised.
    pub html: Option<&'a str>,
    /// Whether the body may carry XEP-0393 styling (no `<unstyled/>`).
    pub styled: bool,
    /// Files to attach.
    pub files: &'a [OutgoingFile<'a>],
    /// The sender's JID for an RFC 7259 `Jabber-ID` header.
    pub jabber_id: Option<&'a str>,
    /// Date header, seconds since the Unix epoch.
    pub date: i64,
}

/// A file attached to an outgoing mail.
#[derive(Debug, Clone)]
pub struct OutgoingFile<'a> {
    /// File name.
    pub name: &'a str,
    /// `type/subtype`.
    pub content_type: &'a str,
    /// The bytes.
    pub data: &'a [u8],
}

/// A file a stanza shares by URL (XEP-0066 OOB whose URL is the whole
/// body, or XEP-0447 sources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedUrl {
    /// The URL.
    pub url: String,
    /// File name from XEP-0446 metadata, if given.
    pub name: Option<String>,
    /// Media type from XEP-0446 metadata, if given.
    pub content_type: Option<String>,
}

/// What of a chat stanza becomes the mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaParts {
    /// The body text, without a URL that only names a shared file.
    pub body: String,
    /// The subject.
    pub subject: Option<String>,
    /// HTML sent along: XEP-0481 `text/html` content, else XHTML-IM.
    pub html: Option<String>,
    /// False when the stanza says `<unstyled/>` (XEP-0393).
    pub styled: bool,
    /// Files shared by URL.
    pub shared: Vec<SharedUrl>,
    /// XEP-0359 origin-id, else the stanza id.
    pub stanza_id: Option<String>,
    /// The id a XEP-0461 `<reply>` points at.
    pub reply_id: Option<String>,
    /// The `<thread>`.
    pub thread: Option<String>,
}

const NS_XHTML_IM: &str = "http://jabber.org/protocol/xhtml-im";
const NS_XHTML: &str = "http://www.w3.org/1999/xhtml";
const NS_STYLING: &str = "urn:xmpp:styling:0";

/// Takes a chat stanza apart.
pub fn stanza_parts(message: &xmpp_parsers::message::Message) -> StanzaParts {
    use crate::attach::{NS_FILE, NS_OOB, NS_SFS, NS_URL_DATA};
    use crate::to_xmpp::NS_CONTENT;
    use crate::wire::{NS_REPLY, NS_SID};

    let body = message.bodies.values().next().cloned().unwrap_or_default();
    // A reply's quote, marked as its fallback, becomes a proper quote.
    let quoted = crate::quote::reply_quote(message, &body);
    let body = quoted.as_ref().map(|q| q.body()).unwrap_or(body);
    let mut shared = Vec::new();
    for payload in &message.payloads {
        if payload.is("x", NS_OOB) {
            let url = payload
                .get_child("url", NS_OOB)
                .map(|u| u.text())
                .unwrap_or_default();
            // Only a URL that is the whole body is a shared file; any other
            // link is text.
            if !url.is_empty() && body.trim() == url.trim() {
                shared.push(SharedUrl {
                    url: url.trim().to_owned(),
                    name: None,
                    content_type: None,
                });
            }
        } else if payload.is("file-sharing", NS_SFS) {
            let file = payload.get_child("file", NS_FILE);
            let field = |name: &str| {
                file.and_then(|f| f.get_child(name, NS_FILE))
                    .map(|e| e.text())
            };
            let sources = payload.get_child("sources", NS_SFS);
            let url = sources
                .and_then(|s| s.get_child("url-data", NS_URL_DATA))
                .and_then(|u| u.attr("target"));
            if let Some(url) = url {
                if !shared.iter().any(|s: &SharedUrl| s.url == url) {
                    shared.push(SharedUrl {
                        url: url.to_owned(),
                        name: field("name"),
                        content_type: field("media-type"),
                    });
                }
            }
        }
    }
    // A body that is just the shared URL says nothing more.
    let body = match shared.iter().any(|s| s.url == body.trim()) {
        true => String::new(),
        false => body,
    };
    let html = message
        .payloads
        .iter()
        .find(|p| p.is("content", NS_CONTENT) && p.attr("type") == Some("text/html"))
        .map(|p| p.text())
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            let xhtml = message
                .payloads
                .iter()
                .find(|p| p.is("html", NS_XHTML_IM))?;
            let body = xhtml.get_child("body", NS_XHTML)?;
            Some(String::from(body))
        })
        // The client's HTML gets the quote unless it quotes already.
        .map(|html| match &quoted {
            Some(q) if !html.contains("<blockquote") => format!("{}{html}", q.blockquote()),
            _ => html,
        });
    StanzaParts {
        body,
        subject: message.subjects.values().next().cloned(),
        html,
        styled: !message
            .payloads
            .iter()
            .any(|p| p.is("unstyled", NS_STYLING)),
        shared,
        stanza_id: message
            .payloads
            .iter()
            .find(|p| p.is("origin-id", NS_SID))
            .and_then(|p| p.attr("id").map(str::to_owned))
            .or_else(|| message.id.as_ref().map(|id| id.0.clone()))
            .filter(|id| !id.is_empty()),
        reply_id: message
            .payloads
            .iter()
            .find(|p| p.is("reply", NS_REPLY))
            .and_then(|p| p.attr("id").map(str::to_owned)),
        thread: message.thread.as_ref().map(|t| t.id.clone()),
    }
}

/// Body text with CRLF line ends and no characters mail cannot carry.
/// One pass: controls other than tab go, CR LF, lone CR and lone LF all
/// become CR LF (a control between CR and LF goes first).
fn body_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + value.len() / 32 + 2);
    let mut after_cr = false;
    for c in value.chars() {
        match c {
            '\r' => {
                out.push_str("\r\n");
                after_cr = true;
            }
            '\n' => {
                if !after_cr {
                    out.push_str("\r\n");
                }
                after_cr = false;
            }
            '\t' => {
                out.push(c);
                after_cr = false;
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                after_cr = false;
            }
        }
    }
    out
}

/// The MIME tree: flowed text, an HTML alternative when there is one,
/// files after it.
fn content<'a>(mail: &OutgoingMail<'a>) -> MimePart<'a> {
    let text = MimePart::new(
        ContentType::new("text/plain")
            .attribute("charset", "utf-8")
            .attribute("format", "flowed"),
        flow(&body_text(mail.body)),
    );
    let html = match mail.html {
        Some(html) => Some(sanitize_html(html, &Default::default())),
        None if mail.styled => styled_to_html(mail.body),
        None => None,
    };
    let readable = match html {
        Some(html) => MimePart::new(
            "multipart/alternative",
            vec![
                text,
                MimePart::new(
                    ContentType::new("text/html").attribute("charset", "utf-8"),
                    html,
                ),
            ],
        ),
        None => text,
    };
    if mail.files.is_empty() {
        return readable;
    }
    let mut parts = vec![readable];
    for file in mail.files {
        parts.push(
            MimePart::new(file.content_type.to_owned(), file.data).attachment(one_line(file.name)),
        );
    }
    MimePart::new("multipart/mixed", parts)
}

/// Builds the RFC 5322 bytes of `mail`.
pub fn to_rfc5322(mail: &OutgoingMail<'_>) -> Result<Vec<u8>, Error> {
    if mail.body.trim().is_empty() && mail.files.is_empty() {
        return Err(Error::EmptyStanza);
    }
    let from_addr = mail.from.to_string();
    let from: Address<'_> = match mail.from_name.map(one_line).filter(|n| !n.is_empty()) {
        Some(name) => (name, from_addr).into(),
        None => from_addr.into(),
    };
    let subject = mail.subject.map(one_line).unwrap_or_default();
    let mut builder = MessageBuilder::new()
        .from(from)
        .to(mail.to.to_string())
        .message_id(mail.message_id.to_owned())
        .date(mail.date)
        .body(content(mail));
    if !subject.is_empty() {
        builder = builder.subject(Text::new(subject));
    }
    if let Some(parent) = mail.in_reply_to {
        builder = builder.in_reply_to(parent.to_owned());
    }
    if !mail.references.is_empty() {
        builder = builder.references(mail.references.to_vec());
    }
    if let Some(jid) = mail.jabber_id.map(one_line).filter(|j| !j.is_empty()) {
        builder = builder.header("Jabber-ID", Text::new(jid));
    }
    builder.write_to_vec().map_err(|_| Error::Unparsable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    fn addr(s: &str) -> MailAddress {
        MailAddress::parse(s).expect("valid")
    }

    #[test]
    fn body_text_matches_the_rules_it_states() {
        let slow = |value: &str| {
            let clean: String = value
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
                .collect();
            clean
                .replace("\r\n", "\n")
                .replace('\r', "\n")
                .replace('\n', "\r\n")
        };
        for text in [
            "",
            "a\nb",
            "a\r\nb\rc\n\nd",
            "\r\r\n\n\r",
            "nul\0\u{1b}[31m\tx\u{85}y",
            "cr\r\0\nlf",
            "é日本\r",
        ] {
            assert_eq!(body_text(text), slow(text), "{text:?}");
        }
    }

    #[test]
    fn builds_a_plain_utf8_mail() {
        let from = addr("alice@example.test");
        let to = addr("Bob@example.net");
        let raw = to_rfc5322(&OutgoingMail {
            from: &from,
            from_name: Some("Alice Liddell"),
            to: &to,
            subject: Some("Grüße"),
            body: "line one\nça va ?",
            message_id: "abc@mail.example.test",
            in_reply_to: Some("parent@example.net"),
            references: &[
                "root@example.net".to_owned(),
                "parent@example.net".to_owned(),
            ],
            html: None,
            styled: true,
            files: &[],
            jabber_id: Some("alice@example.test"),
            date: 1_700_000_000,
        })
        .expect("builds");
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.contains("Message-ID: <abc@mail.example.test>\r\n"),
            "{text}"
        );
        assert!(text.contains("To: <Bob@example.net>\r\n"), "{text}");
        assert!(
            text.contains("In-Reply-To: <parent@example.net>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("References: <root@example.net> <parent@example.net>\r\n"),
            "{text}"
        );
        let parsed = MessageParser::default().parse(&raw).expect("parses");
        assert_eq!(parsed.subject(), Some("Grüße"));
        let from = parsed.from().and_then(|a| a.first()).expect("from");
        assert_eq!(from.address(), Some("alice@example.test"));
        assert_eq!(from.name(), Some("Alice Liddell"));
        assert_eq!(
            parsed.body_text(0).as_deref(),
            Some("line one\r\nça va ?\r\n")
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=\"utf-8\"; format=\"flowed\""),
            "{text}"
        );
        assert!(text.contains("Jabber-ID: alice@example.test\r\n"), "{text}");
        assert!(!text.contains("text/html"), "{text}");
        assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_700_000_000));
    }

    #[test]
    fn styled_text_and_files_make_a_multipart() {
        let from = addr("alice@example.test");
        let to = addr("bob@example.net");
        let files = [OutgoingFile {
            name: "notes.txt",
            content_type: "text/plain",
            data: b"file bytes",
        }];
        let raw = to_rfc5322(&OutgoingMail {
            from: &from,
            from_name: None,
            to: &to,
            subject: Some("styled"),
            body: "This is *important*",
            message_id: "s@x",
            in_reply_to: None,
            references: &[],
            html: None,
            styled: true,
            files: &files,
            jabber_id: None,
            date: 0,
        })
        .expect("builds");
        let parsed = MessageParser::default().parse(&raw).expect("parses");
        assert_eq!(
            parsed.body_text(0).as_deref().map(str::trim_end),
            Some("This is *important*")
        );
        assert!(parsed
            .body_html(0)
            .expect("html")
            .contains("<strong>important</strong>"));
        let attachment = parsed.attachment(0).expect("attachment");
        assert_eq!(attachment.attachment_name(), Some("notes.txt"));
        assert_eq!(attachment.contents(), b"file bytes");
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.contains("multipart/mixed") && text.contains("multipart/alternative"),
            "{text}"
        );
    }

    #[test]
    fn stanzas_are_taken_apart() {
        let xml = "<message xmlns='jabber:component:accept' to='bob\\40example.net@mail.example.test' id='s1' type='chat'>\
            <body>https://upload.example.test/abc/photo.jpg</body>\
            <x xmlns='jabber:x:oob'><url>https://upload.example.test/abc/photo.jpg</url></x>\
            <origin-id xmlns='urn:xmpp:sid:0' id='o1'/>\
            <reply xmlns='urn:xmpp:reply:0' to='bob\\40example.net@mail.example.test' id='mail-1'/>\
            <thread>t1</thread><unstyled xmlns='urn:xmpp:styling:0'/></message>";
        let element: xmpp_parsers::minidom::Element = xml.parse().expect("xml");
        let message = xmpp_parsers::message::Message::try_from(element).expect("message");
        let parts = stanza_parts(&message);
        assert_eq!(parts.body, "");
        assert_eq!(parts.shared.len(), 1);
        assert_eq!(
            parts.shared[0].url,
            "https://upload.example.test/abc/photo.jpg"
        );
        assert_eq!(parts.stanza_id.as_deref(), Some("o1"));
        assert_eq!(parts.reply_id.as_deref(), Some("mail-1"));
        assert_eq!(parts.thread.as_deref(), Some("t1"));
        assert!(!parts.styled);

        let xml = "<message xmlns='jabber:component:accept' id='s2'><body>see https://example.net/x</body>\
            <x xmlns='jabber:x:oob'><url>https://example.net/x</url></x>\
            <content xmlns='urn:xmpp:content' type='text/html'>&lt;b&gt;see&lt;/b&gt;</content></message>";
        let element: xmpp_parsers::minidom::Element = xml.parse().expect("xml");
        let parts =
            stanza_parts(&xmpp_parsers::message::Message::try_from(element).expect("message"));
        assert!(parts.shared.is_empty(), "a link in text is not a file");
        assert_eq!(parts.body, "see https://example.net/x");
        assert_eq!(parts.html.as_deref(), Some("<b>see</b>"));
        assert_eq!(parts.stanza_id.as_deref(), Some("s2"));
    }

    #[test]
    fn no_header_injection() {
        let from = addr("alice@example.test");
        let to = addr("bob@example.net");
        let raw = to_rfc5322(&OutgoingMail {
            from: &from,
            from_name: Some("Eve\r\nBcc: victim@example.org"),
            to: &to,
            subject: Some("hi\r\nBcc: victim@example.org\r\n\r\nbody"),
            body: "x",
            message_id: "id@x",
            in_reply_to: None,
            references: &[],
            html: None,
            styled: true,
            files: &[],
            jabber_id: None,
            date: 0,
        })
        .expect("builds");
        let text = String::from_utf8_lossy(&raw);
        let headers = text.split("\r\n\r\n").next().unwrap_or_default();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{text}");
        let parsed = MessageParser::default().parse(&raw).expect("parses");
        assert!(parsed.bcc().is_none());
        assert_eq!(parsed.subject(), Some("hi Bcc: victim@example.org body"));
    }

    #[test]
    fn empty_bodies_are_refused() {
        let a = addr("alice@example.test");
        let result = to_rfc5322(&OutgoingMail {
            from: &a,
            from_name: None,
            to: &a,
            subject: None,
            body: " \n",
            message_id: "id@x",
            in_reply_to: None,
            references: &[],
            html: None,
            styled: true,
            files: &[],
            jabber_id: None,
            date: 0,
        });
        assert_eq!(result, Err(Error::EmptyStanza));
    }
}
