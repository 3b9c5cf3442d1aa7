//! Parsed RFC 5322 mail → XMPP `<message>` stanza.
//!
//! The body is the text/plain part, or mail-parser's text rendering of the
//! HTML part for HTML-only mail. Characters XML cannot carry are replaced,
//! and the body is cut to stay well under the XMPP server's stanza size
//! limit (Prosody closes a component stream over 512 KiB). The thread
//! headers go into `<thread>`, XEP-0461 `<reply>` and facteur's `<mail>`
//! element; other recipients into XEP-0033 addresses; mailing-list headers
//! into XEP-0131 headers.

use jid::{BareJid, Jid};
use mail_parser::{Address, HeaderName, MessageParser, MimeHeaders};
use xmpp_parsers::message::{Lang, Message, MessageType, Thread};

use crate::attach::{self, SharedFile};
use crate::body;
use crate::threading::thread_for;
use crate::wire;
use crate::xml_text::{truncate_utf8, xml_safe, xml_safe_lf};
use crate::{mailbox_to_jid, Error, MailAddress};

/// Mailing-list headers carried as XEP-0131 headers, in this order.
const LIST_HEADERS: [&str; 8] = [
    "List-Id",
    "List-Post",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Archive",
    "List-Help",
    "List-Subscribe",
    "List-Owner",
];
/// Largest sanitised HTML carried in the stanza as XEP-0481 content.
pub const MAX_HTML_BYTES: usize = 64 * 1024;
/// XEP-0481 Content Types in Messages.
pub const NS_CONTENT: &str = "urn:xmpp:content";
/// Message-IDs kept from References: the root and the latest ones.
const MAX_REFERENCES: usize = 20;

/// Largest body carried in one stanza, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest subject and display name carried, in bytes: a header can be
/// as long as the whole mail, a stanza cannot.
pub const MAX_SUBJECT_BYTES: usize = 1024;
const MAX_NAME_BYTES: usize = 256;

/// `text` cut to `max` bytes, marked with an ellipsis when cut.
fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    format!("{}…", truncate_utf8(text, max))
}

/// What a mail says, reduced to what a chat message shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMail {
    /// First address of the From header, when it is one facteur can map.
    pub author: Option<MailAddress>,
    /// Display name of that address.
    pub author_name: Option<String>,
    /// Decoded Subject header.
    pub subject: Option<String>,
    /// Readable text of the message, XML-safe and size-capped.
    pub text: String,
    /// The HTML body, sanitised and XML-safe, when the mail has one.
    pub html: Option<String>,
    /// The stored attachments, with their links.
    pub files: Vec<SharedFile>,
    /// Message-ID header, without angle brackets.
    pub message_id: Option<String>,
    /// Date header, seconds since the Unix epoch.
    pub date: Option<i64>,
    /// In-Reply-To, without angle brackets.
    pub in_reply_to: Vec<String>,
    /// References, without angle brackets, oldest first.
    pub references: Vec<String>,
    /// To and Cc recipients, as (kind, address, display name).
    pub recipients: Vec<(&'static str, MailAddress, Option<String>)>,
    /// Mailing-list headers present, unfolded.
    pub list_headers: Vec<(String, String)>,
    /// What the gateway's checks found (`spf=… dkim=… dmarc=… arc=…`);
    /// the daemon sets it, reading a mail does not.
    pub auth: Option<String>,
    /// Why the user should distrust the sender; the daemon sets it when a
    /// check failed and the operator chose to mark such mail.
    pub warning: Option<String>,
    /// The spam score and its reasons when the gateway marks the mail as
    /// likely spam: `[Spam?] ` heads the text and `<spam/>` goes in
    /// `<mail/>`.
    pub spam: Option<(String, String)>,
}

