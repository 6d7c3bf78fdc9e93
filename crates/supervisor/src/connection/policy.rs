//! When to try again, and what a failure most likely means: the actor's
//! retry rules as pure logic over explicit instants, so they are tested
//! without sockets or sleeping.
//!
//! - A lost connection or a failed attempt backs off with full jitter, 1 s
//!   doubling to 60 s. The backoff starts over only after a connection
//!   stayed up for [`STABLE_AFTER`]: a connection that drops right after
//!   every CONNACK backs off like one that cannot connect at all.
//! - A refusal, a TLS failure, or a second oversize packet in a row is
//!   lasting: status `error`, retried after about 60 s (with jitter, so a
//!   thousand refused connections do not retry in lockstep).
//! - A broker that closes the socket before CONNACK (rumqttd on bad
//!   credentials, RabbitMQ 3.10 on an MQTT 5 CONNECT, a TLS port spoken to
//!   in plain text) is lasting from the [`EARLY_CLOSES_LASTING`]-th time in a
//!   row.
//! - A broker close right after our SUBSCRIBE or status PUBLISH, before it
//!   answered it, is most likely a permission (ACL) refusal (RabbitMQ closes
//!   the connection): lasting from the [`DENIALS_LASTING`]-th time in a row.
//! - A takeover (a broker close within the takeover window after CONNACK,
//!   with nothing of ours unanswered, or MQTT 5 0x8E) cools down for
//!   MQTT_RECONNECT_COOLDOWN, doubling with every takeover in a row up to
//!   MQTT_RECONNECT_COOLDOWN_MAX; from the [`TAKEOVERS_LASTING`]-th in a row
//!   the client ID is judged in use by another client: status `error`,
//!   retried about every MQTT_RECONNECT_COOLDOWN_MAX. Brokers that drop the
//!   old connection without a word (RabbitMQ, rumqttd) make the first kick of
//!   a long-lived connection look like an ordinary loss: when the connection
//!   after it is closed like a takeover, the series counts from that first
//!   close.
//! - Whatever happens, at most [`MAX_ATTEMPTS`] connection attempts start in
//!   any [`ATTEMPT_WINDOW`].

#[cfg(test)]
mod tests;

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
/// Closes before CONNACK in a row that make the failure lasting.
pub const EARLY_CLOSES_LASTING: u32 = 3;
/// Closes right after an unanswered request in a row that make it lasting.
pub const DENIALS_LASTING: u32 = 3;
/// Takeovers in a row after which the client ID is judged in use.
pub const TAKEOVERS_LASTING: u32 = 5;

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

    fn with_delay(self, delay: Duration) -> Decision {
        match self {
            Decision::Retry(_) => Decision::Retry(delay),
            Decision::Lasting(_) => Decision::Lasting(delay),
            Decision::Cooldown(_) => Decision::Cooldown(delay),
        }
    }
}

/// What the failure most likely means, for the words in logs and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The error speaks for itself (network, refusal, TLS, keep-alive…).
    Plain,
    /// The broker closed the socket before any CONNACK; `in_a_row` counts them.
    ClosedBeforeConnAck {
        /// Such closes in a row, this one included.
        in_a_row: u32,
    },
    /// The broker closed the connection right after a request of ours it
    /// never answered: most likely it refuses that topic.
    Denied {
        /// Such closes in a row, this one included.
        in_a_row: u32,
    },
    /// Another client took our client ID.
    Takeover {
        /// Takeovers in a row, this one included.
        in_a_row: u32,
        /// Since the first close of the series.
        over: Duration,
    },
}

/// A decision and the reason behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// When to try again, and in which status to wait.
    pub decision: Decision,
    /// What it most likely means.
    pub cause: Cause,
}

/// Requests of ours that the broker had not answered when it closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unanswered {
    /// The retained `online` publish (QoS 1) had no PUBACK.
    pub status: bool,
    /// The SUBSCRIBE had no SUBACK.
    pub subscribe: bool,
}

impl Unanswered {
    /// True when either is unanswered.
    pub fn any(self) -> bool {
        self.status || self.subscribe
    }
}

/// Retry state of one connection.
#[derive(Debug)]
pub struct Policy {
    backoff: Backoff,
    attempts: VecDeque<Instant>,
    oversize_in_a_row: u32,
    early_closes: u32,
    denials: u32,
    takeovers: u32,
    series_start: Option<Instant>,
    /// When the broker closed a long-lived connection, if the connection
    /// after it has not ended yet: a takeover-like close of that one starts
    /// its series here.
    long_close: Option<Instant>,
    takeover_window: Duration,
    cooldown: Duration,
    cooldown_max: Duration,
    /// 0.0..1.0 draws for jitter (fastrand in the actor, fixed in tests).
    random: fn() -> f64,
}

