//! The HTTP API of mqtt-supervisor: `/api/v1/mqtt/health/` (with and without
//! the trailing slash), as the HTTP contract defines it.
//!
//! Handlers read the fleet snapshot and each connection's `watch` receiver;
//! they never wait on an actor. The database check is a `SELECT 1` bounded
//! by one second, so a hung database makes health say `degraded`, not hang.

mod health;

pub use health::{HealthReport, assess};

use axum::Router;
use axum::routing::get;
use sqlx::PgPool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use supervisor::FleetWatch;
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
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/mqtt/health/", get(health::handler))
        .route("/api/v1/mqtt/health", get(health::handler))
        .with_state(state)
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
