//! facteur's own spam list, served as a small XEP-0060 service on the
//! component JID (doc/xmpp-mail.md, "The published spam list"), in the
//! format of xmppbl.org: node `spam_source_domains` (item id = domain),
//! node `spam_source_addresses_sha256` (item id = lower-case hex SHA-256
//! of the address) and node `spam_source_ips` (item id = the client IP
//! address), each item with a XEP-0377 `<report/>`. What is on it: the
//! senders, sender domains and client IPs of mail that at least `[spam]
//! publish_threshold` distinct users reported as spam.
//!
//! The service answers disco#info and disco#items, items, subscribe and
//! unsubscribe; creating, publishing and configuring are the gateway's
//! own. The `Publisher` compares what the reports say with what was last
//! published and notifies the subscribers of each change: it runs on the
//! instance that holds the component link, once per cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use facteur_policy::spam::shared::{ListKind, NODE_ADDRESSES, NODE_DOMAINS, NODE_IPS};
use jid::Jid;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::lists::address_hash;
use crate::component::reply::{self, error, result, Fault};
use crate::component::LinkHandle;
use crate::config::{Config, Live};
use crate::store::Store;

/// The published nodes.
pub const NODES: [&str; 3] = [NODE_DOMAINS, NODE_ADDRESSES, NODE_IPS];
/// XEP-0377's namespace and reason, the payload of every item.
const NS_REPORTING: &str = "urn:xmpp:reporting:1";
const REASON_SPAM: &str = "urn:xmpp:reporting:spam";
/// How often the reports are compared with the published items.
const TICK: Duration = Duration::from_secs(10);
/// Logged when the store fails a round.
const NOT_PUBLISHED: &str = "Store unavailable; spam list not published.";

const NO_NODE: Fault = Fault::new(
    ErrorType::Cancel,
    DefinedCondition::ItemNotFound,
    "no such node",
);
const NOT_OURS: Fault = Fault::new(
    ErrorType::Cancel,
    DefinedCondition::FeatureNotImplemented,
    "this list is published by the gateway only",
);
const NOT_THEIR_JID: Fault = Fault::new(
    ErrorType::Modify,
    DefinedCondition::BadRequest,
    "subscribe your own JID",
);
const NOT_SUBSCRIBED: Fault = Fault::new(
    ErrorType::Cancel,
    DefinedCondition::UnexpectedRequest,
    "not subscribed",
);

/// Whether `iq`, to the gateway itself, is for the published list.
pub fn is_request(config: &Config, iq: &Iq) -> bool {
    let payload = match iq {
        Iq::Get { payload, .. } | Iq::Set { payload, .. } => payload,
        _ => return false,
    };
    config.spam.publish
        && iq.to().is_none_or(|to| to.node().is_none())
        && (payload.is("pubsub", ns::PUBSUB)
            || ((payload.is("query", ns::DISCO_INFO) || payload.is("query", ns::DISCO_ITEMS))
                && payload.attr("node").is_some_and(|n| NODES.contains(&n))))
}

/// The published nodes, for the gateway's disco#items.
pub fn node_items(config: &Config) -> Vec<Item> {
    if !config.spam.publish {
        return Vec::new();
    }
    NODES
        .iter()
        .map(|node| Item {
            jid: Jid::from(config.component.jid.clone()),
            node: Some((*node).to_owned()),
            name: Some(node_name(node).to_owned()),
        })
        .collect()
}

fn node_name(node: &str) -> &'static str {
    match node {
        NODE_DOMAINS => "Domains that send spam",
        NODE_IPS => "IP addresses that send spam",
        _ => "Addresses that send spam (SHA-256)",
    }
}

