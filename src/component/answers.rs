//! Answers to what needs no store: service discovery (XEP-0030), the
//! gateway prompt (XEP-0100 `jabber:iq:gateway`), ping (XEP-0199),
//! version (XEP-0092), presence subscriptions to mail contacts. Anything
//! else gets an error, never silence; what needs the store goes to the
//! intake (registration, vCards, XMPP-Mail probes, the key IQ, ad-hoc
//! commands).

use facteur_bridge::wire::NS_MAIL;
use facteur_bridge::{mailbox_to_jid, MailAddress};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use xmpp_parsers::version::VersionResult;

use super::commands::{self, NS_COMMANDS};
use super::reply::{self, error, result, Fault};
use crate::config::Config;

/// XEP-0100's namespace, which `xmpp_parsers::ns` does not name.
pub const NS_GATEWAY: &str = "jabber:iq:gateway";
/// XEP-0106's feature, which `xmpp_parsers::ns` does not name.
pub const NS_JID_ESCAPING: &str = "jid\\20escaping";

/// Features announced in disco#info: what is implemented, including the
/// vCards it answers (XEP-0054), the receipts it sends (XEP-0184) and
/// XMPP-Mail between domains (doc/xmpp-mail.md §4), and the
/// administrators' ad-hoc commands (XEP-0050).
const FEATURES: [&str; 11] = [
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    NS_GATEWAY,
    NS_JID_ESCAPING,
    ns::PING,
    ns::RECEIPTS,
    ns::REGISTER,
    ns::VCARD,
    ns::VERSION,
    NS_MAIL,
    NS_COMMANDS,
];

/// disco#info of a node the gateway does not have.
const NO_NODE: Fault = Fault::new(
    ErrorType::Cancel,
    DefinedCondition::ItemNotFound,
    "no such node",
);

/// Where an IQ request goes.
pub enum IqRoute {
    Reply(Iq),
    /// Needs the store: registration, contacts' vCards, probes, keys,
    /// commands.
    Intake(Iq),
}

/// Answers `iq`, or routes it to the intake when it needs the store.
pub fn answer_iq(config: &Config, iq: Iq) -> IqRoute {
    let (payload, is_get) = match &iq {
        Iq::Get { payload, .. } => (payload, true),
        Iq::Set { payload, .. } => (payload, false),
        _ => return IqRoute::Reply(error(&iq, reply::NOT_A_REQUEST)),
    };
    let to_component = iq.to().is_none_or(|to| to.node().is_none());
    let namespace = payload.ns();
    let node = payload.attr("node");
    if crate::spam::publish::is_request(config, &iq) {
        return IqRoute::Intake(iq);
    }
    let reply = match (namespace.as_str(), payload.name(), is_get, to_component) {
        (ns::REGISTER, "query", _, true)
        | (ns::VCARD, "vCard", true, false)
        | (NS_MAIL, "probe", true, true)
        | (NS_MAIL, "keys", _, true)
        | (NS_MAIL, "feedback", false, true)
        | (NS_COMMANDS, "command", false, true) => return IqRoute::Intake(iq),
        (ns::DISCO_INFO, "query", true, true) if node.is_some() => {
            match node.and_then(commands::info) {
                Some(info) => result(&iq, Some(info.into())),
                None => error(&iq, NO_NODE),
            }
        }
        (ns::DISCO_ITEMS, "query", true, true) if node == Some(NS_COMMANDS) => {
            result(&iq, Some(commands::items(config, iq.from()).into()))
        }
        (ns::DISCO_INFO, "query", true, true) => result(
            &iq,
            Some(disco_info("gateway", "Mail gateway", &FEATURES).into()),
        ),
        (ns::DISCO_INFO, "query", true, false) => result(
            &iq,
            Some(disco_info("client", "Mail contact", &[ns::DISCO_INFO, ns::VCARD]).into()),
        ),
        (ns::DISCO_ITEMS, "query", true, _) => result(
            &iq,
            Some(
                DiscoItemsResult {
                    node: None,
                    // The published spam list's nodes (XEP-0060 §5.2).
                    items: match to_component {
                        true => crate::spam::publish::node_items(config),
                        false => Vec::new(),
                    },
                    rsm: None,
                }
                .into(),
            ),
        ),
        (ns::PING, "ping", true, _) => result(&iq, None),
        (ns::VERSION, "query", true, true) => result(
            &iq,
            Some(
                VersionResult {
                    name: "facteur".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    os: None,
                }
                .into(),
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
        _ => error(&iq, reply::UNSUPPORTED),
    };
    IqRoute::Reply(reply)
}

/// The disco#info of the gateway or of a contact: one identity of type
/// `smtp`.
fn disco_info(category: &str, name: &str, features: &[&str]) -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new(category, "smtp", "en", name)],
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        extensions: Vec::new(),
    }
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
            Fault::with_text(ErrorType::Modify, DefinedCondition::NotAcceptable, reason),
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

