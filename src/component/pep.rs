//! Keys users publish in their PEP nodes (XEP-0373 §4): the metadata node
//! `urn:xmpp:openpgp:0:public-keys` lists fingerprints, the node
//! `urn:xmpp:openpgp:0:public-keys:FPR` holds each key. facteur reads
//! them at registration, on the "refresh" action of the command "OpenPGP
//! key", and daily; the key found is checked and served like any other
//! (`keys::publish`).
//!
//! A plain pubsub get reaches nodes whose access model is open; where the
//! user's server grants the gateway XEP-0356 IQ permission on the pubsub
//! namespace, the same get goes as a privileged IQ. The metadata element
//! is read as `public-keys-list` (XEP-0373) and as `public-key-list`
//! (what xmpp-parsers 0.23 writes).

use std::time::Duration;

use base64::Engine;
use facteur_bridge::native::NS_PRIVILEGE_2;
use jid::{BareJid, Jid};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;

use super::keys::publish;
use super::LinkHandle;
use crate::keys::{Published, Refused, MAX_KEY_BYTES};
use crate::store::{KeySource, Store};

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_OX: &str = "urn:xmpp:openpgp:0";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// The metadata node; a key's node is this, a colon, its fingerprint.
pub const NODE_KEYS: &str = "urn:xmpp:openpgp:0:public-keys";

/// The longest one pubsub get waits.
const STEP: Duration = Duration::from_secs(5);
/// Fingerprints of one metadata node tried at most.
const MAX_LISTED: usize = 4;
/// How often every registered user's PEP key is read again.
const EVERY: Duration = Duration::from_secs(86400);
/// Logged when the store fails a round.
const NOT_READ: &str = "Store unavailable; PEP keys not read.";

/// What reading a user's PEP nodes came to.
#[derive(Debug)]
pub enum Refreshed {
    /// No key there, or none could be read.
    Nothing(String),
    Published(Published),
    Refused(Refused),
}

/// The fingerprints the metadata item lists, newest first.
pub fn listed(pubsub: &Element) -> Vec<String> {
    let mut found: Vec<(String, String)> = items(pubsub)
        .flat_map(|item| item.children())
        .filter(|list| list.is("public-keys-list", NS_OX) || list.is("public-key-list", NS_OX))
        .flat_map(|list| list.children())
        .filter(|meta| meta.is("pubkey-metadata", NS_OX))
        .filter_map(|meta| {
            let fingerprint = meta.attr("v4-fingerprint")?.trim().to_ascii_uppercase();
            fingerprint.chars().all(|c| c.is_ascii_hexdigit()).then(|| {
                (
                    meta.attr("date").unwrap_or_default().to_owned(),
                    fingerprint,
                )
            })
        })
        .collect();
    // RFC 3339 dates in UTC sort as text.
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, f)| f).take(MAX_LISTED).collect()
}

/// The key a key node's item carries (`<pubkey><data>` base64).
pub fn key_data(pubsub: &Element) -> Option<Vec<u8>> {
    let data = items(pubsub)
        .flat_map(|item| item.children())
        .find(|pubkey| pubkey.is("pubkey", NS_OX))?
        .get_child("data", NS_OX)?;
    let text: String = data.text().split_ascii_whitespace().collect();
    if text.len() > MAX_KEY_BYTES / 3 * 4 + 4 {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .ok()
}

fn items(pubsub: &Element) -> impl Iterator<Item = &Element> {
    pubsub
        .children()
        .filter(|c| c.is("items", NS_PUBSUB))
        .flat_map(|items| items.children())
        .filter(|item| item.is("item", NS_PUBSUB))
}

/// `<pubsub><items node=… max_items='1'/></pubsub>`.
fn items_query(node: &str) -> Element {
    Element::builder("pubsub", NS_PUBSUB)
        .append(
            Element::builder("items", NS_PUBSUB)
                .attr(xml_ncname!("node").into(), node)
                .attr(xml_ncname!("max_items").into(), "1")
                .build(),
        )
        .build()
}

/// Reads users' PEP keys through the component link.
pub struct PepKeys {
    pub own: Jid,
    pub link: LinkHandle,
    pub store: Store,
}

impl PepKeys {
    /// The `<pubsub/>` answer to a get of `node` of `user`: plain, then,
    /// when that is refused and the server grants it, privileged.
    async fn get(&self, user: &BareJid, node: &str) -> Option<Element> {
        let plain = Iq::Get {
            from: Some(self.own.clone()),
            to: Some(user.clone().into()),
            id: String::new(),
            payload: items_query(node),
        };
        match self.link.request(plain, STEP).await {
            Some(Iq::Result {
                payload: Some(pubsub),
                ..
            }) if pubsub.is("pubsub", NS_PUBSUB) => return Some(pubsub),
            Some(Iq::Error { error, .. }) => {
                debug!(user = %user, node, error = ?error.defined_condition, "PEP get refused.")
            }
            _ => debug!(user = %user, node, "No PEP answer."),
        }
        if !self.link.privileges().pubsub_reads(user.domain().as_str()) {
            return None;
        }
        let inner = Element::builder("iq", "jabber:client")
            .attr(xml_ncname!("type").into(), "get")
            .attr(xml_ncname!("id").into(), "pep-key")
            .attr(xml_ncname!("to").into(), user.to_string())
            .append(items_query(node))
            .build();
        let privileged = Iq::Get {
            from: Some(self.own.clone()),
            to: Some(Jid::from(user.domain().to_owned())),
            id: String::new(),
            payload: Element::builder("privileged_iq", NS_PRIVILEGE_2)
                .append(inner)
                .build(),
        };
        let Some(Iq::Result {
            payload: Some(answer),
            ..
        }) = self.link.request(privileged, STEP).await
        else {
            return None;
        };
        forwarded_pubsub(&answer)
    }

    /// The newest key `user` lists in her PEP nodes, if any.
    pub async fn read(&self, user: &BareJid) -> Option<Vec<u8>> {
        let metadata = self.get(user, NODE_KEYS).await?;
        for fingerprint in listed(&metadata) {
            let node = format!("{NODE_KEYS}:{fingerprint}");
            if let Some(key) = self.get(user, &node).await.as_ref().and_then(key_data) {
                return Some(key);
            }
        }
        None
    }

    /// Reads `user`'s PEP key and publishes it as hers if it is taken.
    pub async fn refresh(&self, user: &BareJid) -> Refreshed {
        let Some(key) = self.read(user).await else {
            return Refreshed::Nothing(format!("No OpenPGP key found in the PEP nodes of {user}."));
        };
        match publish(&self.store, user, &key, KeySource::Pep).await {
            Ok(Ok(published)) => Refreshed::Published(published),
            Ok(Err(why)) => Refreshed::Refused(why),
            Err(_) => Refreshed::Nothing("The key could not be stored; try again later.".into()),
        }
    }

    /// Every day, on one instance of the cluster: every registered user's
    /// PEP key read again.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                () = shutdown.cancelled() => return,
            }
            if !self.store.runs_job("pep-keys", EVERY, NOT_READ).await {
                continue;
            }
            let users = match self.store.users().await {
                Ok(users) => users,
                Err(e) => {
                    warn!(error = format!("{e:#}"), "{NOT_READ}");
                    continue;
                }
            };
            let mut published = 0;
            for user in users {
                if shutdown.is_cancelled() {
                    return;
                }
                let Ok(user) = BareJid::new(&user) else {
                    continue;
                };
                if let Refreshed::Published(_) = self.refresh(&user).await {
                    published += 1;
                }
            }
            info!(published, "PEP keys read.");
        }
    }
}

