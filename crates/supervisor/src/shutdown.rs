//! The one deadline of a shutdown.
//!
//! It is taken when the stop is asked for (the signal, or whatever cancels
//! the root token) and bounds every await on the way out, database queries
//! included: a slow or black-holed Postgres or a broker that never closes
//! cannot stretch the shutdown past MQTT_SHUTDOWN_TIMEOUT.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The root token plus the instant the stop began; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
    began: Arc<OnceLock<Instant>>,
    timeout: Duration,
}

impl Shutdown {
    /// A shutdown bounded by `timeout` from the moment it begins.
    pub fn new(timeout: Duration) -> Self {
        Shutdown {
            token: CancellationToken::new(),
            began: Arc::new(OnceLock::new()),
            timeout,
        }
    }

    /// The root token: cancelled when the shutdown begins.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Begins the shutdown now (the first call sets the instant).
    pub fn begin(&self) {
        self.began.get_or_init(Instant::now);
        self.token.cancel();
    }

    /// Begins the shutdown as of `at` (when the signal arrived).
    pub fn begin_at(&self, at: Instant) {
        self.began.get_or_init(|| at);
        self.token.cancel();
    }

    /// Whether the shutdown has begun.
    pub fn has_begun(&self) -> bool {
        self.token.is_cancelled()
    }

    /// When the shutdown began; if the token was cancelled directly, the
    /// first call to this (or [`Shutdown::deadline`]) fixes the instant.
    pub fn began(&self) -> Instant {
        *self.began.get_or_init(Instant::now)
    }

    /// The instant by which everything must be done.
    pub fn deadline(&self) -> Instant {
        self.began() + self.timeout
    }

    /// The deadline minus `reserve` (for work that must come after, such as
    /// writing the final states), but never before the shutdown began.
    pub fn deadline_less(&self, reserve: Duration) -> Instant {
        let deadline = self.deadline();
        deadline
            .checked_sub(reserve)
            .unwrap_or(deadline)
            .max(self.began())
    }

    /// The configured bound.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `fut` until the deadline; `None` if it was not done by then.
    pub async fn bounded<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::time::timeout_at(self.deadline(), fut).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_counts_from_the_beginning() {
        let s = Shutdown::new(Duration::from_secs(5));
        let signal = Instant::now();
        tokio::time::advance(Duration::from_secs(2)).await;
        s.begin_at(signal);
        assert!(s.token().is_cancelled());
        assert_eq!(s.deadline(), signal + Duration::from_secs(5));
        let out = s.bounded(tokio::time::sleep(Duration::from_secs(10))).await;
        assert!(out.is_none());
        assert_eq!(Instant::now(), signal + Duration::from_secs(5));
        assert_eq!(
            s.deadline_less(Duration::from_millis(500)),
            signal + Duration::from_millis(4_500)
        );
    }
}
