//! Writing the RFC 3464 delivery status notification facteur owes a
//! sender when mail it accepted cannot reach the XMPP user: RFC 3463
//! status codes, RFC 3834 Auto-Submitted, RFC 6533 `\x{HEX}` escapes for
//! what is not ASCII in the 7-bit report.

use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;

use super::{find_status, quoted_message_id, starts_with_reply_code, MAX_DIAGNOSTIC};
use crate::xml_text::{one_line, truncate_utf8};
use crate::{Error, MailAddress};

/// A delivery status notification for one mail facteur accepted but could
/// not deliver.
#[derive(Debug, Clone)]
pub struct FailureReport<'a> {
    /// Reporting-MTA name (facteur's hostname).
    pub reporting_mta: &'a str,
    /// The recipient address that failed.
    pub recipient: &'a str,
    /// RFC 3463 status, e.g. "5.1.1" (unknown user) or "5.0.0".
    pub status: &'a str,
    /// Why, in words (e.g. the XMPP server's error).
    pub reason: &'a str,
    /// The envelope sender the report goes to.
    pub to: &'a str,
    /// The original mail, or its headers: what comes before the first
    /// blank line is returned as text/rfc822-headers.
    pub original_headers: &'a [u8],
    /// Arrival date of the original, seconds since the Unix epoch.
    pub arrival_date: i64,
    /// Date of this report, seconds since the Unix epoch.
    pub date: i64,
    /// Message-ID for the report, without angle brackets.
    pub message_id: &'a str,
}

/// The report as RFC 5322 bytes: From "Mail Delivery System
/// <MAILER-DAEMON@{reporting_mta}>", To the sender, Subject "Undelivered
/// Mail Returned to Sender", Auto-Submitted: auto-replied (RFC 3834),
/// multipart/report; report-type=delivery-status with: a text/plain human
/// part naming the recipient and the reason; a message/delivery-status
/// part (Reporting-MTA: dns; …, Arrival-Date, then a blank line and
/// Final-Recipient: rfc822; …, Action: failed, Status: …, Diagnostic-Code:
/// x-xmpp; … or smtp;); a text/rfc822-headers part with the original
/// headers.
///
/// A status that is not a 4.x.x or 5.x.x code becomes "5.0.0". The
/// reason and recipient lose CR, LF and other controls, so they can
/// neither add a header nor start a field of the report; the report part
/// is 7-bit, with RFC 6533 `\x{HEX}` escapes for what is not ASCII.
pub fn failure_report(report: &FailureReport<'_>) -> Result<Vec<u8>, Error> {
    let to = MailAddress::parse(report.to)?;
    let mta: String = report
        .reporting_mta
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    let daemon = MailAddress::parse(&format!("MAILER-DAEMON@{mta}"))?;
    let recipient = one_line(report.recipient);
    let recipient = recipient.trim_start_matches('<').trim_end_matches('>');
    if recipient.is_empty() {
        return Err(Error::InvalidAddress {
            address: report.recipient.to_owned(),
            reason: "no recipient to report on",
        });
    }
    let status = find_status(report.status)
        .filter(|s| s == report.status.trim() && !s.starts_with('2'))
        .unwrap_or_else(|| "5.0.0".to_owned());
    let reason = one_line(report.reason);
    let reason = truncate_utf8(&reason, MAX_DIAGNOSTIC);
    let message_id: String = report
        .message_id
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>'))
        .collect();

    let headers = header_block(report.original_headers);
    // Threads the report with the original in the sender's mail client.
    let original_id = quoted_message_id(&String::from_utf8_lossy(&headers))
        .map(|id| {
            id.chars()
                .filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>'))
                .collect::<String>()
        })
        .filter(|id| id.contains('@'));

    let human = format!(
        "This is the mail system at host {mta}.\r\n\r\n\
         Your message was accepted, but it could not be delivered to the\r\n\
         following recipient, and delivery has been given up.\r\n\r\n\
         <{recipient}>: {reason}\r\n\r\n\
         The headers of your message are attached.\r\n"
    );
    let parts = vec![
        MimePart::new(
            ContentType::new("text/plain").attribute("charset", "utf-8"),
            human,
        ),
        MimePart::new(
            ContentType::new("message/delivery-status"),
            delivery_status_body(report, &mta, recipient, &status, reason).into_bytes(),
        )
        // RFC 3464 §2.1: 7bit, so that a reader without MIME can read it.
        .transfer_encoding("7bit"),
        MimePart::new(ContentType::new("text/rfc822-headers"), headers),
    ];
    let mut builder = MessageBuilder::new();
    if let Some(id) = original_id {
        builder = builder.in_reply_to(id.clone()).references(id);
    }
    builder
        .from(("Mail Delivery System".to_owned(), daemon.to_string()))
        .to(to.to_string())
        .subject("Undelivered Mail Returned to Sender")
        .date(report.date)
        .message_id(message_id)
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(MimePart::new(
            ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
            parts,
        ))
        .write_to_vec()
        .map_err(|_| Error::Unparsable)
}

