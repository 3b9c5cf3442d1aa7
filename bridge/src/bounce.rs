//! Bounces both ways: reading the RFC 3464 delivery status notifications
//! (and the common plain-text bounces of Exim, qmail and the like) that
//! come back for mail facteur sent, and writing the RFC 3464 DSN that
//! facteur owes a sender when mail it accepted cannot reach the XMPP user.
//! RFC 3463 status codes; RFC 3834 Auto-Submitted; RFC 6533 `\x{HEX}`
//! escapes for what is not ASCII in the 7-bit report.

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::xml_text::{truncate_utf8, xml_safe};

/// What a bounce says about one failed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The recipient that failed (Final-Recipient, else Original-Recipient,
    /// else found in the text), as written, without "rfc822;".
    pub recipient: Option<String>,
    /// The RFC 3463 status, e.g. "5.1.1", when given.
    pub status: Option<String>,
    /// The remote server's words (Diagnostic-Code without its "smtp;"
    /// type, else the first meaningful lines of the human-readable part),
    /// XML-safe (no control characters other than \n and \t), at most 1000
    /// bytes.
    pub diagnostic: String,
    /// Whether the failure is permanent (Action: failed, or a 5.x.x
    /// status); delayed/relayed/delivered reports are not failures.
    pub permanent: bool,
    /// Message-ID of the original mail, without angle brackets, when the
    /// bounce quotes its headers (text/rfc822-headers or message/rfc822
    /// part, or quoted headers in the text).
    pub original_message_id: Option<String>,
}

/// Longest diagnostic handed on: enough for any SMTP reply worth reading.
const MAX_DIAGNOSTIC: usize = 1000;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets.
const MAX_ADDRESS: usize = 256;

/// Reads a bounce; None when the mail is not a delivery failure report at
/// all (e.g. an auto-reply, a delay notice "Action: delayed" returns None
/// too, or any normal mail).
pub fn read_bounce(raw: &[u8]) -> Option<Bounce> {
    let message = MessageParser::default().parse(raw)?;
    match delivery_status(&message) {
        // A report in RFC 3464 form says itself whether anything failed;
        // guessing from its text as well would only turn delay notices
        // into failures.
        Some(report) => report_bounce(&message, report),
        None => text_bounce(&message),
    }
}

/// The body of the message/delivery-status part of a multipart/report.
/// mail-parser 0.11 knows neither type: the report is a `Binary` part with
/// its transfer encoding undone, the fields are ours to read.
fn delivery_status<'a>(message: &'a Message<'a>) -> Option<&'a [u8]> {
    let is_report = message.parts.iter().any(|part| {
        is_media(part, "multipart", &["report"])
            && part
                .content_type()
                .and_then(|ct| ct.attribute("report-type"))
                .is_none_or(|t| {
                    ["delivery-status", "global-delivery-status"]
                        .iter()
                        .any(|s| t.eq_ignore_ascii_case(s))
                })
    });
    let statuses = ["delivery-status", "global-delivery-status"];
    match is_report {
        true => message
            .parts
            .iter()
            .find(|part| is_media(part, "message", &statuses))
            .map(|part| part.contents()),
        false => None,
    }
}

/// Whether `part` is of type `ctype` and one of `subtypes`.
fn is_media(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|s| subtypes.iter().any(|t| s.eq_ignore_ascii_case(t)))
    })
}

