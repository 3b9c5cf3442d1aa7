//! Shared spam lists, the pure part: the kinds of XMPP real-time
//! blocklist (xmppbl.org's format: XEP-0060 nodes whose item ids are the
//! listed things), what a valid item id looks like, the trust weight of a
//! list as users' feedback confirms or contradicts it, and the names a
//! DNS list is asked (RFC 5782).

use std::net::IpAddr;

/// The node of domains (xmppbl.org's `spam_source_domains`).
pub const NODE_DOMAINS: &str = "spam_source_domains";
/// The node of mail addresses, each as the lower-case hex SHA-256 of the
/// address (as xmppbl.org's `muc_bans_sha256` holds bare JIDs).
pub const NODE_ADDRESSES: &str = "spam_source_addresses_sha256";
/// The node of client IP addresses, in their usual text form.
pub const NODE_IPS: &str = "spam_source_ips";

/// What the item ids of a list's node stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListKind {
    /// Domains: the sender's and the links'.
    Domains,
    /// The lower-case hex SHA-256 of a bare JID or mail address.
    Sha256,
    /// Client IP addresses.
    Ips,
}

impl ListKind {
    /// The kind a configuration names: `domains`, `sha256` or `ips`.
    pub fn parse(name: &str) -> Option<ListKind> {
        match name {
            "domains" => Some(ListKind::Domains),
            "sha256" => Some(ListKind::Sha256),
            "ips" => Some(ListKind::Ips),
            _ => None,
        }
    }

    /// The name a configuration gives it.
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Domains => "domains",
            ListKind::Sha256 => "sha256",
            ListKind::Ips => "ips",
        }
    }

    /// The item id as kept, or `None` when it is not one of this kind
    /// (a malformed item, to be ignored).
    pub fn item_id(self, id: &str) -> Option<String> {
        let id = id.trim();
        match self {
            ListKind::Domains => {
                let id = id.trim_end_matches('.').to_ascii_lowercase();
                is_domain(&id).then_some(id)
            }
            ListKind::Sha256 => (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| id.to_ascii_lowercase()),
            ListKind::Ips => id.parse::<IpAddr>().ok().map(|ip| ip.to_string()),
        }
    }
}

/// A DNS name of at least two labels, each of letters, digits and
/// hyphens (or an underscore, seen in the wild), none empty or too long.
fn is_domain(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// What a user's feedback says of a listing that applied to the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Spam feedback on a listed sender: the list was right.
    Confirms,
    /// Ham feedback on a listed sender: the list was wrong.
    Contradicts,
}

/// How much a confirmation raises a weight.
pub const CONFIRM_STEP: f64 = 0.02;
/// How much a contradiction lowers a weight: a false positive costs a
/// user a mail, so one outweighs several confirmations.
pub const CONTRADICT_STEP: f64 = 0.1;

/// A list's trust weight after one piece of feedback, within [0, 1].
pub fn next_weight(weight: f64, feedback: Feedback) -> f64 {
    let weight = if weight.is_finite() { weight } else { 0.0 };
    let next = match feedback {
        Feedback::Confirms => weight + CONFIRM_STEP,
        Feedback::Contradicts => weight - CONTRADICT_STEP,
    };
    // Steps of a tenth leave float dust (0.30000000000000004).
    (next.clamp(0.0, 1.0) * 1e6).round() / 1e6
}

/// Whether a listing from a list at `weight` counts at all.
pub fn counts(weight: f64) -> bool {
    weight > 0.0
}

/// The name asked of DNS list `zone` for client `ip` (RFC 5782 §2.1 and
/// §2.4): the octets reversed for IPv4, the 32 nibbles reversed for IPv6.
pub fn dnsbl_ip_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_matches('.');
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}.")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len() + 2);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    name.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    name.push('.');
                }
            }
            name.push_str(zone);
            name.push('.');
            name
        }
    }
}

