//! XEP-0356 privileges the XMPP server grants the gateway: after the
//! component handshake, each served domain's server announces them in a
//! `<privilege/>` message. facteur uses two: message permission
//! `outgoing`, to send mail to other XMPP-Mail domains as the author's own
//! message (doc/xmpp-mail.md §7.1), and IQ permission `get` (or `both`)
//! on `urn:xmpp:blocking`, to read users' blocklists (`crate::spam`).
//! Both namespace versions in use are read: `urn:xmpp:privilege:2`
//! (Prosody's mod_privilege) and `urn:xmpp:privilege:1` (ejabberd 23.01,
//! which has no IQ permission).

use std::collections::HashMap;
use std::sync::Arc;

use facteur_bridge::native::{NS_PRIVILEGE_1, NS_PRIVILEGE_2};
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;

use crate::config::Config;

/// The XEP-0191 namespace, whose IQs the gateway may be let send.
pub const NS_BLOCKING: &str = "urn:xmpp:blocking";

/// Per served domain, what its server granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privileges(Arc<HashMap<String, Granted>>);

/// What one server granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Granted {
    /// The privilege namespace its server spoke when it granted message
    /// permission `outgoing`.
    outgoing: Option<&'static str>,
    /// Whether it lets the gateway read its users' blocklists.
    blocklist: bool,
    /// Whether it lets the gateway read its users' PEP nodes.
    pubsub: bool,
}

impl Privileges {
    /// The namespace to wrap messages of `domain`'s users in, if its
    /// server lets the gateway send as them.
    pub fn outgoing_messages(&self, domain: &str) -> Option<&'static str> {
        self.0.get(domain).and_then(|g| g.outgoing)
    }

    /// Whether `domain`'s server lets the gateway read its users'
    /// blocklists (with `urn:xmpp:privilege:2` privileged IQs).
    pub fn blocklist_reads(&self, domain: &str) -> bool {
        self.0.get(domain).is_some_and(|g| g.blocklist)
    }

    /// Whether `domain`'s server lets the gateway read its users' PEP
    /// nodes (IQ permission `get` on the pubsub namespace).
    pub fn pubsub_reads(&self, domain: &str) -> bool {
        self.0.get(domain).is_some_and(|g| g.pubsub)
    }

    /// The served domains whose server lets the gateway read blocklists.
    pub fn blocklist_domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = self
            .0
            .iter()
            .filter(|(_, g)| g.blocklist)
            .map(|(d, _)| d.clone())
            .collect();
        domains.sort();
        domains
    }

    /// These privileges, with what `announcement` says for its domain.
    fn with(&self, domain: &str, granted: Granted) -> Privileges {
        let mut map = (*self.0).clone();
        if granted == Granted::default() {
            map.remove(domain);
        } else {
            map.insert(domain.to_owned(), granted);
        }
        Privileges(Arc::new(map))
    }
}

/// Whether an IQ `<perm/>` grants `get` on the blocking namespace; some
/// versions of mod_privilege nest the `<namespace/>` elements inside
/// each other, so they are read at any depth.
fn grants_get(element: &Element, ns: &str, namespace: &str) -> bool {
    element.children().any(|child| {
        (child.is("namespace", ns)
            && child.attr("ns") == Some(namespace)
            && matches!(child.attr("type"), Some("get" | "both")))
            || grants_get(child, ns, namespace)
    })
}

