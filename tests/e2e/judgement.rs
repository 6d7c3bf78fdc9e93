//! What a broker's close means, judged as brokers other than Mosquitto
//! behave (issue 8): a close right after our SUBSCRIBE points at the ACL,
//! not at the client ID; a close before CONNACK names its likely causes;
//! a takeover war escalates the cooldown and ends in `error` naming the
//! client ID. Each was reported wrongly before: "likely a duplicate client
//! ID" and a reconnect every cooldown forever, or "connection closed by
//! peer" and nothing else.

use mqtt_supervisor_tests::{
    App, Broker, FakeBroker, Foreign, PacketKind, Row, Step, database_url, insert, state,
    wait_error, wait_status,
};
use sqlx::PgPool;
use std::time::Duration;

/// RabbitMQ's answer to a SUBSCRIBE the user may not make: it answers the
/// status PUBLISH, never the SUBSCRIBE, and closes the connection.
fn closes_on_subscribe() -> Vec<Step> {
    vec![
        Step::ConnAck { code: 0 },
        Step::WaitFor(PacketKind::Publish),
        Step::Mute,
        Step::WaitFor(PacketKind::Subscribe),
        Step::Close,
    ]
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_close_right_after_subscribe_is_reported_as_an_acl_refusal(pool: PgPool) {
    let broker = FakeBroker::start(vec![closes_on_subscribe()]).await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    // The default takeover window (10 s): each close comes milliseconds
    // after CONNACK, which used to be judged a takeover.
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    let Some((status, detail, last_error)) = wait_error(
        &pool,
        id,
        &["error"],
        "check the broker's ACL",
        Duration::from_secs(20),
    )
    .await
    else {
        panic!(
            "no ACL error: {:?} after {} connections\n{}",
            state(&pool, id).await,
            broker.connections(),
            app.output()
        );
    };
    assert_eq!(status, "error");
    assert_eq!(
        last_error,
        "the broker closed the connection right after we subscribed to `site_1/#`: it may refuse that topic (check the broker's ACL for this user)"
    );
    assert!(detail.contains("retrying in about"), "{detail}");
    // Three closes in a row, then the slow retry (45-75 s): no more now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(broker.connections(), 3, "{}", app.output());
    let out = app.output();
    assert!(!out.contains("duplicate client ID"), "{out}");
    assert!(!out.contains("cooldown"), "{out}");
    let warned = out
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("right after we subscribed"))
        .count();
    assert_eq!(warned, 2, "one warning per close before the error:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("ERROR") && l.contains("(3 times in a row)")),
        "{out}"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_close_before_connack_names_the_likely_causes(pool: PgPool) {
    // rumqttd on bad credentials, RabbitMQ 3.10 on an MQTT 5 CONNECT: the
    // socket is closed after CONNECT, with no CONNACK.
    let broker = FakeBroker::start(vec![vec![Step::Close]]).await;
    let id = insert(
        &pool,
        &Row {
            protocol: Some("5".into()),
            ..Row::new("site_1", broker.port())
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    let found = wait_error(
        &pool,
        id,
        &["disconnected", "error"],
        "no CONNACK",
        Duration::from_secs(10),
    )
    .await;
    let (_, _, last_error) = found.unwrap_or_else(|| panic!("{}", app.output()));
    assert_eq!(
        last_error,
        "the broker closed the connection before answering our CONNECT (no CONNACK): it may refuse the credentials without a refusal code, may not support MQTT 5, or the port expects TLS"
    );
    assert!(
        wait_status(&pool, id, "error", Duration::from_secs(15)).await,
        "three closes before CONNACK in a row are lasting: {:?}\n{}",
        state(&pool, id).await,
        app.output()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(broker.connections(), 3, "{}", app.output());
    assert!(
        !app.output().contains("connection closed by peer"),
        "{}",
        app.output()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_takeover_war_escalates_then_gives_the_client_id_up(pool: PgPool) {
    let broker = Broker::start().await;
    let id = insert(&pool, &Row::new("site_1", broker.port())).await;
    let app = App::spawn(
        &database_url(&pool),
        &[
            ("MQTT_RECONNECT_COOLDOWN", "1"),
            ("MQTT_RECONNECT_COOLDOWN_MAX", "3"),
            ("MQTT_TAKEOVER_WINDOW", "2"),
        ],
    );
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    // Up longer than the window: the first kick looks like an ordinary
    // loss (RabbitMQ and rumqttd send nothing; Mosquitto neither).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fighter = Foreign::fight(
        broker.port(),
        "site_1_test",
        Duration::from_millis(300),
        None,
    )
    .await;
    let Some((_, detail, last_error)) = wait_error(
        &pool,
        id,
        &["error"],
        "appears to be in use by another client",
        Duration::from_secs(40),
    )
    .await
    else {
        panic!("{:?}\n{}", state(&pool, id).await, app.output());
    };
    assert!(
        last_error.starts_with(
            "client ID site_1_test appears to be in use by another client: 5 takeovers in"
        ),
        "{last_error}"
    );
    assert!(detail.contains("retrying in about"), "{detail}");
    let out = app.output();
    // The silent kick of the long-lived connection counted as the first:
    // the first takeover judged is the second of the series.
    for n in 2..=4 {
        let needle = format!("takeover {n} in a row");
        assert!(
            out.lines()
                .any(|l| l.contains("WARN") && l.contains(&needle)),
            "no warning with `{needle}`:\n{out}"
        );
    }
    for secs in ["cooling down 2 s", "cooling down 3 s"] {
        assert!(
            out.contains(secs),
            "the cooldown did not escalate to `{secs}`:\n{out}"
        );
    }
    // Given up: the fighter keeps the client ID until the slow retry
    // (MQTT_RECONNECT_COOLDOWN_MAX with jitter: 2.25 to 3.75 s here).
    let kicks = fighter.drops();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fighter.drops(), kicks, "{out}");
    assert_eq!(state(&pool, id).await.unwrap().0, "error");
}
