//! `/metrics` after real events: a connect, a takeover by a foreign client
//! with our client ID, and a broker refusing our credentials. The counters
//! and gauges say exactly that; per-connection series appear only when
//! MQTT_METRICS_PER_CONNECTION is on.

use mqtt_supervisor_tests::{
    App, Broker, Foreign, Row, database_url, eventually, http_get, insert, wait_status,
};
use sqlx::PgPool;
use std::time::Duration;

/// The value of the sample `series` (name with labels, exactly as
/// exported), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: &App) -> String {
    let (code, text) = http_get(app.http_port(), "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text: {text}");
    text
}

#[sqlx::test(migrations = "../migrations")]
async fn connect_takeover_and_refusal_are_counted(pool: PgPool) {
    let open = Broker::start().await;
    let guarded = Broker::start_with_user("tenant", "right-password").await;
    let good = insert(&pool, &Row::new("site_1", open.port())).await;
    let refused = insert(
        &pool,
        &Row {
            username: Some("tenant".to_owned()),
            password: Some("wrong-password".to_owned()),
            ..Row::new("site_2", guarded.port())
        },
    )
    .await;
    let app = App::spawn(
        &database_url(&pool),
        &[
            ("MQTT_RECONNECT_COOLDOWN", "60"),
            ("MQTT_TAKEOVER_WINDOW", "10"),
        ],
    );
    app.ready().await;
    assert!(wait_status(&pool, good, "connected", Duration::from_secs(10)).await);
    assert!(wait_status(&pool, refused, "error", Duration::from_secs(10)).await);

    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "mqtt_supervisor_connects_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "mqtt_supervisor_connections{status=\"connected\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mqtt_supervisor_connections{status=\"error\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "mqtt_supervisor_disconnects_total{reason=\"refused\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "mqtt_supervisor_takeovers_total"), Some(0.0));
    assert_eq!(sample(&text, "mqtt_supervisor_database_up"), Some(1.0));
    assert_eq!(sample(&text, "mqtt_supervisor_outbox_pending"), Some(0.0));
    assert_eq!(
        sample(&text, "mqtt_supervisor_rows{enabled=\"true\"}"),
        Some(2.0)
    );
    assert!(
        text.contains("mqtt_supervisor_build_info{version=\""),
        "{text}"
    );
    assert!(
        sample(&text, "mqtt_supervisor_reconcile_duration_seconds_count").unwrap() >= 1.0,
        "{text}"
    );
    // No per-tenant label by default.
    assert!(!text.contains("connection=\""), "{text}");

    // A foreign client takes site_1's client ID: one takeover, a cooldown.
    let _foreign = Foreign::connect(open.port(), "site_1_test").await;
    assert!(wait_status(&pool, good, "cooldown", Duration::from_secs(5)).await);
    let counted = eventually(Duration::from_secs(5), || async {
        let text = scrape(&app).await;
        sample(&text, "mqtt_supervisor_takeovers_total") == Some(1.0)
    })
    .await;
    let text = scrape(&app).await;
    assert!(counted, "{text}");
    assert_eq!(
        sample(
            &text,
            "mqtt_supervisor_disconnects_total{reason=\"takeover\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mqtt_supervisor_disconnects_total{reason=\"lost\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "mqtt_supervisor_connections{status=\"cooldown\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mqtt_supervisor_connections{status=\"connected\"}"),
        Some(0.0)
    );
    assert_eq!(sample(&text, "mqtt_supervisor_connects_total"), Some(1.0));

    // A clean stop counts as shutdown.
    app.sigterm();
}

#[sqlx::test(migrations = "../migrations")]
async fn per_connection_series_and_messages(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(
        &database_url(&pool),
        &[("MQTT_METRICS_PER_CONNECTION", "true")],
    );
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    sqlx::query(
        "INSERT INTO mqtt_outbox (connection_id, topic, payload) VALUES ($1, 'site_1/cmd', 'go')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    // The service stores its own publish (its subscription covers it).
    let seen = eventually(Duration::from_secs(10), || async {
        let text = scrape(&app).await;
        sample(&text, "mqtt_supervisor_messages_total{direction=\"out\"}") == Some(1.0)
            && sample(&text, "mqtt_supervisor_inbox_stored_total") >= Some(1.0)
    })
    .await;
    let text = scrape(&app).await;
    assert!(seen, "{text}");
    assert_eq!(
        sample(
            &text,
            "mqtt_supervisor_connection_status{connection=\"site_1\",status=\"connected\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mqtt_supervisor_connection_messages_total{connection=\"site_1\",direction=\"out\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "mqtt_supervisor_connection_messages_total{connection=\"site_1\",direction=\"in\"}"
        ) >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "mqtt_supervisor_inbox_write_lag_seconds"),
        Some(0.0)
    );
}
