//! The service under supervisord, with the repository's `supervisord.conf`
//! (paths in a temporary directory, the built binary, a per-test database,
//! a private Mosquitto): what an operator does with `supervisorctl`.
//!
//! - status is RUNNING and health is healthy;
//! - `stop` returns within 2 s, supervisord logs `exit status 0` (never
//!   SIGKILL), and a foreign subscriber sees retained `offline` for every
//!   connection; `start` brings it back;
//! - `restart` with 50 connections reconnects every one, none in `cooldown`
//!   (the new process must not mistake itself for a duplicate client ID);
//! - `kill -9`: the broker publishes the Will, supervisord restarts the
//!   service, `online` returns;
//! - no ANSI escape codes in any log file.

use mqtt_supervisor_tests::{
    Broker, Observer, PROGRAM, Row, Supervisord, binary_path, database_url, eventually, free_port,
    http_get, insert,
};
use serde_json::Value;
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// supervisord's line for a clean stop.
const CLEAN_STOP: &str = "stopped: mqtt_service (exit status 0)";

/// Starts supervisord for the database of `pool`; returns it and the
/// service's HTTP port.
async fn deploy(pool: &PgPool) -> (Supervisord, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let url = database_url(pool);
    let sv = Supervisord::start(&[
        ("DATABASE_URL", url.as_str()),
        ("MQTT_HTTP_ADDR", addr.as_str()),
        ("MQTT_INSTANCE_ID", "test"),
    ])
    .await;
    (sv, port)
}

/// The verbose health document, if the service answers.
async fn health(port: u16) -> Option<Value> {
    let (_, body) = http_get(port, "/api/v1/mqtt/health/?verbose=true").await?;
    serde_json::from_str(&body).ok()
}

/// Waits until health says `healthy` with `n` connections connected.
async fn wait_healthy(port: u16, n: u64, timeout: Duration) -> bool {
    eventually(timeout, || async move {
        health(port).await.is_some_and(|h| {
            h["status"] == "healthy"
                && h["connections"]["enabled"] == n
                && h["connections"]["healthy"] == n
        })
    })
    .await
}

/// Panics with everything supervisord and the service wrote.
fn logs(sv: &Supervisord) -> String {
    format!(
        "--- supervisord.log\n{}--- service\n{}--- console\n{}",
        sv.log(),
        sv.service_log(),
        sv.console()
    )
}

/// No byte 0x1b (ESC, the start of every ANSI colour code) in any log file;
/// the service's stdout log and supervisord's log must not be empty (an
/// empty file would pass trivially).
fn assert_no_ansi(sv: &Supervisord) {
    for name in [
        "mqtt_service.out.log",
        "mqtt_service.err.log",
        "supervisord.log",
    ] {
        let path = sv.log_dir().join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if name != "mqtt_service.err.log" {
            assert!(!bytes.is_empty(), "{name} is empty");
        }
        if let Some(at) = bytes.iter().position(|b| *b == 0x1b) {
            let from = at.saturating_sub(40);
            let to = (at + 40).min(bytes.len());
            panic!(
                "ANSI escape in {name} at byte {at}: {:?}",
                String::from_utf8_lossy(&bytes[from..to])
            );
        }
    }
}

