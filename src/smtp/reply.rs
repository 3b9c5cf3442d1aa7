//! The replies of the receiver, with their RFC 3463 enhanced status codes,
//! in one place.

use std::fmt::Display;

use facteur_policy::auth::Failed;
use smtp_proto::Response;

/// Writes one reply line (or several for a multi-line message).
pub fn write(out: &mut Vec<u8>, code: u16, status: (u8, u8, u8), text: impl Display) {
    let (a, b, c) = status;
    // Writing into a Vec cannot fail.
    let _ = Response::new(code, a, b, c, text.to_string()).write(&mut *out);
}

/// A reply without enhanced status code: the greeting and HELO (RFC 2034
/// §3 exempts them).
pub fn write_plain(out: &mut Vec<u8>, code: u16, text: impl Display) {
    out.extend_from_slice(format!("{code} {text}\r\n").as_bytes());
}

pub const OK: (u16, (u8, u8, u8)) = (250, (2, 0, 0));
pub const BAD_SEQUENCE: (u16, (u8, u8, u8)) = (503, (5, 5, 1));
pub const SYNTAX: (u16, (u8, u8, u8)) = (500, (5, 5, 2));
pub const NOT_IMPLEMENTED: (u16, (u8, u8, u8)) = (502, (5, 5, 1));
pub const TEMP_STORE: (u16, (u8, u8, u8)) = (451, (4, 3, 0));

/// The reply to a mail refused for failing authentication: RFC 7489 §7.3
/// for DMARC, RFC 7372 §3.2 for SPF.
pub fn auth_refusal(failed: Failed) -> (u16, (u8, u8, u8)) {
    match failed {
        Failed::Dmarc => (550, (5, 7, 1)),
        Failed::Spf => (550, (5, 7, 23)),
    }
}
