//! A message larger than MQTT_MAX_PACKET_SIZE.
//!
//! MQTT 3.1.1 cannot tell the broker our limit, so the broker sends it and
//! rumqttc refuses the packet from its header (before reading or buffering
//! the body) and drops the connection. A retained one comes again on every
//! connect: the first time is retried with backoff, a repeat is a lasting
//! `error` retried after about a minute, never a tight loop.
//!
//! MQTT 5 puts the limit in the CONNECT, so the broker withholds the
//! message and the connection stays up.

use mqtt_supervisor_tests::{App, Broker, Observer, Row, database_url, insert, state, wait_status};
use sqlx::PgPool;
use std::time::Duration;

const CLIENT_ID: &str = "site_1_test";

/// A broker holding a retained 64 KiB message under `site_1/#` (delivered on
/// every subscribe), and a row of `protocol` for it.
async fn retained_big_message(pool: &PgPool, protocol: &str) -> (Broker, Observer, i64) {
    let broker = Broker::start().await;
    let feeder = Observer::start(broker.port(), "nothing/here").await;
    feeder
        .publish("site_1/big", vec![b'x'; 64 * 1024], true)
        .await;
    feeder.publish("site_1/small", b"ok".to_vec(), true).await;
    let id = insert(
        pool,
        &Row {
            protocol: Some(protocol.to_owned()),
            ..Row::new("site_1", broker.port())
        },
    )
    .await;
    (broker, feeder, id)
}

/// The N of "a packet of N bytes" in a TooLarge reason.
fn announced_size(reason: &str) -> Option<usize> {
    let rest = reason.split("a packet of ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn oversize_v311_repeated_is_a_lasting_error(pool: PgPool) {
    let (broker, _feeder, id) = retained_big_message(&pool, "3.1.1").await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_MAX_PACKET_SIZE", "16KiB")]);
    app.ready().await;

    // First connect: dropped at the header, retried within a second of
    // backoff; the second connect gets the same message: lasting.
    assert!(
        wait_status(&pool, id, "error", Duration::from_secs(20)).await,
        "{:?}\n{}",
        state(&pool, id).await,
        app.output()
    );
    let (_, detail, last_error) = state(&pool, id).await.unwrap();
    let last_error = last_error.unwrap_or_default();
    assert!(
        last_error.contains("above MQTT_MAX_PACKET_SIZE") && last_error.contains("16384"),
        "last_error must name the limit: {last_error:?}"
    );
    let size = announced_size(&last_error)
        .unwrap_or_else(|| panic!("last_error must name the size: {last_error:?}"));
    assert!(size > 64 * 1024, "{size} in {last_error:?}");
    assert!(detail.contains("retrying in"), "{detail}");
    assert!(
        app.wait_output(
            "The broker keeps sending a packet larger than MQTT_MAX_PACKET_SIZE",
            Duration::from_secs(5)
        )
        .await,
        "{}",
        app.output()
    );
    let connects_at_error = broker.connects_of(CLIENT_ID);

    // A lasting error waits 45-75 s: no more connects for a while.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let connects = broker.connects_of(CLIENT_ID);
    eprintln!(
        "MQTT 3.1.1 oversize: {connects_at_error} connects until `error`, {connects} after 10 s more"
    );
    assert!(
        (2..=3).contains(&connects),
        "expected 2 or 3 connects, the broker saw {connects}:\n{}",
        broker.log()
    );
    assert_eq!(state(&pool, id).await.unwrap().0, "error");
    assert!(!app.output().contains("panicked"), "{}", app.output());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn oversize_v5_is_withheld_by_the_broker(pool: PgPool) {
    let (broker, feeder, id) = retained_big_message(&pool, "5").await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_MAX_PACKET_SIZE", "16KiB")]);
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );
    // A live big message after the retained one is withheld too.
    feeder
        .publish("site_1/big", vec![b'y'; 64 * 1024], false)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(broker.connects_of(CLIENT_ID), 1, "{}", broker.log());
    let (status, _, _) = state(&pool, id).await.unwrap();
    assert_eq!(status, "connected");
    let out = app.output();
    assert!(!out.contains("Connection failed"), "{out}");
    assert!(!out.contains("MQTT_MAX_PACKET_SIZE"), "{out}");
}