/// The `<pubsub/>` of a privileged IQ's answer
/// (`<privilege><forwarded><iq type='result'><pubsub>`).
fn forwarded_pubsub(answer: &Element) -> Option<Element> {
    if !answer.is("privilege", NS_PRIVILEGE_2) {
        return None;
    }
    answer
        .get_child("forwarded", NS_FORWARD)?
        .children()
        .find(|c| c.name() == "iq" && c.attr("type") == Some("result"))?
        .children()
        .find(|c| c.is("pubsub", NS_PUBSUB))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pubsub_xml(items: &str) -> String {
        format!("<pubsub xmlns='{NS_PUBSUB}'><items node='{NODE_KEYS}'>{items}</items></pubsub>")
    }

    fn pubsub(items: &str) -> Element {
        pubsub_xml(items).parse().expect("xml")
    }

    #[test]
    fn both_spellings_of_the_metadata_list_are_read_newest_first() {
        let right = pubsub(
            "<item id='current'><public-keys-list xmlns='urn:xmpp:openpgp:0'>\
             <pubkey-metadata v4-fingerprint='aa11' date='2024-01-01T00:00:00Z'/>\
             <pubkey-metadata v4-fingerprint='BB22' date='2025-01-01T00:00:00Z'/>\
             <pubkey-metadata v4-fingerprint='not hex' date='2026-01-01T00:00:00Z'/>\
             </public-keys-list></item>",
        );
        assert_eq!(listed(&right), ["BB22", "AA11"]);
        let crate_spelling = pubsub(
            "<item id='current'><public-key-list xmlns='urn:xmpp:openpgp:0'>\
             <pubkey-metadata v4-fingerprint='CC33' date='2024-01-01T00:00:00Z'/>\
             </public-key-list></item>",
        );
        assert_eq!(listed(&crate_spelling), ["CC33"]);
        assert!(listed(&pubsub("")).is_empty());
    }

    #[test]
    fn the_key_of_a_key_node() {
        let item = "<item id='2024-01-01T00:00:00Z'><pubkey xmlns='urn:xmpp:openpgp:0'>\
             <data>AAEC\n  Aw==</data></pubkey></item>";
        let node = pubsub(item);
        assert_eq!(key_data(&node), Some(vec![0, 1, 2, 3]));
        assert_eq!(key_data(&pubsub("")), None);
        let privileged: Element = format!(
            "<privilege xmlns='{NS_PRIVILEGE_2}'><forwarded xmlns='{NS_FORWARD}'>\
             <iq xmlns='jabber:client' type='result' id='pep-key'>{}</iq></forwarded></privilege>",
            pubsub_xml(item)
        )
        .parse()
        .expect("xml");
        assert_eq!(
            forwarded_pubsub(&privileged).as_ref().and_then(key_data),
            Some(vec![0, 1, 2, 3])
        );
    }
}
