//! When to try again: the actor's retry rules as pure logic over explicit
//! instants, so they are tested without sockets or sleeping.
//!
//! - A lost connection or a failed attempt backs off with full jitter, 1 s
//!   doubling to 60 s. The backoff starts over only after a connection
//!   stayed up for [`STABLE_AFTER`]: a connection that drops right after
//!   every CONNACK (a broker that rejects our SUBSCRIBE, a message it keeps
//!   resending) backs off like one that cannot connect at all.
//! - A refusal, a TLS failure, or a second oversize packet in a row is
//!   lasting: status `error`, retried after about 60 s (with jitter, so a
//!   thousand refused connections do not retry in lockstep).
//! - A takeover (a broker close within the takeover window, or MQTT 5
//!   0x8E) cools down for MQTT_RECONNECT_COOLDOWN.
//! - Whatever happens, at most [`MAX_ATTEMPTS`] connection attempts start in
//!   any [`ATTEMPT_WINDOW`].

use crate::backoff::Backoff;
use crate::link::LinkError;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// A connection up this long counts as stable: the backoff starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Pause before retrying after a lasting error (before jitter).
pub const LASTING_RETRY: Duration = Duration::from_secs(60);
/// At most this many connection attempts start…
pub const MAX_ATTEMPTS: usize = 6;
/// …in any window this long.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Status `disconnected`; try again after the delay.
    Retry(Duration),
    /// Status `error`; try again after the (long) delay.
    Lasting(Duration),
    /// Status `cooldown`; another client holds our client ID.
    Cooldown(Duration),
}

impl Decision {
    /// How long to wait.
    pub fn delay(self) -> Duration {
        match self {
            Decision::Retry(d) | Decision::Lasting(d) | Decision::Cooldown(d) => d,
        }
    }
}

/// Retry state of one connection.
#[derive(Debug)]
pub struct Policy {
    backoff: Backoff,
    attempts: VecDeque<Instant>,
    oversize_in_a_row: u32,
    takeover_window: Duration,
    cooldown: Duration,
    /// 0.0..1.0 draws for jitter (fastrand in the actor, fixed in tests).
    random: fn() -> f64,
}

impl Policy {
    /// The policy for a connection with these settings.
    pub fn new(takeover_window: Duration, cooldown: Duration) -> Self {
        Policy {
            backoff: Backoff::for_reconnects(),
            attempts: VecDeque::new(),
            oversize_in_a_row: 0,
            takeover_window,
            cooldown,
            random: fastrand::f64,
        }
    }

    /// A connection attempt starts at `now`.
    pub fn attempt(&mut self, now: Instant) {
        self.attempts.push_back(now);
        while self.attempts.len() > MAX_ATTEMPTS {
            self.attempts.pop_front();
        }
    }

    /// An attempt failed before CONNACK.
    pub fn failed(&mut self, error: &LinkError, now: Instant) -> Decision {
        let decision = match error {
            LinkError::Refused(_) | LinkError::Tls(_) => Decision::Lasting(self.lasting()),
            LinkError::TooLarge { .. } => self.oversize(),
            _ => Decision::Retry(self.backoff()),
        };
        self.paced(decision, now)
    }

    /// A connection that got its CONNACK `up_for` ago ended.
    pub fn lost(&mut self, error: &LinkError, up_for: Duration, now: Instant) -> Decision {
        if up_for >= STABLE_AFTER {
            self.backoff.reset();
            self.oversize_in_a_row = 0;
        }
        let decision = if is_takeover(error, up_for, self.takeover_window) {
            Decision::Cooldown(self.cooldown)
        } else {
            match error {
                LinkError::TooLarge { .. } => self.oversize(),
                LinkError::Refused(_) | LinkError::Tls(_) => Decision::Lasting(self.lasting()),
                _ => Decision::Retry(self.backoff()),
            }
        };
        self.paced(decision, now)
    }

    /// Full jitter below the backoff's ceiling.
    fn backoff(&mut self) -> Duration {
        self.backoff.next_ceiling().mul_f64((self.random)())
    }

    fn oversize(&mut self) -> Decision {
        self.oversize_in_a_row = self.oversize_in_a_row.saturating_add(1);
        if self.oversize_in_a_row >= 2 {
            Decision::Lasting(self.lasting())
        } else {
            Decision::Retry(self.backoff())
        }
    }

    /// About a minute: 45 to 75 s.
    fn lasting(&self) -> Duration {
        LASTING_RETRY.mul_f64(0.75 + 0.5 * (self.random)())
    }

