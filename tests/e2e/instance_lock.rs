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

/// `bfg.back` and `bfg_back` give the same client IDs (`site_88_bfg_back`):
/// they must share one lock, or they fight over every connection.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn instance_ids_that_sanitise_alike_share_the_lock(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_88", broker.port())).await;
    let url = database_url(&pool);
    let first = App::spawn(&url, &[("MQTT_INSTANCE_ID", "bfg_back")]);
    first.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    let second = App::spawn(&url, &[("MQTT_INSTANCE_ID", "bfg.back")]);
    assert!(
        second
            .wait_output(
                "Another live process runs instance",
                Duration::from_secs(15)
            )
            .await,
        "{}",
        second.output()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        broker.connects_of("site_88_bfg_back"),
        1,
        "{}",
        broker.log()
    );
    assert!(!second.output().contains("Ready:"), "{}", second.output());
}

/// The holder's lock session is killed while a second process waits. The
/// waiter takes the lock, but connects only after a grace period in which
/// the holder notices (within about two seconds), closes its connections
/// and exits 1. Whoever ends up with the lock, the broker never sees two
/// clients with one client ID at once.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_lost_lock_session_hands_over_without_a_client_id_war(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let id = insert(&pool, &Row::new("site_88", broker.port())).await;
    let url = database_url(&pool);
    let env = [("MQTT_SHUTDOWN_TIMEOUT", "2s")];
    let mut first = App::spawn(&url, &env);
    first.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    let mut second = App::spawn(&url, &env);
    assert!(
        second
            .wait_output(
                "Another live process runs instance",
                Duration::from_secs(15)
            )
            .await,
        "{}",
        second.output()
    );

    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(killed, [true], "exactly the holder's lock session");

    let noticed = first
        .wait_output(
            "Lost the instance lock's database session",
            Duration::from_secs(5),
        )
        .await;
    assert!(noticed, "{}", first.output());
    let handed_over = first
        .wait_output("Another process took instance", Duration::from_secs(5))
        .await;
    eprintln!("handed over to the waiter: {handed_over}");
    if handed_over {
        let status = first.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", first.output());
        assert!(
            second
                .wait_output("to let go before connecting", Duration::from_secs(5))
                .await,
            "{}",
            second.output()
        );
        second.ready().await;
        assert!(
            eventually(Duration::from_secs(15), || async {
                broker.connects_of("site_88_test") == 2
            })
            .await,
            "{}\n{}",
            second.output(),
            broker.log()
        );
        assert!(
            observer
                .wait_for("site_88/backend/status", "online", Duration::from_secs(5))
                .await
        );
    } else {
        // The holder took its lock back first: the waiter goes on waiting.
        assert!(
            first.output().contains("Instance lock held again"),
            "{}",
            first.output()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!second.output().contains("Ready:"), "{}", second.output());
    }
    // Never two sessions with one client ID at once: Mosquitto logs a
    // takeover as "already connected, closing old connection".
    assert!(
        !broker.log().contains("already connected"),
        "{}",
        broker.log()
    );
    for app in [&first, &second] {
        assert!(!app.output().contains("cooling down"), "{}", app.output());
    }
    second.sigterm();
    let _ = second.wait_exit(Duration::from_secs(10)).await;
}
