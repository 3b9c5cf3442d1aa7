//! Outgoing mail encrypted as PGP/MIME (RFC 3156 §4): the mail's content
//! (its `Content-*` header fields and body, as one MIME entity) is
//! encrypted to the recipients' keys and carried in a
//! `multipart/encrypted` body; the other header fields (From, To,
//! Subject, Date, threading) stay outside, readable, as mail needs them.

use std::io::Write;
use std::time::SystemTime;

use anyhow::Context;
use sequoia_openpgp as openpgp;

use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message};
use openpgp::Cert;

/// `raw` (an RFC 5322 mail, CRLF) as PGP/MIME encrypted to every key in
/// `keys` (binary certificates) that can be encrypted to at `now`; an
/// error when none can, or `raw` has no body.
pub fn encrypt(raw: &[u8], keys: &[&[u8]], now: SystemTime) -> anyhow::Result<Vec<u8>> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("The mail has no body")?;
    let (head, body) = match (raw.get(..split + 2), raw.get(split + 4..)) {
        (Some(head), Some(body)) => (head, body),
        _ => anyhow::bail!("The mail has no body"),
    };
    let mut outer = Vec::with_capacity(head.len());
    let mut inner = Vec::with_capacity(raw.len());
    let mut content = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            content = line
                .get(..8)
                .is_some_and(|name| name.eq_ignore_ascii_case(b"content-"));
        }
        match content {
            true => inner.extend_from_slice(line),
            false => outer.extend_from_slice(line),
        }
    }
    inner.extend_from_slice(b"\r\n");
    inner.extend_from_slice(body);

    let policy = StandardPolicy::new();
    let certs = keys
        .iter()
        .map(Cert::from_bytes)
        .collect::<openpgp::Result<Vec<Cert>>>()
        .context("Reading a recipient's key")?;
    let recipients: Vec<_> = certs
        .iter()
        .flat_map(|c| {
            c.keys()
                .with_policy(&policy, now)
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
        })
        .collect();
    if recipients.is_empty() {
        anyhow::bail!("No key to encrypt to");
    }
    let mut armored = Vec::new();
    {
        let message = Message::new(&mut armored);
        let message = Armorer::new(message).build()?;
        let message = Encryptor::for_recipients(message, recipients).build()?;
        let mut literal = LiteralWriter::new(message).build()?;
        literal.write_all(&inner)?;
        literal.finalize()?;
    }
    let armored = String::from_utf8(armored).context("Armor is ASCII")?;
    let boundary = format!("=-pgp-{:032x}", rand::random::<u128>());
    let mut mail = outer;
    mail.extend_from_slice(
        format!(
            "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
             boundary=\"{boundary}\"\r\n\r\n\
             This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n\
             --{boundary}\r\n\
             Content-Type: application/pgp-encrypted\r\n\
             Content-Description: PGP/MIME version identification\r\n\r\n\
             Version: 1\r\n\r\n\
             --{boundary}\r\n\
             Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
             Content-Description: OpenPGP encrypted message\r\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n\
             {}\r\n\
             --{boundary}--\r\n",
            armored
                .replace("\r\n", "\n")
                .replace('\n', "\r\n")
                .trim_end()
        )
        .as_bytes(),
    );
    Ok(mail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::CertBuilder;
    use openpgp::parse::stream::{
        DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
    };
    use openpgp::serialize::SerializeInto;

    struct Helper(Cert);

    impl VerificationHelper for Helper {
        fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<Cert>> {
            Ok(Vec::new())
        }
        fn check(&mut self, _: MessageStructure) -> openpgp::Result<()> {
            Ok(())
        }
    }

    impl DecryptionHelper for Helper {
        fn decrypt(
            &mut self,
            pkesks: &[openpgp::packet::PKESK],
            _: &[openpgp::packet::SKESK],
            sym_algo: Option<openpgp::types::SymmetricAlgorithm>,
            decrypt: &mut dyn FnMut(
                Option<openpgp::types::SymmetricAlgorithm>,
                &openpgp::crypto::SessionKey,
            ) -> bool,
        ) -> openpgp::Result<Option<Cert>> {
            let policy = StandardPolicy::new();
            for key in self
                .0
                .keys()
                .with_policy(&policy, None)
                .secret()
                .for_transport_encryption()
            {
                let mut pair = key.key().clone().into_keypair()?;
                for pkesk in pkesks {
                    if pkesk
                        .decrypt(&mut pair, sym_algo)
                        .is_some_and(|(algo, sk)| decrypt(algo, &sk))
                    {
                        return Ok(Some(self.0.clone()));
                    }
                }
            }
            Ok(None)
        }
    }

    #[test]
    fn content_is_encrypted_and_the_envelope_stays() {
        let (bob, _) = CertBuilder::new()
            .add_userid("bob@example.net")
            .add_transport_encryption_subkey()
            .generate()
            .expect("key");
        let public = bob
            .clone()
            .strip_secret_key_material()
            .to_vec()
            .expect("bytes");
        let raw = b"From: alice@example.test\r\nTo: bob@example.net\r\nSubject: Hi\r\n\
            MIME-Version: 1.0\r\nContent-Type: text/plain;\r\n charset=utf-8\r\n\
            Content-Transfer-Encoding: 7bit\r\n\r\nSecret words\r\n";
        let mail = encrypt(raw, &[&public], SystemTime::now()).expect("encrypted");
        let text = String::from_utf8(mail).expect("ascii");
        assert!(text.starts_with("From: alice@example.test\r\nTo: bob@example.net\r\nSubject: Hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"));
        assert!(!text.contains("Secret words") && !text.contains("charset=utf-8"));
        let armored = &text[text.find("-----BEGIN PGP MESSAGE-----").expect("armor")..];
        let policy = StandardPolicy::new();
        let mut decryptor = DecryptorBuilder::from_bytes(armored.as_bytes())
            .expect("message")
            .with_policy(&policy, None, Helper(bob))
            .expect("decrypted");
        let mut plain = Vec::new();
        std::io::copy(&mut decryptor, &mut plain).expect("read");
        assert_eq!(
            plain,
            b"Content-Type: text/plain;\r\n charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\nSecret words\r\n"
        );
        assert!(encrypt(raw, &[], SystemTime::now()).is_err());
    }
}
