//! `/api/v1/mqtt/connections`: list, read, create, change and delete rows.
//! Writes are checked by the service's own validator
//! ([`supervisor::validate_candidate`]) before they reach the table, so the
//! API can never write a row the service would refuse; the running service
//! applies them at once (NOTIFY).

use super::auth::Authorized;
use super::bodies::{ChangeBody, NewConnectionBody, apply};
use super::extract::{ApiJson, ApiPath};
use super::views::{ConnectionConfig, ConnectionDetail, ConnectionList, ConnectionSummary};
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::PoisonError;
use store::{ConnectionRow, ListedConnection};
use supervisor::ConnectionView;

/// How long the list waits for the database before it shows the rows of
/// its last read (the monitor page polls every 2 s).
const LIST_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// Events shown with one connection.
const EVENTS_SHOWN: i64 = 50;

/// Every connection with its live state and counters.
#[utoipa::path(
    get,
    path = "/api/v1/mqtt/connections",
    tag = "connections",
    responses(
        (status = 200, body = ConnectionList),
        (status = 503, description = "database unreachable and never read yet", body = ErrorBody),
    )
)]
pub(super) async fn list(State(app): State<AppState>) -> Result<Json<ConnectionList>, ApiError> {
    let pool = pool(&app)?;
    // While the database is down the live states are still known: the
    // rows of the last read, with the states of now. 503 only before any
    // read succeeded.
    let read = tokio::time::timeout(LIST_BOUND, store::list_connections(pool)).await;
    let (rows, rows_as_of) = match read.unwrap_or_else(|_| Err(store::StoreError::TimedOut)) {
        Ok(rows) => {
            let now = Utc::now();
            *app.last_rows.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((now, rows.clone()));
            (rows, None)
        }
        Err(e) => {
            let last = app
                .last_rows
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            match last {
                Some((at, rows)) => (rows, Some(at)),
                None => return Err(e.into()),
            }
        }
    };
    let views = live_views(&app);
    let connections = rows
        .iter()
        .map(|row| summary(row, views.get(&row.id), &app))
        .collect();
    Ok(Json(ConnectionList {
        now: Utc::now(),
        instance_id: app.instance_id.clone(),
        database: if rows_as_of.is_some() {
            "unreachable"
        } else {
            "ok"
        },
        rows_as_of,
        connections,
    }))
}

/// One connection: state, configuration (no secrets) and its last 50 events.
#[utoipa::path(
    get,
    path = "/api/v1/mqtt/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses(
        (status = 200, body = ConnectionDetail),
        (status = 404, body = ErrorBody),
        (status = 503, description = "database unreachable", body = ErrorBody),
    )
)]
pub(super) async fn detail(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ConnectionDetail>, ApiError> {
    Ok(Json(read_detail(&app, &name).await?))
}

/// Adds a connection; the running service connects it at once.
#[utoipa::path(
    post,
    path = "/api/v1/mqtt/connections",
    tag = "connections",
    request_body = NewConnectionBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = ConnectionDetail),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "MQTT_API_TOKEN is not set", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "the row is invalid", body = ErrorBody),
        (status = 503, description = "database unreachable", body = ErrorBody),
    )
)]
pub(super) async fn create(
    _auth: Authorized,
    State(app): State<AppState>,
    ApiJson(body): ApiJson<NewConnectionBody>,
) -> Result<(StatusCode, Json<ConnectionDetail>), ApiError> {
    let pool = pool(&app)?;
    let now = Utc::now();
    let row = ConnectionRow {
        id: 0,
        name: body.name,
        is_enabled: body.enabled.unwrap_or(true),
        broker_host: body.broker_host,
        broker_port: body.broker_port.unwrap_or(1883),
        protocol: body.protocol.unwrap_or_else(|| "3.1.1".to_owned()),
        use_tls: body.use_tls.unwrap_or(false),
        ca_cert_pem: body.ca_cert_pem,
        username: body.username,
        password: body.password,
        keep_alive_secs: body.keep_alive_secs,
        clean_session: body.clean_session,
        topic_prefix: body.topic_prefix,
        subscriptions: body.subscriptions,
        store_inbound: body.store_inbound.unwrap_or(true),
        hmac_secret: body.hmac_secret,
        verify_inbound_hmac: body.verify_inbound_hmac.unwrap_or(false),
        created_at: now,
        updated_at: now,
    };
    let existing = store::load_connections(pool).await?;
    if existing.iter().any(|r| r.name == row.name) {
        return Err(store::StoreError::Exists(row.name).into());
    }
    validate(&row, &existing, &app)?;
    store::insert_connection(pool, &row).await?;
    tracing::info!(connection = %supervisor::untrusted::clean(&row.name), "Connection added through the API.");
    Ok((
        StatusCode::CREATED,
        Json(read_detail(&app, &row.name).await?),
    ))
}

/// Changes a connection; the running service reconnects it with the new
/// configuration at once (a change ends a hold).
#[utoipa::path(
    patch,
    path = "/api/v1/mqtt/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    request_body = ChangeBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConnectionDetail),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "MQTT_API_TOKEN is not set", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the new name is taken", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "the changed row would be invalid", body = ErrorBody),
        (status = 503, description = "database unreachable", body = ErrorBody),
    )
)]
pub(super) async fn change(
    _auth: Authorized,
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ChangeBody>,
) -> Result<Json<ConnectionDetail>, ApiError> {
    let pool = pool(&app)?;
    let mut row = store::connection_by_name(pool, &name)
        .await?
        .ok_or_else(|| store::StoreError::NotFound(name.clone()))?;
    apply(&mut row, body);
    let existing = store::load_connections(pool).await?;
    if row.name != name && existing.iter().any(|r| r.name == row.name) {
        return Err(store::StoreError::Exists(row.name).into());
    }
    validate(&row, &existing, &app)?;
    if !store::update_connection(pool, &row).await? {
        return Err(store::StoreError::NotFound(name).into());
    }
    tracing::info!(connection = %supervisor::untrusted::clean(&row.name), "Connection changed through the API.");
    Ok(Json(read_detail(&app, &row.name).await?))
}

