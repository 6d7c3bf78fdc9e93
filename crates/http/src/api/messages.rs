//! `GET /api/v1/mqtt/messages` (recent messages of `mqtt_inbox` and
//! `mqtt_outbox`) and `GET /api/v1/mqtt/events` (recent state events).

use super::connections::pool;
use super::extract::ApiQuery;
use super::views::{EventList, MessageList, PAYLOAD_SHOWN};
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// The most messages or events one request returns.
const MAX_LIMIT: i64 = 500;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received from a broker (`mqtt_inbox`).
    In,
    /// To send to a broker (`mqtt_outbox`).
    Out,
}

/// Filters of `GET messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessageFilter {
    /// One connection's messages (its name).
    pub connection: Option<String>,
    /// An MQTT topic filter (`+`, `#`) or a topic.
    #[param(min_length = 1)]
    pub topic: Option<String>,
    /// `in` or `out`; both when left out.
    #[param(inline)]
    pub direction: Option<Direction>,
    /// How many, newest first (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Filters of `GET events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// One connection's events (its name).
    pub connection: Option<String>,
    /// How many, newest first (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Recent messages both ways, newest first; payloads as text or hex, at
/// most 4 KiB each.
#[utoipa::path(
    get,
    path = "/api/v1/mqtt/messages",
    tag = "messages",
    params(MessageFilter),
    responses(
        (status = 200, body = MessageList),
        (status = 400, description = "malformed parameters", body = ErrorBody),
        (status = 404, description = "no such connection", body = ErrorBody),
        (status = 422, description = "not a valid topic filter or limit", body = ErrorBody),
        (status = 503, description = "database unreachable", body = ErrorBody),
    )
)]
pub(super) async fn messages(
    State(app): State<AppState>,
    ApiQuery(filter): ApiQuery<MessageFilter>,
) -> Result<Json<MessageList>, ApiError> {
    let limit = limit(filter.limit, 50)?;
    let topic_regex = match &filter.topic {
        None => None,
        Some(topic) => {
            supervisor::topic::validate_filter(topic).map_err(|e| {
                ApiError::unprocessable(format!("`topic` is not a valid MQTT topic filter: {e}"))
            })?;
            Some(store::topic_filter_regex(topic))
        }
    };
    let pool = pool(&app)?;
    let connection_id = connection_id(pool, filter.connection.as_deref()).await?;
    let query = store::MessageQuery {
        connection_id,
        topic_regex,
        inbound: filter.direction != Some(Direction::Out),
        outbound: filter.direction != Some(Direction::In),
        limit,
        payload_bytes: PAYLOAD_SHOWN,
    };
    let rows = store::recent_messages(pool, &query).await?;
    Ok(Json(MessageList {
        messages: rows.into_iter().map(Into::into).collect(),
    }))
}

/// Recent state events of every connection (or one), newest first.
#[utoipa::path(
    get,
    path = "/api/v1/mqtt/events",
    tag = "messages",
    params(EventFilter),
    responses(
        (status = 200, body = EventList),
        (status = 400, description = "malformed parameters", body = ErrorBody),
        (status = 404, description = "no such connection", body = ErrorBody),
        (status = 422, description = "limit out of range", body = ErrorBody),
        (status = 503, description = "database unreachable", body = ErrorBody),
    )
)]
pub(super) async fn events(
    State(app): State<AppState>,
    ApiQuery(filter): ApiQuery<EventFilter>,
) -> Result<Json<EventList>, ApiError> {
    let limit = limit(filter.limit, 100)?;
    let pool = pool(&app)?;
    let connection_id = connection_id(pool, filter.connection.as_deref()).await?;
    let events = store::recent_events(pool, connection_id, limit).await?;
    Ok(Json(EventList {
        events: events.into_iter().map(Into::into).collect(),
    }))
}

fn limit(given: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match given {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::unprocessable(format!(
            "`limit` must be from 1 to {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// The id of the connection named `name`; 404 when there is none.
async fn connection_id(pool: &sqlx::PgPool, name: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(name) = name else {
        return Ok(None);
    };
    match store::connection_by_name(pool, name).await? {
        Some(row) => Ok(Some(row.id)),
        None => Err(store::StoreError::NotFound(name.to_owned()).into()),
    }
}

/// The replicas of this instance: heartbeats and shares.
#[utoipa::path(
    get,
    path = "/api/v1/mqtt/replicas",
    tag = "health",
    responses(
        (status = 200, body = super::views::ReplicaList),
        (status = 503, description = "database unreachable", body = ErrorBody),
    )
)]
pub(super) async fn replicas(
    State(app): State<AppState>,
) -> Result<Json<super::views::ReplicaList>, ApiError> {
    let scope = settings::sanitize_client_id_part(&app.instance_id);
    let rows = store::list_replicas(pool(&app)?, &scope).await?;
    Ok(Json(super::views::ReplicaList {
        replica_id: app.replica_id.clone(),
        replicas: rows.into_iter().map(Into::into).collect(),
    }))
}
