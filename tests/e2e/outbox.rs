//! The outbox: rows the application inserts are published by the actor of
//! their connection in id order and marked published after the broker's
//! acknowledgement; rows that can never be sent are marked failed and do
//! not block the rows behind them; rows inserted while the service was down
//! are sent by the next process. With `hmac_secret`, payloads travel in the
//! envelope of docs/hmac.md, which the document's Python example verifies,
//! and inbound envelopes get a stored verdict.

use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, insert, wait_status,
};
use sqlx::PgPool;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

async fn outbox(pool: &PgPool, connection: i64, topic: &str, payload: &[u8], qos: i16) -> i64 {
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

/// Runs the Python example of docs/hmac.md with `args`, `stdin` and the
/// secret in its environment; returns what it printed.
fn python(args: &[&str], stdin: &[u8], secret: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = Command::new("python3")
        .arg(format!("{root}/docs/examples/hmac_verify.py"))
        .args(args)
        .env("HMAC_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

const SECRET: &str = "canary-hmac-7f3a9c";

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn hmac_envelopes_verify_with_the_documented_example(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    sqlx::query(
        "UPDATE mqtt_connections SET hmac_secret = $2, verify_inbound_hmac = true WHERE id = $1",
    )
    .bind(id)
    .bind(SECRET)
    .execute(&pool)
    .await
    .unwrap();
    let observer = Observer::start(broker.port(), "site_1/cmd/#").await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);

    // Outbound: the service signs; the document's example verifies.
    outbox(&pool, id, "site_1/cmd/door", br#"{"cmd":"open"}"#, 1).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            !observer.payloads("site_1/cmd/door").is_empty()
        })
        .await
    );
    let envelope = observer.payloads("site_1/cmd/door")[0].clone();
    let verdict = python(
        &["--secret-env", "HMAC_SECRET"],
        format!("{envelope}\n").as_bytes(),
        SECRET,
    );
    assert_eq!(verdict.trim(), "valid\teyJjbWQiOiJvcGVuIn0=", "{envelope}");
    let tampered = envelope.replace("eyJjbWQiOiJvcGVuIn0=", "eyJjbWQiOiJzaHV0In0=");
    let verdict = python(
        &["--secret-env", "HMAC_SECRET"],
        format!("{tampered}\n").as_bytes(),
        SECRET,
    );
    assert_eq!(verdict.trim(), "bad_signature");

    // Inbound: envelopes signed by the example get a stored verdict.
    let signed = python(
        &["--secret-env", "HMAC_SECRET", "--sign"],
        b"reading 42",
        SECRET,
    );
    let signed = signed.trim().to_owned();
    let forged = signed.replace(&base64_of("reading 42"), &base64_of("reading 99"));
    observer
        .publish("site_1/in/a", signed.clone().into_bytes(), false)
        .await;
    observer
        .publish("site_1/in/b", signed.into_bytes(), false)
        .await;
    observer
        .publish("site_1/in/c", forged.into_bytes(), false)
        .await;
    observer
        .publish("site_1/in/d", b"plain".to_vec(), false)
        .await;
    let verdicts = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT topic, hmac_verdict FROM mqtt_inbox WHERE topic LIKE 'site_1/in/%' ORDER BY topic",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            verdicts().await.len() == 4
        })
        .await
    );
    let got: Vec<(String, Option<String>)> = verdicts().await;
    let words: Vec<&str> = got
        .iter()
        .map(|(_, v)| v.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(
        words,
        ["valid", "replayed", "bad_signature", "malformed"],
        "{got:?}"
    );
    assert!(
        !app.output().contains(SECRET),
        "the secret reached a log line"
    );
}

fn base64_of(text: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import base64;print(base64.b64encode(b'{text}').decode())"),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
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
