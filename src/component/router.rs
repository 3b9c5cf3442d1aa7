//! Answers to what needs no store: service discovery (XEP-0030), the
//! gateway prompt (XEP-0100 `jabber:iq:gateway`), ping (XEP-0199),
//! version (XEP-0092), presence subscriptions to mail contacts. Anything
//! else gets an error, never silence.

use facteur_bridge::{mailbox_to_jid, MailAddress};
use tokio_xmpp::xmlstream::RawStanzaHeader;
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::config::Config;

pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const NS_REGISTER: &str = "jabber:iq:register";
pub const NS_GATEWAY: &str = "jabber:iq:gateway";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const NS_VERSION: &str = "jabber:iq:version";
pub const NS_JID_ESCAPING: &str = "jid\\20escaping";
pub const NS_VCARD: &str = "vcard-temp";

/// Features announced in disco#info: what is implemented.
const FEATURES: [&str; 7] = [
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_GATEWAY,
    NS_JID_ESCAPING,
    NS_PING,
    NS_REGISTER,
    NS_VERSION,
];

pub enum IqRoute {
    Reply(Iq),
    /// Needs the store: registration.
    Intake(Iq),
}

/// A result IQ answering `iq`.
pub fn result(iq: &Iq, payload: Option<Element>) -> Iq {
    Iq::Result {
        from: iq.to().cloned(),
        to: iq.from().cloned(),
        id: iq.id().to_owned(),
        payload,
    }
}

/// An error IQ answering `iq`.
pub fn error(iq: &Iq, type_: ErrorType, condition: DefinedCondition, text: &str) -> Iq {
    Iq::Error {
        from: iq.to().cloned(),
        to: iq.from().cloned(),
        id: iq.id().to_owned(),
        error: StanzaError::new(type_, condition, "en", text),
        payload: None,
    }
}

/// An error message answering `message`.
pub fn message_error(
    message: &Message,
    type_: ErrorType,
    condition: DefinedCondition,
    text: &str,
) -> Message {
    let mut reply = Message::new_with_type(MessageType::Error, message.from.clone());
    reply.from = message.to.clone();
    reply.id = message.id.clone();
    reply
        .payloads
        .push(StanzaError::new(type_, condition, "en", text).into());
    reply
}

pub fn answer_iq(config: &Config, iq: Iq) -> IqRoute {
    let (payload, is_get) = match &iq {
        Iq::Get { payload, .. } => (payload, true),
        Iq::Set { payload, .. } => (payload, false),
        _ => {
            return IqRoute::Reply(error(
                &iq,
                ErrorType::Cancel,
                DefinedCondition::BadRequest,
                "not a request",
            ))
        }
    };
    let to_component = iq.to().is_none_or(|to| to.node().is_none());
    let ns = payload.ns();
    let reply = match (ns.as_str(), payload.name(), is_get, to_component) {
        (NS_REGISTER, "query", _, true) | (NS_VCARD, "vCard", true, false) => {
            return IqRoute::Intake(iq)
        }
        (NS_DISCO_INFO, "query", true, true) => result(
            &iq,
            Some(
                DiscoInfoResult {
                    node: None,
                    identities: vec![Identity::new("gateway", "smtp", "en", "Mail gateway")],
                    features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
                    extensions: Vec::new(),
                }
                .into(),
            ),
        ),
        (NS_DISCO_INFO, "query", true, false) => result(
            &iq,
            Some(
                DiscoInfoResult {
                    node: None,
                    identities: vec![Identity::new("client", "smtp", "en", "Mail contact")],
                    features: [NS_DISCO_INFO.to_owned(), NS_VCARD.to_owned()].into(),
                    extensions: Vec::new(),
                }
                .into(),
            ),
        ),
        (NS_DISCO_ITEMS, "query", true, _) => {
            result(&iq, Some(Element::builder("query", NS_DISCO_ITEMS).build()))
        }
        (NS_PING, "ping", true, _) => result(&iq, None),
        (NS_VERSION, "query", true, true) => result(
            &iq,
            Some(
                Element::builder("query", NS_VERSION)
                    .append(
                        Element::builder("name", NS_VERSION)
                            .append("facteur")
                            .build(),
                    )
                    .append(
                        Element::builder("version", NS_VERSION)
                            .append(env!("CARGO_PKG_VERSION"))
                            .build(),
                    )
                    .build(),
            ),
        ),
        (NS_GATEWAY, "query", true, true) => result(
            &iq,
            Some(
                Element::builder("query", NS_GATEWAY)
                    .append(
                        Element::builder("desc", NS_GATEWAY)
                            .append("Enter the e-mail address of the person you want to write to.")
                            .build(),
                    )
                    .append(
                        Element::builder("prompt", NS_GATEWAY)
                            .append("E-mail address")
                            .build(),
                    )
                    .build(),
            ),
        ),
        (NS_GATEWAY, "query", false, true) => gateway_set(config, &iq, payload),
        _ => error(
            &iq,
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "not supported by this gateway",
        ),
    };
    IqRoute::Reply(reply)
}

