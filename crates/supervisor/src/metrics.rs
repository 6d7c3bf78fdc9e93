//! What the service counts for `/metrics`: events the actors, the monitor
//! and the message tasks see as they happen. Gauges of the present (states,
//! queue lengths, the database) are read at scrape time by the HTTP crate,
//! from the fleet snapshot and the database, so they are never stale.
//!
//! Labels stay low-cardinality: no per-tenant label here. Per-connection
//! counts live in each connection's [`ConnectionCounters`], which the API
//! shows and `/metrics` exports only when MQTT_METRICS_PER_CONNECTION is on.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection ended (or an attempt was refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The connection was lost (network, broker restart, keep-alive).
    Lost,
    /// The broker refused us, or the failure is judged lasting (`error`).
    Refused,
    /// Another client took our client ID (`cooldown`).
    Takeover,
    /// We closed it: service stop, row disabled or changed, API disconnect.
    Shutdown,
}

impl DisconnectReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Lost => "lost",
            DisconnectReason::Refused => "refused",
            DisconnectReason::Takeover => "takeover",
            DisconnectReason::Shutdown => "shutdown",
        }
    }
}

/// Labels of `disconnects_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `lost`, `refused`, `takeover` or `shutdown`.
    pub reason: &'static str,
}

/// Labels of `messages_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `in` (received from brokers) or `out` (outbox rows acknowledged).
    pub direction: &'static str,
}

/// The service's event counters; shared by every task, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// CONNACKs accepted.
    pub connects: Counter,
    /// Ends of connections and refused attempts, by reason.
    pub disconnects: Family<ReasonLabel, Counter>,
    /// Takeovers of our client ID by another client.
    pub takeovers: Counter,
    /// Messages received (`in`) and outbox rows acknowledged (`out`).
    pub messages: Family<DirectionLabel, Counter>,
    /// Rows written to `mqtt_inbox`.
    pub inbox_stored: Counter,
    /// Received messages not stored (QoS 0 over the queue limit, rows the
    /// database refused).
    pub inbox_dropped: Counter,
    /// Outbox rows marked failed.
    pub outbox_failed: Counter,
    /// One reconcile of the monitor (load, validate, apply), in seconds.
    pub reconcile_duration: Histogram,
    /// Connection leases this replica took.
    pub leases_acquired: Counter,
    /// Connection leases this replica lost (not renewed in time).
    pub leases_lost: Counter,
    /// Connection leases this replica gave up to another after closing.
    pub handovers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            connects: Counter::default(),
            disconnects: Family::default(),
            takeovers: Counter::default(),
            messages: Family::default(),
            inbox_stored: Counter::default(),
            inbox_dropped: Counter::default(),
            outbox_failed: Counter::default(),
            // 1 ms to about 24 s.
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.5, 12)),
            leases_acquired: Counter::default(),
            leases_lost: Counter::default(),
            handovers: Counter::default(),
        };
        // Every label value exists from the start, at zero, so that
        // `rate()` and alerts see the series before the first event.
        for reason in [
            DisconnectReason::Lost,
            DisconnectReason::Refused,
            DisconnectReason::Takeover,
            DisconnectReason::Shutdown,
        ] {
            metrics.disconnect(reason, 0);
        }
        for direction in ["in", "out"] {
            metrics
                .messages
                .get_or_create(&DirectionLabel { direction })
                .inc_by(0);
        }
        metrics
    }
}

impl Metrics {
    /// Counts `n` disconnects for `reason` (a takeover is also a takeover).
    pub fn disconnect(&self, reason: DisconnectReason, n: u64) {
        self.disconnects
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc_by(n);
        if reason == DisconnectReason::Takeover {
            self.takeovers.inc_by(n);
        }
    }

    /// Counts messages received from brokers.
    pub fn received(&self, n: u64) {
        self.messages
            .get_or_create(&DirectionLabel { direction: "in" })
            .inc_by(n);
    }

    /// Counts outbox rows the brokers acknowledged.
    pub fn published(&self, n: u64) {
        self.messages
            .get_or_create(&DirectionLabel { direction: "out" })
            .inc_by(n);
    }
}

/// One connection's message counts, kept across restarts of its actor
/// (the monitor hands them to the replacement) and shown by the API.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    received: AtomicU64,
    published: AtomicU64,
}

impl ConnectionCounters {
    /// A new pair at zero, to share.
    pub fn new() -> Arc<ConnectionCounters> {
        Arc::new(ConnectionCounters::default())
    }

    /// Messages received from the broker.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Outbox rows the broker acknowledged.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    pub(crate) fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_published(&self, n: u64) {
        self.published.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_takeover_is_counted_as_a_disconnect_and_a_takeover() {
        let m = Metrics::default();
        m.disconnect(DisconnectReason::Takeover, 1);
        m.disconnect(DisconnectReason::Lost, 2);
        let get = |r: &'static str| {
            m.disconnects
                .get_or_create(&ReasonLabel { reason: r })
                .get()
        };
        assert_eq!((get("takeover"), get("lost"), get("refused")), (1, 2, 0));
        assert_eq!(m.takeovers.get(), 1);
    }

    #[test]
    fn connection_counters_add_up() {
        let c = ConnectionCounters::new();
        c.add_received(3);
        c.add_published(2);
        c.add_received(1);
        assert_eq!((c.received(), c.published()), (4, 2));
    }
}
