//! Consumed XMPP real-time blocklists (XEP-0060, xmppbl.org's format):
//! each `[[spam.lists]]` is a pubsub node whose item ids are domains,
//! lower-case hex SHA-256 of addresses, or IP addresses.
//!
//! The instance that holds the component link subscribes to each list as
//! the component JID, then fetches all its items, each time the link
//! comes up (a reconnect re-syncs) and every `RESYNC` besides; the
//! services' publish and retract events come over that same link. The
//! entries go to the store, where every instance reads them at the end
//! of DATA: with several instances, only the one that hears the service
//! writes, and all see the same lists.
//!
//! Events from a service that is no configured list, and items that are
//! not of the list's kind, are ignored with a log line.

use std::time::Duration;

use facteur_policy::spam::shared::ListKind;
use jid::{BareJid, Jid};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use crate::component::LinkHandle;
use crate::config::{Config, Live, SharedList};
use crate::store::Store;

/// Lists are fetched again this often, besides at each link-up.
const RESYNC: Duration = Duration::from_secs(3600);
/// Longest wait for a list's service.
const WAIT: Duration = Duration::from_secs(20);

/// The lower-case hex SHA-256 of an address or bare JID, as the item ids
/// of `sha256` lists hold them.
pub fn address_hash(address: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        address.trim().to_lowercase().as_bytes(),
    );
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps the consumed lists' entries in the store.
pub struct Consumer {
    pub config: Live,
    pub store: Store,
    pub link: LinkHandle,
}

impl Consumer {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut up = self.link.watch();
        loop {
            // Wait for the link; a new link-up is a reconnect: sync again.
            while !*up.borrow_and_update() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = up.changed() => if changed.is_err() { return },
                }
            }
            self.sync_all().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RESYNC) => {}
                // Down: wait above for it to come back.
                changed = up.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn sync_all(&self) {
        let config = self.config.get();
        for list in &config.spam.lists {
            self.sync(&config, list).await;
        }
    }

    /// Subscribes, then fetches all items: an item published in between
    /// is in both, none is lost.
    async fn sync(&self, config: &Config, list: &SharedList) {
        let own = Jid::from(config.component.jid.clone());
        let to = Jid::from(list.service.clone());
        let subscribe = pubsub_iq(
            true,
            &own,
            &to,
            Element::builder("subscribe", ns::PUBSUB)
                .attr(xml_ncname!("node").into(), list.node.as_str())
                .attr(xml_ncname!("jid").into(), config.component.jid.as_str())
                .build(),
        );
        match self.link.request(subscribe, WAIT).await {
            Some(Iq::Result { .. }) => debug!(list = list.name, "Subscribed to a shared list."),
            Some(Iq::Error { error, .. }) => {
                warn!(list = list.name, error = ?error.defined_condition, "The list's service refused the subscription.")
            }
            _ => warn!(
                list = list.name,
                "No answer to the subscription to a shared list."
            ),
        }
        let fetch = pubsub_iq(
            false,
            &own,
            &to,
            Element::builder("items", ns::PUBSUB)
                .attr(xml_ncname!("node").into(), list.node.as_str())
                .build(),
        );
        let items = match self.link.request(fetch, WAIT).await {
            Some(Iq::Result {
                payload: Some(payload),
                ..
            }) => payload
                .get_child("items", ns::PUBSUB)
                .map(|items| item_ids(list, items, "item")),
            Some(Iq::Error { error, .. }) => {
                warn!(list = list.name, error = ?error.defined_condition, "The list's service refused its items; the entries kept stay.");
                None
            }
            _ => None,
        };
        let Some(items) = items else {
            return warn!(
                list = list.name,
                "Shared list not fetched; the entries kept stay."
            );
        };
        match self.store.replace_list_entries(&list.name, &items).await {
            Ok(()) => info!(
                list = list.name,
                entries = items.len(),
                "Shared list fetched."
            ),
            Err(e) => warn!(
                error = format!("{e:#}"),
                list = list.name,
                "Store unavailable; shared list not kept."
            ),
        }
    }
}

fn pubsub_iq(set: bool, from: &Jid, to: &Jid, child: Element) -> Iq {
    let payload = Element::builder("pubsub", ns::PUBSUB).append(child).build();
    let (from, to, id) = (Some(from.clone()), Some(to.clone()), String::new());
    if set {
        Iq::Set {
            from,
            to,
            id,
            payload,
        }
    } else {
        Iq::Get {
            from,
            to,
            id,
            payload,
        }
    }
}

/// The valid ids of `<NAME id=…/>` children of `items`; the others are
/// ignored with a log line.
fn item_ids(list: &SharedList, items: &Element, name: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for item in items.children().filter(|c| c.name() == name) {
        match item.attr("id").and_then(|id| list.kind.item_id(id)) {
            Some(id) => ids.push(id),
            None => info!(
                list = list.name,
                id = item.attr("id").unwrap_or_default(),
                kind = list.kind.name(),
                "Ignored a malformed shared list item."
            ),
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Whether `message` carries pubsub event notifications.
pub fn is_event(message: &Message) -> bool {
    message
        .payloads
        .iter()
        .any(|p| p.is("event", ns::PUBSUB_EVENT))
}

/// What an event notification changes in one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Publish(Vec<String>),
    Retract(Vec<String>),
    Purge,
}

/// The changes `message` brings to configured lists, by list name; the
/// events of a service or node that is no list are ignored with a log
/// line.
pub fn changes(config: &Config, message: &Message) -> Vec<(String, Change)> {
    let Some(from) = message.from.as_ref().map(Jid::to_bare) else {
        info!("Ignored a pubsub event without a sender.");
        return Vec::new();
    };
    let mut changes = Vec::new();
    for event in message
        .payloads
        .iter()
        .filter(|p| p.is("event", ns::PUBSUB_EVENT))
    {
        for child in event.children() {
            let node = child.attr("node").unwrap_or_default();
            let Some(list) = list_for(config, &from, node) else {
                info!(service = %from, node, "Ignored a pubsub event from a service or node that is no configured list.");
                continue;
            };
            match child.name() {
                "items" => {
                    let published = item_ids(list, child, "item");
                    let retracted = item_ids(list, child, "retract");
                    if !published.is_empty() {
                        changes.push((list.name.clone(), Change::Publish(published)));
                    }
                    if !retracted.is_empty() {
                        changes.push((list.name.clone(), Change::Retract(retracted)));
                    }
                }
                "purge" => changes.push((list.name.clone(), Change::Purge)),
                other => debug!(list = list.name, event = other, "Ignored a pubsub event."),
            }
        }
    }
    changes
}

fn list_for<'a>(config: &'a Config, service: &BareJid, node: &str) -> Option<&'a SharedList> {
    config
        .spam
        .lists
        .iter()
        .find(|l| &l.service == service && l.node == node)
}

