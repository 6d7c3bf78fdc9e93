//! A message larger than MQTT_MAX_PACKET_SIZE is reported and dropped; it is
//! never a reason to drop the connection (a retained one would make it flap
//! forever, since every reconnect delivers it again).

use mqtt_supervisor_tests::{App, Broker, Observer, Row, database_url, insert, wait_status};
use sqlx::PgPool;
use std::time::Duration;

async fn oversize_is_reported_not_flapping(pool: PgPool, protocol: &str) {
    let broker = Broker::start().await;
    let feeder = Observer::start(broker.port(), "nothing/here").await;
    // Retained before the service subscribes: delivered on every (re)subscribe.
    feeder
        .publish("site_1/big", vec![b'x'; 64 * 1024], true)
        .await;
    feeder.publish("site_1/small", b"ok".to_vec(), true).await;
    let id = insert(
        &pool,
        &Row {
            protocol: Some(protocol.to_owned()),
            ..Row::new("site_1", broker.port())
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_MAX_PACKET_SIZE", "16KiB")]);
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );
    if protocol == "3.1.1" {
        // 3.1.1 has no way to tell the broker our limit: we see it and drop it.
        assert!(
            app.wait_output(
                "Dropped a message larger than MQTT_MAX_PACKET_SIZE",
                Duration::from_secs(5)
            )
            .await,
            "{}",
            app.output()
        );
        assert!(app.output().contains("site_1/big"));
    }
    // A live message after the big one still flows, and the connection held.
    feeder
        .publish("site_1/big", vec![b'y'; 64 * 1024], false)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(broker.connects_of("site_1_test"), 1, "{}", broker.log());
    let (status, _, _) = mqtt_supervisor_tests::state(&pool, id).await.unwrap();
    assert_eq!(status, "connected");
    assert!(
        !app.output().contains("Connection failed"),
        "{}",
        app.output()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn oversize_v311(pool: PgPool) {
    oversize_is_reported_not_flapping(pool, "3.1.1").await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn oversize_v5(pool: PgPool) {
    oversize_is_reported_not_flapping(pool, "5").await;
}
