//! DKIM signing of outgoing mail (RFC 6376; RFC 8463 for Ed25519) with
//! mail-auth, one key and selector per served domain, and the key
//! generation of `facteur dkim keygen`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::generate::DkimKeyPair;
use mail_auth::dkim::{DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;

use crate::config::DkimKey;

/// Headers signed: what a reader sees and what threads the mail.
const SIGNED: [&str; 11] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Autocrypt",
];

enum Signer {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// A signer per served domain that has a key.
#[derive(Default)]
pub struct Signers {
    by_domain: HashMap<String, Signer>,
}

impl Signers {
    pub fn load(keys: &HashMap<String, DkimKey>) -> anyhow::Result<Signers> {
        let mut by_domain = HashMap::new();
        for (domain, key) in keys {
            let pem = std::fs::read_to_string(&key.key_file)
                .with_context(|| format!("Reading DKIM key {}", key.key_file.display()))?;
            let der =
                pem_body(&pem).with_context(|| format!("PEM in {}", key.key_file.display()))?;
            let rsa = |der: PrivateKeyDer<'_>| {
                RsaKey::<Sha256>::from_key_der(der)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| {
                        format!(
                            "Neither an Ed25519 nor an RSA key: {}",
                            key.key_file.display()
                        )
                    })
            };
            let signer = if pem.contains("BEGIN RSA PRIVATE KEY") {
                let rsa_key = rsa(PrivateKeyDer::Pkcs1(der.into()))?;
                Signer::Rsa(
                    DkimSigner::from_key(rsa_key)
                        .domain(domain)
                        .selector(&key.selector)
                        .headers(SIGNED),
                )
            } else {
                match Ed25519Key::from_pkcs8_der(&der) {
                    Ok(ed) => Signer::Ed25519(
                        DkimSigner::from_key(ed)
                            .domain(domain)
                            .selector(&key.selector)
                            .headers(SIGNED),
                    ),
                    Err(_) => {
                        let rsa_key = rsa(PrivateKeyDer::Pkcs8(der.into()))?;
                        Signer::Rsa(
                            DkimSigner::from_key(rsa_key)
                                .domain(domain)
                                .selector(&key.selector)
                                .headers(SIGNED),
                        )
                    }
                }
            };
            by_domain.insert(domain.to_ascii_lowercase(), signer);
        }
        Ok(Signers { by_domain })
    }

    /// `raw` with a DKIM-Signature for `domain`, or as it is when the
    /// domain has no key.
    pub fn sign(&self, domain: &str, raw: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let signature = match self.by_domain.get(&domain.to_ascii_lowercase()) {
            None => return Ok(raw),
            Some(Signer::Rsa(signer)) => signer.sign(&raw),
            Some(Signer::Ed25519(signer)) => signer.sign(&raw),
        }
        .map_err(|e| anyhow::anyhow!("DKIM signing for {domain}: {e}"))?;
        let mut signed = signature.to_header().into_bytes();
        signed.extend_from_slice(&raw);
        Ok(signed)
    }
}

fn pem_body(pem: &str) -> anyhow::Result<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body.trim())?)
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .filter_map(|chunk| std::str::from_utf8(chunk).ok())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Writes a new key to `out` (mode 0600) and returns the TXT record to
/// publish at `SELECTOR._domainkey.DOMAIN`.
pub fn keygen(domain: &str, selector: &str, algorithm: &str, out: &Path) -> anyhow::Result<String> {
    let (pair, label, k) = match algorithm {
        "ed25519" => (DkimKeyPair::generate_ed25519(), "PRIVATE KEY", "ed25519"),
        "rsa" => (DkimKeyPair::generate_rsa(2048), "RSA PRIVATE KEY", "rsa"),
        other => anyhow::bail!("Unknown algorithm {other}: ed25519 or rsa"),
    };
    let pair = pair.map_err(|e| anyhow::anyhow!("Generating the key: {e}"))?;
    if out.exists() {
        anyhow::bail!("{} exists; not overwriting a key", out.display());
    }
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| format!("Creating {}", out.display()))?;
        file.write_all(pem(label, pair.private_key()).as_bytes())
            .with_context(|| format!("Writing {}", out.display()))?;
    }
    // RFC 8463 publishes the raw Ed25519 key; for RSA, verifiers built on
    // OpenSSL (OpenDKIM, Mail::DKIM) read `p=` as a SubjectPublicKeyInfo
    // (RFC 6376 erratum 3017), which is what opendkim-genkey publishes.
    let public = match k {
        "rsa" => rsa_spki(pair.public_key()),
        _ => pair.public_key().to_vec(),
    };
    Ok(txt_record(
        &format!("{selector}._domainkey.{domain}."),
        &format!("v=DKIM1; k={k}; "),
        &format!(
            "p={}",
            base64::engine::general_purpose::STANDARD.encode(public)
        ),
    ))
}