/// Applies the event notifications in `message` to the store.
pub async fn take_event(config: &Config, store: &Store, message: &Message) {
    for (list, change) in changes(config, message) {
        let done = match &change {
            Change::Publish(items) => {
                let mut done = Ok(());
                for item in items {
                    done = done.and(store.add_list_entry(&list, item).await);
                }
                done
            }
            Change::Retract(items) => {
                let mut done = Ok(());
                for item in items {
                    done = done.and(store.remove_list_entry(&list, item).await.map(|_| ()));
                }
                done
            }
            Change::Purge => store.replace_list_entries(&list, &[]).await,
        };
        match done {
            Ok(()) => info!(list, change = ?change, "Shared list changed."),
            Err(e) => warn!(
                error = format!("{e:#}"),
                list, "Store unavailable; shared list change lost until the next sync."
            ),
        }
    }
}

/// The candidate item ids of a mail: (kind, item id, what it stands for).
pub fn candidates(
    sender: &str,
    client: Option<std::net::IpAddr>,
    link_domains: &[String],
) -> Vec<(ListKind, String, String)> {
    let mut out = Vec::new();
    let sender = sender.trim().to_lowercase();
    if let Some((_, domain)) = sender.rsplit_once('@') {
        out.push((ListKind::Sha256, address_hash(&sender), sender.clone()));
        if let Some(id) = ListKind::Domains.item_id(domain) {
            out.push((ListKind::Domains, id.clone(), id));
        }
    }
    for domain in link_domains {
        if let Some(id) = ListKind::Domains.item_id(domain) {
            if !out
                .iter()
                .any(|(k, i, _)| *k == ListKind::Domains && *i == id)
            {
                out.push((ListKind::Domains, id.clone(), id));
            }
        }
    }
    if let Some(ip) = client {
        let ip = ip.to_canonical().to_string();
        out.push((ListKind::Ips, ip.clone(), ip));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "[component]\njid = \"mail.a.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"a.test\"]\n\
             [[spam.lists]]\nname = \"bl\"\nservice = \"pubsub.b.test\"\nnode = \"spam_source_domains\"\nkind = \"domains\"\nweight = 0.8\n",
        )
        .expect("config")
    }

    #[test]
    fn address_hashes_are_lower_case_hex_sha256() {
        // echo -n spammer@evil.test | sha256sum
        assert_eq!(
            address_hash("Spammer@Evil.Test"),
            "0e86a994611e606529069c6999764207d3f5923dad17290187d3c8bf09d49ad2"
        );
        assert_eq!(
            address_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn events_change_configured_lists_only() {
        let message: Message = "<message xmlns='jabber:component:accept' from='pubsub.b.test' to='mail.a.test'>\
            <event xmlns='http://jabber.org/protocol/pubsub#event'>\
            <items node='spam_source_domains'><item id='Evil.Test'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/></item>\
            <item id='not a domain'/><item/><retract id='good.test'/></items></event></message>"
            .parse::<Element>()
            .expect("xml")
            .try_into()
            .expect("message");
        assert!(is_event(&message));
        assert_eq!(
            changes(&config(), &message),
            vec![
                ("bl".to_owned(), Change::Publish(vec!["evil.test".into()])),
                ("bl".to_owned(), Change::Retract(vec!["good.test".into()])),
            ]
        );
        let stranger: Message =
            "<message xmlns='jabber:component:accept' from='pubsub.c.test' to='mail.a.test'>\
            <event xmlns='http://jabber.org/protocol/pubsub#event'>\
            <items node='spam_source_domains'><item id='evil.test'/></items></event></message>"
                .parse::<Element>()
                .expect("xml")
                .try_into()
                .expect("message");
        assert!(changes(&config(), &stranger).is_empty());
    }

    #[test]
    fn a_mail_is_looked_up_by_address_hash_domains_and_ip() {
        let found = candidates(
            "Spammer@Evil.Test",
            Some("::ffff:127.0.0.2".parse().expect("ip")),
            &["evil.test".into(), "links.test".into(), "bad link".into()],
        );
        let ids: Vec<(ListKind, &str)> = found.iter().map(|(k, i, _)| (*k, i.as_str())).collect();
        let hash = address_hash("spammer@evil.test");
        assert_eq!(
            ids,
            vec![
                (ListKind::Sha256, hash.as_str()),
                (ListKind::Domains, "evil.test"),
                (ListKind::Domains, "links.test"),
                (ListKind::Ips, "127.0.0.2"),
            ]
        );
        // The null sender has no address or domain.
        assert_eq!(candidates("", None, &[]).len(), 0);
    }
}