/// Answers a request for the published list.
pub async fn answer(config: &Config, store: &Store, iq: Iq) -> Iq {
    let (payload, is_get) = match &iq {
        Iq::Get { payload, .. } => (payload.clone(), true),
        Iq::Set { payload, .. } => (payload.clone(), false),
        _ => return error(&iq, reply::NOT_A_REQUEST),
    };
    let failed = |e: anyhow::Error| {
        warn!(
            error = format!("{e:#}"),
            "Store unavailable for the published list."
        );
        error(&iq, reply::TRY_LATER)
    };
    if payload.is("query", ns::DISCO_INFO) {
        let node = payload.attr("node").unwrap_or_default();
        let info = DiscoInfoResult {
            node: Some(node.to_owned()),
            identities: vec![Identity::new("pubsub", "leaf", "en", node_name(node))],
            features: [ns::DISCO_INFO.to_owned(), ns::PUBSUB.to_owned()].into(),
            extensions: Vec::new(),
        };
        return result(&iq, Some(info.into()));
    }
    if payload.is("query", ns::DISCO_ITEMS) {
        let node = payload.attr("node").unwrap_or_default();
        let items = match store.published_items(node).await {
            Ok(items) => items,
            Err(e) => return failed(e),
        };
        let own = Jid::from(config.component.jid.clone());
        let listing = DiscoItemsResult {
            node: Some(node.to_owned()),
            items: items
                .into_keys()
                .map(|id| Item {
                    jid: own.clone(),
                    node: None,
                    name: Some(id),
                })
                .collect(),
            rsm: None,
        };
        return result(&iq, Some(listing.into()));
    }
    let Some(action) = payload.children().next() else {
        return error(&iq, reply::UNSUPPORTED);
    };
    let node = action.attr("node").unwrap_or_default().to_owned();
    if !NODES.contains(&node.as_str()) {
        return match action.name() {
            "items" | "subscribe" | "unsubscribe" => error(&iq, NO_NODE),
            _ => error(&iq, NOT_OURS),
        };
    }
    let from = iq.from().cloned();
    match (action.name(), is_get) {
        ("items", true) => match store.published_items(&node).await {
            Ok(items) => {
                let limit = action
                    .attr("max_items")
                    .and_then(|m| m.parse::<usize>().ok())
                    .unwrap_or(usize::MAX);
                let items = items.into_keys().take(limit).map(|id| item(&id));
                result(
                    &iq,
                    Some(
                        Element::builder("pubsub", ns::PUBSUB)
                            .append(
                                Element::builder("items", ns::PUBSUB)
                                    .attr(xml_ncname!("node").into(), node.as_str())
                                    .append_all(items)
                                    .build(),
                            )
                            .build(),
                    ),
                )
            }
            Err(e) => failed(e),
        },
        ("subscribe" | "unsubscribe", false) => {
            let asked = action.attr("jid").and_then(|j| Jid::new(j).ok());
            let Some(from) = from else {
                return error(&iq, reply::NO_SENDER);
            };
            // XEP-0060 §6.1.3.1: a JID may subscribe itself only.
            let Some(jid) = asked.filter(|j| j.to_bare() == from.to_bare()) else {
                return error(&iq, NOT_THEIR_JID);
            };
            if action.name() == "subscribe" {
                if let Err(e) = store.subscribe_to_list(&node, jid.as_str()).await {
                    return failed(e);
                }
                info!(node, subscriber = %jid, "Subscribed to the published spam list.");
                result(
                    &iq,
                    Some(
                        Element::builder("pubsub", ns::PUBSUB)
                            .append(
                                Element::builder("subscription", ns::PUBSUB)
                                    .attr(xml_ncname!("node").into(), node.as_str())
                                    .attr(xml_ncname!("jid").into(), jid.as_str())
                                    .attr(xml_ncname!("subscription").into(), "subscribed")
                                    .build(),
                            )
                            .build(),
                    ),
                )
            } else {
                match store.unsubscribe_from_list(&node, jid.as_str()).await {
                    Ok(true) => {
                        info!(node, subscriber = %jid, "Unsubscribed from the published spam list.");
                        result(&iq, None)
                    }
                    Ok(false) => error(&iq, NOT_SUBSCRIBED),
                    Err(e) => failed(e),
                }
            }
        }
        _ => error(&iq, NOT_OURS),
    }
}

/// One published item: its id and a XEP-0377 report.
fn item(id: &str) -> Element {
    Element::builder("item", ns::PUBSUB)
        .attr(xml_ncname!("id").into(), id)
        .append(report())
        .build()
}

fn report() -> Element {
    Element::builder("report", NS_REPORTING)
        .attr(xml_ncname!("reason").into(), REASON_SPAM)
        .build()
}

/// What the reports put on each node: the item ids, from the
/// (`address` | `domain` | `ip`, value) pairs that enough distinct users
/// reported. Values that are no valid item of their node are left out.
pub fn wanted(reported: &[(String, String)]) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut nodes: BTreeMap<&'static str, BTreeSet<String>> =
        NODES.iter().map(|node| (*node, BTreeSet::new())).collect();
    for (kind, value) in reported {
        let (node, id) = match kind.as_str() {
            "address" if value.contains('@') => (NODE_ADDRESSES, Some(address_hash(value))),
            "domain" => (NODE_DOMAINS, ListKind::Domains.item_id(value)),
            "ip" => (NODE_IPS, ListKind::Ips.item_id(value)),
            _ => continue,
        };
        if let (Some(items), Some(id)) = (nodes.get_mut(node), id) {
            items.insert(id);
        }
    }
    nodes
}

