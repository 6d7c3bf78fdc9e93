//! Exponential backoff with full jitter: the n-th retry waits a random time
//! in `[0, min(max, initial * 2^n)]`, so a thousand connections that lost the
//! same broker do not come back in the same millisecond.

use std::time::Duration;

/// Backoff state for one connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// 1 s doubling to 60 s, the contract's policy for lost connections.
    pub fn for_reconnects() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// A policy from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay, jittered, and count the attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.next_ceiling().mul_f64(fastrand::f64())
    }

    /// The next delay without jitter (for one task retrying, where a
    /// predictable, loggable delay matters more than spreading), and count
    /// the attempt.
    pub fn next_ceiling(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling
    }

    /// After a success: start again from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_below_the_ceiling() {
        let mut b = Backoff::for_reconnects();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling, "{d:?} > {ceiling:?}");
            ceilings.push(ceiling.as_secs());
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_secs(8), Duration::from_secs(60));
            seen.insert(b.next_delay().as_millis());
        }
        assert!(seen.len() > 10, "delays barely vary: {seen:?}");
    }

    #[test]
    fn unjittered_ceilings_count_attempts_too() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let got: Vec<u64> = (0..5).map(|_| b.next_ceiling().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 5, 5]);
        assert_eq!(b.attempts(), 5);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }
}