/// One header-like block of a delivery-status body: lower-cased names,
/// unfolded values.
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Splits a delivery-status body into its per-message block and the
/// per-recipient blocks after it (RFC 3464 §2.1: blank-line separated).
fn field_groups(text: &str) -> Vec<Fields> {
    let mut groups = Vec::new();
    let mut current: Fields = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                current.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Whether a per-recipient block reports a failure, and if so a permanent
/// one. RFC 3464 makes Action mandatory; without it only a 5.x.x status
/// is taken as a failure, since a 4.x.x one most likely means a delay.
fn failure(group: &Fields) -> Option<bool> {
    let action = field(group, "action")
        .and_then(|a| a.split_whitespace().next())
        .map(str::to_ascii_lowercase);
    match action.as_deref() {
        Some("failed") => Some(true),
        Some("delayed" | "delivered" | "relayed" | "expanded") => None,
        _ => field(group, "status")
            .and_then(find_status)
            .filter(|s| s.starts_with('5'))
            .map(|_| true),
    }
}

fn report_bounce(message: &Message<'_>, report: &[u8]) -> Option<Bounce> {
    let groups = field_groups(&String::from_utf8_lossy(report));
    let (group, permanent) = groups.iter().find_map(|g| {
        let is_recipient = ["final-recipient", "original-recipient", "action"]
            .iter()
            .any(|name| field(g, name).is_some());
        match is_recipient {
            true => failure(g).map(|permanent| (g, permanent)),
            false => None,
        }
    })?;
    let recipient = field(group, "final-recipient")
        .or_else(|| field(group, "original-recipient"))
        .and_then(typed_address);
    let human = message.body_text(0).unwrap_or_default();
    let diagnostic = field(group, "diagnostic-code")
        .map(|code| decode_escapes(strip_type(code)))
        .filter(|code| !code.trim().is_empty())
        .unwrap_or_else(|| human_diagnostic(report_region(&human), recipient.as_deref()));
    let original_message_id = attached_message_id(message).or_else(|| {
        groups
            .first()
            .and_then(|g| field(g, "x-original-message-id"))
            .and_then(clean_message_id)
    });
    Some(Bounce {
        recipient,
        status: field(group, "status").and_then(find_status),
        diagnostic: clean_diagnostic(&diagnostic),
        permanent,
        original_message_id,
    })
}

/// `rfc822; bob@example.net` → `bob@example.net`; RFC 6533 `utf-8`
/// addresses lose their escapes.
fn typed_address(value: &str) -> Option<String> {
    let address = decode_escapes(strip_type(value));
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let address: String = address.chars().filter(|c| !c.is_control()).collect();
    let address = truncate_utf8(address.trim(), MAX_ADDRESS);
    (!address.is_empty()).then(|| address.to_owned())
}

/// Drops an RFC 3464 type prefix (`smtp;`, `rfc822;`, `X-Postfix;`).
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.trim().is_empty()
                && kind
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// The first RFC 3463 status code in `text` (class 2, 4 or 5), e.g. the
/// "5.1.1" of "(#5.1.1)" or "550 5.1.1 <bob@…>".
fn find_status(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find_map(|start| {
        let before = start.checked_sub(1).and_then(|i| bytes.get(i));
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.') {
            return None;
        }
        if !matches!(bytes.get(start), Some(b'2' | b'4' | b'5')) {
            return None;
        }
        if bytes.get(start + 1) != Some(&b'.') {
            return None;
        }
        let subject = digits(bytes, start + 2)?;
        if bytes.get(start + 2 + subject) != Some(&b'.') {
            return None;
        }
        let end = start + 3 + subject + digits(bytes, start + 3 + subject)?;
        let next_is_digit = bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        if bytes
            .get(end)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.' && next_is_digit)
        {
            return None;
        }
        text.get(start..end).map(str::to_owned)
    })
}

/// How many (1 to 3) digits start at `at`.
fn digits(bytes: &[u8], at: usize) -> Option<usize> {
    let count = bytes
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    (1..=3).contains(&count).then_some(count)
}

/// Whether `text` starts with an SMTP reply code of class 4 or 5.
fn starts_with_reply_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    matches!(bytes.first(), Some(b'4' | b'5'))
        && bytes
            .get(1..3)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && matches!(bytes.get(3), None | Some(b' ' | b'-'))
}

/// Whether `text` holds an SMTP reply code of class 5 ("550 ", "554:",
/// "550-5.1.1").
fn has_permanent_reply(text: &str) -> bool {
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|start| {
        let before = start.checked_sub(1).and_then(|i| bytes.get(i));
        !before.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.')
            && bytes.get(start) == Some(&b'5')
            && bytes
                .get(start + 1..start + 3)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            && matches!(bytes.get(start + 3), None | Some(b' ' | b'-' | b':'))
    })
}

/// Lines that start the copy of the original mail in a plain-text bounce
/// (Exim, qmail, Yahoo, Outlook…).
fn is_copy_marker(line: &str) -> bool {
    let line = line.to_ascii_lowercase();
    line.contains("copy of the message")
        || line.contains("original message follows")
        || line.contains("message headers follow")
        || line.contains("----- original message")
}

/// The report part of a bounce text: what comes before the copy of the
/// original mail.
fn report_region(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if is_copy_marker(line) {
            return text.get(..offset).unwrap_or(text);
        }
        offset += line.len();
    }
    text
}