impl Policy {
    /// The policy for a connection with these settings.
    pub fn new(takeover_window: Duration, cooldown: Duration, cooldown_max: Duration) -> Self {
        Policy {
            backoff: Backoff::for_reconnects(),
            attempts: VecDeque::new(),
            oversize_in_a_row: 0,
            early_closes: 0,
            denials: 0,
            takeovers: 0,
            series_start: None,
            long_close: None,
            takeover_window,
            cooldown,
            cooldown_max: cooldown_max.max(cooldown),
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

    /// A CONNACK arrived.
    pub fn connected(&mut self) {
        self.early_closes = 0;
    }

    /// An attempt failed before CONNACK.
    pub fn failed(&mut self, error: &LinkError, now: Instant) -> Judgement {
        let mut cause = Cause::Plain;
        let decision = match error {
            LinkError::Refused(_) | LinkError::Tls(_) => Decision::Lasting(self.lasting()),
            LinkError::TooLarge { .. } => self.oversize(),
            LinkError::ClosedByBroker(_) => {
                self.early_closes = self.early_closes.saturating_add(1);
                cause = Cause::ClosedBeforeConnAck {
                    in_a_row: self.early_closes,
                };
                if self.early_closes >= EARLY_CLOSES_LASTING {
                    Decision::Lasting(self.lasting())
                } else {
                    Decision::Retry(self.backoff())
                }
            }
            _ => Decision::Retry(self.backoff()),
        };
        self.paced(Judgement { decision, cause }, now)
    }

    /// A connection that got its CONNACK `up_for` ago ended; `unanswered`
    /// tells which of our requests the broker had not answered.
    pub fn lost(
        &mut self,
        error: &LinkError,
        up_for: Duration,
        unanswered: Unanswered,
        now: Instant,
    ) -> Judgement {
        if up_for >= STABLE_AFTER {
            self.backoff.reset();
            self.oversize_in_a_row = 0;
        }
        let closed = matches!(error, LinkError::ClosedByBroker(_));
        let soon = up_for < self.takeover_window;
        let judgement = if *error == LinkError::TakenOver {
            self.takeover(now, soon)
        } else if closed && soon && unanswered.any() {
            self.denied()
        } else if closed && soon {
            self.takeover(now, true)
        } else {
            self.takeovers = 0;
            self.series_start = None;
            self.denials = 0;
            self.long_close = closed.then_some(now);
            let decision = match error {
                LinkError::TooLarge { .. } => self.oversize(),
                LinkError::Refused(_) | LinkError::Tls(_) => Decision::Lasting(self.lasting()),
                _ => Decision::Retry(self.backoff()),
            };
            Judgement {
                decision,
                cause: Cause::Plain,
            }
        };
        self.paced(judgement, now)
    }

    fn denied(&mut self) -> Judgement {
        self.long_close = None;
        self.denials = self.denials.saturating_add(1);
        let decision = if self.denials >= DENIALS_LASTING {
            Decision::Lasting(self.lasting())
        } else {
            Decision::Retry(self.backoff())
        };
        Judgement {
            decision,
            cause: Cause::Denied {
                in_a_row: self.denials,
            },
        }
    }

    /// `soon`: within the takeover window after CONNACK.
    fn takeover(&mut self, now: Instant, soon: bool) -> Judgement {
        self.denials = 0;
        if self.takeovers == 0 {
            // A long-lived connection closed just before this one, itself
            // closed right after its CONNACK, counts as the first kick.
            match self.long_close.take().filter(|_| soon) {
                Some(first) => {
                    self.takeovers = 1;
                    self.series_start = Some(first);
                }
                None => self.series_start = Some(now),
            }
        }
        self.long_close = None;
        self.takeovers = self.takeovers.saturating_add(1);
        let over = now.saturating_duration_since(self.series_start.unwrap_or(now));
        let decision = if self.takeovers >= TAKEOVERS_LASTING {
            Decision::Lasting(self.cooldown_max.mul_f64(0.75 + 0.5 * (self.random)()))
        } else {
            let doubling = 1u32 << (self.takeovers - 1).min(20);
            Decision::Cooldown(
                self.cooldown
                    .saturating_mul(doubling)
                    .min(self.cooldown_max),
            )
        };
        Judgement {
            decision,
            cause: Cause::Takeover {
                in_a_row: self.takeovers,
                over,
            },
        }
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
    fn paced(&self, judgement: Judgement, now: Instant) -> Judgement {
        let earliest = match self.attempts.front() {
            Some(oldest) if self.attempts.len() >= MAX_ATTEMPTS => *oldest + ATTEMPT_WINDOW,
            _ => return judgement,
        };
        let delay = judgement
            .decision
            .delay()
            .max(earliest.saturating_duration_since(now));
        Judgement {
            decision: judgement.decision.with_delay(delay),
            ..judgement
        }
    }
}
