//! `GET /metrics`: the Prometheus text format (OpenMetrics 1.0).
//!
//! Counters come from the core's [`Metrics`](supervisor::Metrics), shared
//! with the tasks that count. Gauges of the present are read at scrape
//! time: states from the fleet snapshot, the inbox queue from the writer,
//! the outbox backlog and whether the database answers from one bounded
//! query each. Each scrape builds its registry afresh (a few allocations),
//! so concurrent scrapes never see each other's half-set gauges.

use crate::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use supervisor::Status;

/// How long a scrape waits for each database query.
const QUERY_BOUND: Duration = Duration::from_secs(1);

const STATUSES: [Status; 6] = [
    Status::Connecting,
    Status::Connected,
    Status::Disconnected,
    Status::Cooldown,
    Status::Error,
    Status::Stopped,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EnabledLabel {
    enabled: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnectionStatusLabel {
    connection: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnectionDirectionLabel {
    connection: String,
    direction: &'static str,
}

/// The metrics, in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"))
)]
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    let (database_up, pending) = match app.pool.get() {
        Some(pool) => {
            let up = matches!(
                tokio::time::timeout(QUERY_BOUND, store::ping(pool)).await,
                Ok(Ok(()))
            );
            let pending = if up {
                match tokio::time::timeout(QUERY_BOUND, store::outbox_pending_count(pool)).await {
                    Ok(Ok(n)) => Some(n),
                    _ => None,
                }
            } else {
                None
            };
            (up, pending)
        }
        None => (false, None),
    };
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry(&app, database_up, pending))
        .is_err()
    {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn registry(app: &AppState, database_up: bool, outbox_pending: Option<i64>) -> Registry {
    let m = &app.metrics;
    let mut r = Registry::with_prefix("mqtt_supervisor");
    r.register(
        "build",
        "The running version",
        Info::new(VersionLabel {
            version: app.version,
        }),
    );

    let fleet = app.fleet.borrow().clone();
    let connections = Family::<StatusLabel, Gauge>::default();
    for status in STATUSES {
        connections
            .get_or_create(&StatusLabel {
                status: status.as_str(),
            })
            .set(0);
    }
    let per_connection = app.settings.metrics_per_connection;
    let connection_status = Family::<ConnectionStatusLabel, Gauge>::default();
    let connection_messages = Family::<ConnectionDirectionLabel, Counter>::default();
    for view in &fleet.connections {
        let status = view.state.borrow().status.as_str();
        connections.get_or_create(&StatusLabel { status }).inc();
        if per_connection {
            let connection = supervisor::untrusted::clean(&view.name);
            connection_status
                .get_or_create(&ConnectionStatusLabel {
                    connection: connection.clone(),
                    status,
                })
                .set(1);
            if let Some(c) = &view.counters {
                for (direction, n) in [("in", c.received()), ("out", c.published())] {
                    connection_messages
                        .get_or_create(&ConnectionDirectionLabel {
                            connection: connection.clone(),
                            direction,
                        })
                        .inc_by(n);
                }
            }
        }
    }
    r.register(
        "connections",
        "Enabled connections by status (invalid rows count as error)",
        connections,
    );
    let rows = Family::<EnabledLabel, Gauge>::default();
    let enabled = i64::try_from(fleet.enabled_rows).unwrap_or(i64::MAX);
    let total = i64::try_from(fleet.total_rows).unwrap_or(i64::MAX);
    rows.get_or_create(&EnabledLabel { enabled: "true" })
        .set(enabled);
    rows.get_or_create(&EnabledLabel { enabled: "false" })
        .set(total.saturating_sub(enabled));
    r.register("rows", "Rows in mqtt_connections as of the last load", rows);
    if per_connection {
        r.register(
            "connection_status",
            "1 for each connection's current status (MQTT_METRICS_PER_CONNECTION)",
            connection_status,
        );
        r.register(
            "connection_messages",
            "Messages received (in) and outbox rows acknowledged (out) per connection (MQTT_METRICS_PER_CONNECTION)",
            connection_messages,
        );
    }

    r.register("connects", "CONNACKs accepted", m.connects.clone());
    r.register(
        "disconnects",
        "Ends of connections by reason: lost, refused (a lasting error), takeover, shutdown (closed by us)",
        m.disconnects.clone(),
    );
    r.register(
        "takeovers",
        "Another client took a connection's client ID (cooldown entered)",
        m.takeovers.clone(),
    );
    r.register(
        "messages",
        "Messages received from brokers (in) and outbox rows acknowledged by brokers (out)",
        m.messages.clone(),
    );
    r.register(
        "inbox_stored",
        "Rows written to mqtt_inbox",
        m.inbox_stored.clone(),
    );
    r.register(
        "inbox_dropped",
        "Received messages not stored: QoS 0 over the queue limit, rows the database refused",
        m.inbox_dropped.clone(),
    );
    r.register(
        "outbox_failed",
        "Outbox rows marked failed",
        m.outbox_failed.clone(),
    );
    r.register_with_unit(
        "reconcile_duration",
        "One reconcile of the monitor: load, validate, apply",
        Unit::Seconds,
        m.reconcile_duration.clone(),
    );

    let held = Gauge::<i64>::default();
    if let Some(owned) = app.owned.get() {
        held.set(i64::try_from(owned.borrow().len()).unwrap_or(i64::MAX));
    }
    r.register(
        "leases_held",
        "Connection leases this replica holds (the connections it owns)",
        held,
    );
    r.register(
        "leases_acquired",
        "Connection leases this replica took",
        m.leases_acquired.clone(),
    );
    r.register(
        "leases_lost",
        "Connection leases this replica lost (not renewed in time)",
        m.leases_lost.clone(),
    );
    r.register(
        "handovers",
        "Connections this replica closed and gave up to another replica",
        m.handovers.clone(),
    );

    let queue = Gauge::<i64>::default();
    let lag = Gauge::<f64, AtomicU64>::default();
    if let Some(inbox) = app.inbox.get() {
        queue.set(i64::try_from(inbox.queued()).unwrap_or(i64::MAX));
        lag.set(inbox.stats().write_lag(chrono::Utc::now()).as_secs_f64());
    }
    r.register(
        "inbox_queue",
        "Received messages waiting for the inbox writer",
        queue,
    );
    r.register_with_unit(
        "inbox_write_lag",
        "Age of the oldest received message not yet stored (0 when none waits)",
        Unit::Seconds,
        lag,
    );
    if let Some(n) = outbox_pending {
        let pending = Gauge::<i64>::default();
        pending.set(n);
        r.register(
            "outbox_pending",
            "Outbox rows neither published nor failed",
            pending,
        );
    }
    let up = Gauge::<i64>::default();
    up.set(i64::from(database_up));
    r.register(
        "database_up",
        "1 when the database answered SELECT 1 within 1 s at this scrape",
        up,
    );
    r
}
