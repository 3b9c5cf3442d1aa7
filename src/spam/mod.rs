//! Spam, the I/O side: what users' blocklists at the gateway mean for
//! mail (`gateway_item`), and reading them from their servers where
//! XEP-0356 allows it (`blocklist`); the shared lists consumed (`lists`)
//! and published (`publish`) over XEP-0060, the DNS lists (`dnsbl`), and
//! the `Listings` of a mail in them, each with its trust weight. The
//! decisions are pure, in `facteur_policy::spam`.

pub mod bayes;
pub mod blocklist;
pub mod dnsbl;
pub mod lists;
pub mod publish;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
pub mod digest;
pub mod judge;
pub mod learn;

pub use judge::{Judge, Judged};

use facteur_bridge::address::unescape_node;
use facteur_policy::spam::shared::{counts, Feedback, ListKind};
use facteur_policy::spam::BlockItem;
use hickory_resolver::TokioResolver;
use jid::BareJid;
use tracing::{info, warn};

use crate::config::{Config, Live};
use crate::store::Store;

/// Why a blocklist JID blocks no mail sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotASender {
    /// Not a JID at all.
    Invalid,
    /// A JID that is not a mail address or domain at this gateway.
    NotOurs,
}

/// The mail address or domain a blocklist JID of this gateway stands for
/// (`spammer\40evil.test@gateway` → `spammer@evil.test`,
/// `evil.test@gateway` → the domain `evil.test`).
pub fn gateway_item(config: &Config, jid: &str) -> Result<BlockItem, NotASender> {
    let jid = BareJid::new(jid.trim()).map_err(|_| NotASender::Invalid)?;
    if jid.domain() != config.component.jid.domain() {
        return Err(NotASender::NotOurs);
    }
    let node = jid.node().ok_or(NotASender::NotOurs)?;
    BlockItem::from_local_part(&unescape_node(node.as_str())).ok_or(NotASender::NotOurs)
}

/// The listings of a mail's sender, client IP and link domains in the
/// shared lists and DNS lists; cheap to clone, held by the SMTP reception.
/// The default asks nothing.
#[derive(Clone, Default)]
pub struct Listings {
    sources: Option<Arc<Sources>>,
}

struct Sources {
    config: Live,
    store: Store,
    resolver: TokioResolver,
}

impl std::fmt::Debug for Listings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listings")
            .field("asks", &self.sources.is_some())
            .finish()
    }
}

impl Listings {
    /// Listings read from the store's shared lists and asked of DNS lists
    /// through `resolver`.
    pub fn new(config: Live, store: Store, resolver: TokioResolver) -> Listings {
        Listings {
            sources: Some(Arc::new(Sources {
                config,
                store,
                resolver,
            })),
        }
    }

    /// The lists that name the sender (a reverse path), its domain, the
    /// client's address or one of the link domains, each with its weight
    /// now; lists at weight 0 are left out. A list that cannot be asked
    /// (a DNS error, the store) names nothing: it never refuses a mail.
    pub async fn lookup(
        &self,
        sender: &str,
        client: IpAddr,
        link_domains: &[String],
    ) -> Vec<facteur_policy::spam::Listing> {
        self.lookup_parts(sender, Some(client), link_domains).await
    }

