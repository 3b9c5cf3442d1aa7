//! Rate limits: at most `count` events per `period` for each key (an XMPP
//! sender, a client IP), with bursts up to `count`.
//!
//! The generic cell rate algorithm keeps one instant per key (when its
//! bucket is empty again), so memory stays small however many keys
//! come and go; keys whose bucket emptied are forgotten. The clock is an
//! argument: callers pass `Instant::now()`, tests pass what they like.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// At most `count` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed in one period (and in one burst).
    pub count: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// Time one event uses of the budget.
    fn interval(&self) -> Duration {
        self.period / self.count.max(1)
    }
}

/// The answer for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; the event is counted.
    Allow,
    /// Over the limit; the event is not counted. The budget has room again
    /// after this wait.
    Deny {
        /// How long until one more event is allowed.
        retry_after: Duration,
    },
}

/// A rate limit per key.
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    /// Per key: when its budget is whole again.
    full_at: HashMap<K, Instant>,
}

/// Keys kept before forgotten ones are swept.
const SWEEP_ABOVE: usize = 4096;

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter allowing `rate` per key. A rate with a zero count allows
    /// nothing.
    pub fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            full_at: HashMap::new(),
        }
    }

    /// Allows `rate` from now on (a reloaded configuration); what each key
    /// already used stays counted.
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate;
    }

    /// Counts `cost` events for `key` at `now` if the budget allows all of
    /// them; otherwise counts none.
    pub fn check(&mut self, key: &K, cost: u32, now: Instant) -> Decision {
        if self.rate.count == 0 || cost > self.rate.count {
            return Decision::Deny {
                retry_after: self.rate.period,
            };
        }
        let interval = self.rate.interval();
        let burst = self.rate.period;
        let full_at = self
            .full_at
            .get(key)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        let next = full_at + interval * cost;
        // Over budget when the bucket would stay non-empty past one period.
        let limit = now + burst;
        if next > limit {
            return Decision::Deny {
                retry_after: next.saturating_duration_since(limit),
            };
        }
        if self.full_at.len() >= SWEEP_ABOVE {
            self.full_at.retain(|_, t| *t > now);
        }
        self.full_at.insert(key.clone(), next);
        Decision::Allow
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.full_at.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.full_at.is_empty()
    }
}

/// Simultaneous things per key (SMTP connections per client IP).
#[derive(Debug)]
pub struct Concurrency<K> {
    max: u32,
    open: HashMap<K, u32>,
}

impl<K: Hash + Eq + Clone> Concurrency<K> {
    /// At most `max` at once per key.
    pub fn new(max: u32) -> Self {
        Concurrency {
            max,
            open: HashMap::new(),
        }
    }

    /// At most `max` at once per key from now on (a reloaded
    /// configuration); slots already taken stay taken.
    pub fn set_max(&mut self, max: u32) {
        self.max = max;
    }

    /// Takes one slot for `key`; false when all are taken.
    pub fn acquire(&mut self, key: &K) -> bool {
        let open = self.open.entry(key.clone()).or_insert(0);
        if *open >= self.max {
            return false;
        }
        *open += 1;
        true
    }

    /// Gives back a slot taken by [`Concurrency::acquire`].
    pub fn release(&mut self, key: &K) {
        if let Some(open) = self.open.get_mut(key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.open.remove(key);
            }
        }
    }

    /// Slots taken for `key`.
    pub fn open(&self, key: &K) -> u32 {
        self.open.get(key).copied().unwrap_or(0)
    }
}

/// Address ranges (`192.0.2.0/24`, `::1/128`), e.g. the clients a limit
/// does not apply to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<(IpAddr, u8)>);

