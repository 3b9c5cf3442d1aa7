//! The two queue runners: stored inbound mail → stanzas to users
//! (`to_xmpp`), queued outgoing mail → SMTP peers (`to_mail`). Each wakes
//! when something is committed, when the next item is due, and at least
//! every few seconds.

mod reports;
pub mod to_mail;
pub mod to_xmpp;

use std::time::Duration;

use facteur_bridge::{mailbox_to_jid, MailAddress};
use jid::BareJid;

use crate::store::{Millis, Notice};

/// Longest sleep of a runner with nothing due.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// How long to sleep until `next` is due, capped.
fn sleep_until(next: Option<Millis>) -> Duration {
    match next {
        Some(next) => next.since(Millis::now()).min(MAX_SLEEP),
        None => MAX_SLEEP,
    }
}

/// The notice that tells `sender` (a bare JID) that their mail to `rcpt`
/// could not be delivered, in their conversation with `rcpt`.
pub fn undelivered_notice(
    gateway: &BareJid,
    sender: &str,
    rcpt: &str,
    reason: &str,
) -> anyhow::Result<Notice> {
    let from = MailAddress::parse(rcpt)
        .ok()
        .and_then(|rcpt| mailbox_to_jid(&rcpt, gateway.domain()).ok())
        .unwrap_or_else(|| gateway.clone());
    Ok(Notice {
        recipient: BareJid::new(sender)?,
        from,
        subject: "Undelivered mail".into(),
        body: format!("Your mail to {rcpt} could not be delivered: {reason}"),
    })
}

/// A jitter factor in [0, 1).
fn jitter() -> f64 {
    use rand::Rng;
    rand::rng().random()
}
