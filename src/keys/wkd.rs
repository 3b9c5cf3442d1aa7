//! Names in the OpenPGP Web Key Directory
//! (draft-koch-openpgp-webkey-service §3.1): a key is found at a path
//! made of the z-base-32 encoded SHA-1 of the address's local part,
//! lower-cased (ASCII letters only).

use sequoia_openpgp::types::HashAlgorithm;

/// z-base-32's alphabet (RFC 6189 §5.1.6).
const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// The WKD hash of `local`, the local part of an address: 32 characters.
pub fn hash(local: &str) -> anyhow::Result<String> {
    let mut sha1 = HashAlgorithm::SHA1.context()?.for_digest();
    sha1.update(local.to_ascii_lowercase().as_bytes());
    Ok(zbase32(&sha1.into_digest()?))
}

/// `bytes` in z-base-32, most significant bit first, without padding.
fn zbase32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol(buffer >> bits));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(symbol(buffer << (5 - bits)));
    }
    out
}

fn symbol(index: u32) -> char {
    ZBASE32
        .get((index & 31) as usize)
        .map_or('y', |&b| char::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drafts_example() {
        // draft-koch-openpgp-webkey-service §3.1: Joe.Doe@Example.ORG.
        assert_eq!(
            hash("Joe.Doe").expect("hash"),
            "iy9q119eutrkn8s1mk4r39qejnbu3n5q"
        );
    }

    #[test]
    fn z_base_32_of_bit_strings() {
        assert_eq!(zbase32(&[]), "");
        assert_eq!(zbase32(&[0]), "yy");
        assert_eq!(zbase32(&[0xff]), "9h");
        assert_eq!(zbase32(&[0xf0, 0xbf, 0xc7]), "6n9hq");
    }
}
