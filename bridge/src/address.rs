//! Mail addresses ⇄ JIDs of the gateway, XEP-0106 (JID Escaping).
//!
//! `bob@example.net` is `bob\40example.net@mail.example.test` in XMPP. JID
//! nodes are case-folded by nodeprep while mail local parts may be
//! case-sensitive (RFC 5321 §2.4): the JID side loses the case, so the
//! daemon keeps the address it first saw for a JID and prefers it.

use std::fmt;

use jid::{BareJid, DomainRef};

use crate::Error;

/// A mailbox `local@domain` whose syntax facteur can carry both ways.
///
/// The local part keeps its case; the domain is lower-cased. Quoted local
/// parts and address literals are refused: they cannot become a JID node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailAddress {
    local: String,
    domain: String,
}

/// Characters a JID node cannot hold, with their XEP-0106 escapes.
/// The backslash is always escaped so that unescaping is unambiguous.
const ESCAPES: [(char, &str); 10] = [
    (' ', "\\20"),
    ('"', "\\22"),
    ('&', "\\26"),
    ('\'', "\\27"),
    ('/', "\\2f"),
    (':', "\\3a"),
    ('<', "\\3c"),
    ('>', "\\3e"),
    ('@', "\\40"),
    ('\\', "\\5c"),
];

impl MailAddress {
    /// Parses `local@domain` (RFC 5321 dot-atom local part, or UTF-8 as
    /// RFC 6531 allows; an LDH or IDN domain).
    pub fn parse(address: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidAddress {
            address: address.to_owned(),
            reason,
        };
        let (local, domain) = address
            .rsplit_once('@')
            .ok_or_else(|| invalid("no @ between local part and domain"))?;
        if local.is_empty() {
            return Err(invalid("empty local part"));
        }
        if local.len() > 64 {
            return Err(invalid("local part longer than 64 octets"));
        }
        if local.starts_with('"') {
            return Err(invalid("quoted local parts are not supported"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("misplaced dot in local part"));
        }
        if local
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "()<>[],;:\"@\\".contains(c))
        {
            return Err(invalid("forbidden character in local part"));
        }
        let domain = domain.trim_end_matches('.').to_lowercase();
        if domain.is_empty() || domain.len() > 253 {
            return Err(invalid("empty or overlong domain"));
        }
        if domain.starts_with('[') {
            return Err(invalid("address literals are not supported"));
        }
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if !labels_ok {
            return Err(invalid("invalid domain"));
        }
        Ok(MailAddress {
            local: local.to_owned(),
            domain,
        })
    }

    /// The local part, in its original case.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain, lower-cased.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether both name the same mailbox, ignoring the case of the local
    /// part (what a JID can tell apart).
    pub fn same_mailbox(&self, other: &MailAddress) -> bool {
        self.domain == other.domain && self.local.to_lowercase() == other.local.to_lowercase()
    }
}

impl fmt::Display for MailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl std::str::FromStr for MailAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// XEP-0106 escape of a whole mailbox into a JID node.
fn escape_node(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    for c in text.chars() {
        match ESCAPES.iter().find(|(raw, _)| *raw == c) {
            Some((_, escaped)) => out.push_str(escaped),
            None => out.push(c),
        }
    }
    out
}

