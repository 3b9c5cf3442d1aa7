//! The elements facteur adds to a message stanza: `<mail
//! xmlns='urn:xmpp:mail:0'>` (facteur's own, provisional namespace,
//! specified in `doc/xmpp-mail.md` §6), XEP-0359 origin-id, XEP-0461
//! reply, XEP-0033 addresses, XEP-0131 headers.

use jid::Jid;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;

/// facteur's namespace for mail metadata.
pub const NS_MAIL: &str = "urn:xmpp:mail:0";
/// XEP-0359 Unique and Stable Stanza IDs.
pub const NS_SID: &str = "urn:xmpp:sid:0";
/// XEP-0461 Message Replies.
pub const NS_REPLY: &str = "urn:xmpp:reply:0";
/// XEP-0033 Extended Stanza Addressing.
pub const NS_ADDRESS: &str = "http://jabber.org/protocol/address";
/// XEP-0131 Stanza Headers and Internet Metadata.
pub const NS_SHIM: &str = "http://jabber.org/protocol/shim";

/// Message-IDs as a header writes them: `<a@x> <b@y>`.
pub fn id_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("<{id}>"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `<mail xmlns='urn:xmpp:mail:0' message-id=… date=…>` with the thread
/// headers of the mail.
pub fn mail_element(
    message_id: Option<&str>,
    date: Option<i64>,
    in_reply_to: &[String],
    references: &[String],
) -> Element {
    let mut mail = Element::builder("mail", NS_MAIL);
    if let Some(id) = message_id {
        mail = mail.attr(xml_ncname!("message-id").into(), id);
    }
    if let Some(date) = date {
        mail = mail.attr(xml_ncname!("date").into(), date.to_string());
    }
    if !in_reply_to.is_empty() {
        mail = mail.append(
            Element::builder("in-reply-to", NS_MAIL)
                .append(id_list(in_reply_to))
                .build(),
        );
    }
    if !references.is_empty() {
        mail = mail.append(
            Element::builder("references", NS_MAIL)
                .append(id_list(references))
                .build(),
        );
    }
    mail.build()
}

/// The checks `<auth/>` names, as its attributes.
const AUTH_METHODS: [&str; 4] = ["spf", "dkim", "dmarc", "arc"];

/// `<spam score=… reasons=…/>` inside `<mail>`: the gateway judged the
/// mail likely spam and delivered it marked. `score` is in points (the
/// higher, the likelier spam); `reasons` is a comma-separated list of what
/// counted (`auth`, `bayes:0.99`, `list:NAME:WHAT`).
pub fn spam(score: &str, reasons: &str) -> Element {
    Element::builder("spam", NS_MAIL)
        .attr(xml_ncname!("score").into(), score)
        .attr(xml_ncname!("reasons").into(), reasons)
        .build()
}

/// `<auth spf=… dkim=… dmarc=… arc=…/>` inside `<mail>`: what the gateway's
/// checks of an inbound mail found, from `spf=pass dkim=none …`. Unknown
/// methods and values that are not plain words are left out.
pub fn auth(summary: &str) -> Option<Element> {
    let mut auth = Element::builder("auth", NS_MAIL);
    let mut any = false;
    for (method, result) in summary.split_whitespace().filter_map(|p| p.split_once('=')) {
        let Some(name) = AUTH_METHODS.iter().find(|m| **m == method) else {
            continue;
        };
        if result.is_empty() || !result.chars().all(|c| c.is_ascii_lowercase()) {
            continue;
        }
        let attribute = match *name {
            "spf" => xml_ncname!("spf"),
            "dkim" => xml_ncname!("dkim"),
            "dmarc" => xml_ncname!("dmarc"),
            _ => xml_ncname!("arc"),
        };
        auth = auth.attr(attribute.into(), result);
        any = true;
    }
    any.then(|| auth.build())
}

/// `<origin-id xmlns='urn:xmpp:sid:0' id=…/>`.
pub fn origin_id(id: &str) -> Element {
    Element::builder("origin-id", NS_SID)
        .attr(xml_ncname!("id").into(), id)
        .build()
}

/// `<reply xmlns='urn:xmpp:reply:0' to=… id=…/>`: `id` is the stanza id
/// the client knows the parent by, `to` its author.
pub fn reply(to: &Jid, id: &str) -> Element {
    Element::builder("reply", NS_REPLY)
        .attr(xml_ncname!("to").into(), to.to_string())
        .attr(xml_ncname!("id").into(), id)
        .build()
}

/// One XEP-0033 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `to` or `cc`.
    pub kind: &'static str,
    /// The JID the address is reached at.
    pub jid: Jid,
    /// The display name, if any.
    pub desc: Option<String>,
}

/// `<addresses xmlns='http://jabber.org/protocol/address'>`, marked
/// delivered: facteur already delivered to every served recipient.
pub fn addresses(list: &[Address]) -> Element {
    let mut addresses = Element::builder("addresses", NS_ADDRESS);
    for address in list {
        let mut element = Element::builder("address", NS_ADDRESS)
            .attr(xml_ncname!("type").into(), address.kind)
            .attr(xml_ncname!("jid").into(), address.jid.to_string())
            .attr(xml_ncname!("delivered").into(), "true");
        if let Some(desc) = &address.desc {
            element = element.attr(xml_ncname!("desc").into(), desc.as_str());
        }
        addresses = addresses.append(element.build());
    }
    addresses.build()
}

/// `<headers xmlns='http://jabber.org/protocol/shim'>`.
pub fn headers(list: &[(String, String)]) -> Element {
    let mut headers = Element::builder("headers", NS_SHIM);
    for (name, value) in list {
        headers = headers.append(
            Element::builder("header", NS_SHIM)
                .attr(xml_ncname!("name").into(), name.as_str())
                .append(value.as_str())
                .build(),
        );
    }
    headers.build()
}
