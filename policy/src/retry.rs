//! Retry schedules: exponential back-off, capped, with a lifetime after
//! which an item fails for good (Postfix's defaults: 5 minutes doubling to
//! about an hour, 5 days in all).

use std::time::Duration;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait between two attempts.
    pub max: Duration,
    /// Age after which the item is given up.
    pub lifetime: Duration,
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this wait.
    RetryAfter(Duration),
    /// The item is too old: fail it.
    GiveUp,
}

impl RetrySchedule {
    /// The wait before attempt `failures + 1`, given that `failures`
    /// attempts failed, without jitter.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max)
            .max(Duration::from_millis(1))
    }

    /// Decides after the `failures`-th failed attempt of an item that is
    /// `age` old. `jitter` in [0, 1) spreads retries of many items over up to
    /// a tenth of the wait, so that they do not all hit a peer at once.
    pub fn after_failure(&self, failures: u32, age: Duration, jitter: f64) -> RetryDecision {
        let wait = self.backoff(failures);
        let spread = wait.mul_f64(jitter.clamp(0.0, 1.0) / 10.0);
        if age.saturating_add(wait) > self.lifetime {
            RetryDecision::GiveUp
        } else {
            RetryDecision::RetryAfter(wait + spread)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn postfix_like() -> RetrySchedule {
        RetrySchedule {
            initial: 5 * MIN,
            max: 60 * MIN,
            lifetime: 5 * 24 * 60 * MIN,
        }
    }

    #[test]
    fn doubles_then_caps() {
        let s = postfix_like();
        let waits: Vec<u64> = (1..=7).map(|n| s.backoff(n).as_secs() / 60).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(s.backoff(u32::MAX), 60 * MIN);
    }

    #[test]
    fn gives_up_past_lifetime() {
        let s = postfix_like();
        assert_eq!(
            s.after_failure(1, MIN, 0.0),
            RetryDecision::RetryAfter(5 * MIN)
        );
        assert_eq!(
            s.after_failure(50, 5 * 24 * 60 * MIN - 30 * MIN, 0.0),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn jitter_is_bounded() {
        let s = postfix_like();
        match s.after_failure(1, Duration::ZERO, 0.999) {
            RetryDecision::RetryAfter(wait) => {
                assert!(wait >= 5 * MIN && wait < 5 * MIN + 31 * Duration::from_secs(1))
            }
            RetryDecision::GiveUp => panic!("young item given up"),
        }
    }
}
