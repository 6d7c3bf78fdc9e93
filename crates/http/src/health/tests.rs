use super::*;
use crate::{AppState, router};
use axum::body::Body;
use axum::http::Request;
use sqlx::PgPool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use supervisor::{ConnectionState, ConnectionView};
use tokio::sync::watch;
use tower::ServiceExt;

fn view(id: i64, status: Status) -> ConnectionView {
    let mut state = ConnectionState::starting();
    state.status = status;
    state.detail = status.to_string();
    if status == Status::Cooldown {
        state.cooldown_until = Some(Utc::now());
        state.last_error = Some("likely a duplicate client ID".to_owned());
    }
    ConnectionView {
        id,
        name: format!("site_{id}"),
        client_id: format!("site_{id}_test"),
        broker: Some("127.0.0.1:1883".to_owned()),
        state: watch::channel(state).1,
        counters: None,
        held: false,
    }
}

fn fleet(running: bool, statuses: &[Status]) -> Fleet {
    Fleet {
        running,
        total_rows: statuses.len() + 1,
        enabled_rows: statuses.len(),
        connections: statuses
            .iter()
            .enumerate()
            .map(|(i, s)| view(i as i64 + 1, *s))
            .collect(),
        closing: Vec::new(),
    }
}

async fn get(app: AppState, uri: &str) -> (StatusCode, serde_json::Value) {
    let response = router(app)
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let code = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (code, serde_json::from_slice(&bytes).unwrap())
}

fn app(fleet: Fleet, pool: Option<PgPool>) -> AppState {
    let cell = Arc::new(OnceLock::new());
    if let Some(pool) = pool {
        let _ = cell.set(pool);
    }
    AppState {
        fleet: watch::channel(Arc::new(fleet)).1,
        pool: cell,
        started: Instant::now(),
        instance_id: "bfg_back".to_owned(),
        version: "0.1.0",
        inbox: Arc::new(OnceLock::new()),
        settings: Arc::new(settings::Settings::defaults()),
        metrics: Arc::default(),
        control: Arc::new(OnceLock::new()),
        last_rows: Arc::default(),
        replica_id: "host-1".to_owned(),
        owned: Arc::new(OnceLock::new()),
    }
}

#[test]
fn assessment_follows_the_contract() {
    use Status::*;
    let cases: &[(bool, &[Status], bool, &str)] = &[
        (true, &[Connected, Connected], true, "healthy"),
        (true, &[], true, "healthy"),
        (true, &[Connected, Disconnected], true, "degraded"),
        (true, &[Connected, Connected], false, "degraded"),
        (true, &[Cooldown, Error], true, "critical"),
        (false, &[Connected], true, "critical"),
        (false, &[], true, "critical"),
    ];
    for (running, statuses, db, expected) in cases {
        let (report, code) = assess(&fleet(*running, statuses), *db, true, false);
        assert_eq!(report.status, *expected, "{running} {statuses:?} {db}");
        let want = if *expected == "critical" { 503 } else { 200 };
        assert_eq!(code.as_u16(), want);
        assert_eq!(report.connections.enabled, statuses.len());
        assert_eq!(
            report.connections.healthy + report.connections.unhealthy,
            statuses.len()
        );
    }
}

#[sqlx::test]
async fn healthy_with_and_without_slash(pool: PgPool) {
    let a = app(fleet(true, &[Status::Connected]), Some(pool));
    for uri in ["/api/v1/mqtt/health/", "/api/v1/mqtt/health"] {
        let (code, body) = get(a.clone(), uri).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["service"]["running"], true);
        assert_eq!(body["service"]["instance_id"], "bfg_back");
        assert_eq!(body["service"]["version"], "0.1.0");
        assert_eq!(body["service"]["database"], "ok");
        assert!(body["service"]["uptime_secs"].is_u64());
        assert_eq!(body["connections"]["total"], 2);
        assert_eq!(body["connections"]["enabled"], 1);
        assert_eq!(body["connections"]["healthy"], 1);
        assert_eq!(body["connections"]["unhealthy"], 0);
        assert!(body.get("details").is_none());
    }
}

#[sqlx::test]
async fn verbose_lists_every_connection(pool: PgPool) {
    let a = app(
        fleet(true, &[Status::Connected, Status::Cooldown]),
        Some(pool),
    );
    let (code, body) = get(a, "/api/v1/mqtt/health/?verbose=true").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    let details = body["details"].as_array().unwrap();
    assert_eq!(details.len(), 2);
    let second = &details[1];
    for key in [
        "id",
        "name",
        "status",
        "client_id",
        "broker",
        "connected_since",
        "last_error",
        "cooldown_until",
        "reconnects",
    ] {
        assert!(second.get(key).is_some(), "missing {key}");
    }
    assert_eq!(second["status"], "cooldown");
    assert_eq!(second["client_id"], "site_2_test");
    assert_eq!(second["broker"], "127.0.0.1:1883");
    assert!(second["cooldown_until"].is_string());
}

/// An invalid row whose host cannot be shown has no broker: `null`, not
/// `""` (issue 7).
#[tokio::test]
async fn unknown_broker_is_null() {
    let mut f = fleet(true, &[Status::Connected, Status::Error]);
    f.connections[1].broker = None;
    let (_, body) = get(app(f, None), "/api/v1/mqtt/health/?verbose=true").await;
    let details = body["details"].as_array().unwrap();
    assert_eq!(details[0]["broker"], "127.0.0.1:1883");
    assert!(details[1]["broker"].is_null(), "{}", details[1]);
}

#[tokio::test]
async fn no_database_is_degraded_and_not_running_is_503() {
    let (code, body) = get(
        app(fleet(true, &[Status::Connected]), None),
        "/api/v1/mqtt/health",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["service"]["database"], "unreachable");
    let (code, body) = get(app(fleet(false, &[]), None), "/api/v1/mqtt/health").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "critical");
    assert_eq!(body["service"]["running"], false);
}

#[tokio::test]
async fn odd_query_strings_still_get_the_health_document() {
    let a = || app(fleet(true, &[Status::Connected]), None);
    for (uri, verbose) in [
        ("/api/v1/mqtt/health/?verbose=true&verbose=true", true),
        ("/api/v1/mqtt/health/?verbose=false&verbose=1", true),
        ("/api/v1/mqtt/health/?verbose=%ff%00&x", false),
        ("/api/v1/mqtt/health/?verbose", false),
        ("/api/v1/mqtt/health/?&&==&verbose=YES", true),
    ] {
        let (code, body) = get(a(), uri).await;
        assert_eq!(code, StatusCode::OK, "{uri}: {body}");
        assert_eq!(body["status"], "degraded", "{uri}");
        assert_eq!(body.get("details").is_some(), verbose, "{uri}: {body}");
    }
}
