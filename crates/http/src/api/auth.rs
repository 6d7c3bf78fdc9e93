//! The bearer token of the write endpoints (MQTT_API_TOKEN).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::{StatusCode, header, request::Parts};

/// Proof that the request carries the configured token. An extractor:
/// listed first in a handler's arguments, it is checked before the body
/// is read.
pub struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let configured = app.settings.api_token.expose();
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        check(configured, given).map(|()| Authorized)
    }
}

/// 403 when no token is configured, 401 when the header is missing, not
/// a bearer token, or another token.
fn check(configured: &str, header: Option<&str>) -> Result<(), ApiError> {
    if configured.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the API's write endpoints are off: set MQTT_API_TOKEN (at least 16 characters) \
             and send it as `Authorization: Bearer <token>`",
        ));
    }
    let Some(header) = header else {
        return Err(unauthorized(
            "this endpoint needs `Authorization: Bearer <MQTT_API_TOKEN>`",
        ));
    };
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim);
    match token {
        Some(token) if same(token.as_bytes(), configured.as_bytes()) => Ok(()),
        Some(_) => Err(unauthorized("the bearer token is not MQTT_API_TOKEN")),
        None => Err(unauthorized(
            "the Authorization header is not `Bearer <MQTT_API_TOKEN>`",
        )),
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// Compares in time that depends on the lengths only, not on where the
/// first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn no_configured_token_is_403_and_says_what_to_set() {
        let e = check("", Some("Bearer x")).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.message().contains("MQTT_API_TOKEN"), "{}", e.message());
    }

    #[test]
    fn missing_wrong_or_malformed_tokens_are_401() {
        for header in [
            None,
            Some("Bearer nope"),
            Some("Basic 0123456789abcdef0123"),
            Some(TOKEN),
            Some("Bearer 0123456789abcdef012"),
        ] {
            let e = check(TOKEN, header).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{header:?}");
            assert!(!e.message().contains(TOKEN));
        }
    }

    #[test]
    fn the_configured_token_passes() {
        assert!(check(TOKEN, Some("Bearer 0123456789abcdef0123")).is_ok());
        assert!(check(TOKEN, Some("bearer 0123456789abcdef0123")).is_ok());
    }
}
