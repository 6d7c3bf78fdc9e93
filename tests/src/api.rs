//! A client of the service's HTTP API for tests: any method, an optional
//! bearer token and JSON body; answers are (status, JSON) pairs.

use std::time::Duration;

/// The API of a service listening on 127.0.0.1:`port`.
#[derive(Debug, Clone)]
pub struct Api {
    port: u16,
    token: Option<String>,
}

impl Api {
    /// Without a token.
    pub fn new(port: u16) -> Api {
        Api { port, token: None }
    }

    /// Sending `Authorization: Bearer <token>`.
    pub fn with_token(port: u16, token: &str) -> Api {
        Api {
            port,
            token: Some(token.to_owned()),
        }
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call("GET", path, None).await
    }

    /// POST `body` (JSON) to `path`.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call("POST", path, Some(body)).await
    }

    /// PATCH `body` (JSON) to `path`.
    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call("PATCH", path, Some(body)).await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.call("DELETE", path, None).await
    }

    /// `method` on `path` with an optional JSON `body`; the answer's body
    /// as JSON (`null` when empty, a string when not JSON). Panics when
    /// nothing answers within 10 s.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let (status, text) = self.raw(method, path, body).await;
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, json)
    }

    /// Like [`Api::call`], with the body as text.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let method = method.to_owned();
        let token = self.token.clone();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .http_status_as_error(false)
                .allow_non_standard_methods(true)
                .build()
                .into();
            let mut request = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(&url);
            if let Some(token) = &token {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            let result = match body {
                Some(json) => agent.run(
                    request
                        .header("Content-Type", "application/json")
                        .body(json.to_string())
                        .expect("a valid request"),
                ),
                None => agent.run(request.body(()).expect("a valid request")),
            };
            let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let text = response.body_mut().read_to_string().unwrap_or_default();
            (response.status().as_u16(), text)
        })
        .await
        .expect("the request task")
    }
}
