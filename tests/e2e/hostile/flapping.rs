//! A broker that accepts, takes the SUBSCRIBE and hangs up, on every
//! connection. Before the hardening every CONNACK reset the backoff, so the
//! service reconnected about twice a second (30-odd connections in 15 s); now
//! the backoff starts over only after a minute up, and at most 6 attempts
//! start in any minute.

use mqtt_supervisor_tests::{App, ConnEnd, FakeBroker, Row, Step, database_url, insert, state};
use sqlx::PgPool;
use std::time::Duration;

/// The policy's MAX_ATTEMPTS per minute.
const MAX_ATTEMPTS: usize = 6;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn flapping_broker_is_not_hammered(pool: PgPool) {
    let broker = FakeBroker::start(vec![Step::close_after_subscribe()]).await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    // No takeover window: each close is an ordinary loss, not a cooldown.
    let app = App::spawn(&database_url(&pool), &[("MQTT_TAKEOVER_WINDOW", "0")]);
    app.ready().await;
    assert!(
        broker.wait_connections(1, Duration::from_secs(10)).await,
        "{}",
        app.output()
    );

    tokio::time::sleep(Duration::from_secs(15)).await;
    let count = broker.connections();
    eprintln!("flapping broker: {count} connections in the first 15 s");
    assert!(
        count <= MAX_ATTEMPTS,
        "{count} connections in 15 s: the backoff starts over on every CONNACK\n{}",
        app.output()
    );
    // It does keep trying, and the connections got as far as SUBSCRIBE
    // (the broker's close, not a failed CONNECT, ended them).
    assert!(count >= 2, "no retry in 15 s:\n{}", app.output());
    let first = broker.connection(0);
    assert_eq!(first.subscriptions, ["site_1/#"], "{first:?}");
    assert_eq!(first.end, Some(ConnEnd::Script), "{first:?}");
    let (status, _, last_error) = state(&pool, id).await.unwrap();
    assert!(
        matches!(status.as_str(), "disconnected" | "connected"),
        "{status}: {last_error:?}"
    );
    assert!(!app.output().contains("panicked"), "{}", app.output());
}
