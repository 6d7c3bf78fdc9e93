//! One live process per MQTT_INSTANCE_ID: a second process with the same
//! instance against the same database waits, connects nothing (which would
//! start a client-ID war), and takes over once the first has stopped.

use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, insert, wait_status,
};
use sqlx::PgPool;
use std::time::Duration;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn second_process_waits_for_the_first_then_takes_over(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let id = insert(&pool, &Row::new("site_88", broker.port())).await;
    let url = database_url(&pool);

    let mut first = App::spawn(&url, &[]);
    first.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        first.output()
    );
    assert!(
        observer
            .wait_for("site_88/backend/status", "online", Duration::from_secs(5))
            .await
    );

    let second = App::spawn(&url, &[]);
    assert!(
        second
            .wait_output(
                "Another live process runs instance",
                Duration::from_secs(15)
            )
            .await,
        "second process:\n{}",
        second.output()
    );
    // Give it time to do harm if it were going to: it retries every 2 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        broker.connects_of("site_88_test"),
        1,
        "the second process connected while the first runs:\n{}",
        broker.log()
    );
    assert!(!second.output().contains("Ready:"), "{}", second.output());
    let (code, body) = second
        .health(false)
        .await
        .expect("HTTP answers while waiting");
    assert_eq!(
        code, 503,
        "a waiting process is not running connections: {body}"
    );
    assert_eq!(body["service"]["running"], false, "{body}");
    // The first is undisturbed: still connected, never offline.
    let (code, body) = first.health(false).await.unwrap();
    assert_eq!((code, &body["status"]), (200, &"healthy".into()), "{body}");
    assert!(
        !observer
            .payloads("site_88/backend/status")
            .contains(&"offline".to_owned())
    );

    first.sigterm();
    let status = first.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", first.output());
    assert!(
        observer
            .wait_for("site_88/backend/status", "offline", Duration::from_secs(5))
            .await
    );

    // The lock is free: the second process starts and connects.
    second.ready().await;
    let took_over = eventually(Duration::from_secs(15), || async {
        broker.connects_of("site_88_test") == 2
    })
    .await;
    assert!(took_over, "{}\n{}", second.output(), broker.log());
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        second.output()
    );
    assert!(
        observer
            .wait_for("site_88/backend/status", "online", Duration::from_secs(5))
            .await
    );
    let (code, body) = second.health(false).await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "healthy", "{body}");
    // Exactly two sessions in all: the first's and the second's.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(broker.connects_of("site_88_test"), 2, "{}", broker.log());
}