/// XEP-0100 §6.3: the JID for an address the user typed.
fn gateway_set(config: &Config, iq: &Iq, payload: &Element) -> Iq {
    let typed = payload
        .get_child("prompt", NS_GATEWAY)
        .map(|p| p.text())
        .unwrap_or_default();
    let typed = typed.trim().trim_start_matches("mailto:");
    let jid = MailAddress::parse(typed)
        .map_err(|e| e.to_string())
        .and_then(|addr| {
            mailbox_to_jid(&addr, config.component.jid.domain()).map_err(|e| e.to_string())
        });
    match jid {
        Ok(jid) => result(
            iq,
            Some(
                Element::builder("query", NS_GATEWAY)
                    .append(
                        Element::builder("jid", NS_GATEWAY)
                            .append(jid.to_string())
                            .build(),
                    )
                    .build(),
            ),
        ),
        Err(reason) => error(
            iq,
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            &reason,
        ),
    }
}

/// Presence to a mail contact: subscriptions are granted, so that a user
/// can keep correspondents in the roster (the address book).
pub fn answer_presence(config: &Config, presence: Presence) -> Option<Presence> {
    let to = presence.to.clone()?;
    let from = presence.from.clone()?;
    if to.node().is_none() || to.domain() != config.component.jid.domain() {
        return None;
    }
    let reply = match presence.type_ {
        PresenceType::Subscribe => PresenceType::Subscribed,
        PresenceType::Unsubscribe => PresenceType::Unsubscribed,
        _ => return None,
    };
    Some(
        Presence::new(reply)
            .with_from(Jid::from(to.to_bare()))
            .with_to(Jid::from(from.to_bare())),
    )
}

/// The answer to a stanza that could not be parsed: `bad-request` to its
/// sender, unless it was itself an error or a result (never answer those).
pub fn invalid_stanza(kind: &str, header: &RawStanzaHeader, reason: &str) -> Option<Stanza> {
    let from = header.to.as_deref().and_then(|j| Jid::new(j).ok());
    let to = Some(Jid::new(header.from.as_deref()?).ok()?);
    let type_ = header.type_.as_deref().unwrap_or_default();
    let error = StanzaError::new(
        ErrorType::Modify,
        DefinedCondition::BadRequest,
        "en",
        reason,
    );
    match kind {
        "iq" if type_ == "get" || type_ == "set" => Some(
            Iq::Error {
                from,
                to,
                id: header.id.clone()?,
                error,
                payload: None,
            }
            .into(),
        ),
        "message" if type_ != "error" => {
            let mut reply = Message::new_with_type(MessageType::Error, to);
            reply.from = from;
            reply.id = header.id.clone().map(xmpp_parsers::message::Id);
            reply.payloads.push(error.into());
            Some(reply.into())
        }
        _ => None,
    }
}