/// Reads a server's announcement: `Some` when `message` is one, from a
/// served domain, with the new privileges.
pub fn announcement(
    config: &Config,
    current: &Privileges,
    message: &Message,
) -> Option<Privileges> {
    let from = message.from.as_ref()?;
    if from.node().is_some() || from.resource().is_some() {
        return None;
    }
    let domain = from.domain().as_str();
    if !config.mail.serves(domain) {
        return None;
    }
    let (ns, privilege) = [NS_PRIVILEGE_2, NS_PRIVILEGE_1]
        .into_iter()
        .find_map(|ns| Some((ns, message.payloads.iter().find(|p| p.is("privilege", ns))?)))?;
    let outgoing = privilege.children().any(|perm| {
        perm.is("perm", ns)
            && perm.attr("access") == Some("message")
            && perm.attr("type") == Some("outgoing")
    });
    let grants = |namespace: &str| {
        ns == NS_PRIVILEGE_2
            && privilege.children().any(|perm| {
                perm.is("perm", ns)
                    && perm.attr("access") == Some("iq")
                    && grants_get(perm, ns, namespace)
            })
    };
    let blocklist = grants(NS_BLOCKING);
    let pubsub = grants(super::pep::NS_PUBSUB);
    Some(current.with(
        domain,
        Granted {
            outgoing: outgoing.then_some(ns),
            blocklist,
            pubsub,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "[component]\njid = \"mail.a.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"a.test\"]\n",
        )
        .unwrap()
    }

    fn message(xml: &str) -> Message {
        Message::try_from(xml.parse::<Element>().unwrap()).unwrap()
    }

    #[test]
    fn both_versions_of_the_grant_are_read() {
        let config = config();
        let v2 = message(
            "<message xmlns='jabber:component:accept' from='a.test' to='mail.a.test'>\
             <privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/>\
             <perm access='message' type='outgoing'/></privilege></message>",
        );
        let granted = announcement(&config, &Privileges::default(), &v2).unwrap();
        assert_eq!(granted.outgoing_messages("a.test"), Some(NS_PRIVILEGE_2));
        let v1 = message(
            "<message xmlns='jabber:component:accept' from='a.test' to='mail.a.test'>\
             <privilege xmlns='urn:xmpp:privilege:1'><perm access='message' type='outgoing'/>\
             </privilege></message>",
        );
        let granted = announcement(&config, &Privileges::default(), &v1).unwrap();
        assert_eq!(granted.outgoing_messages("a.test"), Some(NS_PRIVILEGE_1));
        // A later announcement without it takes it back.
        let none = message(
            "<message xmlns='jabber:component:accept' from='a.test' to='mail.a.test'>\
             <privilege xmlns='urn:xmpp:privilege:2'><perm access='message' type='none'/>\
             </privilege></message>",
        );
        let revoked = announcement(&config, &granted, &none).unwrap();
        assert_eq!(revoked.outgoing_messages("a.test"), None);
    }

    #[test]
    fn iq_permission_on_blocking_is_read_even_nested() {
        let config = config();
        let nested = message(
            "<message xmlns='jabber:component:accept' from='a.test' to='mail.a.test'>\
             <privilege xmlns='urn:xmpp:privilege:2'><perm access='iq' type='get'>\
             <namespace ns='http://jabber.org/protocol/pubsub' type='both'>\
             <namespace ns='urn:xmpp:blocking' type='get'/></namespace></perm></privilege></message>",
        );
        let granted = announcement(&config, &Privileges::default(), &nested).unwrap();
        assert!(granted.blocklist_reads("a.test"));
        assert_eq!(granted.outgoing_messages("a.test"), None);
        assert_eq!(granted.blocklist_domains(), vec!["a.test".to_owned()]);
        let other = message(
            "<message xmlns='jabber:component:accept' from='a.test' to='mail.a.test'>\
             <privilege xmlns='urn:xmpp:privilege:2'><perm access='iq' type='get'>\
             <namespace ns='urn:xmpp:blocking' type='set'/></perm></privilege></message>",
        );
        let refused = announcement(&config, &granted, &other).unwrap();
        assert!(!refused.blocklist_reads("a.test"));
    }

    #[test]
    fn only_a_served_domain_grants() {
        let config = config();
        for from in ["b.test", "alice@a.test", "a.test/x"] {
            let forged = message(&format!(
                "<message xmlns='jabber:component:accept' from='{from}' to='mail.a.test'>\
                 <privilege xmlns='urn:xmpp:privilege:2'><perm access='message' type='outgoing'/>\
                 </privilege></message>"
            ));
            assert_eq!(
                announcement(&config, &Privileges::default(), &forged),
                None,
                "{from}"
            );
        }
    }
}
