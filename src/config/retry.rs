//! The retry keys that `[outbound]` (mail to SMTP servers) and `[xmpp]`
//! (stanzas to XMPP users) share: `retry_initial`, `retry_max` and
//! `max_lifetime`, read into a `RetrySchedule`.

use std::time::Duration;

use facteur_policy::retry::RetrySchedule;

use super::{parse_duration, Problems};

/// The three keys: name, default. Postfix's defaults: 5 minutes doubling
/// to about an hour, 5 days in all.
pub(super) const KEYS: [(&str, &str); 3] = [
    ("retry_initial", "5m"),
    ("retry_max", "1h"),
    ("max_lifetime", "5d"),
];

/// One section's retry keys as written, in the order of `KEYS`; `None`
/// where the file leaves a key out.
#[derive(Debug, Clone)]
pub(super) struct RetryKeys(pub(super) [Option<String>; 3]);

impl RetryKeys {
    /// The schedule of `[section]`, with the defaults for keys left out.
    pub(super) fn check(&self, p: &mut Problems, section: &str) -> RetrySchedule {
        let before = p.errors.len();
        let [initial, max, lifetime] = self.durations(p, section);
        if p.errors.len() > before {
            // A bad duration is already reported; its stand-in has no order.
            return RetrySchedule {
                initial,
                max,
                lifetime,
            };
        }
        schedule(p, section, initial, max, lifetime)
    }

    /// Each key's duration (or its default), checked under `[section]`.
    pub(super) fn durations(&self, p: &mut Problems, section: &str) -> [Duration; 3] {
        let mut out = [Duration::ZERO; 3];
        for ((slot, (name, default)), written) in out.iter_mut().zip(KEYS).zip(&self.0) {
            *slot = p.duration(
                &format!("{section}.{name}"),
                written.as_deref().unwrap_or(default),
            );
        }
        out
    }

    /// Each written key's duration, `None` where left out or invalid (the
    /// section that holds it reports that).
    pub(super) fn written(&self) -> [Option<Duration>; 3] {
        self.0.clone().map(|text| {
            text.and_then(|t| parse_duration(&t).ok())
                .filter(|d| !d.is_zero())
        })
    }
}

/// A schedule whose waits grow: `retry_max` under `retry_initial` is a
/// problem of `[section]`.
pub(super) fn schedule(
    p: &mut Problems,
    section: &str,
    initial: Duration,
    max: Duration,
    lifetime: Duration,
) -> RetrySchedule {
    if max < initial {
        p.add(
            &format!("{section}.retry_max"),
            "must not be shorter than retry_initial",
        );
    }
    RetrySchedule {
        initial,
        max,
        lifetime,
    }
}
