//! The message a mail travels as between XMPP-Mail domains
//! (doc/xmpp-mail.md §7): what of the author's stanza travels, with
//! `<mail/>` and an origin-id derived from the Message-ID; sent as the
//! author's own message inside a XEP-0356 privilege wrapper (§7.1), or
//! handed to the recipient's gateway with XEP-0033 addresses (§7.2).

use jid::{BareJid, Jid};
use xmpp_parsers::message::{Id, Message, MessageType, Thread};
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::{Element, Node};

use crate::attach::{NS_OOB, NS_SFS};
use crate::threading::stanza_id_for_mail;
use crate::wire::{mail_element, origin_id, NS_ADDRESS};

/// XEP-0297 Stanza Forwarding.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0356 Privileged Entity, as Prosody's mod_privilege speaks it.
pub const NS_PRIVILEGE_2: &str = "urn:xmpp:privilege:2";
/// XEP-0356 0.2, as ejabberd 23.01 speaks it.
pub const NS_PRIVILEGE_1: &str = "urn:xmpp:privilege:1";
/// The namespace of a client's stanzas.
const NS_CLIENT: &str = "jabber:client";
/// XEP-0184 Message Delivery Receipts.
const NS_RECEIPTS: &str = "urn:xmpp:receipts";
const NS_STYLING: &str = "urn:xmpp:styling:0";

/// What a mail is besides its stanza.
#[derive(Debug, Clone)]
pub struct MailMeta<'a> {
    /// Message-ID without angle brackets.
    pub message_id: &'a str,
    /// Date, seconds since the Unix epoch.
    pub date: i64,
    /// The `<thread>` of the conversation.
    pub thread: &'a str,
    /// The Message-ID this answers.
    pub in_reply_to: Option<&'a str>,
    /// References, oldest first.
    pub references: &'a [String],
}

/// The mail as a chat message without `from` and `to`: the author's
/// subject, body and shared files (XEP-0066, XEP-0447), the thread, the
/// `<mail/>` element and an origin-id. Other payloads of the author's
/// stanza (chat states, receipts requests, client markers) stay behind.
pub fn mail_message(author: &Message, meta: &MailMeta<'_>) -> Message {
    let id = stanza_id_for_mail(meta.message_id);
    let mut message = Message::new_with_type(MessageType::Chat, None);
    message.id = Some(Id(id.clone()));
    if let Some((lang, subject)) = author.subjects.iter().next() {
        message.subjects.insert(lang.clone(), subject.clone());
    }
    if let Some((lang, body)) = author.bodies.iter().next() {
        message.bodies.insert(lang.clone(), body.clone());
    }
    if !meta.thread.is_empty() {
        message.thread = Some(Thread {
            parent: None,
            id: meta.thread.to_owned(),
        });
    }
    message.payloads.extend(
        author
            .payloads
            .iter()
            .filter(|p| p.is("x", NS_OOB) || p.is("file-sharing", NS_SFS))
            .chain(
                author
                    .payloads
                    .iter()
                    .filter(|p| p.is("unstyled", NS_STYLING)),
            )
            .cloned(),
    );
    message.payloads.push(origin_id(&id));
    let in_reply_to: Vec<String> = meta.in_reply_to.iter().map(|s| s.to_string()).collect();
    message.payloads.push(mail_element(
        Some(meta.message_id),
        Some(meta.date),
        &in_reply_to,
        meta.references,
    ));
    message
}

/// The stored form of a mail message: its XML.
pub fn to_xml(message: &Message) -> String {
    String::from(&Element::from(message.clone()))
}

/// Reads a stored mail message back.
pub fn from_xml(xml: &str) -> Option<Message> {
    let element: Element = xml.parse().ok()?;
    Message::try_from(element).ok()
}

/// The author's own message from `author` to `rcpt`, wrapped for the
/// author's server (`server`), which sends it on (XEP-0356 §6.2): the
/// inner message carries the author's bare JID as `from`.
pub fn privileged(
    mut message: Message,
    privilege_ns: &str,
    gateway: &BareJid,
    server: &BareJid,
    author: &BareJid,
    rcpt: &BareJid,
) -> Message {
    let id = message.id.clone();
    message.from = Some(Jid::from(author.clone()));
    message.to = Some(Jid::from(rcpt.clone()));
    // The component stream's namespace is not the inner message's: that
    // one is a client's (jabber:client), as the server sends it on.
    let inner = renamespaced(Element::from(message), NS_CLIENT);
    let forwarded = Element::builder("forwarded", NS_FORWARD)
        .append(inner)
        .build();
    let privilege = Element::builder("privilege", privilege_ns)
        .append(forwarded)
        .build();
    let mut wrapper = Message::new_with_type(MessageType::Normal, Some(Jid::from(server.clone())));
    wrapper.from = Some(Jid::from(gateway.clone()));
    wrapper.id = id;
    wrapper.payloads.push(privilege);
    wrapper
}

/// `element` and its children of the same namespace, moved to `ns`.
fn renamespaced(mut element: Element, ns: &str) -> Element {
    let old = element.ns();
    let mut moved = Element::bare(element.name(), ns);
    *moved.attrs_mut() = element.attrs().clone();
    for node in element.take_nodes() {
        match node {
            Node::Element(child) if child.ns() == old => {
                moved.append_child(renamespaced(child, ns));
            }
            other => moved.append_node(other),
        }
    }
    moved
}

