//! The OpenPGP keys of the served users (sequoia-openpgp, RFC 9580 and
//! RFC 4880): what a user publishes is parsed, checked under sequoia's
//! standard policy and minimised before it is stored and served (WKD,
//! the key IQ).
//!
//! A key is taken only if it is valid now, neither expired nor revoked,
//! has a live subkey for encryption and a user ID naming the user's
//! address (`alice@example.org` or `xmpp:alice@example.org`). What is
//! served holds only those user IDs and the key's own signatures: other
//! user IDs, user attributes and third-party certifications are
//! stripped, as keys.openpgp.org does, so that the directory vouches for
//! nothing it did not check. The one revoked key taken is a revocation
//! of the key already published for the user: it replaces that key, so
//! that whoever fetches it learns the key is revoked.

pub mod autocrypt;
pub mod finder;
pub mod pgp_inbound;
pub mod pgp_mime;
pub mod wkd;

use std::time::SystemTime;

use jid::BareJid;
use sequoia_openpgp as openpgp;

use openpgp::cert::amalgamation::ValidAmalgamation;
use openpgp::packet::{Packet, UserID};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::RevocationStatus;
use openpgp::{Cert, PacketPile};

/// The largest key taken, armored or binary, before it is parsed.
pub const MAX_KEY_BYTES: usize = 1024 * 1024;

/// Why a key is not taken; the text is what the user is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("The key is larger than {} KiB", MAX_KEY_BYTES / 1024)]
    TooLarge,
    #[error("This is not an OpenPGP public key: {0}")]
    Unreadable(String),
    #[error("The key is not valid: {0}")]
    Invalid(String),
    #[error("The key has expired")]
    Expired,
    #[error("The key is revoked")]
    Revoked,
    #[error("The key has no valid subkey for encryption")]
    NoEncryption,
    #[error("The key has no user ID naming {0} or xmpp:{0}")]
    NoUserId(String),
}

/// A key as it is stored and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The primary key's fingerprint, upper-case hex.
    pub fingerprint: String,
    /// The minimised certificate, binary (what WKD serves).
    pub cert: Vec<u8>,
    /// Whether it is a revocation of the key published before.
    pub revoked: bool,
}

/// Checks and minimises the key `input` (armored or binary) that `user`
/// publishes, at `now`; `stored` is the key published for `user` so far,
/// which a revocation applies to (a revoked key, or a bare revocation
/// certificate as `gpg --gen-revoke` writes it).
pub fn accept(
    user: &BareJid,
    input: &[u8],
    stored: Option<&[u8]>,
    now: SystemTime,
) -> Result<Published, Refused> {
    if input.len() > MAX_KEY_BYTES {
        return Err(Refused::TooLarge);
    }
    let policy = StandardPolicy::new();
    let stored = stored.and_then(|bytes| Cert::from_bytes(bytes).ok());
    let cert = match Cert::from_bytes(input) {
        Ok(cert) => cert.strip_secret_key_material(),
        Err(e) => match stored
            .clone()
            .and_then(|stored| with_revocation(stored, input))
        {
            Some(revoked) => revoked,
            None => return Err(Refused::Unreadable(reason(&e))),
        },
    };
    if let RevocationStatus::Revoked(_) = cert.revocation_status(&policy, now) {
        // Only the revocation of the key served so far is worth serving.
        let Some(stored) = stored.filter(|s| s.fingerprint() == cert.fingerprint()) else {
            return Err(Refused::Revoked);
        };
        let merged = stored
            .merge_public(cert)
            .map_err(|e| Refused::Invalid(reason(&e)))?;
        return published(user, &merged, true);
    }
    let valid = cert
        .with_policy(&policy, now)
        .map_err(|e| Refused::Invalid(reason(&e)))?;
    if valid.alive().is_err() {
        return Err(Refused::Expired);
    }
    let encrypts = valid
        .keys()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .for_storage_encryption()
        .next()
        .is_some();
    if !encrypts {
        return Err(Refused::NoEncryption);
    }
    let named = valid
        .userids()
        .filter(|ua| !matches!(ua.revocation_status(), RevocationStatus::Revoked(_)))
        .any(|ua| names(ua.userid(), user));
    if !named {
        return Err(Refused::NoUserId(user.to_string()));
    }
    published(user, &cert, false)
}

/// `stored` with the revocation signatures `input` holds, if it is only
/// signatures and they revoke it.
fn with_revocation(stored: Cert, input: &[u8]) -> Option<Cert> {
    let pile = PacketPile::from_bytes(input).ok()?;
    let signatures: Vec<Packet> = pile.into_children().collect();
    if signatures.is_empty() || !signatures.iter().all(|p| matches!(p, Packet::Signature(_))) {
        return None;
    }
    let (cert, _) = stored.insert_packets(signatures).ok()?;
    let policy = StandardPolicy::new();
    matches!(
        cert.revocation_status(&policy, None),
        RevocationStatus::Revoked(_)
    )
    .then_some(cert)
}