/// A PKCS#1 RSAPublicKey (DER) inside a SubjectPublicKeyInfo (RFC 5280
/// §4.1.2.7) with the rsaEncryption algorithm (RFC 8017 Appendix A.1).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    /// SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const RSA_ENCRYPTION: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    // A BIT STRING opens with the count of unused bits: none.
    let mut bits = vec![0x00];
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ENCRYPTION.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

/// One DER element: tag, definite length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let octets: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | octets.len() as u8);
        out.extend(octets);
    }
    out.extend_from_slice(contents);
    out
}

/// Longest piece of a TXT record's text in one string: a DNS
/// character-string holds at most 255 octets (RFC 1035 §3.3), and zone
/// files (BIND, NSD) refuse longer ones.
const TXT_PIECE: usize = 250;

/// A zone-file TXT record, on one line: the tags, then the key split into
/// strings of at most `TXT_PIECE` characters, inside parentheses as
/// `opendkim-genkey` prints them. Verifiers join the strings with nothing
/// between them (RFC 6376 §3.6.2.2).
fn txt_record(name: &str, tags: &str, key: &str) -> String {
    let mut record = format!("{name} IN TXT ( \"{tags}\"");
    // Base64 is ASCII, so byte chunks are whole characters.
    for piece in key.as_bytes().chunks(TXT_PIECE) {
        record.push_str(" \"");
        record.push_str(&String::from_utf8_lossy(piece));
        record.push('"');
    }
    record.push_str(" )");
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DkimKey;

    #[test]
    fn long_keys_are_split_into_strings_a_zone_file_holds() {
        let key = format!("p={}", "A".repeat(390));
        let record = txt_record("s._domainkey.example.test.", "v=DKIM1; k=rsa; ", &key);
        let strings: Vec<&str> = record.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 3, "{record}");
        assert!(strings.iter().all(|s| s.len() <= 255), "{record}");
        assert_eq!(strings.concat(), format!("v=DKIM1; k=rsa; {key}"));
        assert!(record.starts_with("s._domainkey.example.test. IN TXT ( \"v=DKIM1; k=rsa; \" \"p="));
        assert!(!record.contains('\n'), "one line: {record}");
    }

    #[test]
    fn generated_keys_sign() {
        for algorithm in ["ed25519", "rsa"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let key_file = dir.path().join("key.pem");
            let record = keygen("example.test", "s1", algorithm, &key_file).expect("keygen");
            assert!(
                record.starts_with(&format!(
                    "s1._domainkey.example.test. IN TXT ( \"v=DKIM1; k={algorithm}; \" \"p="
                )),
                "{record}"
            );
            assert!(record.ends_with("\" )"), "{record}");
            assert!(
                keygen("example.test", "s1", algorithm, &key_file).is_err(),
                "never overwrites"
            );
            let keys = HashMap::from([(
                "example.test".to_owned(),
                DkimKey {
                    selector: "s1".into(),
                    key_file,
                },
            )]);
            let signers = Signers::load(&keys).expect("loads");
            let signed = signers
                .sign(
                    "example.test",
                    b"From: a@example.test\r\nTo: b@example.net\r\nSubject: x\r\n\r\nbody\r\n"
                        .to_vec(),
                )
                .expect("signs");
            let text = String::from_utf8_lossy(&signed);
            assert!(text.starts_with("DKIM-Signature: v=1; a="), "{text}");
            assert!(
                text.contains("d=example.test") && text.contains("s=s1"),
                "{text}"
            );
            let unsigned = signers
                .sign("other.test", b"x".to_vec())
                .expect("no key, no signature");
            assert_eq!(unsigned, b"x");
        }
    }
}
