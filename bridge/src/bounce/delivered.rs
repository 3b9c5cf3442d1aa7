//! Positive delivery status notifications (RFC 3464) that a relay writes
//! when the mail was sent with RFC 3461 `NOTIFY=SUCCESS`: which recipients
//! the mail reached, for the XEP-0184 receipts their authors asked for.
//!
//! `delivered` (into the recipient's mailbox), `relayed` (handed to a
//! server that sends no reports: the last word that will come) and
//! `expanded` (delivered to an alias and forwarded on) all count as
//! delivered; `delayed` and `failed` do not.

use mail_parser::MessageParser;

use super::{delivery_status, field, field_groups, typed_address};

/// What a positive report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Original-Envelope-Id: the RFC 3461 ENVID the mail was sent with.
    pub envelope_id: Option<String>,
    /// The recipients reported delivered, relayed or expanded.
    pub recipients: Vec<DeliveredRecipient>,
}

/// One recipient a positive report names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRecipient {
    /// Original-Recipient (the RFC 3461 ORCPT), without its "rfc822;".
    pub original: Option<String>,
    /// Final-Recipient, without its "rfc822;".
    pub final_recipient: Option<String>,
}

impl DeliveredRecipient {
    /// Whether this is `rcpt` (ORCPT first: a relay may rewrite the final
    /// address), compared without regard to case.
    pub fn is(&self, rcpt: &str) -> bool {
        [&self.original, &self.final_recipient]
            .into_iter()
            .flatten()
            .any(|address| address.eq_ignore_ascii_case(rcpt))
    }
}

/// The longest envelope id kept (RFC 3461 §4.4: 100 characters).
const MAX_ENVID: usize = 100;

/// Reads a positive delivery report: `None` when the mail is no RFC 3464
/// report or names no recipient as delivered, relayed or expanded.
pub fn read_delivered(raw: &[u8]) -> Option<Delivered> {
    let message = MessageParser::default().parse(raw)?;
    let report = delivery_status(&message)?;
    let groups = field_groups(&String::from_utf8_lossy(report));
    let envelope_id = groups
        .first()
        .and_then(|g| field(g, "original-envelope-id"))
        .map(|id| {
            id.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(MAX_ENVID)
                .collect::<String>()
        })
        .filter(|id| !id.is_empty());
    let recipients: Vec<DeliveredRecipient> = groups
        .iter()
        .filter(|g| {
            field(g, "action")
                .and_then(|a| a.split_whitespace().next())
                .is_some_and(|a| {
                    ["delivered", "relayed", "expanded"]
                        .iter()
                        .any(|kind| a.eq_ignore_ascii_case(kind))
                })
        })
        .map(|g| DeliveredRecipient {
            original: field(g, "original-recipient").and_then(typed_address),
            final_recipient: field(g, "final-recipient").and_then(typed_address),
        })
        .filter(|r| r.original.is_some() || r.final_recipient.is_some())
        .collect();
    match recipients.is_empty() {
        true => None,
        false => Some(Delivered {
            envelope_id,
            recipients,
        }),
    }
}