/// Stops supervisord (which stops the service) and checks it never had to
/// SIGKILL anything.
async fn shut_down(mut sv: Supervisord) {
    assert!(
        sv.shutdown(Duration::from_secs(30)).await,
        "supervisord did not exit:\n{}",
        logs(&sv)
    );
    assert!(!sv.log().contains("SIGKILL"), "{}", logs(&sv));
    assert_no_ansi(&sv);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn status_stop_and_start_through_supervisorctl(pool: PgPool) {
    let broker = Broker::start().await;
    let names = ["site_1", "site_2", "site_3"];
    for name in names {
        insert(&pool, &Row::new(name, broker.port())).await;
    }
    let watcher = Observer::start(broker.port(), "+/backend/status").await;
    let (sv, port) = deploy(&pool).await;

    let pid = sv.wait_running(Duration::from_secs(30)).await;
    assert!(
        pid.is_some(),
        "not RUNNING: {:?}\n{}",
        sv.status().await,
        logs(&sv)
    );
    let (state, line) = sv.status().await;
    assert_eq!(state, "RUNNING", "{line}");
    assert!(
        wait_healthy(port, 3, Duration::from_secs(30)).await,
        "not healthy: {:?}\n{}",
        health(port).await,
        logs(&sv)
    );
    // The Docker HEALTHCHECK's view: the CLI against the same address.
    let probe = std::process::Command::new(binary_path())
        .arg("health")
        .env("MQTT_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.status.success(), "{said}");
    assert!(said.starts_with("healthy: 3/3 connections up"), "{said}");
    for name in names {
        let topic = format!("{name}/backend/status");
        assert!(
            watcher
                .wait_for(&topic, "online", Duration::from_secs(10))
                .await,
            "{topic}: {:?}",
            watcher.all()
        );
    }

    let began = Instant::now();
    let (code, out) = sv.ctl(&["stop", PROGRAM]).await;
    let took = began.elapsed();
    eprintln!("supervisorctl stop took {took:?}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("mqtt_service: stopped"), "{out}");
    assert!(
        took < Duration::from_secs(2),
        "stop took {took:?}\n{}",
        logs(&sv)
    );
    let logged = eventually(Duration::from_secs(5), || async {
        sv.log().contains(CLEAN_STOP)
    })
    .await;
    assert!(logged, "no `{CLEAN_STOP}`:\n{}", logs(&sv));
    assert!(!sv.log().contains("SIGKILL"), "{}", logs(&sv));
    assert_eq!(sv.status().await.0, "STOPPED");
    assert!(sv.service_log().contains("All connections disconnected in"));

    // A subscriber arriving after the stop gets retained `offline` for each.
    let late = Observer::start(broker.port(), "+/backend/status").await;
    let all_offline = eventually(Duration::from_secs(5), || async {
        names.iter().all(|name| {
            let topic = format!("{name}/backend/status");
            late.all()
                .iter()
                .any(|m| m.topic == topic && m.payload == "offline" && m.retain)
        })
    })
    .await;
    assert!(all_offline, "retained: {:?}", late.all());
    for name in names {
        assert_eq!(
            watcher.last(&format!("{name}/backend/status")).as_deref(),
            Some("offline")
        );
    }

    let (code, out) = sv.ctl(&["start", PROGRAM]).await;
    assert_eq!(code, 0, "{out}\n{}", logs(&sv));
    assert!(out.contains("mqtt_service: started"), "{out}");
    let again = sv.wait_running(Duration::from_secs(30)).await;
    assert!(again.is_some_and(|p| Some(p) != pid), "{again:?} {pid:?}");
    assert!(
        wait_healthy(port, 3, Duration::from_secs(30)).await,
        "not healthy after start: {:?}\n{}",
        health(port).await,
        logs(&sv)
    );
    for name in names {
        let topic = format!("{name}/backend/status");
        assert!(
            watcher
                .wait_for(&topic, "online", Duration::from_secs(10))
                .await
        );
    }
    shut_down(sv).await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn restart_with_50_connections_reconnects_all_without_cooldown(pool: PgPool) {
    const N: u64 = 50;
    let broker = Broker::start().await;
    let names: Vec<String> = (0..N).map(|i| format!("site_{i:02}")).collect();
    for name in &names {
        insert(&pool, &Row::new(name, broker.port())).await;
    }
    let watcher = Observer::start(broker.port(), "+/backend/status").await;
    let (sv, port) = deploy(&pool).await;
    let before = sv.wait_running(Duration::from_secs(30)).await;
    assert!(before.is_some(), "{}", logs(&sv));
    assert!(
        wait_healthy(port, N, Duration::from_secs(60)).await,
        "not 50 healthy: {:?}\n{}",
        health(port).await,
        logs(&sv)
    );

    let (code, out) = sv.ctl(&["restart", PROGRAM]).await;
    assert_eq!(code, 0, "{out}\n{}", logs(&sv));
    assert!(out.contains("mqtt_service: stopped"), "{out}");
    assert!(out.contains("mqtt_service: started"), "{out}");
    let after = sv.wait_running(Duration::from_secs(30)).await;
    assert!(
        after.is_some_and(|p| Some(p) != before),
        "{after:?} {before:?}"
    );

    let all_connected = |h: &Value| {
        h["details"]
            .as_array()
            .is_some_and(|d| d.len() == N as usize && d.iter().all(|c| c["status"] == "connected"))
    };
    let back = eventually(Duration::from_secs(60), || async {
        health(port).await.is_some_and(|h| all_connected(&h))
    })
    .await;
    assert!(
        back,
        "not all connected: {:?}\n{}",
        health(port).await,
        logs(&sv)
    );

    // Absence of a cooldown, watched for a few seconds after recovery: a
    // self-inflicted takeover would show here, or in the state and events.
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        let h = health(port).await.expect("health answers");
        assert!(all_connected(&h), "{h}");
        for c in h["details"].as_array().unwrap() {
            assert!(c["cooldown_until"].is_null(), "{c}");
        }
        assert_eq!(h["status"], "healthy", "{h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cooling: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mqtt_connection_state \
         WHERE status = 'cooldown' OR cooldown_until IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(cooling, 0);
    let cooled: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, detail FROM mqtt_connection_events WHERE status = 'cooldown' LIMIT 5",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(cooled.is_empty(), "cooldown events: {cooled:?}");
    assert!(!sv.service_log().contains("cooling down"), "{}", logs(&sv));

    // Each client connected once per process, and ends `online`.
    for name in &names {
        let client_id = format!("{name}_test");
        assert_eq!(broker.connects_of(&client_id), 2, "{client_id}");
        let topic = format!("{name}/backend/status");
        assert!(
            watcher
                .wait_for(&topic, "online", Duration::from_secs(10))
                .await,
            "{topic}: {:?}",
            watcher.payloads(&topic)
        );
        assert!(watcher.payloads(&topic).contains(&"offline".to_owned()));
    }
    assert!(sv.log().contains(CLEAN_STOP), "{}", logs(&sv));
    shut_down(sv).await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn kill_9_is_restarted_by_supervisord_and_comes_back_online(pool: PgPool) {
    const TOPIC: &str = "site_1/backend/status";
    let broker = Broker::start().await;
    insert(&pool, &Row::new("site_1", broker.port())).await;
    let watcher = Observer::start(broker.port(), TOPIC).await;
    let (sv, port) = deploy(&pool).await;
    let first = sv.wait_running(Duration::from_secs(30)).await;
    let first = first.unwrap_or_else(|| panic!("not RUNNING:\n{}", logs(&sv)));
    assert!(
        wait_healthy(port, 1, Duration::from_secs(30)).await,
        "{}",
        logs(&sv)
    );
    assert!(
        watcher
            .wait_for(TOPIC, "online", Duration::from_secs(10))
            .await
    );
    let seen_before = watcher.payloads(TOPIC).len();

    let killed = std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        watcher
            .wait_for(TOPIC, "offline", Duration::from_secs(15))
            .await,
        "no Will: {:?}",
        watcher.payloads(TOPIC)
    );
    // No clean DISCONNECT reached the broker: that `offline` was the Will.
    assert_eq!(broker.disconnects_of("site_1_test"), 0, "{}", broker.log());
    assert!(
        watcher
            .wait_for(TOPIC, "online", Duration::from_secs(30))
            .await,
        "not online again: {:?}\n{}",
        watcher.payloads(TOPIC),
        logs(&sv)
    );
    assert_eq!(
        watcher.payloads(TOPIC)[seen_before..],
        ["offline".to_owned(), "online".to_owned()]
    );

    let second = sv.wait_running(Duration::from_secs(30)).await;
    assert!(second.is_some_and(|p| p != first), "{second:?} {first}");
    assert!(
        sv.log()
            .contains("exited: mqtt_service (terminated by SIGKILL; not expected)"),
        "{}",
        logs(&sv)
    );
    assert!(
        wait_healthy(port, 1, Duration::from_secs(30)).await,
        "{:?}\n{}",
        health(port).await,
        logs(&sv)
    );
    let (state, line) = sv.status().await;
    assert_eq!(state, "RUNNING", "{line}");
    assert!(line.contains(&format!("pid {}", second.unwrap())), "{line}");
    // Only the kill above was a SIGKILL; the final stop must be clean.
    let mut sv = sv;
    assert!(sv.shutdown(Duration::from_secs(30)).await, "{}", logs(&sv));
    assert_eq!(sv.log().matches("SIGKILL").count(), 1, "{}", logs(&sv));
    assert!(sv.log().contains(CLEAN_STOP), "{}", logs(&sv));
    assert_no_ansi(&sv);
}
