//! `POST /api/v1/mqtt/connections/{name}/reconnect` and `…/disconnect`:
//! commands to the monitor, which owns the actors.

use super::auth::Authorized;
use super::connections::pool;
use super::extract::ApiPath;
use super::views::Accepted;
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use supervisor::monitor::{Command, CommandError};

/// Closes the connection (`offline` first) and connects again at once,
/// ending a cooldown, a backoff wait or a hold.
#[utoipa::path(
    post,
    path = "/api/v1/mqtt/connections/{name}/reconnect",
    tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    security(("bearer" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 401, body = ErrorBody),
        (status = 403, description = "MQTT_API_TOKEN is not set", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "disabled or invalid: not run by the service", body = ErrorBody),
        (status = 503, description = "database unreachable or service busy", body = ErrorBody),
    )
)]
pub(super) async fn reconnect(
    _auth: Authorized,
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    command(&app, &name, Command::Reconnect).await
}

/// Closes the connection (`offline` first) and holds it down until a
/// reconnect, a change of its row, or a restart of the service.
#[utoipa::path(
    post,
    path = "/api/v1/mqtt/connections/{name}/disconnect",
    tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    security(("bearer" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 401, body = ErrorBody),
        (status = 403, description = "MQTT_API_TOKEN is not set", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "disabled or invalid: not run by the service", body = ErrorBody),
        (status = 503, description = "database unreachable or service busy", body = ErrorBody),
    )
)]
pub(super) async fn disconnect(
    _auth: Authorized,
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    command(&app, &name, Command::Disconnect).await
}

async fn command(
    app: &AppState,
    name: &str,
    command: Command,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if store::connection_by_name(pool(app)?, name).await?.is_none() {
        return Err(store::StoreError::NotFound(name.to_owned()).into());
    }
    let control = app
        .control
        .get()
        .ok_or_else(|| ApiError::unavailable("the service is still starting; try again"))?;
    match control.send(name, command).await {
        Ok(message) => Ok((StatusCode::ACCEPTED, Json(Accepted { message }))),
        Err(e @ CommandError::NotRunning(_)) => Err(ApiError::conflict(e.to_string())),
        Err(e @ CommandError::Unavailable) => Err(ApiError::unavailable(e.to_string())),
    }
}