/// Deletes a connection; the running service says `offline` and
/// disconnects it. Its history and messages stay until pruned.
#[utoipa::path(
    delete,
    path = "/api/v1/mqtt/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "MQTT_API_TOKEN is not set", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, description = "database unreachable", body = ErrorBody),
    )
)]
pub(super) async fn remove(
    _auth: Authorized,
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    store::remove_connection(pool(&app)?, &name).await?;
    tracing::info!(connection = %supervisor::untrusted::clean(&name), "Connection deleted through the API.");
    Ok(StatusCode::NO_CONTENT)
}

/// The service's validator: 422 with its reason.
fn validate(
    row: &ConnectionRow,
    existing: &[ConnectionRow],
    app: &AppState,
) -> Result<(), ApiError> {
    supervisor::validate_candidate(row, existing, &app.settings)
        .map(drop)
        .map_err(|e| {
            ApiError::unprocessable(format!(
                "connection `{}`: {}",
                supervisor::untrusted::clean(&row.name),
                e.reason
            ))
        })
}

pub(super) fn pool(app: &AppState) -> Result<&PgPool, ApiError> {
    app.pool
        .get()
        .ok_or_else(|| ApiError::unavailable("the service has not reached its database yet"))
}

/// The fleet's views by row id.
fn live_views(app: &AppState) -> HashMap<i64, ConnectionView> {
    let fleet = app.fleet.borrow().clone();
    fleet
        .connections
        .iter()
        .map(|v| (v.id, v.clone()))
        .collect()
}

/// A row at a glance: the live state when this process runs it, else what
/// the state table says.
fn summary(
    row: &ListedConnection,
    view: Option<&ConnectionView>,
    app: &AppState,
) -> ConnectionSummary {
    let broker = supervisor::spec::broker_for_display(&row.broker_host, row.broker_port);
    let mut s = ConnectionSummary {
        id: row.id,
        name: row.name.clone(),
        enabled: row.is_enabled,
        status: row.status.clone().unwrap_or_else(|| "stopped".to_owned()),
        detail: row
            .detail
            .clone()
            .unwrap_or_else(|| "not started yet".to_owned()),
        client_id: row
            .client_id
            .clone()
            .unwrap_or_else(|| supervisor::spec::client_id(&row.name, &app.instance_id)),
        broker,
        protocol: row.protocol.clone(),
        tls: row.use_tls,
        connected_since: row.connected_since,
        last_error: row.last_error.clone(),
        cooldown_until: row.cooldown_until,
        reconnects: row
            .reconnects
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        messages_in: 0,
        messages_out: 0,
        held: false,
        owner: row.owner.clone(),
    };
    match view {
        Some(view) => {
            let state = view.state.borrow().clone();
            s.status = state.status.as_str().to_owned();
            s.detail = state.detail;
            s.client_id = view.client_id.clone();
            s.broker = view.broker.clone();
            s.connected_since = state.connected_since;
            s.last_error = state.last_error;
            s.cooldown_until = state.cooldown_until;
            s.reconnects = state.reconnects;
            s.held = view.held;
            s.owner = Some(app.replica_id.clone());
            if let Some(c) = &view.counters {
                s.messages_in = c.received();
                s.messages_out = c.published();
            }
        }
        None if !row.is_enabled => {
            s.status = "stopped".to_owned();
            s.detail = "disabled".to_owned();
            s.connected_since = None;
            s.cooldown_until = None;
        }
        None => {}
    }
    s
}

/// The detail answer of the row named `name`.
async fn read_detail(app: &AppState, name: &str) -> Result<ConnectionDetail, ApiError> {
    let pool = pool(app)?;
    let row = store::connection_by_name(pool, name)
        .await?
        .ok_or_else(|| store::StoreError::NotFound(name.to_owned()))?;
    let listed = store::list_connections(pool)
        .await?
        .into_iter()
        .find(|r| r.id == row.id)
        .ok_or_else(|| store::StoreError::NotFound(name.to_owned()))?;
    let views = live_views(app);
    let events = store::recent_events(pool, Some(row.id), EVENTS_SHOWN).await?;
    let invalid = supervisor::ConnectionSpec::from_row(&row, &app.settings)
        .err()
        .map(|e| e.reason.to_string());
    Ok(ConnectionDetail {
        connection: summary(&listed, views.get(&row.id), app),
        config: ConnectionConfig {
            broker_host: supervisor::spec::host_for_display(&row.broker_host),
            broker_port: row.broker_port,
            protocol: row.protocol.clone(),
            use_tls: row.use_tls,
            has_ca_cert: row.ca_cert_pem.is_some(),
            username: row.username.clone(),
            has_password: row.password.is_some(),
            keep_alive_secs: row.keep_alive_secs,
            clean_session: row.clean_session,
            topic_prefix: row.topic_prefix.clone(),
            subscriptions: row.subscriptions.clone(),
            store_inbound: row.store_inbound,
            has_hmac_secret: row.hmac_secret.is_some(),
            verify_inbound_hmac: row.verify_inbound_hmac,
            created_at: row.created_at,
            updated_at: row.updated_at,
        },
        invalid,
        events: events.into_iter().map(Into::into).collect(),
    })
}