/// Whether `userid` names `user`: its address is the user's, as an email
/// address or an `xmpp:` URI (compared without case).
pub fn names(userid: &UserID, user: &BareJid) -> bool {
    let wanted = user.as_str().to_lowercase();
    let email = userid.email().ok().flatten().map(str::to_lowercase);
    let uri = userid.uri().ok().flatten().map(str::to_lowercase);
    email.as_deref() == Some(wanted.as_str())
        || uri
            .as_deref()
            .and_then(|uri| uri.strip_prefix("xmpp:"))
            .is_some_and(|address| address == wanted)
}

/// `cert` minimised for `user`, serialised.
fn published(user: &BareJid, cert: &Cert, revoked: bool) -> Result<Published, Refused> {
    let minimal = minimise(cert, user).map_err(|e| Refused::Invalid(reason(&e)))?;
    let bytes = minimal.to_vec().map_err(|e| Refused::Invalid(reason(&e)))?;
    Ok(Published {
        fingerprint: minimal.fingerprint().to_hex(),
        cert: bytes,
        revoked,
    })
}

/// The primary key, the user IDs naming `user` and the subkeys, each
/// with only the key's own signatures and revocations.
pub fn minimise(cert: &Cert, user: &BareJid) -> openpgp::Result<Cert> {
    let mut packets: Vec<Packet> = Vec::new();
    let primary = cert.primary_key();
    packets.push(primary.key().clone().into());
    packets.extend(
        primary
            .self_signatures()
            .chain(primary.self_revocations())
            .cloned()
            .map(Packet::from),
    );
    for ua in cert.userids().filter(|ua| names(ua.userid(), user)) {
        packets.push(ua.userid().clone().into());
        packets.extend(
            ua.self_signatures()
                .chain(ua.self_revocations())
                .cloned()
                .map(Packet::from),
        );
    }
    for ka in cert.keys().subkeys() {
        packets.push(ka.key().clone().into());
        packets.extend(
            ka.self_signatures()
                .chain(ka.self_revocations())
                .cloned()
                .map(Packet::from),
        );
    }
    Cert::from_packets(packets.into_iter())
}

/// The file at `path`, if it is no larger than a key may be (the rest
/// is not read); a larger one is refused.
pub fn read_limited(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut input = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_KEY_BYTES as u64 + 1)
        .read_to_end(&mut input)?;
    if input.len() > MAX_KEY_BYTES {
        return Err(Refused::TooLarge.into());
    }
    Ok(input)
}

/// The key `cert` (binary, as stored) armored, for people to read.
pub fn armored(cert: &[u8]) -> anyhow::Result<String> {
    let cert = Cert::from_bytes(cert)?;
    let text = cert.armored().to_vec()?;
    Ok(String::from_utf8(text)?)
}

/// What a stored key says about itself, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub fingerprint: String,
    pub user_ids: Vec<String>,
    /// `valid`, `revoked`, `expired` or why it is not valid now.
    pub status: String,
}

/// The summary of a stored key at `now`.
pub fn summary(cert: &[u8], now: SystemTime) -> anyhow::Result<Summary> {
    let cert = Cert::from_bytes(cert)?;
    let policy = StandardPolicy::new();
    let status = match cert.revocation_status(&policy, now) {
        RevocationStatus::Revoked(_) => "revoked".to_owned(),
        _ => match cert.with_policy(&policy, now) {
            Ok(valid) if valid.alive().is_ok() => "valid".to_owned(),
            Ok(_) => "expired".to_owned(),
            Err(e) => format!("invalid: {}", reason(&e)),
        },
    };
    Ok(Summary {
        fingerprint: cert.fingerprint().to_hex(),
        user_ids: cert
            .userids()
            .map(|ua| String::from_utf8_lossy(ua.userid().value()).into_owned())
            .collect(),
        status,
    })
}

/// The fingerprint of `cert` (binary or armored) if it can be encrypted
/// to at `now` under the standard policy: valid, alive, not revoked, with
/// a live subkey for encryption.
pub fn encryptable(cert: &[u8], now: SystemTime) -> Option<String> {
    if cert.len() > MAX_KEY_BYTES {
        return None;
    }
    let cert = Cert::from_bytes(cert).ok()?;
    let policy = StandardPolicy::new();
    let valid = cert.with_policy(&policy, now).ok()?;
    valid.alive().ok()?;
    if let RevocationStatus::Revoked(_) = valid.revocation_status() {
        return None;
    }
    valid
        .keys()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .next()?;
    Some(cert.fingerprint().to_hex())
}

/// An error and its causes on one line.
fn reason(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

#[cfg(test)]
mod tests;
