//! Rows the schema accepts but the service cannot run: each gets state
//! `error` with the reason in words, while the good rows beside them connect
//! and the process keeps going. Rows that break the schema's CHECKs never
//! reach the service: the database refuses them.

use mqtt_supervisor_tests::{App, Broker, Row, database_url, insert, state, wait_status};
use sqlx::PgPool;
use std::time::Duration;

/// A bad row and a phrase its reason must contain.
struct Case {
    row: Row,
    reason: &'static str,
}

fn cases(port: u16) -> Vec<Case> {
    let row = |name: &str| Row::new(name, port);
    let subs = |name: &str, filter: String| Row {
        subscriptions: Some(vec![format!("{name}/ok"), filter]),
        ..row(name)
    };
    vec![
        Case {
            row: subs("bad_hash", "a/#/b".into()),
            reason: "`#` must be the last level",
        },
        Case {
            row: subs("bad_plus", "a+".into()),
            reason: "`+` must stand alone",
        },
        Case {
            row: subs("bad_long", "a".repeat(70_000)),
            reason: "subscription 2 is 70000 bytes long",
        },
        Case {
            row: Row {
                protocol: Some("5".into()),
                keep_alive_secs: Some(3),
                ..row("bad_keepalive")
            },
            reason: "keep_alive_secs 3 is outside 5-65535",
        },
        Case {
            row: Row {
                ca_cert_pem: Some("-----BEGIN CERTIFICATE-----".into()),
                ..row("bad_ca_no_tls")
            },
            reason: "ca_cert_pem is set but use_tls is false",
        },
        Case {
            row: Row {
                use_tls: true,
                ca_cert_pem: Some(
                    "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"
                        .into(),
                ),
                ..row("bad_ca_garbage")
            },
            reason: "ca_cert_pem: not a PEM certificate bundle",
        },
        Case {
            row: Row {
                use_tls: true,
                ca_cert_pem: Some("just some text".into()),
                ..row("bad_ca_empty")
            },
            reason: "ca_cert_pem: no certificate in the PEM text",
        },
        Case {
            row: Row {
                password: Some("secret-without-user".into()),
                ..row("bad_password_only")
            },
            reason: "password is set without username",
        },
        Case {
            row: Row {
                topic_prefix: Some("tenant/+".into()),
                ..row("bad_prefix")
            },
            reason: "wildcards are not allowed",
        },
        // What brokers or rumqttc reject later, caught here (issue 6).
        Case {
            row: subs("bad_tab", "bad_tab/a\tb".into()),
            reason: "contains the character \\t",
        },
        Case {
            row: row("bad_newline\n"),
            reason: "name `bad_newline\\n` contains the control character \\n",
        },
        Case {
            row: Row {
                host: "127.0.0.1:28883".into(),
                ..row("bad_host_port")
            },
            reason: "contains a port (`:28883`)",
        },
        Case {
            row: Row {
                username: Some("u".repeat(70_000)),
                ..row("bad_long_user")
            },
            reason: "username is 70000 bytes long",
        },
        Case {
            row: Row {
                subscriptions: Some(
                    (0..20)
                        .map(|i| format!("{i}/{}", "f".repeat(60_000)))
                        .collect(),
                ),
                ..row("bad_big_subscribe")
            },
            reason: "the SUBSCRIBE packet for 20 filter(s) would be",
        },
        // Sanitises to the client ID of `good_a`, inserted before it.
        Case {
            row: row("good.a"),
            reason: "is already used by row",
        },
    ]
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn invalid_rows_are_errors_beside_working_ones(pool: PgPool) {
    let broker = Broker::start().await;
    let good_a = insert(&pool, &Row::new("good_a", broker.port())).await;
    let good_b = insert(
        &pool,
        &Row {
            protocol: Some("5".into()),
            subscriptions: Some(vec!["good_b/+/x".into(), "#".into()]),
            ..Row::new("good_b", broker.port())
        },
    )
    .await;
    let mut bad = Vec::new();
    for case in cases(broker.port()) {
        bad.push((insert(&pool, &case.row).await, case));
    }
    // `Row` has no column for the HMAC flag: raw SQL.
    let hmac: i64 = sqlx::query_scalar(
        "INSERT INTO mqtt_connections (name, broker_host, broker_port, verify_inbound_hmac) \
         VALUES ('bad_hmac', '127.0.0.1', $1, true) RETURNING id",
    )
    .bind(i32::from(broker.port()))
    .fetch_one(&pool)
    .await
    .unwrap();

    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    for id in [good_a, good_b] {
        assert!(
            wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
            "good row {id}: {:?}\n{}",
            state(&pool, id).await,
            app.output()
        );
    }
    let mut expected: Vec<(i64, &str, &str)> = bad
        .iter()
        .map(|(id, c)| (*id, c.row.name.as_str(), c.reason))
        .collect();
    expected.push((
        hmac,
        "bad_hmac",
        "verify_inbound_hmac is on but hmac_secret",
    ));

    for (id, name, reason) in &expected {
        assert!(
            wait_status(&pool, *id, "error", Duration::from_secs(10)).await,
            "{name}: {:?}\n{}",
            state(&pool, *id).await,
            app.output()
        );
        let (_, detail, last_error) = state(&pool, *id).await.unwrap();
        assert!(detail.contains(reason), "{name}: detail {detail:?}");
        let last_error = last_error.unwrap_or_default();
        assert!(last_error.contains(reason), "{name}: {last_error:?}");
        assert!(last_error.len() < 1_000, "{name}: reason not shortened");
    }

    let (code, body) = app.health(true).await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let enabled = 2 + expected.len();
    assert_eq!(body["connections"]["enabled"], enabled, "{body}");
    assert_eq!(body["connections"]["healthy"], 2, "{body}");
    assert_eq!(body["connections"]["unhealthy"], expected.len(), "{body}");
    let details = body["details"].as_array().unwrap();
    for (id, name, reason) in &expected {
        let d = details
            .iter()
            .find(|d| d["id"] == *id)
            .unwrap_or_else(|| panic!("{name} missing from {body}"));
        assert_eq!(d["status"], "error", "{d}");
        assert_eq!(d["name"], *name, "{d}");
        let err = d["last_error"].as_str().unwrap_or_default();
        assert!(err.contains(reason), "{name}: {d}");
    }

    // Invalid rows never reach the broker; the good ones connected once.
    assert_eq!(broker.connects_of("good_a_test"), 1, "{}", broker.log());
    assert_eq!(broker.connects_of("good_b_test"), 1, "{}", broker.log());
    for (_, name, _) in &expected {
        if *name != "good.a" {
            assert_eq!(broker.connects_of(&format!("{name}_test")), 0, "{name}");
        }
    }
    let out = app.output();
    assert!(!out.contains("panicked"), "{out}");
    assert!(
        out.contains("Connection row is invalid"),
        "invalid rows are logged:\n{out}"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn schema_rejects_rows_that_break_its_checks(pool: PgPool) {
    for (what, sql) in [
        (
            "port 0",
            "INSERT INTO mqtt_connections (name, broker_host, broker_port) VALUES ('a', 'h', 0)",
        ),
        (
            "port 65536",
            "INSERT INTO mqtt_connections (name, broker_host, broker_port) VALUES ('a', 'h', 65536)",
        ),
        (
            "protocol 4",
            "INSERT INTO mqtt_connections (name, broker_host, protocol) VALUES ('a', 'h', '4')",
        ),
        (
            "empty name",
            "INSERT INTO mqtt_connections (name, broker_host) VALUES ('', 'h')",
        ),
        (
            "blank name",
            "INSERT INTO mqtt_connections (name, broker_host) VALUES ('  ', 'h')",
        ),
        (
            "empty host",
            "INSERT INTO mqtt_connections (name, broker_host) VALUES ('a', '')",
        ),
        (
            "keep-alive 0",
            "INSERT INTO mqtt_connections (name, broker_host, keep_alive_secs) VALUES ('a', 'h', 0)",
        ),
        (
            "no host",
            "INSERT INTO mqtt_connections (name) VALUES ('a')",
        ),
    ] {
        let result = sqlx::query(sql).execute(&pool).await;
        assert!(result.is_err(), "{what} was accepted");
    }
    // Postgres text cannot hold NUL at all, so a filter with NUL never gets
    // to the service.
    let nul = sqlx::query(
        "INSERT INTO mqtt_connections (name, broker_host, subscriptions) VALUES ('a', 'h', $1)",
    )
    .bind(vec!["a/\0/b".to_owned()])
    .execute(&pool)
    .await;
    assert!(nul.is_err(), "a NUL in a filter was stored");
    // The table is still empty, and a valid row goes in.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM mqtt_connections")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    insert(&pool, &Row::new("a", 1883)).await;
}
