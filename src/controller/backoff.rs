//! Retry delays: exponential, capped, and jittered, so that pools (and the input loops)
//! that failed together after a Docker outage do not all retry at the same instant.
//!
//! The delays come from `backon`'s exponential builder. The jitter is seeded from the
//! key (the instance and the pool's name) and the attempt, not from a random source: two
//! pools retry at different times, and one pool's delays are the same in every run of
//! one build, so a simulation seed replays exactly. (The hash is std's `DefaultHasher`,
//! which a new Rust release may change: replays are exact per toolchain.)

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// An exponential backoff policy: the `n`th delay lies in `[d/2, d)` where
/// `d = min(base * 2^(n-1), cap)` (the "equal jitter" of the AWS architecture blog).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay bound of the first attempt.
    pub base: Duration,
    /// No delay reaches this.
    pub cap: Duration,
}

/// Attempts past this one wait as long as this one: the bound has long reached the cap.
const MAX_ATTEMPT: u32 = 40;

impl Backoff {
    /// A policy of `base` doubling up to `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// Failed reconciles of a pool (a Docker error, a panic).
    pub const RECONCILE_ERRORS: Backoff =
        Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    /// Container crashes of a pool (CrashLoopBackOff), after the first free restart.
    pub const CRASHES: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    /// Failed container lists.
    pub const RELIST: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    /// Dropped Docker event streams.
    pub const EVENTS: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));

    /// The delay before retry `n` (1 for the first) of `key`, in whole milliseconds.
    /// Keys name what retries and where (`<instance>/<pool>`), so operators of other
    /// instances on the same daemon do not retry in step either.
    ///
    /// ```
    /// use invok::controller::Backoff;
    /// use std::time::Duration;
    /// let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
    /// let third = b.delay(3, "web");
    /// assert!(third >= Duration::from_secs(2) && third < Duration::from_secs(4));
    /// assert_eq!(third, b.delay(3, "web")); // the same for the same key and attempt
    /// assert!(b.delay(30, "web") < Duration::from_secs(10)); // capped
    /// ```
    pub fn delay(&self, n: u32, key: &str) -> Duration {
        let n = n.clamp(1, MAX_ATTEMPT);
        let mut h = DefaultHasher::new();
        (key, n).hash(&mut h);
        // backon adds a jitter in [0, d) to each delay d: starting from half the base
        // and half the cap gives [d/2, d) of the full figures.
        let delay = ExponentialBuilder::new()
            .with_min_delay(self.base / 2)
            .with_max_delay(self.cap / 2)
            .with_factor(2.0)
            .with_jitter()
            .with_jitter_seed(h.finish())
            .without_max_times()
            .build()
            .nth(n as usize - 1)
            .unwrap_or(self.cap / 2)
            .min(self.cap.saturating_sub(Duration::from_nanos(1)));
        // Whole milliseconds: events and log lines say "next start in 731ms".
        Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));

    #[test]
    fn each_delay_lies_between_half_and_all_of_a_doubling_capped_bound() {
        for key in ["web", "api", "a", ""] {
            for n in 0..=60u32 {
                let bound = Duration::from_secs(1)
                    .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(30)))
                    .min(Duration::from_secs(10));
                let d = B.delay(n, key);
                assert!(
                    d >= bound / 2 && d < bound,
                    "{key} #{n}: {d:?} not in [{:?}, {bound:?})",
                    bound / 2
                );
            }
        }
    }

    #[test]
    fn pools_that_failed_together_do_not_retry_in_lockstep() {
        let pools: Vec<String> = (0..20).map(|i| format!("pool-{i}")).collect();
        for n in [1, 3, 10] {
            let mut delays: Vec<Duration> = pools.iter().map(|p| B.delay(n, p)).collect();
            delays.sort();
            delays.dedup();
            assert!(
                delays.len() >= 15,
                "attempt {n}: only {} distinct delays of 20",
                delays.len()
            );
        }
    }

    #[test]
    fn the_same_key_and_attempt_give_the_same_delay() {
        assert_eq!(B.delay(4, "web"), B.delay(4, "web"));
        assert_eq!(B.delay(u32::MAX, "web"), B.delay(MAX_ATTEMPT, "web"));
    }
}
