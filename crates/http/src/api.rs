//! The REST API under `/api/v1/mqtt/`, and its OpenAPI 3 document.
//!
//! Reads need nothing; writes (create, change, delete, reconnect,
//! disconnect) need `Authorization: Bearer <MQTT_API_TOKEN>`: without a
//! configured token they answer 403 and say why, with a wrong or missing
//! one 401. Rows are checked by the core's validator, the one the service
//! and the CLI use. Passwords and HMAC secrets are write-only.
//!
//! Every route is registered through [`utoipa_axum`], together with its
//! documentation, so the document lists exactly the routes served.

mod actions;
mod auth;
mod bodies;
mod connections;
mod extract;
mod messages;
mod views;

pub use views::{
    Accepted, ConnectionConfig, ConnectionDetail, ConnectionList, ConnectionSummary, EventList,
    EventView, MessageList, MessageView,
};

use crate::AppState;
use crate::error::ErrorBody;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mqtt-supervisor",
        description = "Health, metrics and administration of the MQTT connections that \
            mqtt-supervisor holds for every tenant. Writes need a bearer token \
            (MQTT_API_TOKEN).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "Is the service doing its job?"),
        (name = "connections", description = "The tenants' connections"),
        (name = "messages", description = "Recent messages and state events"),
    )
)]
struct ApiDoc;

/// Declares the bearer scheme the write endpoints name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API's routes with their documentation (health and metrics
/// included); split with `split_for_parts`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health_slash))
        .routes(routes!(health_bare))
        .routes(routes!(crate::metrics::metrics))
        .routes(routes!(connections::list, connections::create))
        .routes(routes!(
            connections::detail,
            connections::change,
            connections::remove
        ))
        .routes(routes!(actions::reconnect))
        .routes(routes!(actions::disconnect))
        .routes(routes!(messages::messages))
        .routes(routes!(messages::events))
        .routes(routes!(messages::replicas))
        .routes(routes!(openapi_document))
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
async fn openapi_document(
    axum::Extension(doc): axum::Extension<std::sync::Arc<utoipa::openapi::OpenApi>>,
) -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(doc.as_ref().clone())
}

/// The health document (see the HTTP contract).
#[utoipa::path(
    get,
    path = "/api/v1/mqtt/health/",
    tag = "health",
    params(("verbose" = Option<bool>, Query, description = "Add `details`, one entry per connection")),
    responses(
        (status = 200, description = "healthy or degraded", body = crate::health::HealthReport),
        (status = 503, description = "critical", body = crate::health::HealthReport),
    )
)]
async fn health_slash(
    state: axum::extract::State<AppState>,
    query: axum::extract::RawQuery,
) -> axum::response::Response {
    crate::health::handler(state, query).await
}

/// The health document, without the trailing slash.
#[utoipa::path(
    get,
    path = "/api/v1/mqtt/health",
    tag = "health",
    params(("verbose" = Option<bool>, Query, description = "Add `details`, one entry per connection")),
    responses(
        (status = 200, description = "healthy or degraded", body = crate::health::HealthReport),
        (status = 503, description = "critical", body = crate::health::HealthReport),
    )
)]
async fn health_bare(
    state: axum::extract::State<AppState>,
    query: axum::extract::RawQuery,
) -> axum::response::Response {
    crate::health::handler(state, query).await
}