/// XEP-0106 unescape; a backslash not followed by a known escape stays.
pub fn unescape_node(node: &str) -> String {
    let mut out = String::with_capacity(node.len());
    let mut rest = node;
    while let Some(pos) = rest.find('\\') {
        let (head, tail) = rest.split_at(pos);
        out.push_str(head);
        let code = tail.get(1..3).unwrap_or_default().to_ascii_lowercase();
        match ESCAPES
            .iter()
            .find(|(_, escaped)| escaped.get(1..) == Some(&code))
        {
            Some((raw, _)) => {
                out.push(*raw);
                rest = tail.get(3..).unwrap_or_default();
            }
            None => {
                out.push('\\');
                rest = tail.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// The JID under which `address` appears at the gateway `gateway`.
pub fn mailbox_to_jid(address: &MailAddress, gateway: &DomainRef) -> Result<BareJid, Error> {
    let node = escape_node(&address.to_string());
    BareJid::new(&format!("{node}@{gateway}")).map_err(|_| Error::InvalidAddress {
        address: address.to_string(),
        reason: "not representable as a JID node (nodeprep)",
    })
}

/// The mail address a JID of the gateway `gateway` stands for.
///
/// The local part comes back case-folded, as nodeprep left it.
pub fn jid_to_mailbox(jid: &BareJid, gateway: &DomainRef) -> Result<MailAddress, Error> {
    let not_mail = |reason| Error::NotAMailJid {
        jid: jid.to_string(),
        reason,
    };
    if jid.domain() != gateway {
        return Err(not_mail("not a JID of this gateway"));
    }
    let node = jid.node().ok_or_else(|| not_mail("no local part"))?;
    let unescaped = unescape_node(node.as_str());
    if !unescaped.contains('@') {
        return Err(not_mail(
            "the local part holds no escaped @ (write bob\\40example.net)",
        ));
    }
    MailAddress::parse(&unescaped).map_err(|_| not_mail("the escaped address is not valid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gateway() -> BareJid {
        BareJid::new("mail.example.test").expect("valid domain")
    }

    #[test]
    fn escapes_as_the_xep_examples() {
        let addr = MailAddress::parse("bob@example.net").expect("valid");
        let jid = mailbox_to_jid(&addr, gateway().domain()).expect("maps");
        assert_eq!(jid.to_string(), "bob\\40example.net@mail.example.test");
        let odd = MailAddress::parse("d'artagnan/x&y@example.net").expect("valid");
        let jid = mailbox_to_jid(&odd, gateway().domain()).expect("maps");
        assert_eq!(
            jid.to_string(),
            "d\\27artagnan\\2fx\\26y\\40example.net@mail.example.test"
        );
        assert_eq!(jid_to_mailbox(&jid, gateway().domain()).expect("back"), odd);
    }

    #[test]
    fn case_of_local_part_is_kept_on_the_mail_side() {
        let addr = MailAddress::parse("Bob.Smith@Example.NET").expect("valid");
        assert_eq!(addr.to_string(), "Bob.Smith@example.net");
        let jid = mailbox_to_jid(&addr, gateway().domain()).expect("maps");
        let back = jid_to_mailbox(&jid, gateway().domain()).expect("back");
        assert!(back.same_mailbox(&addr));
    }

    #[test]
    fn bad_addresses_say_why() {
        for (input, reason) in [
            ("no-at-sign", "no @ between local part and domain"),
            ("@example.net", "empty local part"),
            ("a b@example.net", "forbidden character in local part"),
            ("\"q\"@example.net", "quoted local parts are not supported"),
            ("a@[127.0.0.1]", "address literals are not supported"),
            ("a..b@example.net", "misplaced dot in local part"),
            ("a@exa_mple.net", "invalid domain"),
            (
                "a\r\nBcc: x@example.net",
                "forbidden character in local part",
            ),
        ] {
            match MailAddress::parse(input) {
                Err(Error::InvalidAddress { reason: got, .. }) => {
                    assert_eq!(got, reason, "{input}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn jids_that_are_not_mail_are_refused() {
        let g = gateway();
        for jid in [
            "mail.example.test",
            "bob@mail.example.test",
            "bob\\40x@other.test",
        ] {
            let jid = BareJid::new(jid).expect("valid jid");
            assert!(matches!(
                jid_to_mailbox(&jid, g.domain()),
                Err(Error::NotAMailJid { .. })
            ));
        }
    }

    #[test]
    fn unescape_keeps_unknown_and_trailing_backslashes() {
        assert_eq!(unescape_node("a\\41b"), "a\\41b");
        assert_eq!(unescape_node("ab\\"), "ab\\");
        assert_eq!(unescape_node("ab\\4"), "ab\\4");
        assert_eq!(unescape_node("\\5c\\40"), "\\@");
    }

    proptest! {
        #[test]
        fn round_trip(local in "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\\.[a-zA-Z0-9&'/_-]{1,10}){0,2}",
                      domain in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,8}){1,2}") {
            let addr = MailAddress::parse(&format!("{local}@{domain}")).expect("generated valid");
            let jid = mailbox_to_jid(&addr, gateway().domain()).expect("maps");
            let back = jid_to_mailbox(&jid, gateway().domain()).expect("back");
            prop_assert!(back.same_mailbox(&addr));
            prop_assert_eq!(back.local(), addr.local().to_lowercase());
        }
    }
}
