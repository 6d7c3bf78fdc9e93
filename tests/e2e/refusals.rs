//! Brokers that say no: refused credentials, a closed port, a listener that
//! never answers. Each ends in the contract's state with the reason in
//! words, and none of them is retried in a tight loop.

use mqtt_supervisor_tests::{
    App, Broker, Row, database_url, free_port, insert, state, wait_status,
};
use sqlx::PgPool;
use std::time::Duration;

/// The `details` entry of connection `id` in a verbose health report.
fn detail_of(body: &serde_json::Value, id: i64) -> serde_json::Value {
    body["details"]
        .as_array()
        .and_then(|d| d.iter().find(|c| c["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("no detail for connection {id} in {body}"))
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn refused_credentials_are_an_error_and_never_hammered(pool: PgPool) {
    let broker = Broker::start_with_user("app", "right").await;
    let good = insert(
        &pool,
        &Row {
            username: Some("app".into()),
            password: Some("right".into()),
            ..Row::new("site_ok", broker.port())
        },
    )
    .await;
    let bad_v4 = insert(
        &pool,
        &Row {
            username: Some("app".into()),
            password: Some("wrong".into()),
            ..Row::new("site_v4", broker.port())
        },
    )
    .await;
    let bad_v5 = insert(
        &pool,
        &Row {
            protocol: Some("5".into()),
            username: Some("app".into()),
            password: Some("wrong".into()),
            ..Row::new("site_v5", broker.port())
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;

    assert!(
        wait_status(&pool, good, "connected", Duration::from_secs(10)).await,
        "right credentials must connect:\n{}",
        app.output()
    );
    assert_eq!(broker.connects_of("site_ok_test"), 1, "{}", broker.log());
    for id in [bad_v4, bad_v5] {
        assert!(
            wait_status(&pool, id, "error", Duration::from_secs(10)).await,
            "row {id}: {:?}\n{}",
            state(&pool, id).await,
            app.output()
        );
        let (_, detail, last_error) = state(&pool, id).await.unwrap();
        let last_error = last_error.unwrap_or_default();
        for text in [&detail, &last_error] {
            assert!(
                text.contains("not authorised") || text.contains("bad user name or password"),
                "row {id} must say why in words: {text:?}"
            );
        }
    }

    // Mosquitto logs a refused client as `<unknown>`: count its refusals.
    // The service retries a refusal after a minute, so a few seconds show
    // one attempt per row; a loop would show hundreds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = broker.log();
    let refusals = log
        .lines()
        .filter(|l| l.contains("disconnected, not authorised"))
        .count();
    assert!(
        (2..=4).contains(&refusals),
        "expected one refusal per bad row (two at most), broker saw {refusals}:\n{log}"
    );
    assert_eq!(state(&pool, bad_v4).await.unwrap().0, "error");

    let (code, body) = app.health(true).await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["connections"]["healthy"], 1, "{body}");
    for id in [bad_v4, bad_v5] {
        let d = detail_of(&body, id);
        assert_eq!(d["status"], "error", "{d}");
        let err = d["last_error"].as_str().unwrap_or_default();
        assert!(
            err.contains("not authorised") || err.contains("bad user name or password"),
            "{d}"
        );
    }
    assert!(!app.output().contains("panicked"), "{}", app.output());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn closed_port_is_disconnected_and_retried_with_backoff(pool: PgPool) {
    // Nothing listens on this port: every attempt is refused by the kernel.
    let port = free_port();
    let id = insert(&pool, &Row::new("site_gone", port)).await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;

    assert!(
        wait_status(&pool, id, "disconnected", Duration::from_secs(10)).await,
        "{:?}\n{}",
        state(&pool, id).await,
        app.output()
    );
    let (_, detail, last_error) = state(&pool, id).await.unwrap();
    assert!(detail.contains("connection refused"), "{detail}");
    assert!(detail.contains("retrying in"), "{detail}");
    assert_eq!(last_error.as_deref(), Some("connection refused"));

    let (code, body) = app.health(true).await.unwrap();
    assert_eq!(code, 503, "no enabled connection is up: {body}");
    assert_eq!(body["status"], "critical", "{body}");
    let d = detail_of(&body, id);
    assert_eq!(d["status"], "disconnected", "{d}");
    assert_eq!(d["last_error"], "connection refused", "{d}");
    assert_eq!(d["broker"], format!("127.0.0.1:{port}"), "{d}");

    // Attempts over a few seconds: jittered backoff from 1 s doubling gives
    // a handful; a missing backoff gives thousands.
    let attempts = |out: &str| {
        out.lines()
            .filter(|l| l.contains("Connection failed") || l.contains("Still failing"))
            .count()
    };
    let before = attempts(&app.output());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let out = app.output();
    let during = attempts(&out) - before;
    assert!(
        before >= 1 && during < 10,
        "{during} attempts in 6 s after {before}:\n{out}"
    );
    // It keeps retrying (the first retry comes within a second).
    assert!(attempts(&out) >= 2, "no retry at all:\n{out}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn silent_listener_times_out_waiting_for_connack(pool: PgPool) {
    // Accepts TCP connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let id = insert(&pool, &Row::new("site_mute", port)).await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_CONNECT_TIMEOUT", "1")]);
    app.ready().await;

    assert!(
        wait_status(&pool, id, "disconnected", Duration::from_secs(10)).await,
        "{:?}\n{}",
        state(&pool, id).await,
        app.output()
    );
    let (_, detail, last_error) = state(&pool, id).await.unwrap();
    assert!(
        detail.contains("no CONNACK within the connect timeout"),
        "{detail}"
    );
    assert!(detail.contains("retrying in"), "{detail}");
    assert_eq!(
        last_error.as_deref(),
        Some("no CONNACK within the connect timeout")
    );
    let (_, body) = app.health(true).await.unwrap();
    let d = detail_of(&body, id);
    assert_eq!(d["status"], "disconnected", "{d}");
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the service never reached the listener"
    );
    holder.abort();
}
