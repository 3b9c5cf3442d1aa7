//! The delivery status notification (RFC 3464) facteur owes the sender of
//! a mail it accepted with `250` but could not deliver to the XMPP user.
//!
//! Owed only for mail whose envelope sender its own domain vouched for
//! (SPF or DMARC pass): a forged sender, spam's usual kind, never gets
//! backscatter; the null sender never gets a report (RFC 5321 §4.5.5);
//! notices of the gateway have nobody to report to.

use facteur_bridge::bounce::{failure_report, FailureReport};
use tracing::warn;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::config::Config;
use crate::store::{Millis, ToXmppBody, ToXmppItem};

/// A report ready to be queued.
pub struct Report {
    pub rcpt: String,
    pub message_id: String,
    pub raw: Vec<u8>,
}

/// The RFC 3463 status for an XMPP server's refusal.
pub fn status_for_refusal(condition: &DefinedCondition) -> &'static str {
    use DefinedCondition::*;
    match condition {
        ItemNotFound | ServiceUnavailable | RecipientUnavailable | Gone { .. } => "5.1.1",
        Forbidden | NotAllowed | NotAuthorized | PolicyViolation => "5.7.1",
        ResourceConstraint => "5.2.2",
        _ => "5.0.0",
    }
}

/// The report for `item`, given up with `reason` and `status`, when one is
/// owed.
pub fn owed_report(
    config: &Config,
    item: &ToXmppItem,
    reason: &str,
    status: &str,
) -> Option<Report> {
    let ToXmppBody::Mail {
        mail_from,
        raw,
        auth,
        ..
    } = &item.body
    else {
        return None;
    };
    let vouched = auth
        .split_whitespace()
        .any(|result| result == "spf=pass" || result == "dmarc=pass");
    if mail_from.is_empty() || !vouched {
        return None;
    }
    let now = Millis::now();
    let message_id = format!(
        "report-{}-{}@{}",
        item.id, item.created_at.0, config.inbound.hostname
    );
    let report = failure_report(&FailureReport {
        reporting_mta: &config.inbound.hostname,
        recipient: &item.recipient,
        status,
        reason,
        to: mail_from,
        original_headers: raw,
        arrival_date: item.created_at.0 / 1000,
        date: now.0 / 1000,
        message_id: &message_id,
    });
    match report {
        Ok(raw) => Some(Report {
            rcpt: mail_from.clone(),
            message_id,
            raw,
        }),
        Err(error) => {
            warn!(delivery = item.id, error = %error, "Cannot write a delivery report.");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_statuses() {
        use DefinedCondition::*;
        assert_eq!(status_for_refusal(&ServiceUnavailable), "5.1.1");
        assert_eq!(status_for_refusal(&ItemNotFound), "5.1.1");
        assert_eq!(status_for_refusal(&Gone { new_address: None }), "5.1.1");
        assert_eq!(status_for_refusal(&Forbidden), "5.7.1");
        assert_eq!(status_for_refusal(&ResourceConstraint), "5.2.2");
        assert_eq!(status_for_refusal(&BadRequest), "5.0.0");
    }
}