    /// Stretches the delay so that the next attempt keeps within
    /// [`MAX_ATTEMPTS`] per [`ATTEMPT_WINDOW`].
    fn paced(&self, decision: Decision, now: Instant) -> Decision {
        let delay = decision.delay();
        let earliest = match self.attempts.front() {
            Some(oldest) if self.attempts.len() >= MAX_ATTEMPTS => *oldest + ATTEMPT_WINDOW,
            _ => return decision,
        };
        let delay = delay.max(earliest.saturating_duration_since(now));
        match decision {
            Decision::Retry(_) => Decision::Retry(delay),
            Decision::Lasting(_) => Decision::Lasting(delay),
            Decision::Cooldown(_) => Decision::Cooldown(delay),
        }
    }
}

/// A broker close within the takeover window after CONNACK, or MQTT 5
/// DISCONNECT 0x8E: another client took our client ID.
pub fn is_takeover(error: &LinkError, up_for: Duration, window: Duration) -> bool {
    *error == LinkError::TakenOver
        || (matches!(error, LinkError::ClosedByBroker(_)) && up_for < window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut p = Policy::new(Duration::from_secs(10), Duration::from_secs(30));
        p.random = || 0.999;
        p
    }

    fn closed() -> LinkError {
        LinkError::Network("connection refused".into())
    }

    #[test]
    fn quick_losses_keep_backing_off() {
        // A broker that drops us right after every CONNACK, not a takeover
        // (say, a keep-alive failure) must not reset the backoff.
        let mut p = policy();
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..8 {
            p.attempt(now);
            let d = p.lost(
                &LinkError::KeepAliveTimeout,
                Duration::from_millis(200),
                now,
            );
            delays.push(d.delay().as_secs());
            now += d.delay();
        }
        assert_eq!(delays, [0, 1, 3, 7, 15, 31, 59, 59]);
    }

    #[test]
    fn a_stable_connection_starts_the_backoff_over() {
        let mut p = policy();
        let now = Instant::now();
        for _ in 0..5 {
            p.failed(&closed(), now);
        }
        let d = p.lost(&LinkError::KeepAliveTimeout, STABLE_AFTER, now);
        assert_eq!(d, Decision::Retry(Duration::from_secs(1).mul_f64(0.999)));
    }

    #[test]
    fn never_more_than_a_few_attempts_a_minute() {
        let mut p = policy();
        p.random = || 0.0; // the worst jitter: retry at once
        let start = Instant::now();
        let mut now = start;
        let mut attempts = Vec::new();
        while now < start + Duration::from_secs(300) {
            p.attempt(now);
            attempts.push(now);
            let d = p.failed(&closed(), now);
            now += d.delay().max(Duration::from_millis(1));
        }
        for (i, at) in attempts.iter().enumerate() {
            let in_window = attempts[i..]
                .iter()
                .take_while(|t| **t < *at + ATTEMPT_WINDOW)
                .count();
            assert!(
                in_window <= MAX_ATTEMPTS,
                "{in_window} attempts in a minute"
            );
        }
        assert!(attempts.len() <= 5 * MAX_ATTEMPTS + 1, "{}", attempts.len());
    }

    #[test]
    fn refusals_are_lasting_with_jitter() {
        let mut p = policy();
        p.random = || 0.0;
        let d = p.failed(&LinkError::Refused("not authorised".into()), Instant::now());
        assert_eq!(d, Decision::Lasting(Duration::from_secs(45)));
        p.random = || 0.999;
        let d = p.failed(&LinkError::Tls("bad cert".into()), Instant::now());
        assert!(matches!(d, Decision::Lasting(x) if x > Duration::from_secs(74)));
    }

    #[test]
    fn a_repeated_oversize_packet_is_lasting() {
        let mut p = policy();
        let big = LinkError::TooLarge {
            size: 200 << 20,
            limit: 1 << 20,
        };
        let now = Instant::now();
        assert!(matches!(
            p.lost(&big, Duration::from_secs(1), now),
            Decision::Retry(_)
        ));
        assert!(matches!(
            p.lost(&big, Duration::from_millis(10), now),
            Decision::Lasting(_)
        ));
        // After a stable hour, one oversize message is forgiven once.
        assert!(matches!(
            p.lost(&big, Duration::from_secs(3600), now),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn takeovers_cool_down() {
        let mut p = policy();
        let now = Instant::now();
        let early = LinkError::ClosedByBroker("connection closed by peer".into());
        assert_eq!(
            p.lost(&early, Duration::from_millis(400), now),
            Decision::Cooldown(Duration::from_secs(30))
        );
        assert!(matches!(
            p.lost(&early, Duration::from_secs(11), now),
            Decision::Retry(_)
        ));
        assert_eq!(
            p.lost(&LinkError::TakenOver, Duration::from_secs(3600), now),
            Decision::Cooldown(Duration::from_secs(30))
        );
    }
}
