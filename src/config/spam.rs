//! The `[spam]` section: what facteur learns from users about spam. So
//! far, how often their blocklists are read where the XMPP server lets the
//! gateway read them (XEP-0356 IQ permission on `urn:xmpp:blocking`), how
//! long mail is held in quarantine, and how often its digest is sent; the
//! shared lists it consumes (`[[spam.lists]]`, XEP-0060) and publishes,
//! and the DNS lists it asks (`dnsbl`, `domain_blocklists`).

use std::time::Duration;

use facteur_policy::spam::shared::ListKind;
use jid::BareJid;
use serde::Deserialize;

use super::Problems;

/// Spam feedback settings.
#[derive(Debug, Clone)]
pub struct SpamConfig {
    /// A user's blocklist, read at registration, is read again once older
    /// than this.
    pub blocklist_max_age: Duration,
    /// The XMPP real-time blocklists consumed.
    pub lists: Vec<SharedList>,
    /// DNS lists asked for the client IP address.
    pub dnsbl: Vec<DnsList>,
    /// DNS lists asked for the sender's and the links' domains.
    pub domain_blocklists: Vec<DnsList>,
    /// Longest wait for a DNS list's answer; past it, not listed.
    pub dns_timeout: Duration,
    /// Whether the gateway serves its own list on its JID (XEP-0060).
    pub publish: bool,
    /// Distinct users whose reports put a sender, its domain or its
    /// client IP on the published list.
    pub publish_threshold: u32,
    /// Mail held in quarantine is dropped after this, and the recent mail
    /// that feedback trains with is forgotten.
    pub held_for: Duration,
    /// How often users with newly held mail get a digest message naming it.
    pub digest_interval: Duration,
}

/// One consumed XMPP real-time blocklist: a pubsub node.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedList {
    /// How the list is named in logs, the admin command and the metrics.
    pub name: String,
    pub service: BareJid,
    pub node: String,
    pub kind: ListKind,
    /// The trust weight it starts with, in [0, 1].
    pub weight: f64,
}

/// One DNS list zone and its starting trust weight.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsList {
    pub zone: String,
    pub weight: f64,
}

impl DnsList {
    /// The name its weight is kept under, beside the XMPP lists'.
    pub fn name(&self) -> String {
        format!("dns:{}", self.zone)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    name: Option<String>,
    service: String,
    node: String,
    kind: String,
    #[serde(default = "full_weight")]
    weight: f64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDnsList {
    Zone(String),
    Weighted { zone: String, weight: f64 },
}

fn full_weight() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSpam {
    blocklist_max_age: String,
    lists: Vec<RawList>,
    dnsbl: Vec<RawDnsList>,
    domain_blocklists: Vec<RawDnsList>,
    dns_timeout: String,
    publish: bool,
    publish_threshold: u32,
    held_for: String,
    digest_interval: String,
}

impl Default for RawSpam {
    fn default() -> Self {
        RawSpam {
            blocklist_max_age: "1d".into(),
            lists: Vec::new(),
            dnsbl: Vec::new(),
            domain_blocklists: Vec::new(),
            dns_timeout: "2s".into(),
            publish: true,
            publish_threshold: 3,
            held_for: "30d".into(),
            digest_interval: "1d".into(),
        }
    }
}

impl RawSpam {
    pub(super) fn check(self, p: &mut Problems) -> SpamConfig {
        let blocklist_max_age = p.duration("spam.blocklist_max_age", &self.blocklist_max_age);
        if blocklist_max_age < Duration::from_secs(60) {
            p.add("spam.blocklist_max_age", "must be at least 1m");
        }
        let mut lists: Vec<SharedList> = Vec::new();
        for (i, raw) in self.lists.into_iter().enumerate() {
            let key = format!("spam.lists[{i}]");
            let Ok(service) = BareJid::new(raw.service.trim()) else {
                p.add(&key, format!("service {:?} is not a JID", raw.service));
                continue;
            };
            let Some(kind) = ListKind::parse(&raw.kind) else {
                p.add(
                    &key,
                    format!("kind {:?} is not domains, sha256 or ips", raw.kind),
                );
                continue;
            };
            if raw.node.trim().is_empty() {
                p.add(&key, "node is empty");
                continue;
            }
            check_weight(p, &key, raw.weight);
            let name = raw
                .name
                .unwrap_or_else(|| format!("{service}/{}", raw.node));
            if lists.iter().any(|l| l.name == name) {
                p.add(&key, format!("a list is already named {name:?}"));
            }
            lists.push(SharedList {
                name,
                service,
                node: raw.node.trim().to_owned(),
                kind,
                weight: raw.weight,
            });
        }
        let dnsbl = dns_lists(p, "spam.dnsbl", self.dnsbl);
        let domain_blocklists = dns_lists(p, "spam.domain_blocklists", self.domain_blocklists);
        let dns_timeout = p.duration("spam.dns_timeout", &self.dns_timeout);
        if self.publish_threshold == 0 {
            p.add("spam.publish_threshold", "must be at least 1");
        }
        let held_for = p.duration("spam.held_for", &self.held_for);
        if held_for < Duration::from_secs(3600) {
            p.add("spam.held_for", "must be at least 1h");
        }
        let digest_interval = p.duration("spam.digest_interval", &self.digest_interval);
        if digest_interval < Duration::from_secs(1) {
            p.add("spam.digest_interval", "must be at least 1s");
        }
        SpamConfig {
            blocklist_max_age,
            lists,
            dnsbl,
            domain_blocklists,
            dns_timeout,
            publish: self.publish,
            publish_threshold: self.publish_threshold.max(1),
            held_for,
            digest_interval,
        }
    }
}

fn check_weight(p: &mut Problems, key: &str, weight: f64) {
    if !(0.0..=1.0).contains(&weight) {
        p.add(key, format!("weight {weight} is not within 0 and 1"));
    }
}

fn dns_lists(p: &mut Problems, key: &str, raw: Vec<RawDnsList>) -> Vec<DnsList> {
    raw.into_iter()
        .filter_map(|raw| {
            let (zone, weight) = match raw {
                RawDnsList::Zone(zone) => (zone, 1.0),
                RawDnsList::Weighted { zone, weight } => (zone, weight),
            };
            let zone = zone.trim().trim_matches('.').to_ascii_lowercase();
            check_weight(p, key, weight);
            if zone.is_empty() || !zone.contains('.') {
                p.add(key, format!("{zone:?} is not a DNS zone"));
                return None;
            }
            Some(DnsList { zone, weight })
        })
        .collect()
}
