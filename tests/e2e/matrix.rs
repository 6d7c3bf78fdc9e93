//! The broker matrix (issue 8): the core subset of the end-to-end tests
//! against every broker users run. One test per broker starts it once and
//! runs the scenarios in turn, with one service and four rows:
//!
//! - `main`: connect, retained `online` (exact and wildcard subscribers),
//!   subscriptions with `#` and `+`, a clean stop, the Will on SIGKILL;
//! - `wrongpw`: a wrong password;
//! - `acl`: a user that may not subscribe to its filter (brokers with ACLs);
//! - `taken`: a foreign client that takes the client ID back by itself.
//!
//! Where brokers differ, the expectation comes from `QUIRKS`, the table
//! docs/brokers.md repeats; `brokers_doc_matches_the_quirks_table` checks
//! that the two agree.

use mqtt_supervisor_tests::{
    AnyBroker, App, BrokerKind, DENIED_FILTER, Foreign, LIMITED, Observer, OnBadPassword,
    OnDeniedSubscribe, OnTakeover, QUIRKS, Quirks, Row, SITE, database_url, insert, repo_root,
    state, wait_error, wait_status,
};
use sqlx::PgPool;
use std::time::Duration;

fn row(name: &str, port: u16, q: &Quirks, login: (&str, &str)) -> Row {
    Row {
        protocol: Some(q.protocol.to_owned()),
        username: Some(login.0.to_owned()),
        password: Some(login.1.to_owned()),
        ..Row::new(name, port)
    }
}

/// Whether the service logged that connection `name` received a message
/// on `topic`.
fn received(app: &App, name: &str, topic: &str) -> bool {
    let conn = format!("connection={name} ");
    let needle = format!("topic={topic} ");
    app.output()
        .lines()
        .any(|l| l.contains("Message received.") && l.contains(&conn) && l.contains(&needle))
}

