//! Mailbox passwords sealed at rest: ChaCha20-Poly1305 (RFC 8439) with a
//! key derived by HKDF-SHA256 (RFC 5869) from the operator's
//! `[imap] secret_file`. The mailbox's identity is the associated data,
//! so a sealed password copied to another mailbox's row does not open.

use std::fmt;

use anyhow::Context;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

/// The least a secret file must hold, in bytes (after trimming).
pub const MIN_SECRET: usize = 32;

/// The key that seals and opens mailbox passwords.
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

/// What binds a sealed password to its mailbox.
fn identity(user: &str, host: &str, username: &str) -> Vec<u8> {
    format!("{user}\n{host}\n{username}").into_bytes()
}

impl SealKey {
    /// The key for the contents of a secret file.
    pub fn derive(secret: &[u8]) -> SealKey {
        let prk = Salt::new(HKDF_SHA256, b"facteur imap passwords").extract(secret);
        let mut key = [0u8; 32];
        // 32 bytes is well within HKDF-SHA256's output: this cannot fail.
        if let Ok(okm) = prk.expand(&[b"chacha20-poly1305"], HKDF_SHA256) {
            let _ = okm.fill(&mut key);
        }
        SealKey(key)
    }

    /// A digest that tells keys apart without showing them.
    pub fn id(&self) -> String {
        ring::digest::digest(&ring::digest::SHA256, &self.0)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn aead(&self) -> anyhow::Result<LessSafeKey> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, &self.0)
            .map_err(|_| anyhow::anyhow!("Unusable sealing key"))?;
        Ok(LessSafeKey::new(key))
    }

    /// Seals `password` for the mailbox `username` at `host` of `user`.
    pub fn seal(
        &self,
        user: &str,
        host: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("No random numbers for a nonce"))?;
        let mut sealed = password.as_bytes().to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(identity(user, host, username)),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("Sealing a password"))?;
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        Ok(out)
    }

    /// Opens a password sealed by [`SealKey::seal`] for the same mailbox.
    pub fn open(
        &self,
        user: &str,
        host: &str,
        username: &str,
        sealed: &[u8],
    ) -> anyhow::Result<String> {
        let (nonce, data) = sealed
            .split_at_checked(NONCE_LEN)
            .context("Sealed password too short")?;
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("Sealed password too short"))?;
        let mut data = data.to_vec();
        let open = self
            .aead()?
            .open_in_place(nonce, Aad::from(identity(user, host, username)), &mut data)
            .map_err(|_| {
                anyhow::anyhow!(
                    "The password of {username} at {host} does not open: \
                     was [imap] secret_file changed?"
                )
            })?;
        String::from_utf8(open.to_vec()).context("Opened password is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_opens_only_with_its_key_and_mailbox() {
        let key = SealKey::derive(b"0123456789abcdef0123456789abcdef");
        let sealed = key
            .seal("alice@example.test", "imap.example.net", "alice", "hunter2")
            .expect("sealed");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            key.open("alice@example.test", "imap.example.net", "alice", &sealed)
                .expect("opens"),
            "hunter2"
        );
        let other = SealKey::derive(b"another secret of at least 32 bytes");
        assert!(other
            .open("alice@example.test", "imap.example.net", "alice", &sealed)
            .is_err());
        assert!(key
            .open("bob@example.test", "imap.example.net", "alice", &sealed)
            .is_err());
        assert!(key.open("a", "b", "c", b"short").is_err());
        // A fresh nonce each time.
        assert_ne!(
            key.seal("a", "b", "c", "pw").expect("sealed"),
            key.seal("a", "b", "c", "pw").expect("sealed")
        );
        assert!(!format!("{key:?}").contains("0123"));
    }
}