/// The RFC 3464 fields: the per-message block, a blank line, the block of
/// the one recipient. Every value is one folded 7-bit line.
fn delivery_status_body(
    report: &FailureReport<'_>,
    mta: &str,
    recipient: &str,
    status: &str,
    reason: &str,
) -> String {
    let final_recipient = match recipient.is_ascii() {
        true => format!("rfc822; {recipient}"),
        false => format!("utf-8; {}", escape_7bit(recipient, "+=\\ ")),
    };
    // A reason that is an SMTP reply says so; otherwise it is the XMPP
    // server's error.
    let diagnostic_type = match starts_with_reply_code(reason) {
        true => "smtp",
        false => "x-xmpp",
    };
    let mut body = String::new();
    push_field(&mut body, "Reporting-MTA", &format!("dns; {mta}"));
    let arrival = Date::new(report.arrival_date).to_rfc822();
    push_field(&mut body, "Arrival-Date", &arrival);
    body.push_str("\r\n");
    push_field(&mut body, "Final-Recipient", &final_recipient);
    push_field(&mut body, "Action", "failed");
    push_field(&mut body, "Status", status);
    if !reason.is_empty() {
        let diagnostic = escape_7bit(reason, "\\");
        push_field(
            &mut body,
            "Diagnostic-Code",
            &format!("{diagnostic_type}; {diagnostic}"),
        );
    }
    body
}

/// Appends `Name: value` folded at spaces before column 78; a word too
/// long for a line of 998 octets is cut, outside any escape.
fn push_field(out: &mut String, name: &str, value: &str) {
    const SOFT: usize = 76;
    const HARD: usize = 900;
    out.push_str(name);
    out.push(':');
    let mut column = name.len() + 1;
    for mut word in value.split(' ').filter(|w| !w.is_empty()) {
        while !word.is_empty() {
            let mut cut = word.len().min(HARD);
            if cut < word.len() {
                // Every backslash here starts an escape: never cut one in two.
                let head = word.get(..cut).unwrap_or_default();
                cut = head.rfind('\\').filter(|&at| at > 0).unwrap_or(cut);
            }
            let (piece, rest) = word.split_at_checked(cut).unwrap_or((word, ""));
            if !out.ends_with(':') && column + 1 + piece.len() > SOFT {
                out.push_str("\r\n");
                column = 0;
            }
            out.push(' ');
            out.push_str(piece);
            column += 1 + piece.len();
            word = rest;
        }
    }
    out.push_str("\r\n");
}

/// ASCII as it is, except `extra`; everything else as `\x{HEX}`.
fn escape_7bit(text: &str, extra: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_control() && !extra.contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    out
}

/// The original's header block, without the body should the caller have
/// passed more, ending with a line break.
pub(super) fn header_block(raw: &[u8]) -> Vec<u8> {
    let mut block = Vec::with_capacity(raw.len() + 2);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        block.extend_from_slice(line);
    }
    if !block.ends_with(b"\n") {
        block.extend_from_slice(b"\r\n");
    }
    block
}
