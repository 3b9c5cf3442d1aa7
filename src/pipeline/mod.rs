//! The two queue runners: stored inbound mail → stanzas to users
//! (`to_xmpp`), queued outgoing mail → SMTP peers (`to_mail`). Each wakes
//! when the store commits new work into its queue, when the next item is
//! due, and at least every `[store] poll_interval`.

mod reports;
pub mod to_mail;
pub mod to_xmpp;

use std::time::Duration;

use crate::store::Millis;

/// How long to sleep until `next` is due, at most `poll` (the longest
/// sleep of a runner with nothing due).
fn sleep_until(next: Option<Millis>, poll: Duration) -> Duration {
    match next {
        Some(next) => next.since(Millis::now()).min(poll),
        None => poll,
    }
}

/// A jitter factor in [0, 1).
fn jitter() -> f64 {
    use rand::Rng;
    rand::rng().random()
}
