//! The HTTP side of mqtt-supervisor, as the HTTP contract defines it:
//!
//! - `/api/v1/mqtt/health/` (with and without the trailing slash);
//! - `/metrics` in the Prometheus text format ([`metrics`]);
//! - the REST API under `/api/v1/mqtt/` ([`api`]) and its OpenAPI 3
//!   document at `/api/v1/openapi.json`, generated from the handlers;
//! - the monitor page at `/mqtt/monitor/`, embedded in the binary.
//!
//! Handlers read the fleet snapshot and each connection's `watch` receiver;
//! they never wait on an actor. Every query is the store crate's, bounded
//! so that a hung database makes a request fail, not hang.

pub mod api;
mod error;
mod health;
mod metrics;
mod monitor_page;

pub use error::{ApiError, ErrorBody};
pub use health::{HealthReport, assess};

use axum::Router;
use chrono::{DateTime, Utc};
use settings::Settings;
use sqlx::PgPool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use supervisor::monitor::MonitorControl;
use supervisor::{FleetWatch, Metrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// Connections as the monitor last published them.
    pub fleet: FleetWatch,
    /// The pool, once the database was reached at start.
    pub pool: Arc<OnceLock<PgPool>>,
    /// When the process started.
    pub started: Instant,
    /// MQTT_INSTANCE_ID.
    pub instance_id: String,
    /// Version of the service.
    pub version: &'static str,
    /// The inbox writer's queue, once it runs (its counters say whether
    /// received messages are being stored).
    pub inbox: Arc<OnceLock<supervisor::inbox::Inbox>>,
    /// Effective settings: the row validator's defaults, the API token,
    /// per-connection metrics.
    pub settings: Arc<Settings>,
    /// The service's counters.
    pub metrics: Arc<Metrics>,
    /// Where reconnect and disconnect go, once the monitor runs.
    pub control: Arc<OnceLock<MonitorControl>>,
    /// The rows `GET connections` read last, and when: shown with live
    /// states while the database is unreachable.
    pub last_rows: LastRows,
    /// This process among the instance's replicas.
    pub replica_id: String,
    /// The connections this replica owns (the lease keeper's), once it runs.
    pub owned: Arc<OnceLock<tokio::sync::watch::Receiver<supervisor::ownership::Owned>>>,
}

/// The last rows read for the API, and when.
pub type LastRows = Arc<Mutex<Option<(DateTime<Utc>, Vec<store::ListedConnection>)>>>;

/// Every route: health, metrics, the API with its OpenAPI document, the
/// monitor page. Each request gets a debug-level log line (target
/// `tower_http`).
pub fn router(state: AppState) -> Router {
    let (api_routes, openapi) = api::routes().split_for_parts();
    Router::new()
        .merge(api_routes)
        .merge(monitor_page::routes())
        .layer(axum::middleware::from_fn(error::bounded))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(axum::Extension(Arc::new(openapi)))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::DEBUG),
                )
                .on_request(tower_http::trace::DefaultOnRequest::new().level(tracing::Level::DEBUG))
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        )
}

/// Serves `router` on `listener` until `token` is cancelled; in-flight
/// requests finish first.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    token: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
}
