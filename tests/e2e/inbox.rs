//! Received messages land in `mqtt_inbox`: every QoS 1 message a foreign
//! publisher sent, in order per topic, none of our own status messages; a
//! row with `store_inbound = false` stores nothing; a QoS 1 message is
//! acknowledged to the broker only once its row has committed.

use mqtt_supervisor_tests::{App, Broker, Row, database_url, eventually, insert, wait_status};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;

/// Publishes `count` QoS 1 messages over `topics` topics round-robin
/// (payload: the message's number) and waits for the broker's PUBACKs.
async fn publish(port: u16, prefix: &str, count: usize, topics: usize) {
    let mut options = MqttOptions::new(format!("publisher_{prefix}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(100);
    let (client, mut events) = AsyncClient::new(options, 1_000);
    let prefix = prefix.to_owned();
    let sender = tokio::spawn(async move {
        for i in 0..count {
            let topic = format!("{prefix}/in/{}", i % topics);
            client
                .publish(topic, QoS::AtLeastOnce, false, i.to_string())
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    tokio::time::timeout(Duration::from_secs(120), async {
        while acked < count {
            if let Event::Incoming(Incoming::PubAck(_)) = events.poll().await.unwrap() {
                acked += 1;
            }
        }
    })
    .await
    .expect("the broker acknowledged every publish");
    drop(sender.await.unwrap());
}

async fn subscribed(broker: &Broker, client_id: &str) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            broker
                .log()
                .contains(&format!("Sending SUBACK to {client_id}"))
        })
        .await
    );
}

async fn count(pool: &PgPool, id: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM mqtt_inbox WHERE connection_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

const MESSAGES: usize = 10_000;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn ten_thousand_qos1_messages_are_stored_once_in_order(pool: PgPool) {
    // Mosquitto queues at most 1,000 messages per client by default and
    // drops the rest: a burst of 10,000 needs room.
    let broker = Broker::start_with("allow_anonymous true\nmax_queued_messages 20000\n").await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let off = insert(&pool, &Row::new("site_2", broker.port())).await;
    sqlx::query("UPDATE mqtt_connections SET store_inbound = false WHERE id = $1")
        .bind(off)
        .execute(&pool)
        .await
        .unwrap();
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen("mqtt_inbox").await.unwrap();
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    assert!(
        wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
        "{}\n{}",
        app.output(),
        broker.log()
    );
    subscribed(&broker, "site_1_test").await;
    subscribed(&broker, "site_2_test").await;

    let started = std::time::Instant::now();
    publish(broker.port(), "site_1", MESSAGES, 4).await;
    publish(broker.port(), "site_2", 50, 1).await;
    let all = eventually(Duration::from_secs(60), || async {
        count(&pool, id).await >= MESSAGES as i64
    })
    .await;
    eprintln!(
        "{MESSAGES} messages stored in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        all,
        "{} of {MESSAGES} stored\n{}",
        count(&pool, id).await,
        app.output()
    );
    // Nothing more comes: exactly once here (no reconnect happened).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&pool, id).await, MESSAGES as i64);
    let rows: Vec<(String, Vec<u8>, i16, bool)> = sqlx::query_as(
        "SELECT topic, payload, qos, retain FROM mqtt_inbox WHERE connection_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    for t in 0..4 {
        let topic = format!("site_1/in/{t}");
        let numbers: Vec<usize> = rows
            .iter()
            .filter(|r| r.0 == topic)
            .map(|r| String::from_utf8_lossy(&r.1).parse().unwrap())
            .collect();
        let expected: Vec<usize> = (t..MESSAGES).step_by(4).collect();
        assert_eq!(numbers, expected, "order on {topic}");
    }
    assert!(rows.iter().all(|r| r.2 == 1 && !r.3));
    assert!(
        rows.iter().all(|r| !r.0.ends_with("/backend/status")),
        "our own status messages are not stored"
    );
    assert_eq!(count(&pool, off).await, 0, "store_inbound = false");
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("NOTIFY mqtt_inbox")
        .unwrap();
    assert_eq!(note.channel(), "mqtt_inbox");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn qos1_is_acknowledged_only_after_the_row_committed(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    subscribed(&broker, "site_1_test").await;

    // Hold the table: the writer's INSERT waits behind the lock.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE mqtt_inbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    // Our own retained `online` comes back on `site_1/#` and is acknowledged
    // without being stored: count from after it.
    let acks = || {
        broker
            .log()
            .matches("Received PUBACK from site_1_test")
            .count()
    };
    assert!(eventually(Duration::from_secs(5), || async { acks() >= 1 }).await);
    let before = acks();
    publish(broker.port(), "site_1", 5, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        acks(),
        before,
        "nothing is acknowledged before it is stored\n{}",
        broker.log()
    );
    blocker.rollback().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async { acks() >= before + 5 }).await,
        "acknowledged once stored\n{}",
        broker.log()
    );
    assert_eq!(count(&pool, id).await, 5);
}

/// Stored rows of `id`: (all, distinct payloads).
async fn stored(pool: &PgPool, id: i64) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(DISTINCT payload) FROM mqtt_inbox WHERE connection_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_database_outage_holds_messages_and_loses_none(pool: PgPool) {
    let broker = Broker::start_with("allow_anonymous true\nmax_queued_messages 20000\n").await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let proxy = mqtt_supervisor_tests::DbProxy::start_for(&pool).await;
    let app = App::spawn(&proxy.url_for(&pool), &[]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    subscribed(&broker, "site_1_test").await;

    proxy.cut().await;
    publish(broker.port(), "site_1", 300, 3).await;
    // The writer holds what it has and says so; health is degraded.
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.health(false).await.is_some_and(|(_, h)| {
                h["service"]["inbox"] == "failing" && h["status"] == "degraded"
            })
        })
        .await,
        "{:?}\n{}",
        app.health(false).await,
        app.output()
    );
    proxy.restore().await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            stored(&pool, id).await.1 >= 300
        })
        .await,
        "{:?} stored\n{}",
        stored(&pool, id).await,
        app.output()
    );
    let (all, distinct) = stored(&pool, id).await;
    eprintln!("database outage: {all} rows for {distinct} messages");
    assert_eq!(distinct, 300);
    assert_eq!(all, 300, "nothing stored twice without a reconnect");
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.health(false)
                .await
                .is_some_and(|(_, h)| h["service"]["inbox"] == "ok")
        })
        .await
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn kill_9_with_a_persistent_session_loses_nothing(pool: PgPool) {
    let broker = Broker::start_with("allow_anonymous true\nmax_queued_messages 20000\n").await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    sqlx::query("UPDATE mqtt_connections SET clean_session = false WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let mut app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    subscribed(&broker, "site_1_test").await;

    let publisher = tokio::spawn(publish(broker.port(), "site_1", 3_000, 3));
    assert!(
        eventually(Duration::from_secs(20), || async {
            stored(&pool, id).await.0 >= 300
        })
        .await
    );
    app.sigkill();
    let _ = app.wait_exit(Duration::from_secs(5)).await;
    publisher.await.unwrap();
    let at_kill = stored(&pool, id).await;
    // The broker keeps what was never acknowledged for the session and
    // hands it to the next process, which has the same client ID.
    let next = App::spawn(&database_url(&pool), &[]);
    next.ready().await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            stored(&pool, id).await.1 >= 3_000
        })
        .await,
        "{:?} stored (at the kill: {at_kill:?})\n{}",
        stored(&pool, id).await,
        next.output()
    );
    let (all, distinct) = stored(&pool, id).await;
    eprintln!(
        "kill -9 mid-stream: {all} rows for {distinct} messages ({} duplicates; {} stored at the kill)",
        all - distinct,
        at_kill.0
    );
    assert_eq!(distinct, 3_000);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn mqtt5_properties_are_kept_as_json(pool: PgPool) {
    use rumqttc::v5::{self, mqttbytes::QoS as QoS5, mqttbytes::v5::PublishProperties};
    let broker = Broker::start().await;
    let id = insert(
        &pool,
        &Row {
            protocol: Some("5".to_owned()),
            ..Row::new("site_1", broker.port())
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    subscribed(&broker, "site_1_test").await;

    let options = v5::MqttOptions::new("v5_publisher", "127.0.0.1", broker.port());
    let (client, mut events) = v5::AsyncClient::new(options, 16);
    let properties = PublishProperties {
        content_type: Some("application/json".to_owned()),
        response_topic: Some("site_1/reply".to_owned()),
        correlation_data: Some(vec![0xca, 0xfe].into()),
        user_properties: vec![("origin".to_owned(), "meter-7".to_owned())],
        payload_format_indicator: Some(1),
        ..Default::default()
    };
    client
        .publish_with_properties("site_1/in/p", QoS5::AtLeastOnce, false, "{}", properties)
        .await
        .unwrap();
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let stored = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT properties::text FROM mqtt_inbox WHERE topic = 'site_1/in/p'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            stored().await.is_some()
        })
        .await
    );
    poller.abort();
    let text = stored().await.flatten().expect("properties stored");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["content_type"], "application/json");
    assert_eq!(json["response_topic"], "site_1/reply");
    assert_eq!(json["correlation_data_hex"], "cafe");
    assert_eq!(json["payload_utf8"], true);
    assert_eq!(
        json["user_properties"],
        serde_json::json!([["origin", "meter-7"]])
    );
}
