//! Until when this replica may connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;
use tokio::time::Instant;

/// Shared by the keeper (which extends it) and the actors (which check it
/// before every connect). Cheap to clone.
#[derive(Clone, Debug)]
pub struct LeaseGuard {
    /// The reference instant the deadline counts from.
    origin: Instant,
    /// Milliseconds after `origin` until which connecting is allowed;
    /// `u64::MAX` for a guard that never expires.
    until_ms: Arc<AtomicU64>,
    /// True once revoked (until extended again): connected actors close.
    revoked: Arc<watch::Sender<bool>>,
}

impl LeaseGuard {
    /// A guard that never expires (a process not coordinated by leases:
    /// tests of the actor and the monitor).
    pub fn always() -> Self {
        LeaseGuard {
            origin: Instant::now(),
            until_ms: Arc::new(AtomicU64::new(u64::MAX)),
            revoked: Arc::new(watch::channel(false).0),
        }
    }

    /// A guard that allows nothing until the first renewal.
    pub fn closed() -> Self {
        LeaseGuard {
            origin: Instant::now(),
            until_ms: Arc::new(AtomicU64::new(0)),
            revoked: Arc::new(watch::channel(false).0),
        }
    }

    /// Connecting is allowed until `deadline`.
    pub fn extend_to(&self, deadline: Instant) {
        let ms = deadline.saturating_duration_since(self.origin).as_millis();
        self.until_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX - 1), Ordering::Release);
        self.revoked
            .send_if_modified(|r| std::mem::replace(r, false));
    }

    /// Connecting is no longer allowed, and connected actors close now.
    pub fn revoke(&self) {
        self.until_ms.store(0, Ordering::Release);
        self.revoked.send_replace(true);
    }

    /// Resolves when the guard is revoked (at once if it is).
    pub async fn revoked(&self) {
        let mut rx = self.revoked.subscribe();
        // The sender lives as long as this guard: no error.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        match self.until_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(self.origin + std::time::Duration::from_millis(ms)),
        }
    }

    /// May this replica connect now?
    pub fn valid(&self) -> bool {
        self.deadline().is_none_or(|d| Instant::now() < d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_guard_expires_at_its_deadline_unless_extended() {
        assert!(LeaseGuard::always().valid());
        let g = LeaseGuard::closed();
        assert!(!g.valid());
        g.extend_to(Instant::now() + Duration::from_secs(5));
        assert!(g.valid());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!g.valid(), "a paused process wakes up past its deadline");
        g.extend_to(Instant::now() + Duration::from_secs(5));
        assert!(g.valid());
        g.revoke();
        assert!(!g.valid());
    }
}
