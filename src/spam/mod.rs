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
