//! Secrets pasted into the wrong place of a row: a password inside
//! `broker_host` (`mqtt://user:pw@host`) and a password with a trailing
//! newline. Both rows are `error` with the problem named, and neither
//! secret shows anywhere, even at trace level: the validator never quotes
//! `broker_host`, `username` or `password`.

use super::{Table, table_text};
use mqtt_supervisor_tests::{App, Row, database_url, free_port, insert, state, wait_status};
use sqlx::PgPool;
use std::time::Duration;

const HOST_PW: &str = "canary-h0st-4e1b7c";
const PASSWORD: &str = "canary-pw-9a63d0";

fn assert_clean(place: &str, text: &str) {
    for canary in [HOST_PW, PASSWORD] {
        assert!(
            !text.contains(canary),
            "{place} leaks the secret {canary}:\n{text}"
        );
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn secrets_in_bad_rows_appear_nowhere(pool: PgPool) {
    // Nothing listens there: neither row may get as far as connecting.
    let port = free_port();
    let url_host = insert(
        &pool,
        &Row {
            host: format!("mqtt://app:{HOST_PW}@127.0.0.1"),
            ..Row::new("site_url", port)
        },
    )
    .await;
    let newline_pw = insert(
        &pool,
        &Row {
            username: Some("u".into()),
            password: Some(format!("{PASSWORD}\n")),
            ..Row::new("site_newline", port)
        },
    )
    .await;
    let mut app = App::spawn(&database_url(&pool), &[("RUST_LOG", "trace")]);
    app.ready().await;

    for (id, reason) in [
        (url_host, "URL scheme"),
        (newline_pw, "password contains the control character \\n"),
    ] {
        assert!(
            wait_status(&pool, id, "error", Duration::from_secs(10)).await,
            "{:?}\n{}",
            state(&pool, id).await,
            app.output()
        );
        let (_, detail, last_error) = state(&pool, id).await.unwrap();
        let last_error = last_error.unwrap_or_default();
        eprintln!("row {id}: {detail}");
        assert_clean(
            &format!("row {id}'s state"),
            &format!("{detail}\n{last_error}"),
        );
        assert!(detail.contains(reason), "row {id}: {detail:?}");
        assert!(last_error.contains(reason), "row {id}: {last_error:?}");
    }

    let (_, body) = app.health(true).await.unwrap();
    let health = body.to_string();
    assert!(
        health.contains("site_url") && health.contains("site_newline"),
        "{health}"
    );
    assert_clean("health (verbose)", &health);

    app.sigterm();
    let status = app.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", app.output());
    let out = app.output();
    assert!(
        out.contains("TRACE"),
        "RUST_LOG=trace had no effect:\n{out}"
    );
    assert!(out.contains("URL scheme"), "{out}");
    assert_clean("the service's output", &out);

    let states = table_text(&pool, Table::State).await;
    assert!(states.contains("site_url_test"), "{states}");
    assert_clean("mqtt_connection_state", &states);
    let events = table_text(&pool, Table::Events).await;
    assert!(events.contains("URL scheme"), "{events}");
    assert_clean("mqtt_connection_events", &events);
}
