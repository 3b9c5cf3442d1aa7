//! Autocrypt level 1 headers (<https://autocrypt.org/level1.html>): the
//! one facteur writes on a user's outgoing mail when she has a key, and
//! the one it reads from a mail that arrives, so that others' keys are
//! known.

use base64::Engine;

use crate::store::PeerKey;

/// Base64 characters on each folded line of `keydata`.
const LINE: usize = 72;

/// The `Autocrypt` header field, ending in CRLF, for mail that leaves
/// from `addr` with the key `cert` (binary, as stored: minimised).
pub fn header(addr: &str, cert: &[u8]) -> String {
    let keydata = base64::engine::general_purpose::STANDARD.encode(cert);
    let mut field = format!("Autocrypt: addr={addr}; keydata=");
    for chunk in keydata.as_bytes().chunks(LINE) {
        field.push_str("\r\n ");
        // Base64 is ASCII: every chunk is a string.
        field.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    field.push_str("\r\n");
    field
}

/// An `Autocrypt` header as read from a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `addr`, lower-cased.
    pub addr: String,
    /// `prefer-encrypt=mutual`.
    pub mutual: bool,
    /// The key, binary.
    pub keydata: Vec<u8>,
}

/// The header value `value` (unfolded or not), or `None` when Autocrypt
/// says to ignore it: no `addr` or `keydata`, `keydata` not base64, or a
/// critical attribute (one not starting with `_`) it does not know.
pub fn parse(value: &str) -> Option<Seen> {
    let mut addr = None;
    let mut keydata = None;
    let mut mutual = false;
    for attribute in value.split(';') {
        let attribute = attribute.trim();
        if attribute.is_empty() {
            continue;
        }
        let (name, val) = attribute.split_once('=')?;
        match name.trim() {
            "addr" => addr = Some(val.trim().to_lowercase()),
            "keydata" => {
                let text: String = val.chars().filter(|c| !c.is_whitespace()).collect();
                keydata = Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()?,
                );
            }
            "prefer-encrypt" => mutual = val.trim() == "mutual",
            name if name.starts_with('_') => {}
            _ => return None,
        }
    }
    let addr = addr.filter(|a| !a.is_empty())?;
    let keydata = keydata.filter(|k| !k.is_empty())?;
    Some(Seen {
        addr,
        mutual,
        keydata,
    })
}

/// The date a header counts from: the mail's `Date` (seconds since the
/// epoch), never later than `now`; `now` when the mail has none.
pub fn effective_date(date: Option<i64>, now: i64) -> i64 {
    date.map_or(now, |d| d.min(now))
}

