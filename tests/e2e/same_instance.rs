//! Two processes with the same MQTT_INSTANCE_ID against the same database
//! (the classic mistake, or two replicas on purpose) share the connections
//! through leases instead of fighting over client IDs: each connection is
//! held by one of them at a time (handed over cleanly), and the broker sees
//! no takeover.

use mqtt_supervisor_tests::{Api, App, Broker, Row, database_url, eventually, insert};
use sqlx::PgPool;
use std::time::Duration;

async fn owned(app: &App) -> Option<u64> {
    let (_, body) = app.health(false).await?;
    body["service"]["owned"].as_u64()
}

/// Runs two processes with `instance_ids` over 20 connections; they end
/// up owning 10 each and every client ID connected exactly once.
async fn share(pool: PgPool, instance_ids: [&'static str; 2]) {
    let broker = Broker::start().await;
    for i in 0..20 {
        insert(&pool, &Row::new(&format!("site_{i}"), broker.port())).await;
    }
    let url = database_url(&pool);
    let env = |instance: &'static str| {
        [
            ("MQTT_INSTANCE_ID", instance),
            ("MQTT_LEASE_PERIOD", "4"),
            ("MQTT_CONNECT_TIMEOUT", "1"),
            ("MQTT_MONITOR_INTERVAL", "2"),
        ]
    };
    let first = App::spawn(&url, &env(instance_ids[0]));
    first.ready().await;
    let second = App::spawn(&url, &env(instance_ids[1]));
    second.ready().await;
    let shared = eventually(Duration::from_secs(30), || async {
        owned(&first).await == Some(10) && owned(&second).await == Some(10)
    })
    .await;
    assert!(
        shared,
        "owned {:?} and {:?}\n{}\n{}",
        owned(&first).await,
        owned(&second).await,
        first.output(),
        second.output()
    );
    // Both are listed, alive, with their shares: REST and the CLI.
    let api = Api::new(first.http_port());
    let (code, body) = api.get("/api/v1/mqtt/replicas").await;
    assert_eq!(code, 200, "{body}");
    let listed = body["replicas"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body}");
    assert!(
        listed
            .iter()
            .all(|r| r["alive"] == true && r["owned"] == 10),
        "{body}"
    );
    let mut cli = App::spawn_args(
        &url,
        &["replicas"],
        &[("MQTT_INSTANCE_ID", instance_ids[0])],
    );
    let exited = cli.wait_exit(Duration::from_secs(10)).await;
    assert!(exited.is_some_and(|s| s.success()), "{}", cli.output());
    let printed = cli.output();
    for r in listed {
        let id = r["replica_id"].as_str().unwrap();
        let line = printed.lines().find(|l| l.starts_with(id));
        assert!(
            line.is_some_and(|l| l.contains(" yes ") && l.contains(" 10 ")),
            "{printed}"
        );
    }
    let client_id = |i: usize| format!("site_{i}_{}", settings_like_sanitise(instance_ids[0]));
    let connected = eventually(Duration::from_secs(10), || async {
        (0..20).all(|i| broker.connects_of(&client_id(i)) >= 1)
    })
    .await;
    assert!(connected, "{}", broker.log());
    let log = broker.log();
    assert!(
        !log.contains("already connected, closing old connection"),
        "a client ID was taken over:\n{log}"
    );
    // The first took all 20, then handed 10 over to the second: a clean
    // DISCONNECT, then the second's CONNECT; never more.
    for i in 0..20 {
        let connects = broker.connects_of(&client_id(i));
        assert!(
            (1..=2).contains(&connects),
            "site_{i} connected {connects} times:\n{log}"
        );
        assert_eq!(
            broker.disconnects_of(&client_id(i)),
            connects - 1,
            "site_{i}: each handover is a clean disconnect first:\n{log}"
        );
    }
}

/// `[A-Za-z0-9_-]` stay, everything else becomes `_` (the MQTT contract).
fn settings_like_sanitise(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_second_process_of_the_instance_shares_instead_of_fighting(pool: PgPool) {
    share(pool, ["test", "test"]).await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn instance_ids_that_sanitise_alike_share_the_connections(pool: PgPool) {
    // `web.1` and `web_1` give the same client IDs: one set of leases.
    share(pool, ["web.1", "web_1"]).await;
}