async fn run(pool: PgPool, kind: BrokerKind) {
    let q = Quirks::of(kind);
    let broker = AnyBroker::start(kind).await;
    let port = broker.port(q.protocol);
    // Observers and the foreign client speak 3.1.1 (rumqttd has one
    // listener per protocol; they share the broker).
    let client_port = broker.client_port();
    let ctx = |app: &App| format!("{}\n--- broker log ---\n{}", app.output(), broker.log());

    let main = insert(
        &pool,
        &Row {
            subscriptions: Some(vec!["main/data/#".into(), "main/+/cmd".into()]),
            ..row("main", port, q, SITE)
        },
    )
    .await;
    let wrongpw = insert(&pool, &row("wrongpw", port, q, (SITE.0, "wrong-pass"))).await;
    let acl = match q.denied_subscribe {
        OnDeniedSubscribe::NoAcl => None,
        _ => Some(
            insert(
                &pool,
                &Row {
                    subscriptions: Some(vec![DENIED_FILTER.into()]),
                    ..row("acl", port, q, LIMITED)
                },
            )
            .await,
        ),
    };
    let taken = insert(&pool, &row("taken", port, q, SITE)).await;

    let url = database_url(&pool);
    let env = [
        ("RUST_LOG", "info,mqtt_supervisor_core::connection=trace"),
        ("MQTT_RECONNECT_COOLDOWN", "2"),
        ("MQTT_RECONNECT_COOLDOWN_MAX", "4"),
    ];
    let app = App::spawn(&url, &env);
    app.ready().await;

    // Connect and retained `online`, to an exact and a wildcard subscriber.
    assert!(
        wait_status(&pool, main, "connected", Duration::from_secs(20)).await,
        "{}: main never connected: {:?}\n{}",
        q.name,
        state(&pool, main).await,
        ctx(&app)
    );
    let exact = Observer::start_as(client_port, "main/backend/status", Some(SITE)).await;
    let wildcard = Observer::start_as(client_port, "main/#", Some(SITE)).await;
    assert!(
        exact
            .wait_for("main/backend/status", "online", Duration::from_secs(10))
            .await,
        "{}: no retained `online`: {:?}\n{}",
        q.name,
        exact.all(),
        ctx(&app)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        wildcard.last("main/backend/status").as_deref() == Some("online"),
        q.retained_to_wildcards,
        "{}: retained `online` to `main/#`: {:?}",
        q.name,
        wildcard.all()
    );

    // Subscriptions with `#` and `+`, and a topic that matches neither.
    for topic in ["main/data/a/b", "main/dev1/cmd", "main/dev1/other"] {
        exact.publish(topic, b"hello".to_vec(), false).await;
    }
    let got = mqtt_supervisor_tests::eventually(Duration::from_secs(10), || async {
        received(&app, "main", "main/data/a/b") && received(&app, "main", "main/dev1/cmd")
    })
    .await;
    assert!(
        got,
        "{}: subscriptions not delivered\n{}",
        q.name,
        ctx(&app)
    );
    assert!(!received(&app, "main", "main/dev1/other"), "{}", ctx(&app));

    // A wrong password.
    let needle = match q.bad_password {
        OnBadPassword::Refuses(words) => words,
        OnBadPassword::ClosesWithoutConnAck => "no CONNACK",
    };
    let refused = wait_error(&pool, wrongpw, &["error"], needle, Duration::from_secs(20)).await;
    assert!(
        refused.is_some(),
        "{}: wrong password not `error` with `{needle}`: {:?}\n{}",
        q.name,
        state(&pool, wrongpw).await,
        ctx(&app)
    );

    // A denied SUBSCRIBE.
    if let Some(acl) = acl {
        match q.denied_subscribe {
            OnDeniedSubscribe::SubAckFailure => {
                let warned = mqtt_supervisor_tests::eventually(Duration::from_secs(10), || async {
                    app.output().lines().any(|l| {
                        l.contains("connection=acl") && l.contains("Broker refused 1 subscription")
                    })
                })
                .await;
                assert!(warned, "{}: no SUBACK refusal\n{}", q.name, ctx(&app));
                assert_eq!(state(&pool, acl).await.unwrap().0, "connected");
            }
            OnDeniedSubscribe::GrantedButWithheld => {
                // Mosquitto's ACL file grants every SUBSCRIBE and filters
                // what it delivers: nothing on `secret/…` reaches the row.
                exact.publish("secret/x", b"hidden".to_vec(), false).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                assert!(!received(&app, "acl", "secret/x"), "{}", ctx(&app));
                assert_eq!(state(&pool, acl).await.unwrap().0, "connected");
            }
            OnDeniedSubscribe::Closes => {
                let denied = wait_error(
                    &pool,
                    acl,
                    &["error"],
                    "check the broker's ACL",
                    Duration::from_secs(20),
                )
                .await;
                assert!(
                    denied.is_some(),
                    "{}: the ACL close is not named: {:?}\n{}",
                    q.name,
                    state(&pool, acl).await,
                    ctx(&app)
                );
            }
            OnDeniedSubscribe::NoAcl => unreachable!("no row without ACLs"),
        }
        let out = app.output();
        assert!(
            !out.lines()
                .any(|l| l.contains("connection=acl") && l.contains("duplicate client ID")),
            "{}: an ACL denial judged a takeover\n{out}",
            q.name
        );
    }

    takeover(&pool, &app, client_port, q, taken, &ctx).await;

    // A clean stop says `offline` and exits 0.
    let mut app = app;
    app.sigterm();
    assert_eq!(app.exit_code().await, Some(0), "{}\n{}", q.name, ctx(&app));
    assert!(
        exact
            .wait_for("main/backend/status", "offline", Duration::from_secs(5))
            .await,
        "{}: no `offline` after SIGTERM: {:?}",
        q.name,
        exact.all()
    );

    // Back `online`, then the Will on SIGKILL.
    let again = App::spawn(&url, &env);
    again.ready().await;
    assert!(
        exact
            .wait_for("main/backend/status", "online", Duration::from_secs(20))
            .await,
        "{}: not `online` after a restart\n{}",
        q.name,
        ctx(&again)
    );
    // `main/backend/status` matches none of main's filters, but the
    // observers' filters match it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        received(&again, "main", "main/backend/status"),
        q.retained_leaks,
        "{}: a retained message for other clients' filters\n{}",
        q.name,
        ctx(&again)
    );
    again.sigkill();
    let will = exact
        .wait_for("main/backend/status", "offline", Duration::from_secs(10))
        .await;
    assert_eq!(
        will,
        q.will_on_crash,
        "{}: Will on SIGKILL: {:?}",
        q.name,
        exact.all()
    );
}

