//! A foreign client takes our client ID ("code 7"): the service cools down
//! instead of kicking it back, says so once, and reconnects after the
//! cooldown once the client ID is free again.
//!
//! MQTT_RECONNECT_COOLDOWN=5 and MQTT_TAKEOVER_WINDOW=10: the foreign client
//! connects right after the service's CONNACK, so the broker's close falls
//! inside the window. Mosquitto 2.0 sends no DISCONNECT 0x8E, even to MQTT 5
//! clients, so both protocols are judged by the window.

use mqtt_supervisor_tests::{
    App, Broker, Foreign, Observer, Row, database_url, insert, state, wait_status,
};
use sqlx::PgPool;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "site_1_test";
const TOPIC: &str = "site_1/backend/status";
/// How long the foreign client holds the client ID: well inside the 5 s
/// cooldown, so a kick during it would be seen.
const HOLD: Duration = Duration::from_millis(3_500);

/// Runs the whole scenario for a row with `protocol` (None = 3.1.1).
async fn takeover_cools_down_then_reconnects(pool: PgPool, protocol: Option<&str>) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), TOPIC).await;
    let id = insert(
        &pool,
        &Row {
            protocol: protocol.map(str::to_owned),
            ..Row::new("site_1", broker.port())
        },
    )
    .await;
    let app = App::spawn(
        &database_url(&pool),
        &[
            ("MQTT_RECONNECT_COOLDOWN", "5"),
            ("MQTT_TAKEOVER_WINDOW", "10"),
        ],
    );
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );
    assert!(
        observer
            .wait_for(TOPIC, "online", Duration::from_secs(5))
            .await
    );

    let foreign = Foreign::connect(broker.port(), CLIENT_ID).await;
    let taken = Instant::now();
    assert!(
        wait_status(&pool, id, "cooldown", Duration::from_secs(3)).await,
        "no cooldown after the takeover: {:?}\n{}",
        state(&pool, id).await,
        app.output()
    );
    let (_, detail, last_error) = state(&pool, id).await.unwrap();
    assert!(detail.contains("duplicate client ID"), "{detail}");
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("duplicate client ID")),
        "{last_error:?}"
    );
    let cooldown_until: Option<String> = sqlx::query_scalar(
        "SELECT cooldown_until::text FROM mqtt_connection_state WHERE connection_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        cooldown_until.is_some(),
        "state table has no cooldown_until"
    );
    let (code, body) = app.health(true).await.unwrap();
    let d = &body["details"][0];
    assert_eq!(d["status"], "cooldown", "{body}");
    assert!(d["cooldown_until"].is_string(), "{body}");
    assert!(
        d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("duplicate client ID")),
        "{body}"
    );
    assert_eq!(code, 503, "the only connection is down: critical, {body}");

    // During the cooldown the service leaves the foreign client alone.
    tokio::time::sleep(HOLD.saturating_sub(taken.elapsed())).await;
    assert_eq!(foreign.drops(), 0, "the service kicked the foreign client");
    assert_eq!(broker.connects_of(CLIENT_ID), 2, "{}", broker.log());
    assert_eq!(state(&pool, id).await.unwrap().0, "cooldown");
    foreign.disconnect().await;

    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "not connected after the cooldown: {:?}\n{}",
        state(&pool, id).await,
        app.output()
    );
    assert!(
        observer
            .wait_for(TOPIC, "online", Duration::from_secs(5))
            .await
    );
    // online (first CONNACK), offline (our Will, at the takeover), online.
    assert_eq!(
        observer.payloads(TOPIC),
        vec!["online", "offline", "online"],
        "{:?}",
        observer.all()
    );
    assert_eq!(broker.connects_of(CLIENT_ID), 3, "{}", broker.log());
    let output = app.output();
    let cooldown_lines = output
        .lines()
        .filter(|l| l.contains("likely a duplicate client ID; cooling down 5 s"))
        .count();
    assert_eq!(
        cooldown_lines, 1,
        "the cooldown must be logged once:\n{output}"
    );
    let (_, body) = app.health(true).await.unwrap();
    let d = &body["details"][0];
    assert_eq!(d["status"], "connected", "{body}");
    assert!(d["cooldown_until"].is_null(), "{body}");
    assert_eq!(d["reconnects"], 1, "{body}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn takeover_cools_down_then_reconnects_mqtt311(pool: PgPool) {
    takeover_cools_down_then_reconnects(pool, None).await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn takeover_cools_down_then_reconnects_mqtt5(pool: PgPool) {
    takeover_cools_down_then_reconnects(pool, Some("5")).await;
}