impl Networks {
    /// Parses `ip` or `ip/prefix` ranges; the error names the bad one.
    pub fn parse<'a>(ranges: impl IntoIterator<Item = &'a str>) -> Result<Networks, String> {
        let mut networks = Vec::new();
        for range in ranges {
            let (ip, prefix) = match range.split_once('/') {
                Some((ip, prefix)) => (ip, Some(prefix)),
                None => (range, None),
            };
            let ip: IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| format!("{range:?} is not an address or a range"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("{range:?}: prefix length 0 to {max}"))?,
                None => max,
            };
            networks.push((ip, prefix));
        }
        Ok(Networks(networks))
    }

    /// Whether `ip` is in one of the ranges (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|(network, prefix)| match (network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn allows_a_burst_then_one_per_interval() {
        let start = Instant::now();
        let mut limiter = Limiter::new(Rate {
            count: 3,
            period: HOUR,
        });
        let key = "alice@example.test";
        for _ in 0..3 {
            assert_eq!(limiter.check(&key, 1, start), Decision::Allow);
        }
        match limiter.check(&key, 1, start) {
            Decision::Deny { retry_after } => assert_eq!(retry_after, HOUR / 3),
            Decision::Allow => panic!("fourth mail allowed"),
        }
        // Another key has its own budget.
        assert_eq!(
            limiter.check(&"bob@example.test", 1, start),
            Decision::Allow
        );
        // One interval later, one more.
        let later = start + HOUR / 3;
        assert_eq!(limiter.check(&key, 1, later), Decision::Allow);
        assert!(matches!(
            limiter.check(&key, 1, later),
            Decision::Deny { .. }
        ));
        // A whole period later, a whole burst again.
        let much_later = later + HOUR;
        for _ in 0..3 {
            assert_eq!(limiter.check(&key, 1, much_later), Decision::Allow);
        }
    }

    #[test]
    fn a_cost_is_counted_whole_or_not_at_all() {
        let now = Instant::now();
        let mut limiter = Limiter::new(Rate {
            count: 10,
            period: HOUR,
        });
        assert_eq!(limiter.check(&1, 8, now), Decision::Allow);
        assert!(matches!(limiter.check(&1, 3, now), Decision::Deny { .. }));
        assert_eq!(limiter.check(&1, 2, now), Decision::Allow);
        assert!(matches!(limiter.check(&2, 11, now), Decision::Deny { .. }));
    }

    #[test]
    fn zero_allows_nothing() {
        let mut limiter = Limiter::new(Rate {
            count: 0,
            period: HOUR,
        });
        assert!(matches!(
            limiter.check(&1, 1, Instant::now()),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn forgotten_keys_are_swept() {
        let now = Instant::now();
        let mut limiter = Limiter::new(Rate {
            count: 60,
            period: Duration::from_secs(60),
        });
        for key in 0..SWEEP_ABOVE {
            limiter.check(&key, 1, now);
        }
        assert_eq!(limiter.len(), SWEEP_ABOVE);
        limiter.check(&usize::MAX, 1, now + Duration::from_secs(2));
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn networks() {
        let nets = Networks::parse(["127.0.0.0/8", "::1", "2001:db8::/32"]).expect("valid");
        for (ip, inside) in [
            ("127.0.0.1", true),
            ("127.255.0.9", true),
            ("128.0.0.1", false),
            ("::1", true),
            ("::2", false),
            ("2001:db8:1::5", true),
            ("2001:db9::", false),
            ("::ffff:127.0.0.1", true),
        ] {
            assert_eq!(nets.contains(ip.parse().expect("ip")), inside, "{ip}");
        }
        let all = Networks::parse(["0.0.0.0/0"]).expect("valid");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        assert!(Networks::parse(["10.0.0.0/33"]).is_err());
        assert!(Networks::parse(["localhost"]).is_err());
        assert!(!Networks::default().contains("127.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn concurrency_per_key() {
        let mut open = Concurrency::new(2);
        assert!(open.acquire(&"192.0.2.1"));
        assert!(open.acquire(&"192.0.2.1"));
        assert!(!open.acquire(&"192.0.2.1"));
        assert!(open.acquire(&"192.0.2.2"));
        open.release(&"192.0.2.1");
        assert!(open.acquire(&"192.0.2.1"));
        open.release(&"192.0.2.1");
        open.release(&"192.0.2.1");
        assert_eq!(open.open(&"192.0.2.1"), 0);
    }

    #[test]
    fn a_new_rate_applies_to_what_was_counted() {
        let now = Instant::now();
        let mut limiter = Limiter::new(Rate {
            count: 10,
            period: HOUR,
        });
        let key = "192.0.2.1";
        for _ in 0..9 {
            assert_eq!(limiter.check(&key, 1, now), Decision::Allow);
        }
        // Lowered below what the key used (54 of 60 minutes of budget): the
        // next one, 20 minutes of the new budget, is refused.
        limiter.set_rate(Rate {
            count: 3,
            period: HOUR,
        });
        assert!(matches!(limiter.check(&key, 1, now), Decision::Deny { .. }));
        // Raised: room again at once.
        limiter.set_rate(Rate {
            count: 100,
            period: HOUR,
        });
        assert_eq!(limiter.check(&key, 1, now), Decision::Allow);
    }

    #[test]
    fn a_new_maximum_keeps_the_slots_taken() {
        let mut open = Concurrency::new(3);
        for _ in 0..3 {
            assert!(open.acquire(&"192.0.2.1"));
        }
        open.set_max(2);
        assert!(!open.acquire(&"192.0.2.1"));
        open.release(&"192.0.2.1");
        assert!(!open.acquire(&"192.0.2.1"), "still 2 open, the new maximum");
        open.release(&"192.0.2.1");
        assert!(open.acquire(&"192.0.2.1"));
        open.set_max(5);
        assert!(open.acquire(&"192.0.2.1"));
        assert_eq!(open.open(&"192.0.2.1"), 3);
    }
}