/// The name asked of domain block list `zone` for `domain` (RFC 5782
/// §2.2); `None` when `domain` is no domain.
pub fn dnsbl_domain_name(domain: &str, zone: &str) -> Option<String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    is_domain(&domain).then(|| format!("{domain}.{}.", zone.trim_matches('.')))
}

/// Whether a DNS list's answer lists the name: an A record in 127.0.0.0/8
/// other than 127.0.0.1, which lists use for errors and query refusals
/// (RFC 5782 §2.1, §5).
pub fn dnsbl_listed(answer: std::net::Ipv4Addr) -> bool {
    let [a, b, c, _] = answer.octets();
    a == 127 && !(b == 255 && c == 255) && answer != std::net::Ipv4Addr::new(127, 0, 0, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_are_checked_by_kind() {
        let hash = "a".repeat(64);
        assert_eq!(
            ListKind::Domains.item_id("Evil.Test."),
            Some("evil.test".into())
        );
        assert_eq!(ListKind::Domains.item_id("not a domain"), None);
        assert_eq!(ListKind::Domains.item_id("localhost"), None);
        assert_eq!(ListKind::Domains.item_id("<evil>.test"), None);
        assert_eq!(ListKind::Sha256.item_id(&hash.to_uppercase()), Some(hash));
        assert_eq!(ListKind::Sha256.item_id("abc"), None);
        assert_eq!(ListKind::Sha256.item_id(&"g".repeat(64)), None);
        assert_eq!(
            ListKind::Ips.item_id("2001:DB8::1"),
            Some("2001:db8::1".into())
        );
        assert_eq!(ListKind::Ips.item_id("300.1.1.1"), None);
        assert_eq!(ListKind::parse("sha256"), Some(ListKind::Sha256));
        assert_eq!(ListKind::parse("jids"), None);
    }

    #[test]
    fn weights_move_with_feedback_within_bounds() {
        assert_eq!(next_weight(0.5, Feedback::Confirms), 0.52);
        assert_eq!(next_weight(0.5, Feedback::Contradicts), 0.4);
        assert_eq!(next_weight(0.99, Feedback::Confirms), 1.0);
        assert_eq!(next_weight(0.05, Feedback::Contradicts), 0.0);
        assert_eq!(next_weight(0.0, Feedback::Contradicts), 0.0);
        assert_eq!(next_weight(f64::NAN, Feedback::Confirms), 0.02);
        // Ten contradictions bring a fully trusted list to nothing.
        let mut w = 1.0;
        for _ in 0..10 {
            w = next_weight(w, Feedback::Contradicts);
        }
        assert_eq!(w, 0.0);
        assert!(!counts(w));
        assert!(counts(0.01));
    }

    #[test]
    fn dnsbl_names_reverse_the_address() {
        assert_eq!(
            dnsbl_ip_name("127.0.0.2".parse().expect("ip"), "zen.test"),
            "2.0.0.127.zen.test."
        );
        assert_eq!(
            dnsbl_ip_name("192.0.2.99".parse().expect("ip"), ".zen.test."),
            "99.2.0.192.zen.test."
        );
        // RFC 5782 §2.4's own example.
        assert_eq!(
            dnsbl_ip_name(
                "2001:db8:1:2:3:4:567:89ab".parse().expect("ip"),
                "ugly.example.com"
            ),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."
        );
        // A v4 client seen through a v6 socket is asked as v4.
        assert_eq!(
            dnsbl_ip_name("::ffff:127.0.0.2".parse().expect("ip"), "zen.test"),
            "2.0.0.127.zen.test."
        );
        assert_eq!(
            dnsbl_domain_name("Evil.Test", "dbl.test"),
            Some("evil.test.dbl.test.".into())
        );
        assert_eq!(dnsbl_domain_name("", "dbl.test"), None);
        assert!(dnsbl_listed("127.0.0.2".parse().expect("ip")));
        assert!(!dnsbl_listed("127.0.0.1".parse().expect("ip")));
        assert!(!dnsbl_listed("127.255.255.254".parse().expect("ip")));
        assert!(!dnsbl_listed("10.0.0.2".parse().expect("ip")));
    }
}
