//! SIGTERM with 50 live connections: every one says `offline` and sends a
//! clean DISCONNECT, the last states are written, and the process exits 0
//! within MQTT_SHUTDOWN_TIMEOUT (5 s, the contract's default).

use mqtt_supervisor_tests::{App, Broker, Observer, Row, database_url, eventually, insert};
use sqlx::PgPool;
use std::time::{Duration, Instant};

const ROWS: usize = 50;

fn name(i: usize) -> String {
    format!("site_{i}")
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sigterm_disconnects_all_fifty_cleanly_and_exits_zero(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    for i in 1..=ROWS {
        insert(&pool, &Row::new(&name(i), broker.port())).await;
    }
    let mut app = App::spawn(&database_url(&pool), &[("MQTT_SHUTDOWN_TIMEOUT", "5")]);
    app.ready().await;

    let app_ref = &app;
    let all_up = eventually(Duration::from_secs(20), || async move {
        app_ref.health(false).await.is_some_and(|(code, body)| {
            code == 200 && body["status"] == "healthy" && body["connections"]["healthy"] == ROWS
        })
    })
    .await;
    assert!(
        all_up,
        "not all {ROWS} connected: {:?}\n{}",
        app.health(false).await,
        app.output()
    );
    let all_online = eventually(Duration::from_secs(10), || async {
        (1..=ROWS).all(|i| {
            observer
                .last(&format!("{}/backend/status", name(i)))
                .as_deref()
                == Some("online")
        })
    })
    .await;
    assert!(all_online, "{:?}", observer.all());

    let began = Instant::now();
    app.sigterm();
    let status = app.wait_exit(Duration::from_secs(8)).await;
    let took = began.elapsed();
    let output = app.output();
    let status = status.unwrap_or_else(|| panic!("still running 8 s after SIGTERM:\n{output}"));
    assert_eq!(status.code(), Some(0), "{status:?}\n{output}");
    assert!(
        output.contains("All connections disconnected in"),
        "no shutdown summary:\n{output}"
    );
    eprintln!("SIGTERM to exit with {ROWS} connections: {took:?}");

    let all_offline = eventually(Duration::from_secs(5), || async {
        (1..=ROWS).all(|i| {
            observer
                .last(&format!("{}/backend/status", name(i)))
                .as_deref()
                == Some("offline")
        })
    })
    .await;
    let still: Vec<String> = (1..=ROWS)
        .map(name)
        .filter(|n| observer.last(&format!("{n}/backend/status")).as_deref() != Some("offline"))
        .collect();
    assert!(all_offline, "status not `offline` for {still:?}");

    // Clean DISCONNECTs, so the `offline`s were the service's own, not Wills.
    let log = broker.log();
    let unclean: Vec<String> = (1..=ROWS)
        .map(|i| format!("{}_test", name(i)))
        .filter(|id| broker.disconnects_of(id) != 1)
        .collect();
    assert!(
        unclean.is_empty(),
        "no clean DISCONNECT from {unclean:?}:\n{log}"
    );

    let states: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.name, s.status FROM mqtt_connections c \
         LEFT JOIN mqtt_connection_state s ON s.connection_id = c.id ORDER BY c.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(states.len(), ROWS);
    let not_stopped: Vec<&(String, Option<String>)> = states
        .iter()
        .filter(|(_, s)| s.as_deref() != Some("stopped"))
        .collect();
    assert!(not_stopped.is_empty(), "not stopped: {not_stopped:?}");
}
