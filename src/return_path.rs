//! Signed return paths (VERP): outgoing mail leaves with the envelope
//! sender `bounce+ID-TAG@domain`, where ID is its queue id and TAG an HMAC
//! of it, so that a bounce arriving for that address is matched to the
//! mail it is about, and a forged bounce (a guessed or replayed ID with
//! another tag) is refused at RCPT like any unknown address.

use facteur_bridge::MailAddress;
use ring::hmac;

/// Local parts of return paths start with this.
const PREFIX: &str = "bounce+";
/// Bytes of the HMAC kept in the tag (96 bits, 24 hex digits).
const TAG_BYTES: usize = 12;

/// Makes and checks return paths with the gateway's secret key.
#[derive(Clone)]
pub struct ReturnPaths {
    key: hmac::Key,
}

impl ReturnPaths {
    /// Return paths signed with `secret` (kept in the store, made once).
    pub fn new(secret: &[u8]) -> ReturnPaths {
        ReturnPaths {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn tag(&self, id: i64) -> String {
        let mac = hmac::sign(&self.key, id.to_string().as_bytes());
        mac.as_ref()
            .iter()
            .take(TAG_BYTES)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The envelope sender for queued mail `id` of a user of `domain`.
    pub fn address(&self, id: i64, domain: &str) -> String {
        format!("{PREFIX}{id}-{}@{domain}", self.tag(id))
    }

    /// The queue id a return path stands for, when it is one of ours
    /// (the domain is the caller's to check).
    pub fn queue_id(&self, address: &MailAddress) -> Option<i64> {
        let local = address.local().to_ascii_lowercase();
        let (id, tag) = local.strip_prefix(PREFIX)?.split_once('-')?;
        let id: i64 = id.parse().ok()?;
        let given = (0..tag.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(tag.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let mac = hmac::sign(&self.key, id.to_string().as_bytes());
        let expected = mac.as_ref().get(..TAG_BYTES)?;
        // Compared in constant time: the tag is the secret's only witness.
        let difference = expected
            .iter()
            .zip(&given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (given.len() == TAG_BYTES && difference == 0).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgeries() {
        let paths = ReturnPaths::new(b"a secret of the gateway");
        let address = paths.address(42, "example.test");
        assert!(address.starts_with("bounce+42-"), "{address}");
        let parsed = MailAddress::parse(&address).expect("valid address");
        assert_eq!(paths.queue_id(&parsed), Some(42));
        // Some MTAs change the case of local parts.
        let upper = MailAddress::parse(&address.to_uppercase()).expect("valid");
        assert_eq!(paths.queue_id(&upper), Some(42));
        // Another id with the same tag, another key, a cut tag: refused.
        let forged = address.replace("bounce+42-", "bounce+43-");
        assert_eq!(
            paths.queue_id(&MailAddress::parse(&forged).expect("valid")),
            None
        );
        let other = ReturnPaths::new(b"another key");
        assert_eq!(other.queue_id(&parsed), None);
        let cut = &address[..address.find('@').expect("@") - 2];
        let cut = format!("{cut}@example.test");
        assert_eq!(
            paths.queue_id(&MailAddress::parse(&cut).expect("valid")),
            None
        );
        for plain in [
            "alice@example.test",
            "bounce+x-y@example.test",
            "bounce+1@example.test",
        ] {
            assert_eq!(
                paths.queue_id(&MailAddress::parse(plain).expect("valid")),
                None
            );
        }
    }
}
