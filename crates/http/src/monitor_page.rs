//! `/mqtt/monitor/`: the live monitor page. Plain HTML, CSS and JavaScript
//! compiled into the binary (no CDN, no build step); the page polls the
//! REST API. A strict Content-Security-Policy allows only its own files.

use crate::AppState;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../assets/monitor/index.html");
const SCRIPT: &str = include_str!("../assets/monitor/app.js");
const STYLE: &str = include_str!("../assets/monitor/style.css");

const POLICY: &str = "default-src 'self'; style-src 'self'; script-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/mqtt/monitor",
            get(|| async { Redirect::permanent("/mqtt/monitor/") }),
        )
        .route(
            "/mqtt/monitor/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/mqtt/monitor/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/mqtt/monitor/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Small, and they change with the binary: always fresh.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