/// The key in the `Autocrypt` header of the mail `raw`, received at
/// `now` (seconds), as Autocrypt level 1 reads it: only a mail with one
/// From address and exactly one header whose `addr` is that address
/// counts; its effective date is the mail's Date, never later than `now`;
/// its key must be one that can be encrypted to now.
pub fn from_mail(raw: &[u8], now: i64) -> Option<PeerKey> {
    let mail = mail_parser::MessageParser::new().parse_headers(raw)?;
    let from = mail.from()?;
    let mut senders = from.iter();
    let sender = senders.next()?.address()?.to_lowercase();
    if senders.next().is_some() {
        return None;
    }
    let mut headers = mail
        .headers_raw()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Autocrypt"))
        .filter_map(|(_, value)| parse(value))
        .filter(|seen| seen.addr == sender);
    let seen = headers.next()?;
    if headers.next().is_some() {
        return None;
    }
    let date = mail.date().map(|d| d.to_timestamp());
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64);
    let fingerprint = super::encryptable(&seen.keydata, at)?;
    Some(PeerKey {
        addr: seen.addr,
        last_seen: effective_date(date, now),
        fingerprint,
        cert: seen.keydata,
        prefer_mutual: seen.mutual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_folds() {
        let key: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let field = header("alice@example.test", &key);
        assert!(field.starts_with("Autocrypt: addr=alice@example.test; keydata=\r\n "));
        assert!(field.ends_with("\r\n"));
        assert!(field.lines().all(|l| l.len() <= 78), "{field}");
        let keydata: String = field
            .split_once("keydata=")
            .expect("keydata")
            .1
            .split_whitespace()
            .collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(keydata)
            .expect("base64");
        assert_eq!(decoded, key);
    }

    #[test]
    fn parse_follows_level_1() {
        let ok = parse("addr=Bob@Example.NET; prefer-encrypt=mutual; _x=1; keydata=AAEC").unwrap();
        assert_eq!(ok.addr, "bob@example.net");
        assert!(ok.mutual);
        assert_eq!(ok.keydata, vec![0, 1, 2]);
        // A critical attribute it does not know: the header is ignored.
        assert_eq!(parse("addr=b@example.net; colour=red; keydata=AAEC"), None);
        assert_eq!(parse("addr=b@example.net"), None);
        assert_eq!(parse("keydata=AAEC"), None);
        assert_eq!(parse("addr=b@example.net; keydata=!!!"), None);
        assert_eq!(parse("addr=b@example.net; keydata="), None);
        assert_eq!(parse("garbage"), None);
    }

    #[test]
    fn last_seen_rules() {
        assert_eq!(effective_date(Some(100), 200), 100);
        // A Date in the future counts as now.
        assert_eq!(effective_date(Some(300), 200), 200);
        assert_eq!(effective_date(None, 200), 200);
    }

    fn bobs_key() -> Vec<u8> {
        use sequoia_openpgp::cert::CertBuilder;
        use sequoia_openpgp::serialize::SerializeInto;
        let (cert, _) = CertBuilder::new()
            .add_userid("Bob <bob@example.net>")
            .add_transport_encryption_subkey()
            .set_creation_time(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(AT as u64 - 86_400),
            )
            .generate()
            .expect("key");
        cert.to_vec().expect("bytes")
    }

    fn mail(from: &str, date: &str, autocrypt: &[String]) -> Vec<u8> {
        let mut raw = format!("From: {from}\r\nTo: alice@example.test\r\nDate: {date}\r\n");
        for field in autocrypt {
            raw.push_str(field);
        }
        raw.push_str("Subject: hi\r\n\r\nHello\r\n");
        raw.into_bytes()
    }

    const DATE: &str = "Mon, 07 Dec 2026 10:00:00 +0000";
    const AT: i64 = 1_796_637_600;

    #[test]
    fn a_mail_gives_the_key_of_its_from_address() {
        let key = bobs_key();
        let field = header("Bob@Example.net", &key);
        let seen = from_mail(
            &mail("Bob <bob@example.net>", DATE, std::slice::from_ref(&field)),
            AT + 60,
        )
        .expect("seen");
        assert_eq!(seen.addr, "bob@example.net");
        assert_eq!(seen.last_seen, AT);
        assert_eq!(seen.cert, key);
        assert!(!seen.prefer_mutual);
        // A Date in the future counts as the time it arrived.
        let early = from_mail(
            &mail("bob@example.net", DATE, std::slice::from_ref(&field)),
            AT - 60,
        )
        .expect("seen");
        assert_eq!(early.last_seen, AT - 60);
        // From another address: not Bob's key to give.
        assert_eq!(
            from_mail(
                &mail("carol@example.net", DATE, std::slice::from_ref(&field)),
                AT
            ),
            None
        );
        // Two headers for the From address: both ignored.
        assert_eq!(
            from_mail(
                &mail("bob@example.net", DATE, &[field.clone(), field.clone()]),
                AT
            ),
            None
        );
        // Keydata that is no key.
        let garbage = header("bob@example.net", b"not a key");
        assert_eq!(
            from_mail(&mail("bob@example.net", DATE, &[garbage]), AT),
            None
        );
        assert_eq!(from_mail(&mail("bob@example.net", DATE, &[]), AT), None);
    }
}
