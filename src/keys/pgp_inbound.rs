//! Inbound PGP/MIME (RFC 3156): a `multipart/signed` mail's signature
//! checked against the keys known for its sender (§5: the first part's
//! bytes as they came, line ends made CRLF, are what was signed), and
//! whether a mail is `multipart/encrypted`.

use std::time::SystemTime;

use mail_parser::MimeHeaders;
use sequoia_openpgp as openpgp;

use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::{Cert, KeyHandle};

/// What the signature of a `multipart/signed` mail says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// Made by a key known for the sender, over what arrived.
    Good,
    /// Made by a key known for the sender, but it does not match what
    /// arrived (altered on the way), or the key may not sign.
    Bad,
    /// No key of the sender is known that made it.
    Unknown,
}

impl Signed {
    pub fn as_str(self) -> &'static str {
        match self {
            Signed::Good => "good",
            Signed::Bad => "bad",
            Signed::Unknown => "unknown",
        }
    }
}

/// The largest mail whose signature is checked.
const MAX_SIGNED: usize = 32 * 1024 * 1024;

/// The mail's top-level content type and its parameters, lower-cased
/// type, as `(type/subtype, boundary, protocol)`.
fn top_type(raw: &[u8]) -> Option<(String, Option<String>, Option<String>)> {
    let mail = mail_parser::MessageParser::new().parse_headers(raw)?;
    let ct = mail.content_type()?;
    let full = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()).to_lowercase();
    Some((
        full,
        ct.attribute("boundary").map(str::to_owned),
        ct.attribute("protocol").map(|p| p.trim().to_lowercase()),
    ))
}

/// Whether `raw` is a PGP/MIME encrypted mail (RFC 3156 §4).
pub fn is_encrypted(raw: &[u8]) -> bool {
    matches!(
        top_type(raw),
        Some((full, _, Some(protocol)))
            if full == "multipart/encrypted" && protocol == "application/pgp-encrypted"
    )
}

/// Whether `raw` is a PGP/MIME signed mail (RFC 3156 §5).
pub fn is_signed(raw: &[u8]) -> bool {
    matches!(
        top_type(raw),
        Some((full, _, Some(protocol)))
            if full == "multipart/signed" && protocol == "application/pgp-signature"
    )
}

/// `raw` with every line ending CRLF.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut previous = 0u8;
    for &byte in raw {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// The parts of a body between `--boundary` lines, as they came (the
/// CRLF before a boundary line belongs to it).
fn parts(body: &[u8], boundary: &str) -> Vec<Vec<u8>> {
    let delimiter = format!("\r\n--{boundary}");
    let text = [b"\r\n".as_slice(), body].concat();
    let mut found = Vec::new();
    let mut at = 0;
    let mut starts = Vec::new();
    while let Some(offset) = text
        .get(at..)
        .and_then(|rest| find(rest, delimiter.as_bytes()))
    {
        let start = at + offset;
        starts.push(start);
        at = start + delimiter.len();
    }
    for pair in starts.windows(2) {
        let [open, close] = pair else { continue };
        // The part starts after its boundary line.
        let line_start = open + delimiter.len();
        let Some(eol) = text.get(line_start..*close).and_then(|t| find(t, b"\r\n")) else {
            continue;
        };
        if let Some(part) = text.get(line_start + eol + 2..*close) {
            found.push(part.to_vec());
        }
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the signature of `raw` says, checked against `keys` (binary or
/// armored certificates) at `now`; `None` when `raw` is not a PGP/MIME
/// signed mail (RFC 3156 §5) or its signature cannot be read.
pub fn verify(raw: &[u8], keys: &[Vec<u8>], now: SystemTime) -> Option<Signed> {
    if raw.len() > MAX_SIGNED {
        return None;
    }
    let (full, boundary, protocol) = top_type(raw)?;
    if full != "multipart/signed" || protocol.as_deref() != Some("application/pgp-signature") {
        return None;
    }
    let raw = crlf(raw);
    let body_at = find(&raw, b"\r\n\r\n")? + 4;
    let mut parts = parts(raw.get(body_at..)?, &boundary?).into_iter();
    let (signed, signature) = (parts.next()?, parts.next()?);
    // The signature part: its header, then the armored signature.
    let signature = signature.get(find(&signature, b"\r\n\r\n").map_or(0, |at| at + 4)..)?;
    let certs: Vec<Cert> = keys
        .iter()
        .filter_map(|k| Cert::from_bytes(k).ok())
        .collect();
    let policy = StandardPolicy::new();
    let helper = Helper {
        certs,
        verdict: None,
    };
    let mut verifier = DetachedVerifierBuilder::from_bytes(signature)
        .ok()?
        .with_policy(&policy, Some(now), helper)
        .ok()?;
    verifier.verify_bytes(&signed).ok()?;
    Some(verifier.into_helper().verdict.unwrap_or(Signed::Unknown))
}

struct Helper {
    certs: Vec<Cert>,
    verdict: Option<Signed>,
}

impl VerificationHelper for Helper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut verdict = Signed::Unknown;
        for layer in structure {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for result in results {
                let this = match result {
                    Ok(_) => Signed::Good,
                    Err(VerificationError::MissingKey { .. })
                    | Err(VerificationError::UnknownSignature { .. }) => Signed::Unknown,
                    Err(_) => Signed::Bad,
                };
                // One good signature is enough; a bad one outweighs not
                // knowing the key of another.
                verdict = match (verdict, this) {
                    (Signed::Good, _) | (_, Signed::Good) => Signed::Good,
                    (Signed::Bad, _) | (_, Signed::Bad) => Signed::Bad,
                    _ => Signed::Unknown,
                };
            }
        }
        self.verdict = Some(verdict);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_between_boundaries_as_they_came() {
        let body = b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nHi\r\n\r\n--b\r\nX: y\r\n\r\nsig\r\n--b--\r\n";
        let found = parts(body, "b");
        assert_eq!(
            found,
            [
                b"Content-Type: text/plain\r\n\r\nHi\r\n".to_vec(),
                b"X: y\r\n\r\nsig".to_vec()
            ]
        );
        assert_eq!(crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
    }

    #[test]
    fn not_signed_mail_has_no_verdict() {
        let raw = b"From: a@b.example\r\nContent-Type: text/plain\r\n\r\nHi\r\n";
        assert_eq!(verify(raw, &[], SystemTime::now()), None);
        assert!(!is_encrypted(raw));
        let encrypted = b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=x\r\n\r\n--x--\r\n";
        assert!(is_encrypted(encrypted));
    }
}