/// Keeps the published list in step with the reports.
pub struct Publisher {
    pub config: Live,
    pub store: Store,
    pub link: LinkHandle,
}

impl Publisher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let config = self.config.get();
            // Only where notifications can go out, and on one instance.
            if !config.spam.publish || !*self.link.watch().borrow() {
                continue;
            }
            // One instance per cluster; alone on SQLite, no lease to write.
            if self.store.is_shared()
                && !self
                    .store
                    .runs_job("spam-publish", TICK, NOT_PUBLISHED)
                    .await
            {
                continue;
            }
            if let Err(e) = self.publish(&config).await {
                warn!(error = format!("{e:#}"), "{NOT_PUBLISHED}");
            }
        }
    }

    async fn publish(&self, config: &Config) -> anyhow::Result<()> {
        let threshold = i64::from(config.spam.publish_threshold);
        let reported = self.store.reports_by_distinct_users(threshold).await?;
        for (node, wanted) in wanted(&reported) {
            let published = self.store.published_items(node).await?;
            let new: Vec<String> = wanted
                .iter()
                .filter(|id| !published.contains_key(*id))
                .cloned()
                .collect();
            let remove: Vec<String> = published
                .keys()
                .filter(|id| !wanted.contains(*id))
                .cloned()
                .collect();
            if new.is_empty() && remove.is_empty() {
                continue;
            }
            let add: Vec<(String, i64)> = new.iter().map(|id| (id.clone(), threshold)).collect();
            self.store.change_published(node, &add, &remove).await?;
            info!(
                node,
                published = new.len(),
                retracted = remove.len(),
                "Spam list published."
            );
            let event = notification(node, &new, &remove);
            for subscriber in self.store.list_subscribers(node).await? {
                let Ok(to) = Jid::new(&subscriber) else {
                    continue;
                };
                let mut message = Message::new(Some(to));
                message.type_ = MessageType::Headline;
                message.from = Some(Jid::from(config.component.jid.clone()));
                message.payloads.push(event.clone());
                self.link.send(message).await;
            }
        }
        Ok(())
    }
}

/// The event notification of items published and retracted in `node`.
pub fn notification(node: &str, published: &[String], retracted: &[String]) -> Element {
    let items = Element::builder("items", ns::PUBSUB_EVENT)
        .attr(xml_ncname!("node").into(), node)
        .append_all(published.iter().map(|id| {
            Element::builder("item", ns::PUBSUB_EVENT)
                .attr(xml_ncname!("id").into(), id.as_str())
                .append(report())
                .build()
        }))
        .append_all(retracted.iter().map(|id| {
            Element::builder("retract", ns::PUBSUB_EVENT)
                .attr(xml_ncname!("id").into(), id.as_str())
                .build()
        }))
        .build();
    Element::builder("event", ns::PUBSUB_EVENT)
        .append(items)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_senders_domains_and_ips_go_to_their_nodes() {
        let reported: Vec<(String, String)> = [
            ("address", "a@evil.test"),
            ("domain", "evil.test"),
            ("ip", "192.0.2.9"),
            ("ip", "not an ip"),
            ("domain", "not a domain"),
            ("other", "x"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let wanted = wanted(&reported);
        let ids = |node: &str| wanted[node].iter().cloned().collect::<Vec<_>>();
        assert_eq!(ids(NODE_DOMAINS), vec!["evil.test"]);
        assert_eq!(ids(NODE_ADDRESSES), vec![address_hash("a@evil.test")]);
        assert_eq!(ids(NODE_IPS), vec!["192.0.2.9"]);
        // Nothing reported: every node is there, empty (to retract from).
        assert!(super::wanted(&[]).values().all(BTreeSet::is_empty));
        assert_eq!(super::wanted(&[]).len(), 3);
    }

    #[test]
    fn notifications_carry_reports_and_retractions() {
        let xml = String::from(&notification(
            NODE_DOMAINS,
            &["evil.test".into()],
            &["good.test".into()],
        ));
        assert_eq!(
            xml,
            "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='spam_source_domains'>\
             <item id='evil.test'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/></item>\
             <retract id='good.test'/></items></event>"
        );
    }
}