/// A foreign client takes `taken`'s client ID and takes it back whenever
/// it is kicked.
async fn takeover(
    pool: &PgPool,
    app: &App,
    port: u16,
    q: &Quirks,
    taken: i64,
    ctx: &dyn Fn(&App) -> String,
) {
    let topic = "taken/backend/status";
    assert!(wait_status(pool, taken, "connected", Duration::from_secs(20)).await);
    let status = Observer::start_as(port, topic, Some(SITE)).await;
    assert!(
        status
            .wait_for(topic, "online", Duration::from_secs(10))
            .await
    );
    let fighter = Foreign::fight(port, "taken_test", Duration::from_millis(500), Some(SITE)).await;
    match q.takeover {
        OnTakeover::ClosesSilently | OnTakeover::Disconnect8E => {
            assert!(
                wait_status(pool, taken, "cooldown", Duration::from_secs(5)).await,
                "{}: no cooldown after a takeover: {:?}\n{}",
                q.name,
                state(pool, taken).await,
                ctx(app)
            );
            let words = if q.takeover == OnTakeover::Disconnect8E {
                "(0x8E)"
            } else {
                "likely a duplicate client ID"
            };
            let (_, detail, _) = state(pool, taken).await.unwrap();
            assert!(detail.contains(words), "{}: {detail}", q.name);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let will = status.payloads(topic).iter().any(|p| p == "offline");
            assert_eq!(
                will,
                q.will_on_takeover,
                "{}: Will on takeover: {:?}",
                q.name,
                status.all()
            );
            // The fighter takes the ID back after our next connect: the
            // second takeover in a row doubles the cooldown.
            let escalated = mqtt_supervisor_tests::eventually(Duration::from_secs(10), || async {
                app.output().lines().any(|l| {
                    l.contains("connection=taken")
                        && l.contains("WARN")
                        && l.contains("takeover 2 in a row")
                        && l.contains("cooling down 4 s")
                })
            })
            .await;
            assert!(escalated, "{}: no escalation\n{}", q.name, ctx(app));
        }
        OnTakeover::KeepsBoth => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(fighter.drops(), 0, "{}", q.name);
            assert_eq!(state(pool, taken).await.unwrap().0, "connected");
        }
    }
    drop(fighter);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn matrix_mosquitto(pool: PgPool) {
    run(pool, BrokerKind::Mosquitto).await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn matrix_rabbitmq(pool: PgPool) {
    run(pool, BrokerKind::RabbitMq).await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn matrix_rumqttd(pool: PgPool) {
    run(pool, BrokerKind::Rumqttd).await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn matrix_amqtt(pool: PgPool) {
    run(pool, BrokerKind::Amqtt).await;
}

/// docs/brokers.md's table of tested brokers is `QUIRKS`, cell by cell.
#[test]
fn brokers_doc_matches_the_quirks_table() {
    let doc = std::fs::read_to_string(repo_root().join("docs/brokers.md")).unwrap();
    let start = doc
        .find("<!-- quirks-table -->")
        .expect("docs/brokers.md marks its tested table with <!-- quirks-table -->");
    let rows: Vec<Vec<String>> = doc[start..]
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    let expected: Vec<Vec<String>> = QUIRKS.iter().map(Quirks::cells).collect();
    assert_eq!(rows, expected, "docs/brokers.md and QUIRKS disagree");
}