/// The readable text and the sanitised HTML of a mail: text/plain when
/// there is one (format=flowed unwrapped), else the HTML as styled text.
fn bodies(message: &mail_parser::Message<'_>, files: &[SharedFile]) -> (String, Option<String>) {
    let html = message
        .html_part(0)
        .filter(|part| part.is_text_html())
        .and_then(|part| part.text_contents())
        .map(str::to_owned);
    let plain = message
        .text_part(0)
        .filter(|part| part.is_text() && !part.is_text_html());
    let text = match plain {
        Some(part) => {
            let content = part.text_contents().unwrap_or_default();
            let parameter = |name: &str| {
                part.content_type()
                    .and_then(|ct| ct.attribute(name))
                    .is_some_and(|v| {
                        v.eq_ignore_ascii_case(if name == "format" { "flowed" } else { "yes" })
                    })
            };
            if parameter("format") {
                body::unflow(content, parameter("delsp"))
            } else {
                content.trim_end().to_owned()
            }
        }
        None => match &html {
            Some(html) => body::html_to_text(html),
            None => message
                .body_text(0)
                .map(|t| t.trim_end().to_owned())
                .unwrap_or_default(),
        },
    };
    let cid_urls = files
        .iter()
        .filter_map(|f| Some((f.content_id.clone()?, f.url.clone())))
        .collect();
    let html = html.map(|h| xml_safe(&body::sanitize_html(&h, &cid_urls)));
    (text, html)
}

