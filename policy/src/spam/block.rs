//! Blocked senders: the items of a user's blocklist at the gateway, as
//! mail addresses or mail domains, and whether one covers a sender.

use std::fmt;

/// What a blocklist item at the gateway stands for, normalised (lower
/// case) as it is stored and compared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockItem {
    /// One mail address, `spammer@evil.test`.
    Address(String),
    /// Every address of a mail domain, `evil.test`.
    Domain(String),
}

/// How facteur learnt of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockSource {
    /// A block forwarded by the user's server with a spam or abuse report.
    Report,
    /// A block forwarded by the user's server, without a report.
    Block,
    /// Read from the user's blocklist with a XEP-0356 privileged IQ.
    PrivilegedRead,
}

impl BlockSource {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            BlockSource::Report => "report",
            BlockSource::Block => "block",
            BlockSource::PrivilegedRead => "privileged-read",
        }
    }

    /// The source a stored name stands for.
    pub fn from_name(name: &str) -> Option<BlockSource> {
        [
            BlockSource::Report,
            BlockSource::Block,
            BlockSource::PrivilegedRead,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

impl BlockItem {
    /// The item an unescaped JID local part names: an address when it
    /// holds an `@`, else a domain. `None` for what is neither (empty
    /// parts, spaces, a domain without a dot).
    pub fn from_local_part(unescaped: &str) -> Option<BlockItem> {
        let text = unescaped.trim().to_ascii_lowercase();
        let domain_ok = |d: &str| {
            !d.is_empty()
                && d.contains('.')
                && !d.starts_with('.')
                && !d.ends_with('.')
                && d.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        };
        match text.rsplit_once('@') {
            Some((local, domain)) => (!local.is_empty()
                && !local.chars().any(|c| c.is_whitespace() || c == '@')
                && domain_ok(domain))
            .then(|| BlockItem::Address(text.clone())),
            None => domain_ok(&text).then(|| BlockItem::Domain(text.clone())),
        }
    }

    /// The stored text: the address or the domain.
    pub fn as_str(&self) -> &str {
        match self {
            BlockItem::Address(text) | BlockItem::Domain(text) => text,
        }
    }

    /// The items that would block mail from `sender` (a reverse path):
    /// its address and its domain, normalised. None for the null sender,
    /// which only reports carry and no block stops.
    pub fn covering(sender: &str) -> Option<[BlockItem; 2]> {
        let sender = sender.trim().to_ascii_lowercase();
        let (_, domain) = sender.rsplit_once('@')?;
        if domain.is_empty() {
            return None;
        }
        Some([
            BlockItem::Domain(domain.to_owned()),
            BlockItem::Address(sender.clone()),
        ])
    }
}

impl fmt::Display for BlockItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_an_address_or_a_domain() {
        assert_eq!(
            BlockItem::from_local_part("Spammer@Evil.test"),
            Some(BlockItem::Address("spammer@evil.test".into()))
        );
        assert_eq!(
            BlockItem::from_local_part("evil.test"),
            Some(BlockItem::Domain("evil.test".into()))
        );
        for bad in [
            "",
            "@evil.test",
            "spammer@",
            "spam mer@evil.test",
            "evil",
            "a@b@c.test",
            ".test",
        ] {
            assert_eq!(BlockItem::from_local_part(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_sender_is_covered_by_its_address_and_its_domain() {
        let [domain, address] = BlockItem::covering("Spammer@EVIL.test").expect("items");
        assert_eq!(domain, BlockItem::Domain("evil.test".into()));
        assert_eq!(address, BlockItem::Address("spammer@evil.test".into()));
        assert_eq!(BlockItem::covering(""), None);
        assert_eq!(BlockItem::covering("postmaster"), None);
    }

    #[test]
    fn sources_round_trip_their_names() {
        for source in [
            BlockSource::Report,
            BlockSource::Block,
            BlockSource::PrivilegedRead,
        ] {
            assert_eq!(BlockSource::from_name(source.name()), Some(source));
        }
        assert_eq!(BlockSource::from_name("other"), None);
    }
}
