//! XEP-0356 privileges the XMPP server grants the gateway: after the
//! component handshake, each served domain's server announces them in a
//! `<privilege/>` message. facteur uses one: message permission
//! `outgoing`, to send mail to other XMPP-Mail domains as the author's own
//! message (doc/xmpp-mail.md §7.1). Both namespace versions in use are
//! read: `urn:xmpp:privilege:2` (Prosody's mod_privilege) and
//! `urn:xmpp:privilege:1` (ejabberd 23.01).

use std::collections::HashMap;
use std::sync::Arc;

use facteur_bridge::native::{NS_PRIVILEGE_1, NS_PRIVILEGE_2};
use xmpp_parsers::message::Message;

use crate::config::Config;

/// Per served domain, the privilege namespace its server spoke when it
/// granted message permission `outgoing`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privileges(Arc<HashMap<String, &'static str>>);

impl Privileges {
    /// The namespace to wrap messages of `domain`'s users in, if its
    /// server lets the gateway send as them.
    pub fn outgoing_messages(&self, domain: &str) -> Option<&'static str> {
        self.0.get(domain).copied()
    }

    /// These privileges, with what `announcement` says for its domain.
    fn with(&self, domain: &str, outgoing: Option<&'static str>) -> Privileges {
        let mut map = (*self.0).clone();
        match outgoing {
            Some(ns) => map.insert(domain.to_owned(), ns),
            None => map.remove(domain),
        };
        Privileges(Arc::new(map))
    }
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
    Some(current.with(domain, outgoing.then_some(ns)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::minidom::Element;

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