fn id_list(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .map(|ids| {
            ids.iter()
                .map(|id| capped(&xml_safe(id.trim()), MAX_NAME_BYTES))
                .filter(|id| !id.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `1234` → `1.2 KB`.
fn human_size(bytes: u64) -> String {
    match bytes {
        0..=999 => format!("{bytes} bytes"),
        1_000..=999_999 => format!("{:.1} KB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// Keeps the root and the latest references when there are too many.
fn trimmed(mut ids: Vec<String>) -> Vec<String> {
    if ids.len() > MAX_REFERENCES {
        let tail = ids.split_off(ids.len() - (MAX_REFERENCES - 1));
        ids.truncate(1);
        ids.extend(tail);
    }
    ids
}

/// Reads a raw mail. Broken MIME degrades to whatever text can be found;
/// only bytes with no header/body structure at all are refused.
pub fn read_mail(raw: &[u8]) -> Result<IncomingMail, Error> {
    read_mail_with(raw, &[])
}

/// Reads a raw mail whose attachments are stored and reachable as
/// `files` (in the order of [`crate::attach::attachments`]): the text
/// lists them with their links, `cid:` images in the HTML point at them.
pub fn read_mail_with(raw: &[u8], files: &[SharedFile]) -> Result<IncomingMail, Error> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(Error::Unparsable)?;
    Ok(read_message(&message, files))
}

/// Whether [`read_mail`] can read `raw` at all, at the cost of a header
/// parse for all but header-less input (mail-parser reads a mail whose
/// headers it reads).
pub fn is_readable(raw: &[u8]) -> bool {
    let parser = MessageParser::default();
    parser.parse_headers(raw).is_some() || parser.parse(raw).is_some()
}

/// [`read_mail_with`] of a mail already parsed, so that one parse serves
/// the attachments ([`crate::attach::attachments_of`]) and the text.
pub fn read_message(message: &mail_parser::Message<'_>, files: &[SharedFile]) -> IncomingMail {
    let (author, author_name) = message
        .from()
        .and_then(Address::first)
        .map(|addr| {
            let mailbox = addr.address().and_then(|a| MailAddress::parse(a).ok());
            let name = addr
                .name()
                .map(|n| capped(&xml_safe(n.trim()), MAX_NAME_BYTES))
                .filter(|n| !n.is_empty());
            (mailbox, name)
        })
        .unwrap_or((None, None));
    let subject = message
        .subject()
        .map(|s| capped(&xml_safe(s.trim()), MAX_SUBJECT_BYTES))
        .filter(|s| !s.is_empty());

    let (text, html) = bodies(message, files);
    // XMPP bodies end lines with LF alone.
    let mut text = xml_safe_lf(&text);
    if text.len() > MAX_BODY_BYTES {
        let more = text.len() - MAX_BODY_BYTES;
        let kept = truncate_utf8(&text, MAX_BODY_BYTES).len();
        text.truncate(kept);
        text.push_str(&format!("\n[… {more} more bytes not shown]"));
    }
    let listing: Vec<String> = message
        .attachments()
        .enumerate()
        .map(|(index, part)| match files.get(index) {
            Some(file) => format!(
                "[attachment: {} ({}, {})] {}",
                file.name,
                file.content_type,
                human_size(file.size),
                file.url
            ),
            None => {
                let name = part.attachment_name().unwrap_or("unnamed");
                let kind = part
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_owned(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".to_owned());
                xml_safe(&format!(
                    "[attachment: {name} ({kind}, {})]",
                    human_size(part.len() as u64)
                ))
            }
        })
        .collect();
    if !listing.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&listing.join("\n"));
    }
    if text.is_empty() {
        text = "(no text)".to_owned();
    }
    let mut recipients = Vec::new();
    for (kind, list) in [("to", message.to()), ("cc", message.cc())] {
        for addr in list.into_iter().flat_map(Address::iter) {
            if let Some(mailbox) = addr.address().and_then(|a| MailAddress::parse(a).ok()) {
                let name = addr
                    .name()
                    .map(|n| capped(&xml_safe(n.trim()), MAX_NAME_BYTES))
                    .filter(|n| !n.is_empty());
                recipients.push((kind, mailbox, name));
            }
        }
    }
    let list_headers = LIST_HEADERS
        .iter()
        .filter_map(|name| {
            let raw = message.header_raw(HeaderName::parse(*name)?)?;
            let value = raw.split_whitespace().collect::<Vec<_>>().join(" ");
            Some((
                (*name).to_owned(),
                capped(&xml_safe(&value), MAX_SUBJECT_BYTES),
            ))
        })
        .collect();
    IncomingMail {
        author,
        author_name,
        subject,
        text,
        html,
        files: files.to_vec(),
        message_id: message
            .message_id()
            .map(|id| capped(&xml_safe(id), MAX_NAME_BYTES)),
        date: message.date().map(|d| d.to_timestamp()),
        in_reply_to: id_list(message.in_reply_to()),
        references: trimmed(id_list(message.references())),
        recipients,
        list_headers,
        auth: None,
        warning: None,
        spam: None,
    }
}

/// The parent a reply points at (XEP-0461), as the client knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    /// Author of the parent message.
    pub to: Jid,
    /// Stanza id of the parent message.
    pub id: String,
}

/// Where a stanza goes and what it answers.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The escaped JID of the author.
    pub from: BareJid,
    /// The user it is delivered to.
    pub to: BareJid,
    /// The stanza id: stable across retries and copies.
    pub id: &'a str,
    /// The gateway's domain, for the JIDs of other recipients.
    pub gateway: &'a jid::DomainRef,
    /// Served domains: their users are addressed by their own JID.
    pub served: &'a [String],
    /// The parent message, when the user has it.
    pub reply: Option<ReplyTarget>,
}

/// The JID at which a mail address is reached from XMPP.
pub fn jid_for_address(
    address: &MailAddress,
    gateway: &jid::DomainRef,
    served: &[String],
) -> Option<BareJid> {
    if served.iter().any(|d| d == address.domain()) {
        BareJid::new(&address.to_string()).ok()
    } else {
        mailbox_to_jid(address, gateway).ok()
    }
}

/// The chat message a user receives for `mail`.
pub fn to_stanza(mail: &IncomingMail, envelope: &Envelope<'_>) -> Message {
    let mut message = Message::new_with_type(MessageType::Chat, Some(envelope.to.clone().into()));
    message.from = Some(envelope.from.clone().into());
    message.id = Some(xmpp_parsers::message::Id(envelope.id.to_owned()));
    if let Some(subject) = &mail.subject {
        message.subjects.insert(Lang::default(), subject.clone());
    }
    let text = match &mail.warning {
        Some(warning) => format!(
            "[Unverified sender: {}]\n\n{}",
            xml_safe(warning),
            mail.text
        ),
        None => mail.text.clone(),
    };
    let text = match &mail.spam {
        Some(_) => format!("[Spam?] {text}"),
        None => text,
    };
    message.bodies.insert(Lang::default(), text);
    if let Some(html) = mail.html.as_ref().filter(|h| h.len() <= MAX_HTML_BYTES) {
        message.payloads.push(
            xmpp_parsers::minidom::Element::builder("content", NS_CONTENT)
                .attr(
                    xmpp_parsers::minidom::rxml::xml_ncname!("type").into(),
                    "text/html",
                )
                .append(html.as_str())
                .build(),
        );
    }
    for file in &mail.files {
        message.payloads.push(attach::file_sharing(file));
    }
    for file in &mail.files {
        message
            .payloads
            .push(attach::oob(&file.url, Some(&file.name)));
    }
    if let Some(thread) = thread_for(
        mail.message_id.as_deref(),
        &mail.in_reply_to,
        &mail.references,
    ) {
        message.thread = Some(Thread {
            parent: None,
            id: thread,
        });
    }
    message.payloads.push(wire::origin_id(envelope.id));
    if let Some(reply) = &envelope.reply {
        message.payloads.push(wire::reply(&reply.to, &reply.id));
    }
    let mut mail_element = wire::mail_element(
        mail.message_id.as_deref(),
        mail.date,
        &mail.in_reply_to,
        &mail.references,
    );
    if let Some(auth) = mail.auth.as_deref().and_then(wire::auth) {
        mail_element.append_child(auth);
    }
    if let Some((score, reasons)) = &mail.spam {
        mail_element.append_child(wire::spam(&xml_safe(score), &xml_safe(reasons)));
    }
    message.payloads.push(mail_element);
    let others: Vec<wire::Address> = mail
        .recipients
        .iter()
        .filter_map(|(kind, address, name)| {
            let jid = jid_for_address(address, envelope.gateway, envelope.served)?;
            (jid != envelope.to).then(|| wire::Address {
                kind,
                jid: jid.into(),
                desc: name.clone(),
            })
        })
        .collect();
    if !others.is_empty() {
        message.payloads.push(wire::addresses(&others));
    }
    if !mail.list_headers.is_empty() {
        message.payloads.push(wire::headers(&mail.list_headers));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).expect("valid jid")
    }

    #[test]
    fn plain_utf8_mail() {
        let raw = b"From: Bob <bob@example.net>\r\nTo: alice@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <m1@example.net>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa7a va ? \xe6\x97\xa5\xe6\x9c\xac\r\n";
        let mail = read_mail(raw).expect("parses");
        assert_eq!(
            mail.author.as_ref().map(ToString::to_string).as_deref(),
            Some("bob@example.net")
        );
        assert_eq!(mail.author_name.as_deref(), Some("Bob"));
        assert_eq!(mail.subject.as_deref(), Some("Grüße"));
        assert_eq!(mail.text, "ça va ? 日本");
        assert_eq!(mail.message_id.as_deref(), Some("m1@example.net"));

        let gateway = jid("mail.example.test");
        let stanza = to_stanza(
            &mail,
            &Envelope {
                from: jid("bob\\40example.net@mail.example.test"),
                to: jid("alice@example.test"),
                id: "mail-1",
                gateway: gateway.domain(),
                served: &["example.test".to_owned()],
                reply: None,
            },
        );
        let xml = String::from(&xmpp_parsers::minidom::Element::from(stanza));
        assert!(xml.contains("<subject>Grüße</subject>"), "{xml}");
        assert!(xml.contains("<body>ça va ? 日本</body>"), "{xml}");
        assert!(xml.contains("type='chat'"), "{xml}");
        assert!(xml.contains("id='mail-1'"), "{xml}");
        assert!(!xml.contains("<spam"), "{xml}");

        // Marked as likely spam: the text says so first, and <mail/>
        // carries the score.
        let mut marked = mail.clone();
        marked.spam = Some(("7.8".into(), "auth,bayes:0.99".into()));
        let stanza = to_stanza(
            &marked,
            &Envelope {
                from: jid("bob\\40example.net@mail.example.test"),
                to: jid("alice@example.test"),
                id: "mail-1",
                gateway: gateway.domain(),
                served: &["example.test".to_owned()],
                reply: None,
            },
        );
        let element = xmpp_parsers::minidom::Element::from(stanza);
        let xml = String::from(&element);
        assert!(xml.contains("<body>[Spam?] ça va ? 日本</body>"), "{xml}");
        let spam = element
            .get_child("mail", crate::wire::NS_MAIL)
            .and_then(|mail| mail.get_child("spam", crate::wire::NS_MAIL))
            .map(|spam| (spam.attr("score"), spam.attr("reasons")));
        assert_eq!(spam, Some((Some("7.8"), Some("auth,bayes:0.99"))), "{xml}");
    }

    #[test]
    fn thread_headers_recipients_and_list_headers() {
        let raw = b"From: Bob <bob@example.net>\r\nTo: alice@example.test, Dave <dave@example.org>\r\nCc: Carol <carol@example.test>\r\nSubject: Re: plans\r\nMessage-ID: <c@example.net>\r\nIn-Reply-To: <b@example.net>\r\nReferences: <a@example.net>\r\n <b@example.net>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\nList-Id: Plans <plans.example.net>\r\nList-Unsubscribe: <mailto:leave@example.net>\r\n\r\nok\r\n";
        let mail = read_mail(raw).expect("parses");
        assert_eq!(mail.in_reply_to, ["b@example.net"]);
        assert_eq!(mail.references, ["a@example.net", "b@example.net"]);
        assert_eq!(mail.date, Some(1_700_000_000));
        let gateway = jid("mail.example.test");
        let stanza = to_stanza(
            &mail,
            &Envelope {
                from: jid("bob\\40example.net@mail.example.test"),
                to: jid("alice@example.test"),
                id: "mail-c",
                gateway: gateway.domain(),
                served: &["example.test".to_owned()],
                reply: Some(ReplyTarget {
                    to: jid("alice@example.test").into(),
                    id: "s-b".into(),
                }),
            },
        );
        let thread = stanza.thread.clone().expect("thread").id;
        assert_eq!(
            Some(thread.clone()),
            crate::threading::thread_for(Some("a@example.net"), &[], &[])
        );
        let xml = String::from(&xmpp_parsers::minidom::Element::from(stanza));
        for part in [
            "<origin-id xmlns='urn:xmpp:sid:0' id='mail-c'/>",
            "<reply xmlns='urn:xmpp:reply:0' id='s-b' to='alice@example.test'/>",
            "<mail xmlns='urn:xmpp:mail:0' date='1700000000' message-id='c@example.net'><in-reply-to>&lt;b@example.net&gt;</in-reply-to><references>&lt;a@example.net&gt; &lt;b@example.net&gt;</references></mail>",
            "<address delivered='true' desc='Dave' jid='dave\\40example.org@mail.example.test' type='to'/>",
            "<address delivered='true' desc='Carol' jid='carol@example.test' type='cc'/>",
            "<header name='List-Id'>Plans &lt;plans.example.net&gt;</header>",
            "<header name='List-Unsubscribe'>&lt;mailto:leave@example.net&gt;</header>",
        ] {
            assert!(xml.contains(part), "{part} not in {xml}");
        }
        assert!(
            !xml.contains("jid='alice@example.test' type='to'"),
            "the recipient is not listed: {xml}"
        );
    }

    #[test]
    fn html_only_mail_becomes_text() {
        let raw = b"From: a@example.net\r\nSubject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello <b>there</b></p><p>second</p></body></html>\r\n";
        let mail = read_mail(raw).expect("parses");
        assert!(mail.text.contains("Hello"), "{}", mail.text);
        assert!(mail.text.contains("second"), "{}", mail.text);
        assert!(!mail.text.contains("<p>"), "{}", mail.text);
    }

    #[test]
    fn html_travels_sanitised_as_xep_0481_content() {
        let raw = b"From: a@example.net\r\nSubject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p onclick='x()'>Hi <b>you</b></p><script>alert(1)</script>\r\n";
        let mail = read_mail(raw).expect("parses");
        assert_eq!(mail.text, "Hi *you*");
        let gateway = jid("mail.example.test");
        let stanza = to_stanza(
            &mail,
            &Envelope {
                from: jid("a\\40example.net@mail.example.test"),
                to: jid("alice@example.test"),
                id: "m",
                gateway: gateway.domain(),
                served: &[],
                reply: None,
            },
        );
        let xml = String::from(&xmpp_parsers::minidom::Element::from(stanza));
        assert!(xml.contains("<content xmlns='urn:xmpp:content' type='text/html'>&lt;p&gt;Hi &lt;b&gt;you&lt;/b&gt;&lt;/p&gt;"), "{xml}");
        assert!(!xml.contains("script") && !xml.contains("onclick"), "{xml}");
    }

    #[test]
    fn flowed_text_is_unwrapped() {
        let raw = b"From: a@example.net\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\nA long line that \r\nwas wrapped.\r\n> and a quote \r\n> also wrapped\r\n";
        assert_eq!(
            read_mail(raw).expect("parses").text,
            "A long line that was wrapped.\n> and a quote also wrapped"
        );
    }

    #[test]
    fn controls_never_reach_the_stanza() {
        let raw = b"From: a@example.net\r\nSubject: x\x00y\r\n\r\nnul\x00here \x1b[31m\r\n";
        let mail = read_mail(raw).expect("parses");
        assert!(!mail.text.contains('\0'));
        assert!(!mail.text.contains('\u{1b}'));
        assert!(!mail.subject.unwrap_or_default().contains('\0'));
    }

    #[test]
    fn attachments_are_named() {
        let raw = b"From: a@example.net\r\nSubject: doc\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\nContent-Type: application/pdf; name=report.pdf\r\nContent-Disposition: attachment; filename=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n";
        let mail = read_mail(raw).expect("parses");
        assert!(mail.text.starts_with("see attached"), "{}", mail.text);
        assert!(
            mail.text
                .contains("[attachment: report.pdf (application/pdf, 9 bytes)]"),
            "{}",
            mail.text
        );
    }

    #[test]
    fn huge_headers_are_cut() {
        let mut raw = b"From: ".to_vec();
        raw.extend(std::iter::repeat_n(b'n', 5000));
        raw.extend_from_slice(b" <a@example.net>\r\nSubject: ");
        raw.extend(std::iter::repeat_n(b's', 1_000_000));
        raw.extend_from_slice(b"\r\n\r\nbody\r\n");
        let mail = read_mail(&raw).expect("parses");
        let subject = mail.subject.expect("subject");
        assert_eq!(subject.len(), MAX_SUBJECT_BYTES + "…".len());
        assert!(mail.author_name.expect("name").len() <= MAX_NAME_BYTES + "…".len());
        assert_eq!(mail.text, "body");
    }

    #[test]
    fn readable_is_what_read_mail_reads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/eml");
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .expect("fixtures")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("fixture"))
            .collect();
        for odd in [
            &b""[..],
            b"\r\n",
            b"\r\n\r\nbody only",
            b"no colon at all",
            b"\xff\xfe\x00",
            b"Subject: no body",
            b"From: a@example.net\r\n",
        ] {
            inputs.push(odd.to_vec());
        }
        for raw in inputs {
            assert_eq!(
                is_readable(&raw),
                read_mail(&raw).is_ok(),
                "{:?}",
                String::from_utf8_lossy(&raw)
            );
        }
    }

    #[test]
    fn huge_bodies_are_cut() {
        let mut raw = b"From: a@example.net\r\nSubject: big\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES + 1000));
        let mail = read_mail(&raw).expect("parses");
        assert!(mail.text.len() < MAX_BODY_BYTES + 100);
        assert!(
            mail.text.ends_with("more bytes not shown]"),
            "{}",
            &mail.text[mail.text.len() - 50..]
        );
    }
}