    /// `lookup`, where the client's address may be unknown.
    pub async fn lookup_parts(
        &self,
        sender: &str,
        client: Option<IpAddr>,
        link_domains: &[String],
    ) -> Vec<facteur_policy::spam::Listing> {
        let Some(sources) = &self.sources else {
            return Vec::new();
        };
        let config = sources.config.get();
        let spam = &config.spam;
        if spam.lists.is_empty() && spam.dnsbl.is_empty() && spam.domain_blocklists.is_empty() {
            return Vec::new();
        }
        let candidates = lists::candidates(sender, client, link_domains);
        let domains: Vec<String> = candidates
            .iter()
            .filter(|(kind, _, _)| *kind == ListKind::Domains)
            .map(|(_, id, _)| id.clone())
            .collect();
        let ids: Vec<String> = candidates.iter().map(|(_, id, _)| id.clone()).collect();
        let (entries, weights, dns) = tokio::join!(
            sources.store.listed(&ids),
            sources.store.list_weights(),
            dnsbl::ask(&sources.resolver, spam, client, &domains),
        );
        let entries = entries.unwrap_or_else(|e| {
            warn!(
                error = format!("{e:#}"),
                "Store unavailable; shared lists not asked."
            );
            Vec::new()
        });
        let weights: BTreeMap<String, f64> = match weights {
            Ok(weights) => weights.into_iter().map(|w| (w.list, w.weight)).collect(),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Store unavailable; list weights not read."
                );
                return Vec::new();
            }
        };
        let mut found: Vec<(String, String)> = Vec::new();
        for (list, item) in entries {
            let Some(kind) = spam.lists.iter().find(|l| l.name == list).map(|l| l.kind) else {
                continue;
            };
            // An id matches only as what the list's kind holds.
            if let Some((_, _, what)) = candidates
                .iter()
                .find(|(k, id, _)| *k == kind && *id == item)
            {
                found.push((list, what.clone()));
            }
        }
        found.extend(dns.into_iter().map(|hit| (hit.list, hit.what)));
        let mut listings: Vec<facteur_policy::spam::Listing> = found
            .into_iter()
            .filter_map(|(list, what)| {
                let weight = *weights.get(&list)?;
                counts(weight).then_some(facteur_policy::spam::Listing { list, what, weight })
            })
            .collect();
        listings.sort_by(|a, b| (&a.list, &a.what).cmp(&(&b.list, &b.what)));
        listings.dedup_by(|a, b| a.list == b.list && a.what == b.what);
        listings
    }
}

/// Moves the weight of each consumed list that lists `sender` (its
/// address or its domain) after a user's verdict on its mail: spam
/// confirms the listing, ham contradicts it. Logged, never failing.
/// (Item ids of different kinds cannot be mistaken for each other: a
/// hash has no dot, a domain does.)
pub async fn weigh_feedback(store: &Store, sender: &str, spam: bool) {
    let candidates = lists::candidates(sender, None, &[]);
    let ids: Vec<String> = candidates.iter().map(|(_, id, _)| id.clone()).collect();
    let entries = match store.listed(&ids).await {
        Ok(entries) => entries,
        Err(e) => {
            return warn!(
                error = format!("{e:#}"),
                "Store unavailable; list weights not moved."
            )
        }
    };
    let feedback = if spam {
        Feedback::Confirms
    } else {
        Feedback::Contradicts
    };
    let mut moved: Vec<String> = Vec::new();
    for (list, _) in entries {
        if moved.contains(&list) {
            continue;
        }
        match store.move_list_weight(&list, feedback).await {
            Ok(Some(weight)) => {
                info!(list, sender, weight, feedback = ?feedback, "Shared list weight moved.")
            }
            Ok(None) => {}
            Err(e) => warn!(error = format!("{e:#}"), list, "List weight not moved."),
        }
        moved.push(list);
    }
}

/// Gives every configured list and DNS list its starting weight, unless
/// the store has one already (learnt before a restart).
pub async fn start_weights(config: &Config, store: &Store) -> anyhow::Result<()> {
    let mut lists: Vec<(String, f64)> = config
        .spam
        .lists
        .iter()
        .map(|l| (l.name.clone(), l.weight))
        .collect();
    lists.extend(
        config
            .spam
            .dnsbl
            .iter()
            .chain(&config.spam.domain_blocklists)
            .map(|z| (z.name(), z.weight)),
    );
    store.start_list_weights(&lists).await
}

/// How a mail is named to its user in spam commands and digests:
/// `2026-12-07 18:30 UTC from spammer@evil.test: Cheap`, with `<>` for
/// the null sender and `(no subject)`.
pub fn mail_line(at: crate::store::Millis, sender: &str, subject: &str) -> String {
    let d = mail_parser::DateTime::from_timestamp(at.0 / 1000);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC from {}: {}",
        d.year,
        d.month,
        d.day,
        d.hour,
        d.minute,
        if sender.is_empty() { "<>" } else { sender },
        if subject.is_empty() {
            "(no subject)"
        } else {
            subject
        },
    )
}
