//! `GET /api/v1/mqtt/health/`: the truth about the service, in the shape of
//! the HTTP contract. 200 for `healthy` and `degraded`, 503 for `critical`.

use crate::AppState;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use supervisor::{Fleet, Status};
use utoipa::ToSchema;

/// The health document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HealthReport {
    /// `healthy`, `degraded` or `critical`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// The process.
    pub service: ServiceInfo,
    /// Counts.
    pub connections: Counts,
    /// Per connection, with `?verbose=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Detail>>,
}

/// The process part of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ServiceInfo {
    pub running: bool,
    pub instance_id: String,
    /// This process among the replicas of the instance (`{host}-{pid}`).
    pub replica_id: String,
    /// Enabled connections this replica owns (holds the lease of); the
    /// counts below are of these.
    pub owned: usize,
    pub version: String,
    pub uptime_secs: u64,
    /// `ok` or `unreachable`.
    #[schema(value_type = String)]
    pub database: &'static str,
    /// `ok`, or `failing` while received messages cannot be stored (they
    /// are held and retried; brokers wait for the acknowledgements).
    #[schema(value_type = String)]
    pub inbox: &'static str,
}

/// Connection counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counts {
    /// Rows in the table.
    pub total: usize,
    /// Enabled rows.
    pub enabled: usize,
    /// Enabled and connected.
    pub healthy: usize,
    /// Enabled and not connected (including invalid rows).
    pub unhealthy: usize,
}

/// One connection in the verbose report. Never a password or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Detail {
    pub id: i64,
    pub name: String,
    #[schema(value_type = String)]
    pub status: Status,
    pub detail: String,
    pub client_id: String,
    /// `host:port`; null for an invalid row whose host is not valid.
    pub broker: Option<String>,
    pub connected_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub cooldown_until: Option<DateTime<Utc>>,
    pub reconnects: u64,
    /// The replica that runs it: this one.
    pub owner: String,
}

/// `?verbose=true` (also `1`, `yes`), read leniently: a repeated or
/// unknown parameter, or a malformed query, is never an error, since a
/// health check must answer with the health document.
fn is_verbose(query: Option<&str>) -> bool {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(k, v)| {
        k == "verbose" && matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes")
    })
}

/// Judges the fleet. `healthy`: every enabled connection is connected, the
/// database answers and received messages are being stored. `critical`: the
/// service is not running its connections, or none of the enabled ones is
/// connected. Otherwise `degraded`.
pub fn assess(
    fleet: &Fleet,
    database_ok: bool,
    inbox_ok: bool,
    verbose: bool,
) -> (HealthReport, StatusCode) {
    let states: Vec<_> = fleet
        .connections
        .iter()
        .map(|c| (c, c.state.borrow().clone()))
        .collect();
    let healthy = states
        .iter()
        .filter(|(_, s)| s.status == Status::Connected)
        .count();
    let enabled = fleet.enabled_rows.max(states.len());
    let status = if !fleet.running || (enabled > 0 && healthy == 0) {
        "critical"
    } else if healthy < enabled || !database_ok || !inbox_ok {
        "degraded"
    } else {
        "healthy"
    };
    let details = verbose.then(|| {
        states
            .iter()
            .map(|(c, s)| Detail {
                id: c.id,
                name: c.name.clone(),
                status: s.status,
                detail: s.detail.clone(),
                client_id: c.client_id.clone(),
                broker: c.broker.clone(),
                connected_since: s.connected_since,
                last_error: s.last_error.clone(),
                cooldown_until: s.cooldown_until,
                reconnects: s.reconnects,
                owner: String::new(),
            })
            .collect()
    });
    let code = if status == "critical" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let report = HealthReport {
        status,
        service: ServiceInfo {
            running: fleet.running,
            instance_id: String::new(),
            replica_id: String::new(),
            owned: enabled,
            version: String::new(),
            uptime_secs: 0,
            database: if database_ok { "ok" } else { "unreachable" },
            inbox: if inbox_ok { "ok" } else { "failing" },
        },
        connections: Counts {
            total: fleet.total_rows.max(enabled),
            enabled,
            healthy,
            unhealthy: enabled - healthy,
        },
        details,
    };
    (report, code)
}

pub(crate) async fn handler(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let verbose = is_verbose(query.as_deref());
    let database_ok = match app.pool.get() {
        Some(pool) => matches!(
            tokio::time::timeout(Duration::from_secs(1), store::ping(pool)).await,
            Ok(Ok(()))
        ),
        None => false,
    };
    let fleet = app.fleet.borrow().clone();
    let inbox_ok = app.inbox.get().is_none_or(|inbox| {
        !inbox
            .stats()
            .failing
            .load(std::sync::atomic::Ordering::Relaxed)
    });
    let (mut report, code) = assess(&fleet, database_ok, inbox_ok, verbose);
    report.service.instance_id = app.instance_id.clone();
    report.service.replica_id = app.replica_id.clone();
    for detail in report.details.iter_mut().flatten() {
        detail.owner = app.replica_id.clone();
    }
    report.service.version = app.version.to_owned();
    report.service.uptime_secs = app.started.elapsed().as_secs();
    (code, [(header::CACHE_CONTROL, "no-store")], Json(report)).into_response()
}

#[cfg(test)]
mod tests;