#[cfg(test)]
mod tests {
    use xmpp_parsers::minidom::rxml::xml_ncname;

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
                Element::builder("query", ns::DISCO_INFO).build(),
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
        // It answers vCards, sends receipts and speaks XMPP-Mail, so it
        // says so.
        for feature in ["vcard-temp", "urn:xmpp:receipts", "urn:xmpp:mail:0"] {
            assert!(
                xml.contains(&format!("<feature var='{feature}'/>")),
                "{feature} in {xml}"
            );
        }
    }

    #[test]
    fn command_nodes_have_their_own_disco_info() {
        let node = |node: &str| {
            Element::builder("query", ns::DISCO_INFO)
                .attr(xml_ncname!("node").into(), node)
                .build()
        };
        let xml = reply_xml(answer_iq(
            &config(),
            get("mail.example.test", node("queue-list")),
        ));
        assert!(
            xml.contains("node='queue-list'")
                && xml.contains("category='automation'")
                && xml.contains("type='command-node'")
                && xml.contains(&format!("<feature var='{NS_COMMANDS}'/>")),
            "{xml}"
        );
        let xml = reply_xml(answer_iq(&config(), get("mail.example.test", node("nope"))));
        assert!(
            xml.contains("type='error'") && xml.contains("<item-not-found "),
            "{xml}"
        );
    }

    #[test]
    fn version_and_items_answer_in_their_namespaces() {
        let xml = reply_xml(answer_iq(
            &config(),
            get(
                "mail.example.test",
                Element::builder("query", ns::VERSION).build(),
            ),
        ));
        assert!(
            xml.contains("<query xmlns='jabber:iq:version'><name>facteur</name><version>"),
            "{xml}"
        );
        let xml = reply_xml(answer_iq(
            &config(),
            get(
                "mail.example.test",
                Element::builder("query", ns::DISCO_ITEMS).build(),
            ),
        ));
        assert!(
            xml.contains("<query xmlns='http://jabber.org/protocol/disco#items'><item jid='mail.example.test' name='Domains that send spam' node='spam_source_domains'/>"),
            "{xml}"
        );
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
                Element::builder("query", ns::REGISTER).build(),
            ),
        );
        assert!(matches!(route, IqRoute::Intake(_)));
    }

    #[test]
    fn probes_go_to_the_intake() {
        let probe = Element::builder("probe", NS_MAIL).build();
        let route = answer_iq(&config(), get("mail.example.test", probe.clone()));
        assert!(matches!(route, IqRoute::Intake(_)));
        // A contact is no gateway.
        let xml = reply_xml(answer_iq(
            &config(),
            get("bob\\40example.net@mail.example.test", probe),
        ));
        assert!(xml.contains("service-unavailable"), "{xml}");
    }

    #[test]
    fn key_iqs_go_to_the_intake() {
        let keys = Element::builder("keys", NS_MAIL).build();
        let route = answer_iq(&config(), get("mail.example.test", keys.clone()));
        assert!(matches!(route, IqRoute::Intake(_)));
        let set = Iq::Set {
            from: Some(Jid::new("alice@example.test/phone").expect("jid")),
            to: Some(Jid::new("mail.example.test").expect("jid")),
            id: "k1".into(),
            payload: keys.clone(),
        };
        assert!(matches!(answer_iq(&config(), set), IqRoute::Intake(_)));
        let xml = reply_xml(answer_iq(
            &config(),
            get("bob\\40example.net@mail.example.test", keys),
        ));
        assert!(xml.contains("service-unavailable"), "{xml}");
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
