//! The broker goes away and comes back: a restart (every connection returns
//! and re-announces `online`) and a freeze (SIGSTOP: the socket stays open
//! but nothing answers, so only keep-alive can notice).

use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, insert, state, wait_status,
};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// `(status, reconnects)` of row `id`.
async fn status_and_reconnects(pool: &PgPool, id: i64) -> Option<(String, i64)> {
    sqlx::query_as("SELECT status, reconnects FROM mqtt_connection_state WHERE connection_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Waits until row `id` is connected again after at least one reconnect.
async fn reconnected(pool: &PgPool, id: i64, timeout: Duration) -> bool {
    eventually(timeout, || async move {
        status_and_reconnects(pool, id)
            .await
            .is_some_and(|(s, n)| s == "connected" && n >= 1)
    })
    .await
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn broker_restart_reconnects_every_connection_and_reannounces(pool: PgPool) {
    let mut broker = Broker::start().await;
    let names = ["site_1", "site_2", "site_3"];
    let mut ids = Vec::new();
    for name in names {
        ids.push(insert(&pool, &Row::new(name, broker.port())).await);
    }
    // A close this long after CONNACK is a lost broker, not a takeover.
    let app = App::spawn(&database_url(&pool), &[("MQTT_TAKEOVER_WINDOW", "1")]);
    app.ready().await;
    for id in &ids {
        assert!(
            wait_status(&pool, *id, "connected", Duration::from_secs(10)).await,
            "{}",
            app.output()
        );
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // The log file is shared across the restart: count from here.
    let before: Vec<usize> = names
        .iter()
        .map(|n| broker.connects_of(&format!("{n}_test")))
        .collect();
    assert_eq!(before, vec![1, 1, 1], "{}", broker.log());
    broker.stop().await;
    for id in &ids {
        assert!(
            wait_status(&pool, *id, "disconnected", Duration::from_secs(10)).await,
            "row {id} did not notice the broker stopping: {:?}",
            state(&pool, *id).await
        );
    }
    broker.restart().await;
    // Persistence is off: the old broker's retained messages are gone, so
    // any `online` seen now was published after the reconnect.
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    for (id, name) in ids.iter().zip(names) {
        assert!(
            reconnected(&pool, *id, Duration::from_secs(30)).await,
            "{name} did not come back: {:?}\n{}",
            state(&pool, *id).await,
            app.output()
        );
        let topic = format!("{name}/backend/status");
        assert!(
            observer
                .wait_for(&topic, "online", Duration::from_secs(5))
                .await,
            "{name} did not re-announce `online`: {:?}",
            observer.all()
        );
        // The restarted broker saw exactly one CONNECT from it.
        assert_eq!(
            broker.connects_of(&format!("{name}_test")),
            2,
            "{}",
            broker.log()
        );
    }
    let cooldowns: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mqtt_connection_events WHERE status = 'cooldown'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        cooldowns,
        0,
        "a broker restart was taken for a takeover:\n{}",
        app.output()
    );
    let (code, body) = app.health(false).await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["connections"]["healthy"], 3, "{body}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn frozen_broker_is_detected_by_keep_alive_and_recovered_after_thaw(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_KEEP_ALIVE", "5")]);
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );

    broker.freeze();
    let frozen = Instant::now();
    // rumqttc pings after one idle keep-alive and gives up one keep-alive
    // later: about 2 × keep-alive; 20 s leaves a wide margin.
    let noticed = wait_status(&pool, id, "disconnected", Duration::from_secs(20)).await;
    let took = frozen.elapsed();
    broker.thaw();
    assert!(
        noticed,
        "frozen broker not noticed within 20 s (keep-alive 5 s): {:?}\n{}",
        state(&pool, id).await,
        app.output()
    );
    eprintln!("freeze to `disconnected`: {took:?}");
    let reason: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM mqtt_connection_events \
         WHERE connection_id = $1 AND status = 'disconnected' ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        reason.first().is_some_and(|d| d.contains("keep-alive")),
        "the first loss should be the keep-alive timeout: {reason:?}"
    );

    assert!(
        reconnected(&pool, id, Duration::from_secs(20)).await,
        "no reconnect after thaw: {:?}\n{}",
        state(&pool, id).await,
        app.output()
    );
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    assert!(
        observer
            .wait_for("site_1/backend/status", "online", Duration::from_secs(5))
            .await,
        "retained status is not `online` after recovery: {:?}\n{}",
        observer.all(),
        broker.log()
    );
}
