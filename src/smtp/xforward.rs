//! XFORWARD, Postfix's extension (XFORWARD_README): an MTA in front of
//! facteur, trusted by address (`[inbound] xforward_from`), names the
//! client it got the mail from, so that SPF, DMARC and the trace judge
//! that client rather than the MTA. The attributes hold for one mail
//! transaction: they are given before MAIL FROM and forgotten with it.

use std::net::IpAddr;

use super::reply::{self, Reply};

/// What the MTA in front said of its client; `None` where it did not say,
/// or said `[UNAVAILABLE]` or `[TEMPUNAVAIL]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub addr: Option<IpAddr>,
    pub helo: Option<String>,
    pub name: Option<String>,
}

/// The attribute names facteur advertises and takes.
pub const ATTRIBUTES: &str = "NAME ADDR PORT PROTO HELO IDENT SOURCE";

/// Whether a command line is an XFORWARD command.
pub fn is_xforward(line: &[u8]) -> bool {
    let verb = b"XFORWARD";
    line.get(..verb.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(verb))
        && matches!(line.get(verb.len()), None | Some(b' ' | b'\r' | b'\n'))
}

/// Reads the attributes of an XFORWARD line into `into`; the error is
/// the reply. Nothing is changed when the line has an error.
pub fn parse(line: &[u8], into: &mut Forwarded) -> Result<(), Reply> {
    let text = std::str::from_utf8(line).map_err(|_| reply::XFORWARD_SYNTAX)?;
    let mut words = text.split_ascii_whitespace().skip(1).peekable();
    if words.peek().is_none() {
        return Err(reply::XFORWARD_SYNTAX);
    }
    let mut next = into.clone();
    for word in words {
        let (name, value) = word
            .split_once('=')
            .ok_or(reply::XFORWARD_ATTRIBUTE_SYNTAX)?;
        let value = xtext(value).ok_or(reply::XFORWARD_ATTRIBUTE_SYNTAX)?;
        let value = match value.as_str() {
            "[UNAVAILABLE]" | "[TEMPUNAVAIL]" => None,
            _ => Some(value),
        };
        match name.to_ascii_uppercase().as_str() {
            "ADDR" => {
                next.addr = match value {
                    Some(addr) => Some(address(&addr).ok_or(reply::XFORWARD_ADDRESS)?),
                    None => None,
                }
            }
            "HELO" => next.helo = value,
            "NAME" => next.name = value,
            "PORT" | "PROTO" | "IDENT" | "SOURCE" => {}
            _ => return Err(reply::XFORWARD_ATTRIBUTE_NAME),
        }
    }
    *into = next;
    Ok(())
}

/// An address as Postfix forwards it: IPv4, or IPv6 with or without the
/// `IPv6:` prefix.
fn address(value: &str) -> Option<IpAddr> {
    let bare = match value.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("IPv6:") => &value[5..],
        _ => value,
    };
    bare.parse().ok()
}

/// Decodes RFC 3461 xtext (`+XX` for a byte in hex); `None` when it is
/// malformed or not UTF-8.
fn xtext(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'+' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_verb_only() {
        assert!(is_xforward(b"XFORWARD ADDR=192.0.2.7\r\n"));
        assert!(is_xforward(b"xforward addr=192.0.2.7\r\n"));
        assert!(is_xforward(b"XFORWARD\r\n"));
        assert!(!is_xforward(b"XFORWARDED ADDR=1\r\n"));
        assert!(!is_xforward(b"MAIL FROM:<a@b>\r\n"));
    }

    #[test]
    fn takes_what_postfix_sends() {
        let mut forwarded = Forwarded::default();
        parse(
            b"XFORWARD NAME=mail.example.net ADDR=IPv6:2001:db8::7 PORT=40123\r\n",
            &mut forwarded,
        )
        .expect("parsed");
        parse(
            b"XFORWARD PROTO=ESMTP HELO=mail.example.net IDENT=[UNAVAILABLE] SOURCE=REMOTE\r\n",
            &mut forwarded,
        )
        .expect("parsed");
        assert_eq!(
            forwarded,
            Forwarded {
                addr: Some("2001:db8::7".parse().expect("ip")),
                helo: Some("mail.example.net".into()),
                name: Some("mail.example.net".into()),
            }
        );
        parse(
            b"XFORWARD ADDR=192.0.2.7 NAME=[UNAVAILABLE]",
            &mut forwarded,
        )
        .expect("parsed");
        assert_eq!(forwarded.addr, Some("192.0.2.7".parse().expect("ip")));
        assert_eq!(forwarded.name, None);
        parse(b"XFORWARD HELO=a+20b+2Bc", &mut forwarded).expect("parsed");
        assert_eq!(forwarded.helo.as_deref(), Some("a b+c"));
    }

    #[test]
    fn bad_lines_get_their_reply_and_change_nothing() {
        let mut forwarded = Forwarded {
            addr: Some("192.0.2.7".parse().expect("ip")),
            ..Forwarded::default()
        };
        let before = forwarded.clone();
        for (line, expected) in [
            (&b"XFORWARD\r\n"[..], reply::XFORWARD_SYNTAX),
            (b"XFORWARD ADDR", reply::XFORWARD_ATTRIBUTE_SYNTAX),
            (
                b"XFORWARD HELO=x COLOR=blue",
                reply::XFORWARD_ATTRIBUTE_NAME,
            ),
            (b"XFORWARD HELO=x ADDR=999.1.1.1", reply::XFORWARD_ADDRESS),
            (b"XFORWARD HELO=a+2", reply::XFORWARD_ATTRIBUTE_SYNTAX),
        ] {
            assert_eq!(parse(line, &mut forwarded), Err(expected));
            assert_eq!(forwarded, before);
        }
    }
}
