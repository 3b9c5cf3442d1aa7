//! Autocrypt level 1 headers (<https://autocrypt.org/level1.html>): the
//! one facteur writes on a user's outgoing mail when she has a key, and
//! the one it reads from a mail that arrives, so that others' keys are
//! known.

use base64::Engine;

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
}
