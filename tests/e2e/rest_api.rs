//! The REST API against the real binary, a real database and a private
//! broker: every endpoint, the 401/403/404/409/422 answers, write-only
//! secrets (a canary never comes back, in answers or logs), commands that
//! the broker really sees, and an OpenAPI document that lists exactly the
//! routes served.

use mqtt_supervisor_tests::{
    Api, App, Broker, DbProxy, Observer, Row, database_url, eventually, insert, state, wait_status,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;

const TOKEN: &str = "test-token-0123456789abcdef";
const CANARY: &str = "canary-pw-5f3a9c";
const HMAC_CANARY: &str = "canary-hmac-77e1b0";

fn status_of(list: &Value, name: &str) -> Option<String> {
    list["connections"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

async fn wait_api_status(api: &Api, name: &str, status: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        let (code, list) = api.get("/api/v1/mqtt/connections").await;
        code == 200 && status_of(&list, name).as_deref() == Some(status)
    })
    .await
}

#[sqlx::test(migrations = "../migrations")]
async fn write_endpoints_are_off_without_a_token(pool: PgPool) {
    let broker = Broker::start().await;
    insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    let api = Api::with_token(app.http_port(), TOKEN);
    for (method, path) in [
        ("POST", "/api/v1/mqtt/connections"),
        ("PATCH", "/api/v1/mqtt/connections/site_1"),
        ("DELETE", "/api/v1/mqtt/connections/site_1"),
        ("POST", "/api/v1/mqtt/connections/site_1/reconnect"),
        ("POST", "/api/v1/mqtt/connections/site_1/disconnect"),
    ] {
        let (code, body) = api.call(method, path, Some(json!({}))).await;
        assert_eq!(code, 403, "{method} {path}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("MQTT_API_TOKEN"), "{message}");
    }
    // Reads need no token.
    let (code, _) = Api::new(app.http_port())
        .get("/api/v1/mqtt/connections")
        .await;
    assert_eq!(code, 200);
}

#[sqlx::test(migrations = "../migrations")]
async fn every_endpoint_against_a_real_broker(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "#").await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_API_TOKEN", TOKEN)]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    let port = app.http_port();
    let api = Api::with_token(port, TOKEN);
    let anonymous = Api::new(port);
    let wrong = Api::with_token(port, "not-the-token-0123456789");

    // Writes: 401 without or with a wrong token, and nothing is written.
    let new = json!({
        "name": "site_2", "broker_host": "127.0.0.1", "broker_port": broker.port(),
        "username": "tenant2", "password": CANARY, "hmac_secret": HMAC_CANARY,
    });
    for client in [&anonymous, &wrong] {
        let (code, body) = client.post("/api/v1/mqtt/connections", new.clone()).await;
        assert_eq!(code, 401, "{body}");
    }
    let (code, created) = api.post("/api/v1/mqtt/connections", new.clone()).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["connection"]["name"], "site_2");
    assert_eq!(created["config"]["has_password"], true);
    assert_eq!(created["config"]["has_hmac_secret"], true);
    let (code, body) = api.post("/api/v1/mqtt/connections", new.clone()).await;
    assert_eq!(code, 409, "{body}");

    // The same validator as the service: 422 with its reason.
    let (code, body) = api
        .post(
            "/api/v1/mqtt/connections",
            json!({"name": "site_3", "broker_host": "127.0.0.1", "password": "x"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("username"),
        "{body}"
    );
    let (code, body) = api
        .post(
            "/api/v1/mqtt/connections",
            json!({"name": "site_3", "broker_host": "127.0.0.1", "protocol": "4"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    // A client ID another row has (site.2 and site_2 both give site_2_test).
    let (code, body) = api
        .post(
            "/api/v1/mqtt/connections",
            json!({"name": "site.2", "broker_host": "127.0.0.1"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    // Malformed bodies are JSON errors too.
    let (code, body) = api
        .post("/api/v1/mqtt/connections", json!({"name": "x", "nope": 1}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body["error"].is_string(), "{body}");

    // The running service picks the new row up at once.
    assert!(wait_api_status(&api, "site_2", "connected").await);

    // List and detail.
    let (code, list) = api.get("/api/v1/mqtt/connections").await;
    assert_eq!(code, 200);
    let site_1 = &list["connections"][0];
    assert_eq!(site_1["name"], "site_1");
    assert_eq!(site_1["client_id"], "site_1_test");
    assert_eq!(site_1["broker"], format!("127.0.0.1:{}", broker.port()));
    assert!(site_1["connected_since"].is_string());
    let (code, detail) = api.get("/api/v1/mqtt/connections/site_1").await;
    assert_eq!(code, 200, "{detail}");
    let events = detail["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["status"] == "connected"),
        "{detail}"
    );
    let (code, body) = api.get("/api/v1/mqtt/connections/nobody").await;
    assert_eq!(code, 404, "{body}");
    // A name no row can hold (Postgres text has no NUL) is no row's name,
    // not a database error (schemathesis found 503s here).
    for (method, path) in [
        ("GET", "/api/v1/mqtt/connections/a%00b"),
        ("PATCH", "/api/v1/mqtt/connections/a%00b"),
        ("DELETE", "/api/v1/mqtt/connections/a%00b"),
        ("POST", "/api/v1/mqtt/connections/a%00b/reconnect"),
        ("POST", "/api/v1/mqtt/connections/a%00b/disconnect"),
        ("GET", "/api/v1/mqtt/events?connection=%00"),
        ("GET", "/api/v1/mqtt/messages?connection=%00"),
    ] {
        let (code, body) = api.call(method, path, Some(json!({}))).await;
        assert_eq!(code, 404, "{method} {path}: {body}");
    }
    let (code, body) = api
        .post(
            "/api/v1/mqtt/connections",
            json!({"name": "site_4", "broker_host": "127.0.0.1", "hmac_secret": "a\u{0}b"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("hmac_secret"),
        "{body}"
    );

    // Messages: one received, filtered by connection, topic and direction.
    observer
        .publish("site_1/sensors/t1", b"{\"t\":21.5}".to_vec(), false)
        .await;
    let found = eventually(Duration::from_secs(10), || async {
        let (_, body) = api
            .get("/api/v1/mqtt/messages?connection=site_1&topic=site_1/%2B/t1&direction=in")
            .await;
        body["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["payload_text"] == "{\"t\":21.5}"))
    })
    .await;
    assert!(found, "the message never showed in GET messages");
    let (_, body) = api
        .get("/api/v1/mqtt/messages?connection=site_1&direction=out")
        .await;
    assert_eq!(body["messages"], json!([]));
    let (code, body) = api.get("/api/v1/mqtt/messages?topic=a/%23/b").await;
    assert_eq!(code, 422, "{body}");
    let (code, body) = api.get("/api/v1/mqtt/messages?limit=0").await;
    assert_eq!(code, 422, "{body}");
    let (code, body) = api.get("/api/v1/mqtt/messages?direction=sideways").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = api.get("/api/v1/mqtt/messages?connection=nobody").await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = api
        .get("/api/v1/mqtt/events?connection=site_2&limit=5")
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(!body["events"].as_array().unwrap().is_empty());

    // Disconnect: `offline` on the status topic, held down.
    let connects_before = broker.connects_of("site_1_test");
    let (code, body) = api
        .post("/api/v1/mqtt/connections/site_1/disconnect", json!(null))
        .await;
    assert_eq!(code, 202, "{body}");
    assert!(
        observer
            .wait_for("site_1/backend/status", "offline", Duration::from_secs(5))
            .await
    );
    assert!(wait_api_status(&api, "site_1", "stopped").await);
    let (_, list) = api.get("/api/v1/mqtt/connections").await;
    assert_eq!(list["connections"][0]["held"], true, "{list}");
    let (_, health) = api.get("/api/v1/mqtt/health/").await;
    assert_eq!(health["status"], "degraded", "{health}");
    // The state table says why too (what `connections list` shows).
    let said = eventually(Duration::from_secs(5), || async {
        state(&pool, id)
            .await
            .is_some_and(|(status, detail, _)| status == "stopped" && detail.contains("API"))
    })
    .await;
    assert!(said, "{:?}", state(&pool, id).await);
    // Reconnect: a new CONNACK the broker saw, `online` again.
    let (code, body) = api
        .post("/api/v1/mqtt/connections/site_1/reconnect", json!(null))
        .await;
    assert_eq!(code, 202, "{body}");
    assert!(wait_api_status(&api, "site_1", "connected").await);
    assert!(broker.connects_of("site_1_test") > connects_before);
    let (code, body) = api
        .post("/api/v1/mqtt/connections/nobody/reconnect", json!(null))
        .await;
    assert_eq!(code, 404, "{body}");

    // Change: a disabled row stops; commands on it are a conflict.
    let (code, body) = api
        .patch(
            "/api/v1/mqtt/connections/site_2",
            json!({"enabled": false, "username": null, "password": null}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["config"]["has_password"], false, "{body}");
    assert!(wait_api_status(&api, "site_2", "stopped").await);
    let (code, body) = api
        .post("/api/v1/mqtt/connections/site_2/reconnect", json!(null))
        .await;
    assert_eq!(code, 409, "{body}");
    let (code, body) = api
        .patch("/api/v1/mqtt/connections/site_2", json!({"broker_port": 0}))
        .await;
    assert_eq!(code, 422, "{body}");
    let (code, body) = api
        .patch("/api/v1/mqtt/connections/site_2", json!({"name": "site_1"}))
        .await;
    assert_eq!(code, 409, "{body}");
    let (code, body) = api
        .patch("/api/v1/mqtt/connections/nobody", json!({"enabled": true}))
        .await;
    assert_eq!(code, 404, "{body}");

    // Delete.
    let (code, _) = api.delete("/api/v1/mqtt/connections/site_2").await;
    assert_eq!(code, 204);
    let (code, _) = api.delete("/api/v1/mqtt/connections/site_2").await;
    assert_eq!(code, 404);

    // Secrets are write-only: never in an answer or a log line.
    let (_, list) = api.get("/api/v1/mqtt/connections").await;
    let (_, events) = api.get("/api/v1/mqtt/events?limit=500").await;
    for text in [
        created.to_string(),
        list.to_string(),
        events.to_string(),
        app.output(),
    ] {
        assert!(!text.contains(CANARY), "the password leaked: {text}");
        assert!(
            !text.contains(HMAC_CANARY),
            "the HMAC secret leaked: {text}"
        );
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_openapi_document_lists_exactly_the_served_routes(pool: PgPool) {
    let broker = Broker::start().await;
    insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_API_TOKEN", TOKEN)]);
    app.ready().await;
    let api = Api::with_token(app.http_port(), TOKEN);
    let (code, doc) = api.get("/api/v1/openapi.json").await;
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    // What the router serves (beside the monitor page), written out: a
    // route added without its documentation, or the other way round, fails.
    let mut served: Vec<(String, String)> = [
        ("GET", "/api/v1/mqtt/health/"),
        ("GET", "/api/v1/mqtt/health"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/mqtt/connections"),
        ("POST", "/api/v1/mqtt/connections"),
        ("GET", "/api/v1/mqtt/connections/{name}"),
        ("PATCH", "/api/v1/mqtt/connections/{name}"),
        ("DELETE", "/api/v1/mqtt/connections/{name}"),
        ("POST", "/api/v1/mqtt/connections/{name}/reconnect"),
        ("POST", "/api/v1/mqtt/connections/{name}/disconnect"),
        ("GET", "/api/v1/mqtt/messages"),
        ("GET", "/api/v1/mqtt/events"),
        ("GET", "/api/v1/mqtt/replicas"),
    ]
    .iter()
    .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
    .collect();
    served.sort();
    assert_eq!(documented, served);

    // Every documented route is served (a handler answers, not the
    // router's 404 or 405) and every other method on its path is 405: the
    // document and the router agree. `{name}` is one no row has, so that
    // nothing is changed.
    let unrouted = |code: u16, answer: &Value| {
        code == 405
            || (code == 404
                && answer["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("no such route")))
    };
    for (method, path) in &documented {
        let concrete = path.replace("{name}", "nobody");
        let body = (method != "GET").then(|| json!({}));
        let (code, answer) = api.call(method, &concrete, body).await;
        assert!(
            !unrouted(code, &answer),
            "{method} {concrete} is documented but not served: {code} {answer}"
        );
        for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if documented.iter().any(|(m, p)| m == other && p == path) {
                continue;
            }
            let (code, answer) = api.call(other, &concrete, None).await;
            assert_eq!(code, 405, "{other} {concrete} is not documented: {answer}");
            assert!(answer["error"].is_string(), "{answer}");
        }
    }
    let (code, answer) = api.get("/api/v1/mqtt/nothing-here").await;
    assert_eq!(code, 404);
    assert!(answer["error"].is_string());
}

#[sqlx::test(migrations = "../migrations")]
async fn the_list_shows_live_states_while_the_database_is_unreachable(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let proxy = DbProxy::start_for(&pool).await;
    let app = App::spawn(&proxy.url_for(&pool), &[]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    let api = Api::new(app.http_port());
    let (code, list) = api.get("/api/v1/mqtt/connections").await;
    assert_eq!((code, &list["database"]), (200, &json!("ok")), "{list}");

    proxy.freeze().await;
    let (code, list) = api.get("/api/v1/mqtt/connections").await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["database"], "unreachable", "{list}");
    assert!(list["rows_as_of"].is_string(), "{list}");
    assert_eq!(status_of(&list, "site_1").as_deref(), Some("connected"));
    // What needs the database now says so, within the request bound.
    let (code, body) = api.get("/api/v1/mqtt/events").await;
    assert_eq!(code, 503, "{body}");
    assert!(body["error"].is_string(), "{body}");
    proxy.thaw().await;
    let back = eventually(Duration::from_secs(15), || async {
        api.get("/api/v1/mqtt/connections").await.1["database"] == "ok"
    })
    .await;
    assert!(back);
}
