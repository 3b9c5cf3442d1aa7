//! Every reply of the inbound receiver (RFC 5321 §4.2), with its RFC 3463
//! enhanced status code (RFC 2034), named once and used by name.
//!
//! A reply whose text never changes is a constant; one that carries a
//! name, a number or a reason is built by a function here, so that the
//! code, the status and the wording still live in this one place.

use std::fmt::Display;
use std::net::IpAddr;

use facteur_policy::auth::Failed;

/// An enhanced status code: class, subject, detail (RFC 3463 §2).
type Status = (u8, u8, u8);

/// One reply: its code, its enhanced status code and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<T = &'static str> {
    pub code: u16,
    /// None for the greeting and the HELO reply, which RFC 2034 §3
    /// exempts.
    pub status: Option<Status>,
    pub text: T,
}

const fn reply(code: u16, status: Status, text: &'static str) -> Reply {
    Reply {
        code,
        status: Some(status),
        text,
    }
}

fn with_text<T>(code: u16, status: Status, text: T) -> Reply<T> {
    Reply {
        code,
        status: Some(status),
        text,
    }
}

impl<T: Display> Reply<T> {
    /// Appends the reply line to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let line = match self.status {
            Some((class, subject, detail)) => {
                format!("{} {class}.{subject}.{detail} {}\r\n", self.code, self.text)
            }
            None => format!("{} {}\r\n", self.code, self.text),
        };
        out.extend_from_slice(line.as_bytes());
    }

    /// The reply line as bytes, for a connection refused before any
    /// session starts.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

// Connection and session (RFC 5321 §3.1, §3.8, §4.5.3.2).

/// The greeting.
pub fn greeting(hostname: &str) -> Reply<String> {
    Reply {
        code: 220,
        status: None,
        text: format!("{hostname} ESMTP facteur"),
    }
}
/// The answer to HELO, which offers no extensions (RFC 5321 §4.1.1.1).
pub fn helo(hostname: &str) -> Reply<String> {
    Reply {
        code: 250,
        status: None,
        text: hostname.to_owned(),
    }
}
pub const BYE: Reply = reply(221, (2, 0, 0), "Bye");
pub const SHUTTING_DOWN: Reply = reply(421, (4, 3, 2), "Service shutting down, try again later");
/// The client was idle too long, or too slow sending DATA.
pub fn timed_out(hostname: &str) -> Reply<String> {
    with_text(
        421,
        (4, 4, 2),
        format!("{hostname} Timeout, closing connection"),
    )
}
pub const TOO_MANY_ERRORS: Reply = reply(421, (4, 7, 0), "Too many errors, closing connection");
/// All connection slots are taken.
pub const TOO_MANY_CONNECTIONS: Reply =
    reply(421, (4, 7, 0), "Too many connections, try again later");
/// All connection slots of the client's address are taken.
pub const TOO_MANY_FROM_CLIENT: Reply = reply(
    421,
    (4, 7, 0),
    "Too many connections from your address, try again later",
);

// STARTTLS (RFC 3207 §4).

pub const READY_FOR_TLS: Reply = reply(220, (2, 0, 0), "Ready to start TLS");
pub const TLS_ALREADY_ACTIVE: Reply = reply(503, (5, 5, 1), "TLS already active");
pub const TLS_NOT_AVAILABLE: Reply = reply(502, (5, 5, 1), "STARTTLS not available");

// Syntax and sequence (RFC 5321 §4.2.2, §4.3.2).

pub const LINE_TOO_LONG: Reply = reply(500, (5, 5, 6), "Line too long");
pub const UNKNOWN_COMMAND: Reply = reply(500, (5, 5, 2), "Syntax error, command unrecognized");
pub const SYNTAX_ERROR: Reply = reply(500, (5, 5, 2), "Syntax error");
/// A command whose arguments smtp-proto could not read.
pub fn bad_syntax(syntax: impl Display) -> Reply<String> {
    with_text(501, (5, 5, 4), format!("Syntax: {syntax}"))
}
pub fn invalid_parameter(param: impl Display) -> Reply<String> {
    with_text(501, (5, 5, 4), format!("Invalid parameter {param}"))
}
/// An ESMTP parameter of an extension not offered (RFC 5321 §4.1.1.11).
pub fn unsupported_parameter(param: impl Display) -> Reply<String> {
    with_text(555, (5, 5, 4), format!("Unsupported parameter {param}"))
}
pub const NOT_IMPLEMENTED: Reply = reply(502, (5, 5, 1), "Command not implemented");
pub const HELO_FIRST: Reply = reply(503, (5, 5, 1), "Send EHLO or HELO first");
pub const SENDER_ALREADY_GIVEN: Reply = reply(503, (5, 5, 1), "Sender already given");
pub const MAIL_BEFORE_RCPT: Reply = reply(503, (5, 5, 1), "Need MAIL before RCPT");
pub const MAIL_BEFORE_DATA: Reply = reply(503, (5, 5, 1), "Need MAIL before DATA");

// Commands that always get the same answer.

pub const OK: Reply = reply(250, (2, 0, 0), "Ok");

