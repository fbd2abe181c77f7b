//! Capped exponential backoff with jitter, with an injectable sleeper so the
//! schedule is unit-testable without waiting.

use std::time::{Duration, Instant};

use crate::StoreError;

/// How to retry a transient store error.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// First delay.
    pub initial: Duration,
    /// Upper bound of any delay (before jitter is subtracted).
    pub max: Duration,
    /// Growth factor per attempt (>= 1).
    pub factor: f64,
    /// Fraction of each delay that is randomised away: a delay `d` becomes
    /// uniform in `[d * (1 - jitter), d]`. 0 = no jitter, at most 1.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: 0.5,
        }
    }
}

/// The clock and the wait of a retry loop. Tests inject a fake one that
/// records delays and advances virtual time instead of sleeping.
pub trait Sleeper {
    fn sleep(&mut self, d: Duration);
    /// The current time as this sleeper sees it.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Sleeps the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadSleeper;

impl Sleeper for ThreadSleeper {
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// The state of one backoff schedule.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// `seed` drives the jitter; give a fixed one in tests.
    pub fn with_seed(policy: RetryPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempt: 0,
            // xorshift must not start at 0
            rng: seed | 1,
        }
    }

    /// Seeded from the clock and the process id, so that agents started
    /// together do not retry in lockstep.
    pub fn new(policy: RetryPolicy) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self::with_seed(policy, t ^ ((std::process::id() as u64) << 32))
    }

    /// Start over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let p = &self.policy;
        let base = p.initial.as_secs_f64() * p.factor.max(1.0).powi(self.attempt.min(64) as i32);
        let capped = base.min(p.max.as_secs_f64());
        self.attempt = self.attempt.saturating_add(1);
        let jitter = p.jitter.clamp(0.0, 1.0);
        let r = self.next_unit();
        Duration::from_secs_f64(capped * (1.0 - jitter * r))
    }

    fn next_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Run `op` until it succeeds, fails with a non-transient error, or
    /// `deadline` passes (then the last error is returned). Waits with
    /// `sleeper` between attempts and never sleeps past the deadline.
    pub fn retry<T>(
        &mut self,
        sleeper: &mut dyn Sleeper,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        loop {
            match op() {
                Ok(v) => {
                    self.reset();
                    return Ok(v);
                }
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => {
                    let mut d = self.next_delay();
                    if let Some(deadline) = deadline {
                        let now = sleeper.now();
                        if now >= deadline {
                            return Err(e);
                        }
                        d = d.min(deadline - now);
                    }
                    sleeper.sleep(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Record(Vec<Duration>);
    impl Sleeper for Record {
        fn sleep(&mut self, d: Duration) {
            self.0.push(d)
        }
    }

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter,
        }
    }

    #[test]
    fn grows_exponentially_and_caps() {
        let mut b = Backoff::with_seed(policy(0.0), 7);
        let ms: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }

    #[test]
    fn jitter_stays_in_bounds_and_varies() {
        let mut b = Backoff::with_seed(policy(0.5), 42);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..50 {
            let d = b.next_delay();
            let cap = (100u64 << i.min(4)).min(1000);
            assert!(d <= Duration::from_millis(cap), "{d:?} > {cap}");
            assert!(d >= Duration::from_millis(cap / 2), "{d:?} < {cap}/2");
            seen.insert(d);
        }
        assert!(seen.len() > 10, "jitter does not vary: {seen:?}");
        // Different seeds give different schedules.
        let a: Vec<_> = {
            let mut b = Backoff::with_seed(policy(0.5), 1);
            (0..5).map(|_| b.next_delay()).collect()
        };
        let c: Vec<_> = {
            let mut b = Backoff::with_seed(policy(0.5), 2);
            (0..5).map(|_| b.next_delay()).collect()
        };
        assert_ne!(a, c);
    }

    #[test]
    fn retries_transient_errors_only() {
        let mut b = Backoff::with_seed(policy(0.0), 1);
        let mut s = Record(vec![]);
        let mut n = 0;
        let r = b.retry(&mut s, None, || {
            n += 1;
            if n < 4 {
                Err(StoreError::unreachable("down"))
            } else {
                Ok(n)
            }
        });
        assert_eq!(r, Ok(4));
        assert_eq!(
            s.0,
            vec![
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(400)
            ]
        );

        let mut s = Record(vec![]);
        let r: Result<(), _> = b.retry(&mut s, None, || Err(StoreError::unreadable("gone")));
        assert_eq!(r.unwrap_err().code, rampart_types::codes::SITE_UNREADABLE);
        assert!(s.0.is_empty(), "a non-transient error must not be retried");
    }

    /// Virtual time: sleeping only advances the clock.
    struct Fake {
        start: Instant,
        slept: Duration,
        naps: Vec<Duration>,
    }
    impl Sleeper for Fake {
        fn sleep(&mut self, d: Duration) {
            self.slept += d;
            self.naps.push(d);
        }
        fn now(&self) -> Instant {
            self.start + self.slept
        }
    }

    #[test]
    fn never_sleeps_past_the_deadline_virtual_clock() {
        let start = Instant::now();
        let mut fake = Fake {
            start,
            slept: Duration::ZERO,
            naps: vec![],
        };
        let mut b = Backoff::with_seed(policy(0.0), 1);
        let r: Result<(), _> =
            b.retry(&mut fake, Some(start + Duration::from_millis(1000)), || {
                Err(StoreError::unreachable("down"))
            });
        assert!(r.unwrap_err().is_transient());
        let ms: Vec<u128> = fake.naps.iter().map(|d| d.as_millis()).collect();
        // 100+200+400 = 700, then the 800 ms step is cut to the 300 left.
        assert_eq!(ms, vec![100, 200, 400, 300]);
        assert_eq!(fake.slept, Duration::from_millis(1000));
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let mut b = Backoff::with_seed(policy(0.0), 1);
        let deadline = Instant::now() + Duration::from_millis(300);
        let r: Result<(), _> = b.retry(&mut ThreadSleeper, Some(deadline), || {
            Err(StoreError::unreachable("down"))
        });
        assert!(r.unwrap_err().is_transient());
        assert!(Instant::now() >= deadline);
        assert!(Instant::now() < deadline + Duration::from_millis(200));
    }
}
