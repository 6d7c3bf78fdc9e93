//! Changes to `mqtt_connections` take effect through NOTIFY, not the poll.
//!
//! Every test runs the service with MQTT_MONITOR_INTERVAL=30, so the only
//! way a change can take effect within the 5 s bounds below is the
//! `mqtt_connections_changed` notification (the contract's target is under
//! 1 s; the bound is generous so a loaded machine does not fail the test).

use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, insert, state, wait_status,
};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// Far longer than any bound below: only NOTIFY can explain a quick effect.
const SLOW_POLL: (&str, &str) = ("MQTT_MONITOR_INTERVAL", "30");
/// A change must show within this, well under the 30 s poll.
const NOTIFY_BOUND: Duration = Duration::from_secs(5);

/// Starts the service with the slow poll and waits for `Ready`.
async fn start_app(pool: &PgPool) -> App {
    let app = App::spawn(&database_url(pool), &[SLOW_POLL]);
    app.ready().await;
    app
}

/// Waits for `id` to be connected and its status topic `online`.
async fn connected(pool: &PgPool, app: &App, observer: &Observer, id: i64, topic: &str) {
    assert!(
        wait_status(pool, id, "connected", Duration::from_secs(10)).await,
        "row {id} never connected:\n{}",
        app.output()
    );
    assert!(
        observer
            .wait_for(topic, "online", Duration::from_secs(5))
            .await,
        "no `online` on {topic}: {:?}",
        observer.all()
    );
}

/// Waits for the broker to log exactly one DISCONNECT from `client_id`: a
/// graceful stop, so the `offline` seen was ours and not the Will.
async fn disconnected_cleanly(broker: &Broker, client_id: &str) -> bool {
    eventually(NOTIFY_BOUND, || async move {
        broker.disconnects_of(client_id) == 1
    })
    .await
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn inserted_row_connects_without_waiting_for_the_poll(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let app = App::spawn(&database_url(&pool), &[SLOW_POLL]);
    // Insert as soon as `Ready` shows: the monitor's first load and its
    // LISTEN start concurrently, and a row committed between the two must
    // not wait for the 30 s poll.
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while !app.output().contains("Ready:") {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "service not ready:\n{}", app.output());

    let began = Instant::now();
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let online = observer
        .wait_for("site_1/backend/status", "online", NOTIFY_BOUND)
        .await;
    let took = began.elapsed();
    assert!(
        online,
        "no `online` within {NOTIFY_BOUND:?} of the INSERT (poll is 30 s):\n{}",
        app.output()
    );
    assert!(
        wait_status(&pool, id, "connected", NOTIFY_BOUND).await,
        "state is {:?}",
        state(&pool, id).await
    );
    assert_eq!(broker.connects_of("site_1_test"), 1, "{}", broker.log());
    eprintln!("INSERT to retained `online`: {took:?}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn disabled_row_says_offline_and_stops(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = start_app(&pool).await;
    connected(&pool, &app, &observer, id, "site_1/backend/status").await;

    sqlx::query("UPDATE mqtt_connections SET is_enabled = false WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        observer
            .wait_for("site_1/backend/status", "offline", NOTIFY_BOUND)
            .await,
        "no `offline` within {NOTIFY_BOUND:?} of disabling: {:?}\n{}",
        observer.all(),
        app.output()
    );
    assert!(
        wait_status(&pool, id, "stopped", NOTIFY_BOUND).await,
        "state is {:?}",
        state(&pool, id).await
    );
    // A graceful stop: the broker got a DISCONNECT, so `offline` was ours.
    assert!(
        disconnected_cleanly(&broker, "site_1_test").await,
        "{}",
        broker.log()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn changed_prefix_and_keep_alive_reconnect_with_new_settings(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = start_app(&pool).await;
    connected(&pool, &app, &observer, id, "site_1/backend/status").await;

    sqlx::query(
        "UPDATE mqtt_connections SET topic_prefix = 'tenant_1', keep_alive_secs = 17 WHERE id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    assert!(
        observer
            .wait_for("tenant_1/backend/status", "online", NOTIFY_BOUND)
            .await,
        "no `online` on the new status topic within {NOTIFY_BOUND:?}: {:?}\n{}",
        observer.all(),
        app.output()
    );
    // The old actor said goodbye on the old topic before the new one connected.
    assert_eq!(
        observer.last("site_1/backend/status").as_deref(),
        Some("offline"),
        "{:?}",
        observer.all()
    );
    assert!(wait_status(&pool, id, "connected", NOTIFY_BOUND).await);
    let log = broker.log();
    assert_eq!(broker.connects_of("site_1_test"), 2, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains(" as site_1_test ") && l.contains(", k17)")),
        "the new connection does not use keep-alive 17 s:\n{log}"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn row_moved_to_another_broker_reconnects_there(pool: PgPool) {
    let old = Broker::start().await;
    let new = Broker::start().await;
    let old_observer = Observer::start(old.port(), "+/backend/status").await;
    let new_observer = Observer::start(new.port(), "+/backend/status").await;
    let id = insert(&pool, &Row::new("site_1", old.port())).await;
    let app = start_app(&pool).await;
    connected(&pool, &app, &old_observer, id, "site_1/backend/status").await;

    sqlx::query("UPDATE mqtt_connections SET broker_port = $2 WHERE id = $1")
        .bind(id)
        .bind(i32::from(new.port()))
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        new_observer
            .wait_for("site_1/backend/status", "online", NOTIFY_BOUND)
            .await,
        "no `online` on the new broker within {NOTIFY_BOUND:?}:\n{}",
        app.output()
    );
    assert!(
        old_observer
            .wait_for("site_1/backend/status", "offline", NOTIFY_BOUND)
            .await,
        "old broker's status did not end `offline`: {:?}",
        old_observer.all()
    );
    assert!(wait_status(&pool, id, "connected", NOTIFY_BOUND).await);
    assert_eq!(new.connects_of("site_1_test"), 1, "{}", new.log());
    assert_eq!(old.connects_of("site_1_test"), 1, "{}", old.log());
    assert_eq!(old.disconnects_of("site_1_test"), 1, "{}", old.log());
    let (_, body) = app.health(true).await.unwrap();
    assert_eq!(
        body["details"][0]["broker"],
        format!("127.0.0.1:{}", new.port()),
        "{body}"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn deleted_row_says_offline_and_disconnects(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let keep = insert(&pool, &Row::new("site_2", broker.port())).await;
    let app = start_app(&pool).await;
    connected(&pool, &app, &observer, id, "site_1/backend/status").await;
    connected(&pool, &app, &observer, keep, "site_2/backend/status").await;

    sqlx::query("DELETE FROM mqtt_connections WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        observer
            .wait_for("site_1/backend/status", "offline", NOTIFY_BOUND)
            .await,
        "no `offline` within {NOTIFY_BOUND:?} of the DELETE: {:?}\n{}",
        observer.all(),
        app.output()
    );
    assert!(
        disconnected_cleanly(&broker, "site_1_test").await,
        "{}",
        broker.log()
    );
    // The other row is untouched.
    assert_eq!(
        observer.payloads("site_2/backend/status"),
        vec!["online".to_owned()]
    );
    assert_eq!(broker.connects_of("site_2_test"), 1);
    let app = &app;
    let one_left = eventually(NOTIFY_BOUND, || async move {
        app.health(false).await.is_some_and(|(_, body)| {
            body["connections"]["total"] == 1 && body["status"] == "healthy"
        })
    })
    .await;
    assert!(one_left, "{:?}", app.health(false).await);
}
