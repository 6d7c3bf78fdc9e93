//! The outbox: rows the application inserts are published by the actor of
//! their connection in id order and marked published after the broker's
//! acknowledgement; rows that can never be sent are marked failed and do
//! not block the rows behind them; rows inserted while the service was down
//! are sent by the next process; MQTT 5 messages carry the row's id; old
//! messages are pruned.

use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, insert, wait_status,
};
use sqlx::PgPool;
use std::time::Duration;

pub(crate) async fn outbox(
    pool: &PgPool,
    connection: i64,
    topic: &str,
    payload: &[u8],
    qos: i16,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO mqtt_outbox (connection_id, topic, payload, qos) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(connection)
    .bind(topic)
    .bind(payload)
    .bind(qos)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn unsettled(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM mqtt_outbox WHERE published_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

const ROWS: usize = 500;

/// A broker, a connected row `site_1` and an observer of `site_1/cmd/#`.
async fn connected_site(pool: &PgPool) -> (Broker, i64, Observer, App) {
    let broker = Broker::start().await;
    let id = insert(pool, &Row::new("site_1", broker.port())).await;
    let observer = Observer::start(broker.port(), "site_1/cmd/#").await;
    let app = App::spawn(&database_url(pool), &[]);
    app.ready().await;
    assert!(wait_status(pool, id, "connected", Duration::from_secs(10)).await);
    (broker, id, observer, app)
}

/// Waits until every row is published or failed; else fails naming the
/// rows left (id, qos, attempts).
async fn settle_all(pool: &PgPool, app: &App, within: Duration) {
    if eventually(within, || async { unsettled(pool).await == 0 }).await {
        return;
    }
    let left: Vec<(i64, i16, i32)> = sqlx::query_as(
        "SELECT id, qos, attempts FROM mqtt_outbox \
         WHERE published_at IS NULL AND failed_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    panic!("unsettled (id, qos, attempts): {left:?}\n{}", app.output());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn rows_are_published_in_order_and_marked_after_the_ack(pool: PgPool) {
    let (_broker, id, observer, app) = connected_site(&pool).await;

    // One statement, as an application would batch them; some at QoS 0.
    // (QoS 2 is left out: brokers deliver a QoS 2 message at PUBREL, after
    // QoS 1 messages sent behind it, so MQTT orders per QoS level only.)
    sqlx::query(
        "INSERT INTO mqtt_outbox (connection_id, topic, payload, qos) \
         SELECT $1, 'site_1/cmd/' || (i % 3), convert_to(i::text, 'UTF8'), \
                CASE WHEN i % 50 = 9 THEN 0 ELSE 1 END \
         FROM generate_series(0, $2 - 1) AS i",
    )
    .bind(id)
    .bind(ROWS as i32)
    .execute(&pool)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    settle_all(&pool, &app, Duration::from_secs(30)).await;
    eprintln!(
        "{ROWS} outbox rows published in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let attempts: Vec<(i32, bool)> =
        sqlx::query_as("SELECT attempts, failed_at IS NULL FROM mqtt_outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        attempts.iter().all(|(n, ok)| *n == 1 && *ok),
        "{attempts:?}"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            observer.all().len() >= ROWS
        })
        .await
    );
    for t in 0..3 {
        let topic = format!("site_1/cmd/{t}");
        let seen: Vec<usize> = observer
            .payloads(&topic)
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        // QoS 0 messages may overtake QoS 1 ones the broker queues for a
        // slow subscriber: order holds per QoS level.
        let qos1 = |i: &usize| i % 50 != 9;
        let expected: Vec<usize> = (t..ROWS).step_by(3).filter(qos1).collect();
        let seen_qos1: Vec<usize> = seen.iter().copied().filter(qos1).collect();
        assert_eq!(seen_qos1, expected, "order on {topic}");
        assert_eq!(seen.len(), (t..ROWS).step_by(3).count(), "all on {topic}");
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn unsendable_rows_fail_without_blocking_the_rest(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let observer = Observer::start(broker.port(), "site_1/cmd/#").await;
    // Inserted while no service runs: the next process sends them.
    let wildcard = outbox(&pool, id, "site_1/cmd/#", b"x", 1).await;
    let huge = outbox(&pool, id, "site_1/cmd/big", &vec![b'x'; 4096], 1).await;
    let nobody = outbox(&pool, 999_999, "site_1/cmd/x", b"x", 1).await;
    let fine = outbox(&pool, id, "site_1/cmd/ok", b"after the bad ones", 1).await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_MAX_PACKET_SIZE", "2KiB")]);
    app.ready().await;
    assert!(
        observer
            .wait_for(
                "site_1/cmd/ok",
                "after the bad ones",
                Duration::from_secs(15)
            )
            .await,
        "{}",
        app.output()
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            unsettled(&pool).await == 0
        })
        .await
    );
    let row = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (Option<String>, bool, bool)>(
                "SELECT last_error, published_at IS NOT NULL, failed_at IS NOT NULL \
                 FROM mqtt_outbox WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (error, published, failed) = row(wildcard).await;
    assert!(failed && !published, "wildcard topic");
    assert!(error.unwrap().contains("invalid topic"));
    let (error, _, failed) = row(huge).await;
    assert!(failed, "oversize payload");
    assert!(error.unwrap().contains("MQTT_MAX_PACKET_SIZE"));
    let (error, _, failed) = row(nobody).await;
    assert!(failed, "unknown connection");
    assert_eq!(error.as_deref(), Some("unknown connection"));
    let (error, published, failed) = row(fine).await;
    assert!(published && !failed && error.is_none());
    assert!(observer.payloads("site_1/cmd/#").is_empty());
    assert!(observer.payloads("site_1/cmd/big").is_empty());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn qos2_rows_mixed_with_qos1_all_settle(pool: PgPool) {
    let (_broker, id, observer, app) = connected_site(&pool).await;
    sqlx::query(
        "INSERT INTO mqtt_outbox (connection_id, topic, payload, qos) \
         SELECT $1, 'site_1/cmd/' || (i % 3), convert_to(i::text, 'UTF8'), \
                CASE WHEN i % 5 = 2 THEN 2 ELSE 1 END \
         FROM generate_series(0, 499) AS i",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    settle_all(&pool, &app, Duration::from_secs(20)).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            observer.all().len() >= 500
        })
        .await
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn mqtt5_messages_carry_the_outbox_id(pool: PgPool) {
    use rumqttc::v5::{self, mqttbytes::QoS as QoS5, mqttbytes::v5::Packet};
    let broker = Broker::start().await;
    let id = insert(
        &pool,
        &Row {
            protocol: Some("5".to_owned()),
            ..Row::new("site_1", broker.port())
        },
    )
    .await;
    let mut options = v5::MqttOptions::new("outbox_id_observer", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = v5::AsyncClient::new(options, 16);
    client
        .subscribe("site_1/cmd/#", QoS5::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(
            events.poll().await,
            Ok(v5::Event::Incoming(Packet::SubAck(_)))
        ) {}
    })
    .await
    .expect("subscribed");
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    let row = outbox(&pool, id, "site_1/cmd/v5", b"hello", 1).await;
    let properties = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(v5::Event::Incoming(Packet::Publish(p))) = events.poll().await
                && p.topic.as_ref() == b"site_1/cmd/v5"
            {
                return p.properties;
            }
        }
    })
    .await
    .expect("the row was published");
    let user = properties.map(|p| p.user_properties).unwrap_or_default();
    assert_eq!(user, vec![("outbox-id".to_owned(), row.to_string())]);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn old_messages_are_pruned_and_orphans_fail(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let off = insert(
        &pool,
        &Row {
            enabled: Some(false),
            ..Row::new("site_2", broker.port())
        },
    )
    .await;
    sqlx::query(
        "INSERT INTO mqtt_inbox (connection_id, topic, payload, qos, received_at) VALUES \
             ($1, 'old', 'x', 0, now() - interval '3 days'), ($1, 'new', 'x', 0, now())",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO mqtt_outbox (connection_id, topic, created_at, published_at) VALUES \
             ($1, 'old', now() - interval '3 days', now() - interval '3 days'), \
             ($1, 'new', now(), now())",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let disabled = outbox(&pool, off, "site_2/cmd", b"x", 1).await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_INBOX_RETENTION", "2d")]);
    app.ready().await;
    let topics = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let query = match table {
                "inbox" => "SELECT topic FROM mqtt_inbox ORDER BY id",
                _ => "SELECT topic FROM mqtt_outbox WHERE published_at IS NOT NULL ORDER BY id",
            };
            sqlx::query_scalar::<_, String>(query)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            topics("inbox").await == ["new"] && topics("outbox").await == ["new"]
        })
        .await,
        "{:?} {:?}\n{}",
        topics("inbox").await,
        topics("outbox").await,
        app.output()
    );
    let (failed, error): (bool, Option<String>) =
        sqlx::query_as("SELECT failed_at IS NOT NULL, last_error FROM mqtt_outbox WHERE id = $1")
            .bind(disabled)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(failed);
    assert_eq!(error.as_deref(), Some("the connection is disabled"));
}
