//! Nothing outside the process may stretch the shutdown past
//! MQTT_SHUTDOWN_TIMEOUT: not a database whose tables are locked, not a
//! database that answers nothing, not a broker that never closes after our
//! DISCONNECT. Before the hardening a reconcile waiting on the database
//! held the exit up for good (the process was still running 15 s after
//! SIGTERM), and a connection dropped at the deadline left its row
//! `connected` behind.

use super::holds_after_disconnect;
use mqtt_supervisor_tests::{
    App, Broker, DbProxy, FakeBroker, PacketKind, Row, database_url, eventually, hold_lock, insert,
    state, wait_status,
};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// MQTT_SHUTDOWN_TIMEOUT for the database cases…
const SHUTDOWN_TIMEOUT: &str = "3s";
/// …and the bound on the exit: the timeout plus 1.5 s.
const EXIT_BOUND: Duration = Duration::from_millis(4_500);

/// The settings of the database cases: a reconcile every second, so one is
/// waiting on the database when the signal comes, without any NOTIFY.
const SLOW_DB_ENV: [(&str, &str); 3] = [
    ("MQTT_SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT),
    ("MQTT_MONITOR_INTERVAL", "1"),
    ("MQTT_TAKEOVER_WINDOW", "0"),
];

/// The status of row `id` in the service's own health report (read from
/// memory, not from the database).
async fn health_status(app: &App, id: i64) -> Option<String> {
    let (_, body) = app.health(true).await?;
    let d = body["details"].as_array()?.iter().find(|d| d["id"] == id)?;
    Some(d["status"].as_str()?.to_owned())
}

/// Waits until the service itself reports row `id` as `status`.
async fn wait_health_status(app: &App, id: i64, status: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        health_status(app, id).await.as_deref() == Some(status)
    })
    .await
}

/// SIGTERM; panics unless the process exits with code 0 within `bound`
/// (waiting at most 15 s). Prints how long it took.
async fn sigterm_and_time_exit(app: &mut App, what: &str, bound: Duration) {
    let began = Instant::now();
    app.sigterm();
    let status = app.wait_exit(Duration::from_secs(15)).await;
    let took = began.elapsed();
    let out = app.output();
    eprintln!("{what}: SIGTERM to exit in {:.2} s", took.as_secs_f64());
    let status =
        status.unwrap_or_else(|| panic!("{what}: still running 15 s after SIGTERM\n{out}"));
    assert_eq!(status.code(), Some(0), "{what}: {status:?}\n{out}");
    assert!(
        took < bound,
        "{what}: exit took {:.2} s, bound {:.2} s\n{out}",
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
}

/// The last word of a shutdown says how it ended.
fn assert_exit_line(app: &App) {
    let out = app.output();
    let line = out
        .lines()
        .find(|l| {
            l.contains("Shutdown complete in") || l.contains("Shutdown deadline reached after")
        })
        .unwrap_or_else(|| panic!("no exit line:\n{out}"));
    eprintln!("exit line: {line}");
}

/// Queries of this database waiting for a lock.
async fn lock_waits(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn locked_tables_do_not_stretch_the_shutdown(pool: PgPool) {
    let mut broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let mut app = App::spawn(&database_url(&pool), &SLOW_DB_ENV);
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );

    let connections = hold_lock(&pool, "mqtt_connections").await;
    let states = hold_lock(&pool, "mqtt_connection_state").await;
    broker.stop().await;
    assert!(
        wait_health_status(&app, id, "disconnected").await,
        "{:?}\n{}",
        app.health(true).await,
        app.output()
    );
    // A reconcile and the recorder's write of `disconnected` are both stuck.
    let stuck = eventually(Duration::from_secs(10), || async {
        let waits = lock_waits(&pool).await;
        waits.iter().any(|q| q.contains("mqtt_connection_state"))
            && waits
                .iter()
                .any(|q| q.contains("mqtt_connections") && !q.contains("mqtt_connection_state"))
    })
    .await;
    assert!(
        stuck,
        "nothing waits on the locks: {:?}",
        lock_waits(&pool).await
    );

    sigterm_and_time_exit(&mut app, "tables locked", EXIT_BOUND).await;
    connections.release().await;
    states.release().await;
    assert_exit_line(&app);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn black_holed_database_does_not_stretch_the_shutdown(pool: PgPool) {
    let mut broker = Broker::start().await;
    let proxy = DbProxy::start_for(&pool).await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let mut app = App::spawn(&proxy.url_for(&pool), &SLOW_DB_ENV);
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );

    // The database goes dark with a reconcile's query in flight: a table
    // lock parks the query on the server, the proxy freezes, and the lock
    // goes, so only the black hole keeps the answer from the service.
    let lock = hold_lock(&pool, "mqtt_connections").await;
    let parked = eventually(Duration::from_secs(10), || async {
        lock_waits(&pool)
            .await
            .iter()
            .any(|q| q.contains("mqtt_connections"))
    })
    .await;
    assert!(parked, "no reconcile waits on the lock:\n{}", app.output());
    proxy.freeze().await;
    lock.release().await;
    broker.stop().await;
    assert!(
        wait_health_status(&app, id, "disconnected").await,
        "{:?}\n{}",
        app.health(true).await,
        app.output()
    );
    // Long enough for the state write to hang too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        state(&pool, id).await.unwrap().0,
        "connected",
        "the database was not black-holed"
    );

    sigterm_and_time_exit(&mut app, "database black-holed", EXIT_BOUND).await;
    assert_exit_line(&app);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn broker_that_never_closes_is_dropped_at_the_deadline(pool: PgPool) {
    let broker = FakeBroker::start(vec![holds_after_disconnect()]).await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let mut app = App::spawn(
        &database_url(&pool),
        &[
            ("MQTT_CONNECT_TIMEOUT", "10s"),
            ("MQTT_LEASE_PERIOD", "22s"),
            ("MQTT_SHUTDOWN_TIMEOUT", "2s"),
        ],
    );
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );
    assert!(
        broker
            .wait_packet(0, PacketKind::Subscribe, Duration::from_secs(5))
            .await
    );

    let bound = Duration::from_millis(3_500);
    sigterm_and_time_exit(&mut app, "broker never closes", bound).await;
    let out = app.output();
    let first = broker.connection(0);
    assert!(
        first.disconnect_received,
        "no DISCONNECT was sent: {first:?}"
    );
    assert_eq!(broker.connections(), 1);
    // The row must not stay `connected` after the process is gone.
    let (status, detail, _) = state(&pool, id).await.unwrap();
    assert_eq!(status, "stopped", "{detail}\n{out}");
    assert!(detail.contains("shutdown deadline"), "{detail}");
    assert!(
        out.contains("did not close within MQTT_SHUTDOWN_TIMEOUT"),
        "{out}"
    );
    assert_exit_line(&app);
}