/// The mail handed to the recipient's gateway (§7.2): from our gateway,
/// naming the author (`ofrom`) and the recipient (`to`), with a receipt
/// asked for.
pub fn handoff(
    mut message: Message,
    gateway: &BareJid,
    to_gateway: &BareJid,
    author: &BareJid,
    rcpt: &BareJid,
) -> Message {
    message.type_ = MessageType::Normal;
    message.from = Some(Jid::from(gateway.clone()));
    message.to = Some(Jid::from(to_gateway.clone()));
    let address = |kind: &str, jid: &BareJid| {
        Element::builder("address", NS_ADDRESS)
            .attr(xml_ncname!("type").into(), kind)
            .attr(xml_ncname!("jid").into(), jid.as_str())
            .build()
    };
    message.payloads.insert(
        0,
        Element::builder("addresses", NS_ADDRESS)
            .append(address("ofrom", author))
            .append(address("to", rcpt))
            .build(),
    );
    message
        .payloads
        .push(Element::builder("request", NS_RECEIPTS).build());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author_stanza() -> Message {
        let xml = "<message xmlns='jabber:component:accept' type='chat' id='c1' \
            from='alice@a.test/phone' to='bob\\40b.test@mail.a.test'>\
            <subject>Lunch</subject><body>https://up.a.test/f/menu.pdf</body>\
            <x xmlns='jabber:x:oob'><url>https://up.a.test/f/menu.pdf</url></x>\
            <active xmlns='http://jabber.org/protocol/chatstates'/>\
            <request xmlns='urn:xmpp:receipts'/>\
            <markable xmlns='urn:xmpp:chat-markers:0'/></message>";
        Message::try_from(xml.parse::<Element>().unwrap()).unwrap()
    }

    fn meta() -> MailMeta<'static> {
        MailMeta {
            message_id: "abc@a.test",
            date: 1_764_547_200,
            thread: "t1",
            in_reply_to: Some("parent@b.test"),
            references: &[],
        }
    }

    #[test]
    fn the_mail_message_keeps_what_a_mail_is_made_of() {
        let message = mail_message(&author_stanza(), &meta());
        let xml = to_xml(&message);
        assert!(xml.contains("<subject>Lunch</subject>"), "{xml}");
        assert!(
            xml.contains("<url>https://up.a.test/f/menu.pdf</url>"),
            "{xml}"
        );
        assert!(xml.contains("<thread>t1</thread>"), "{xml}");
        assert!(
            xml.contains("message-id=\"abc@a.test\"") || xml.contains("message-id='abc@a.test'"),
            "{xml}"
        );
        assert!(xml.contains("&lt;parent@b.test&gt;"), "{xml}");
        for left in ["chatstates", "urn:xmpp:receipts", "chat-markers", "alice@"] {
            assert!(!xml.contains(left), "{left} in {xml}");
        }
        let id = stanza_id_for_mail("abc@a.test");
        assert_eq!(message.id, Some(Id(id.clone())));
        assert!(xml.contains(&id));
        let back = from_xml(&xml).expect("stored message reads back");
        assert_eq!(to_xml(&back), xml);
    }

    #[test]
    fn a_privileged_message_forwards_the_authors_bare_jid() {
        let message = mail_message(&author_stanza(), &meta());
        let wrapped = privileged(
            message,
            NS_PRIVILEGE_2,
            &BareJid::new("mail.a.test").unwrap(),
            &BareJid::new("a.test").unwrap(),
            &BareJid::new("alice@a.test").unwrap(),
            &BareJid::new("bob@b.test").unwrap(),
        );
        let xml = String::from(&Element::from(wrapped));
        let privilege = xml.find("urn:xmpp:privilege:2").unwrap();
        let forwarded = xml.find("urn:xmpp:forward:0").unwrap();
        let inner = xml
            .find("from=\"alice@a.test\"")
            .or_else(|| xml.find("from='alice@a.test'"));
        assert!(privilege < forwarded && Some(forwarded) < inner, "{xml}");
        assert!(xml.contains("<message xmlns='jabber:client'"), "{xml}");
        assert!(
            xml.contains("from='mail.a.test' id=") && xml.contains("to='a.test'>"),
            "{xml}"
        );
        assert!(xml.contains("<body>"), "{xml}");
        assert!(xml.starts_with("<message"), "{xml}");
    }

    #[test]
    fn a_handoff_names_author_and_recipient() {
        let message = mail_message(&author_stanza(), &meta());
        let handed = handoff(
            message,
            &BareJid::new("mail.a.test").unwrap(),
            &BareJid::new("mail.b.test").unwrap(),
            &BareJid::new("alice@a.test").unwrap(),
            &BareJid::new("bob@b.test").unwrap(),
        );
        assert_eq!(handed.type_, MessageType::Normal);
        let xml = to_xml(&handed);
        for needle in [
            "ofrom",
            "alice@a.test",
            "bob@b.test",
            "urn:xmpp:receipts",
            "mail.b.test",
        ] {
            assert!(xml.contains(needle), "{needle} in {xml}");
        }
    }
}