// XFORWARD (Postfix's XFORWARD_README), in Postfix's wording.
pub const XFORWARD_NOT_ALLOWED: Reply = reply(550, (5, 7, 0), "Error: insufficient authorization");
pub const XFORWARD_IN_TRANSACTION: Reply =
    reply(503, (5, 5, 1), "Error: MAIL transaction in progress");
pub const XFORWARD_SYNTAX: Reply = reply(501, (5, 5, 4), "Syntax: XFORWARD attribute=value...");
pub const XFORWARD_ATTRIBUTE_SYNTAX: Reply = reply(501, (5, 5, 4), "Bad XFORWARD attribute syntax");
pub const XFORWARD_ATTRIBUTE_NAME: Reply = reply(501, (5, 5, 4), "Bad XFORWARD attribute name");
pub const XFORWARD_ADDRESS: Reply = reply(501, (5, 5, 4), "Bad XFORWARD address syntax");
/// VRFY is not served, so that it cannot harvest addresses (RFC 5321
/// §3.5.3, §7.3).
pub const CANNOT_VRFY: Reply = reply(
    252,
    (2, 1, 5),
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub const HELP: Reply = reply(214, (2, 0, 0), "See RFC 5321");

// MAIL FROM.

pub const SENDER_OK: Reply = reply(250, (2, 1, 0), "Sender ok");
pub const BAD_SENDER: Reply = reply(501, (5, 1, 7), "Bad sender address syntax");
/// The client is over its mail rate (RFC 3463 §3.8: 4.7.x, a policy
/// reason).
pub fn rate_limited(client: IpAddr, retry_after_secs: u64) -> Reply<String> {
    with_text(
        450,
        (4, 7, 1),
        format!("Too much mail from {client}, try again in {retry_after_secs} s"),
    )
}
/// Said at MAIL FROM for a declared SIZE, and after DATA for the real one
/// (RFC 1870 §6.2).
pub const TOO_BIG: Reply = reply(
    552,
    (5, 3, 4),
    "Message size exceeds fixed maximum message size",
);

// RCPT TO.

pub const RECIPIENT_OK: Reply = reply(250, (2, 1, 5), "Recipient ok");
pub const BAD_RECIPIENT: Reply = reply(501, (5, 1, 3), "Bad recipient address syntax");
/// RFC 5321 §4.5.3.1.10: a 452 asks the client to send the remaining
/// recipients in another transaction.
pub const TOO_MANY_RECIPIENTS: Reply = reply(452, (4, 5, 3), "Too many recipients");
pub const RELAY_DENIED: Reply = reply(550, (5, 7, 1), "Relaying denied");
/// The recipient blocked this sender (XEP-0191 at the gateway): only this
/// recipient refuses, before DATA, so that nothing bounces later.
pub const SENDER_BLOCKED: Reply = reply(
    550,
    (5, 7, 1),
    "The recipient does not accept mail from this sender",
);
pub const NO_SUCH_USER: Reply = reply(550, (5, 1, 1), "No such user here");
/// The store could not say whether the recipient is served.
pub const STORE_UNAVAILABLE: Reply = reply(451, (4, 3, 0), "Temporary failure, try again later");

// DATA.

pub const START_DATA: Reply = reply(354, (2, 0, 0), "End data with <CR><LF>.<CR><LF>");
pub const NO_VALID_RECIPIENTS: Reply = reply(554, (5, 5, 1), "No valid recipients");
pub const UNPARSABLE: Reply = reply(550, (5, 6, 0), "Message cannot be parsed as mail");
/// The mail could not be committed: nothing was accepted.
pub const STORAGE_FAILED: Reply =
    reply(451, (4, 3, 0), "Temporary storage failure, try again later");
/// The mail is committed to the store under `id`.
pub fn queued(id: impl Display) -> Reply<String> {
    with_text(250, (2, 0, 0), format!("Ok: queued as {id}"))
}
/// A report to one of facteur's return paths, taken.
pub const REPORT_RECEIVED: Reply = reply(250, (2, 0, 0), "Ok: report received");
/// A mail refused for failing authentication: RFC 7489 §7.3 for DMARC,
/// RFC 7372 §3.2 for SPF.
/// Every recipient's spam thresholds refuse the mail (never a report:
/// the refusal comes before the 250).
pub const SPAM_REFUSED: Reply = reply(550, (5, 7, 1), "Refused as spam");

pub fn auth_refusal(failed: Failed, reason: impl Display) -> Reply<String> {
    let status = match failed {
        Failed::Dmarc => (5, 7, 1),
        Failed::Spf => (5, 7, 23),
    };
    with_text(550, status, format!("Refused: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<T: Display>(reply: Reply<T>) -> String {
        String::from_utf8_lossy(&reply.to_bytes()).into_owned()
    }

    #[test]
    fn lines_on_the_wire() {
        assert_eq!(
            line(TOO_MANY_CONNECTIONS),
            "421 4.7.0 Too many connections, try again later\r\n"
        );
        assert_eq!(
            line(auth_refusal(Failed::Spf, "spf=fail")),
            "550 5.7.23 Refused: spf=fail\r\n"
        );
        assert_eq!(line(greeting("mx.test")), "220 mx.test ESMTP facteur\r\n");
    }
}