/// Paragraphs of trimmed lines.
fn paragraphs(text: &str) -> Vec<Vec<&str>> {
    let mut all = Vec::new();
    let mut current = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            if !current.is_empty() {
                all.push(std::mem::take(&mut current));
            }
        } else if line.chars().any(char::is_alphanumeric) {
            current.push(line);
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

/// "The first meaningful lines" of a human-readable report: the paragraph
/// with the SMTP reply (Postfix puts it last, after its boilerplate), else
/// the one naming the recipient, else the first lines.
fn human_diagnostic(text: &str, recipient: Option<&str>) -> String {
    let paragraphs = paragraphs(text);
    let has_reply = |p: &&Vec<&str>| {
        let joined = p.join(" ");
        find_status(&joined).is_some() || has_permanent_reply(&joined)
    };
    let names_recipient = |p: &&Vec<&str>| {
        recipient.is_some_and(|r| {
            p.iter()
                .any(|l| l.to_lowercase().contains(&r.to_lowercase()))
        })
    };
    match paragraphs
        .iter()
        .find(has_reply)
        .or_else(|| paragraphs.iter().find(names_recipient))
    {
        Some(paragraph) => paragraph.join("\n"),
        None => paragraphs
            .iter()
            .flatten()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// XML-safe, no CR, at most [`MAX_DIAGNOSTIC`] bytes.
fn clean_diagnostic(text: &str) -> String {
    let text = xml_safe(&text.replace("\r\n", "\n").replace('\r', "\n"));
    truncate_utf8(text.trim(), MAX_DIAGNOSTIC).to_owned()
}

/// Local parts and names bounces come from (RFC 5321 §4.5.5 sends them
/// with a null sender, but only the header survives to here).
fn from_mail_system(message: &Message<'_>) -> bool {
    let Some(from) = message.from().and_then(|f| f.first()) else {
        return false;
    };
    let local = from
        .address()
        .and_then(|a| a.rsplit_once('@'))
        .map(|(local, _)| local.to_ascii_lowercase())
        .unwrap_or_default();
    let name = from.name().unwrap_or_default().to_ascii_lowercase();
    matches!(
        local.as_str(),
        "mailer-daemon" | "mailer_daemon" | "mailerdaemon" | "mail-daemon" | "postmaster"
    ) || name.starts_with("mail delivery")
}

/// Subjects of failure reports, matched at the start so that a human's
/// "Re: Mail delivery failed" is not one.
const BOUNCE_SUBJECTS: [&str; 14] = [
    "undelivered mail returned to sender",
    "mail delivery failed",
    "failure notice",
    "delivery status notification (failure)",
    "undeliverable:",
    "undeliverable mail",
    "undelivered mail",
    "returned mail:",
    "mail delivery failure",
    "delivery failure",
    "message delivery failure",
    "delivery failed",
    "unzustellbar:",
    "non remis :",
];

/// A bounce that is not in RFC 3464 form: it must both come from a mail
/// system and say in its subject that it is a failure report, so that a
/// person's mail about a bounce is never taken for one.
fn text_bounce(message: &Message<'_>) -> Option<Bounce> {
    let subject = message.subject().unwrap_or_default().trim().to_lowercase();
    if !from_mail_system(message) || !BOUNCE_SUBJECTS.iter().any(|s| subject.starts_with(s)) {
        return None;
    }
    let text = message.body_text(0).unwrap_or_default();
    let report = report_region(&text);
    let (recipient, reason) = match recipient_block(report) {
        Some((recipient, reason)) => (Some(recipient), reason),
        None => (None, String::new()),
    };
    let diagnostic = match reason.trim().is_empty() {
        true => human_diagnostic(report, recipient.as_deref()),
        false => reason,
    };
    let status = find_status(&diagnostic);
    let lower = report.to_lowercase();
    let permanent = status.as_deref().is_some_and(|s| s.starts_with('5'))
        || has_permanent_reply(&diagnostic)
        || lower.contains("permanent error")
        || lower.contains("permanent fatal error")
        || lower.contains("i've given up");
    let original_message_id = attached_message_id(message).or_else(|| {
        let copy = text.get(report.len()..).filter(|c| !c.is_empty());
        quoted_message_id(copy.unwrap_or(&text))
    });
    Some(Bounce {
        recipient: recipient.and_then(|r| typed_address(&r)),
        status,
        diagnostic: clean_diagnostic(&diagnostic),
        permanent,
        original_message_id,
    })
}

/// The address in `token`, without angle brackets or trailing colon.
fn address_token(token: &str) -> Option<&str> {
    let address = token
        .trim_end_matches(':')
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (local, domain) = address.rsplit_once('@')?;
    let plausible = !local.is_empty()
        && domain.contains('.')
        && !address.contains(['<', '>', '(', ')', ',', ';', '"', '[', ']']);
    plausible.then_some(address)
}

/// The failed recipient and the reason given for it in a plain-text
/// bounce: qmail and Postfix write `<bob@example.net>:` and the reason,
/// Exim and Sendmail list addresses under a "following address(es)"
/// heading with the reason indented below.
fn recipient_block(report: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = report.lines().collect();
    for (at, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix('<') else {
            continue;
        };
        let Some((address, after)) = rest.split_once(">:") else {
            continue;
        };
        let Some(address) = address_token(address) else {
            continue;
        };
        let mut reason = vec![after.trim()];
        reason.extend(
            lines
                .iter()
                .skip(at + 1)
                .map(|l| l.trim())
                .take_while(|l| !l.is_empty()),
        );
        return Some((address.to_owned(), join_lines(&reason)));
    }
    let heading = lines.iter().position(|line| {
        let line = line.to_ascii_lowercase();
        line.contains("following address") || line.contains("following recipient")
    })?;
    let mut rest = lines
        .iter()
        .skip(heading + 1)
        .skip_while(|l| l.trim().is_empty());
    let first = rest.next()?.trim();
    let address = first.split_whitespace().next().and_then(address_token)?;
    let mut reason = vec![first.get(address.len()..).unwrap_or_default().trim()];
    reason.extend(rest.map(|l| l.trim()).take_while(|l| !l.is_empty()));
    Some((address.to_owned(), join_lines(&reason)))
}

fn join_lines(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Message-ID of the returned mail when the bounce attaches it
/// (message/rfc822) or its headers (text/rfc822-headers, RFC 6533
/// message/global-headers).
fn attached_message_id(message: &Message<'_>) -> Option<String> {
    message
        .parts
        .iter()
        .skip(1)
        .find_map(|part| match &part.body {
            PartType::Message(original) => original.message_id().and_then(clean_message_id),
            PartType::Text(_) | PartType::Binary(_)
                if is_media(part, "text", &["rfc822-headers"])
                    || is_media(part, "message", &["global-headers", "rfc822-headers"]) =>
            {
                MessageParser::default()
                    .parse_headers(part.contents())
                    .and_then(|headers| headers.message_id().and_then(clean_message_id))
            }
            _ => None,
        })
}

/// A `Message-ID:` line quoted in the text of a bounce.
fn quoted_message_id(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().enumerate().find_map(|(at, line)| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("message-id") {
            return None;
        }
        // The value may be folded onto the next line.
        let value = match value.trim() {
            "" => lines.get(at + 1)?.trim(),
            value => value,
        };
        let value = value
            .strip_prefix('<')
            .map_or(value, |v| v.split('>').next().unwrap_or(v));
        clean_message_id(value)
    })
}

fn clean_message_id(id: &str) -> Option<String> {
    let id: String = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect();
    let id = truncate_utf8(&id, MAX_DIAGNOSTIC);
    (!id.is_empty()).then(|| id.to_owned())
}

/// Undoes RFC 6533 `\x{HEX}` escapes; anything else stays as it is.
fn decode_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\x{") {
        out.push_str(rest.get(..at).unwrap_or_default());
        let tail = rest.get(at + 3..).unwrap_or_default();
        let decoded = tail.split_once('}').and_then(|(hex, after)| {
            let valid = (1..=6).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit());
            let c = u32::from_str_radix(hex, 16)
                .ok()
                .filter(|_| valid)
                .and_then(char::from_u32)?;
            Some((c, after))
        });
        match decoded {
            Some((c, after)) => {
                out.push(c);
                rest = after;
            }
            None => {
                out.push_str("\\x{");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

mod delivered;
mod report;

pub use delivered::{read_delivered, Delivered, DeliveredRecipient};
#[cfg(test)]
use report::header_block;
pub use report::{failure_report, FailureReport};

#[cfg(test)]
mod tests;
