//! The CLI next to a running service: `health` (healthy, critical,
//! unreachable), `--version`, `check-config`, and a change made with
//! `connections` taking effect at once.

use super::{Cli, list_line};
use mqtt_supervisor_tests::{App, Broker, Observer, database_url, free_port};
use sqlx::PgPool;
use std::time::{Duration, Instant};

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn health_asks_the_running_service(pool: PgPool) {
    let broker = Broker::start().await;
    let cli = Cli::new(&database_url(&pool));
    let port = broker.port().to_string();
    let add = cli
        .run(&[
            "connections",
            "add",
            "site_1",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
        ])
        .await;
    assert_eq!(add.code, Some(0), "{add:?}");
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    let addr = format!("127.0.0.1:{}", app.http_port());
    let env = [("MQTT_HTTP_ADDR", addr.as_str())];

    // `health` with no --url asks MQTT_HTTP_ADDR, as Docker's HEALTHCHECK does.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = cli.run_with(&["health"], None, &env).await;
        if out.code == Some(0) && out.stdout.starts_with("healthy: 1/1 connections up") {
            break;
        }
        assert!(Instant::now() < deadline, "{out:?}\n{}", app.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let url = format!("http://{addr}/api/v1/mqtt/health/");
    let out = cli.run(&["health", "--url", &url]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("healthy:"), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1);
    assert!(out.stdout.contains("instance test"), "{out:?}");

    // Critical (no enabled connection is up) is exit 1.
    let disable = cli.run(&["connections", "disable", "site_1"]).await;
    assert_eq!(disable.code, Some(0));
    let broken = cli
        .run(&[
            "connections",
            "add",
            "site_2",
            "--host",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
        ])
        .await;
    assert_eq!(broken.code, Some(0), "{broken:?}");
    let critical = mqtt_supervisor_tests::eventually(Duration::from_secs(15), || async {
        let out = cli.run(&["health", "--url", &url]).await;
        out.code == Some(1) && out.stdout.starts_with("critical:")
    })
    .await;
    assert!(critical, "{:?}", cli.run(&["health", "--url", &url]).await);

    let nobody = format!("http://127.0.0.1:{}/api/v1/mqtt/health/", free_port());
    let out = cli.run(&["health", "--url", &nobody]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.starts_with("critical: cannot reach"), "{out:?}");
    assert!(out.took < Duration::from_secs(10), "{:?}", out.took);
}

#[tokio::test]
async fn version_and_check_config() {
    let cli = Cli::new("postgres://mqtt:cfgpw-hidden@127.0.0.1:5432/mqtt_supervisor");
    let out = cli.run(&["--version"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("mqtt-supervisor {}", env!("CARGO_PKG_VERSION"))
    );

    let out = cli
        .run_with(&["check-config"], None, &[("MQTT_KEEP_ALIVE", "30")])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for variable in crate::deploy_files::DOCUMENTED_SETTINGS {
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(variable))
            .unwrap_or_else(|| panic!("{variable} missing:\n{}", out.stdout));
        assert!(line.contains(" = "), "{line}");
    }
    let keep_alive = out
        .stdout
        .lines()
        .find(|l| l.starts_with("MQTT_KEEP_ALIVE"))
        .unwrap();
    assert!(keep_alive.contains("environment"), "{keep_alive}");
    let instance = out
        .stdout
        .lines()
        .find(|l| l.starts_with("MQTT_INSTANCE_ID "))
        .unwrap();
    assert!(instance.contains("test"), "{instance}");
    let db = out
        .stdout
        .lines()
        .find(|l| l.starts_with("DATABASE_URL"))
        .unwrap();
    assert!(db.contains("***"), "{db}");
    assert!(
        !cli.transcript().contains("cfgpw-hidden"),
        "{}",
        cli.transcript()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn cli_changes_reach_a_running_service_at_once(pool: PgPool) {
    const TOPIC: &str = "site_7/backend/status";
    let broker = Broker::start().await;
    let watcher = Observer::start(broker.port(), TOPIC).await;
    let app = App::spawn(&database_url(&pool), &[("MQTT_MONITOR_INTERVAL", "30")]);
    app.ready().await;
    let cli = Cli::new(&database_url(&pool));
    let port = broker.port().to_string();
    let fast = Duration::from_secs(5);

    let add = cli
        .run(&[
            "connections",
            "add",
            "site_7",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
        ])
        .await;
    assert_eq!(add.code, Some(0), "{add:?}");
    assert!(
        watcher.wait_for(TOPIC, "online", fast).await,
        "{:?}\n{}",
        watcher.all(),
        app.output()
    );
    let listed = mqtt_supervisor_tests::eventually(fast, || async {
        let list = cli.run(&["connections", "list"]).await;
        list_line(&list.stdout, "site_7")[3] == "connected"
    })
    .await;
    assert!(listed, "{}", cli.run(&["connections", "list"]).await.stdout);

    let steps = [
        ("disable", "offline"),
        ("enable", "online"),
        ("remove", "offline"),
    ];
    for (action, expected) in steps {
        let out = cli.run(&["connections", action, "site_7"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(
            watcher.wait_for(TOPIC, expected, fast).await,
            "after {action}: {:?}\n{}",
            watcher.payloads(TOPIC),
            app.output()
        );
    }
    assert_eq!(
        watcher.payloads(TOPIC),
        ["online", "offline", "online", "offline"],
        "{}",
        app.output()
    );
}
