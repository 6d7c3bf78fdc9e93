//! A crash (SIGKILL) is visible on the status topic through the broker's Last
//! Will, and a restarted service comes straight back `online`.
//!
//! The contract bound is 1.5 × keep-alive (7.5 s with MQTT_KEEP_ALIVE=5);
//! on loopback the kernel closes the dead process's sockets at once, so the
//! Will normally fires within milliseconds. The test allows 10 s.

use mqtt_supervisor_tests::{App, Broker, Observer, Row, database_url, eventually, insert};
use sqlx::PgPool;
use std::time::{Duration, Instant};

const KEEP_ALIVE: (&str, &str) = ("MQTT_KEEP_ALIVE", "5");
const TOPIC: &str = "site_1/backend/status";

/// The first connection's health detail once it reports `connected`.
async fn connected_detail(app: &App) -> Option<serde_json::Value> {
    let up = eventually(Duration::from_secs(10), || async move {
        app.health(true)
            .await
            .is_some_and(|(_, body)| body["details"][0]["status"] == "connected")
    })
    .await;
    if !up {
        return None;
    }
    Some(app.health(true).await?.1["details"][0].clone())
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sigkill_fires_the_will_and_a_restart_comes_back_online(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    insert(&pool, &Row::new("site_1", broker.port())).await;
    let url = database_url(&pool);

    let mut first = App::spawn(&url, &[KEEP_ALIVE]);
    first.ready().await;
    assert!(
        observer
            .wait_for(TOPIC, "online", Duration::from_secs(10))
            .await,
        "never online:\n{}",
        first.output()
    );
    assert!(connected_detail(&first).await.is_some());

    let killed = Instant::now();
    first.sigkill();
    let will = observer
        .wait_for(TOPIC, "offline", Duration::from_secs(10))
        .await;
    let took = killed.elapsed();
    assert!(
        will,
        "no Will `offline` within 10 s of SIGKILL (keep-alive 5 s): {:?}",
        observer.all()
    );
    let status = first.wait_exit(Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "SIGKILL must end the process uncleanly: {status:?}"
    );
    // No DISCONNECT reached the broker: the `offline` was the Last Will.
    assert_eq!(broker.disconnects_of("site_1_test"), 0, "{}", broker.log());
    eprintln!("SIGKILL to Will `offline`: {took:?}");

    let second = App::spawn(&url, &[KEEP_ALIVE]);
    second.ready().await;
    assert!(
        observer
            .wait_for(TOPIC, "online", Duration::from_secs(10))
            .await,
        "not online again after restart: {:?}\n{}",
        observer.all(),
        second.output()
    );
    let detail = connected_detail(&second)
        .await
        .unwrap_or_else(|| panic!("not connected after restart:\n{}", second.output()));
    assert!(detail["cooldown_until"].is_null(), "{detail}");
    assert_eq!(detail["reconnects"], 0, "{detail}");
    assert!(detail["last_error"].is_null(), "{detail}");
    assert_eq!(broker.connects_of("site_1_test"), 2, "{}", broker.log());

    // Nothing kicks the new connection: a takeover would show within the
    // takeover window as a `cooldown` state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, cooldown_until): (String, Option<String>) = sqlx::query_as(
        "SELECT status, cooldown_until::text FROM mqtt_connection_state s \
         JOIN mqtt_connections c ON c.id = s.connection_id WHERE c.name = 'site_1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "connected");
    assert_eq!(cooldown_until, None);
    let cooldowns: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mqtt_connection_events WHERE status = 'cooldown'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        cooldowns,
        0,
        "a cooldown was recorded:\n{}",
        second.output()
    );
    assert_eq!(observer.last(TOPIC).as_deref(), Some("online"));
    assert!(!second.output().contains("duplicate client ID"));
}