/// The `wait` answer for a stanza the intake cannot take now.
pub fn busy(stanza: Stanza) -> Option<Stanza> {
    let text = "the gateway is busy, try again shortly";
    match stanza {
        Stanza::Iq(iq) => Some(
            error(
                &iq,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                text,
            )
            .into(),
        ),
        Stanza::Message(m) if m.type_ != MessageType::Error => Some(
            message_error(
                &m,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                text,
            )
            .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse("[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n")
            .expect("config")
    }

    fn get(to: &str, payload: Element) -> Iq {
        Iq::Get {
            from: Some(Jid::new("alice@example.test/phone").expect("jid")),
            to: Some(Jid::new(to).expect("jid")),
            id: "q1".into(),
            payload,
        }
    }

    fn reply_xml(route: IqRoute) -> String {
        match route {
            IqRoute::Reply(iq) => String::from(&Element::from(iq)),
            IqRoute::Intake(_) => panic!("expected a reply"),
        }
    }

    #[test]
    fn disco_info_names_a_smtp_gateway() {
        let xml = reply_xml(answer_iq(
            &config(),
            get(
                "mail.example.test",
                Element::builder("query", NS_DISCO_INFO).build(),
            ),
        ));
        assert!(xml.contains("type='result'"), "{xml}");
        assert!(
            xml.contains("category='gateway'") && xml.contains("type='smtp'"),
            "{xml}"
        );
        for feature in FEATURES {
            assert!(
                xml.contains(&format!("var='{feature}'")),
                "{feature} in {xml}"
            );
        }
        assert!(xml.contains("to='alice@example.test/phone'"), "{xml}");
    }

    #[test]
    fn gateway_prompt_escapes_the_address() {
        let set = Iq::Set {
            from: Some(Jid::new("alice@example.test/phone").expect("jid")),
            to: Some(Jid::new("mail.example.test").expect("jid")),
            id: "g1".into(),
            payload: Element::builder("query", NS_GATEWAY)
                .append(
                    Element::builder("prompt", NS_GATEWAY)
                        .append("bob@example.net")
                        .build(),
                )
                .build(),
        };
        let xml = reply_xml(answer_iq(&config(), set));
        assert!(
            xml.contains("<jid>bob\\40example.net@mail.example.test</jid>"),
            "{xml}"
        );

        let bad = Iq::Set {
            from: None,
            to: Some(Jid::new("mail.example.test").expect("jid")),
            id: "g2".into(),
            payload: Element::builder("query", NS_GATEWAY)
                .append(
                    Element::builder("prompt", NS_GATEWAY)
                        .append("not an address")
                        .build(),
                )
                .build(),
        };
        let xml = reply_xml(answer_iq(&config(), bad));
        assert!(
            xml.contains("type='error'") && xml.contains("not-acceptable"),
            "{xml}"
        );
    }

    #[test]
    fn unknown_requests_get_service_unavailable() {
        let xml = reply_xml(answer_iq(
            &config(),
            get(
                "mail.example.test",
                Element::builder("query", "urn:example:unknown").build(),
            ),
        ));
        assert!(
            xml.contains("type='error'") && xml.contains("service-unavailable"),
            "{xml}"
        );
    }

    #[test]
    fn registration_goes_to_the_intake() {
        let route = answer_iq(
            &config(),
            get(
                "mail.example.test",
                Element::builder("query", NS_REGISTER).build(),
            ),
        );
        assert!(matches!(route, IqRoute::Intake(_)));
    }

    #[test]
    fn subscriptions_to_contacts_are_granted() {
        let presence = Presence::new(PresenceType::Subscribe)
            .with_from(Jid::new("alice@example.test/phone").expect("jid"))
            .with_to(Jid::new("bob\\40example.net@mail.example.test").expect("jid"));
        let reply = answer_presence(&config(), presence).expect("a reply");
        assert_eq!(reply.type_, PresenceType::Subscribed);
        assert_eq!(
            reply.to.map(|j| j.to_string()).as_deref(),
            Some("alice@example.test")
        );
    }
}
