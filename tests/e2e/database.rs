//! Postgres going away: while running, the MQTT connections stay up and
//! health says `degraded` until the database is back; at start-up the
//! service waits for it with progress lines and still stops cleanly.

use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, free_port, insert, wait_status,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;

/// Makes the test's database refuse connections and ends every session on
/// it, through a separate connection to the `postgres` database. Dropping it
/// allows connections again, also when the test fails half-way.
struct Outage {
    admin: PgConnectOptions,
    database: String,
    ended: bool,
}

impl Outage {
    async fn begin(pool: &PgPool) -> Outage {
        let options = (*pool.connect_options()).clone();
        let database = options.get_database().unwrap().to_owned();
        let outage = Outage {
            admin: options.database("postgres"),
            database,
            ended: false,
        };
        let mut admin = PgConnection::connect_with(&outage.admin).await.unwrap();
        allow_connections(&mut admin, &outage.database, false).await;
        // Twice: a session that was half-way through its start-up when
        // connections were disallowed (the service reconnects its lock
        // session every second) may not be listed yet the first time.
        for _ in 0..2 {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&outage.database)
            .execute(&mut admin)
            .await
            .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        outage
    }

    async fn end(mut self) {
        let mut admin = PgConnection::connect_with(&self.admin).await.unwrap();
        allow_connections(&mut admin, &self.database, true).await;
        self.ended = true;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (admin, database) = (self.admin.clone(), self.database.clone());
        // Drop cannot await: a small runtime on its own thread does it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect_with(&admin).await {
                    allow_connections(&mut c, &database, true).await;
                }
            });
        })
        .join();
    }
}

async fn allow_connections(admin: &mut PgConnection, database: &str, allow: bool) {
    let sql = format!(
        "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}",
        database.replace('"', "\"\"")
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(admin)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn database_outage_keeps_connections_up_and_degrades_health(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let a = insert(&pool, &Row::new("site_a", broker.port())).await;
    let b = insert(&pool, &Row::new("site_b", broker.port())).await;
    // Connections outlive an outage of up to half the lease period (45 s
    // here); a longer one closes them, since another replica could take
    // them then (replicas::a_replica_cut_from_postgres_…).
    let app = App::spawn(
        &database_url(&pool),
        &[("MQTT_MONITOR_INTERVAL", "2"), ("MQTT_LEASE_PERIOD", "90")],
    );
    app.ready().await;
    for (id, name) in [(a, "site_a"), (b, "site_b")] {
        assert!(
            wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
            "{name}:\n{}",
            app.output()
        );
        let topic = format!("{name}/backend/status");
        assert!(
            observer
                .wait_for(&topic, "online", Duration::from_secs(5))
                .await
        );
    }

    let outage = Outage::begin(&pool).await;
    let degraded = eventually(Duration::from_secs(15), || async {
        app.health(false).await.is_some_and(|(code, body)| {
            code == 200
                && body["status"] == "degraded"
                && body["service"]["database"] == "unreachable"
        })
    })
    .await;
    assert!(
        degraded,
        "health: {:?}\n{}",
        app.health(true).await,
        app.output()
    );
    // The monitor tried to reconcile and failed, and left the connections be.
    assert!(
        app.wait_output("Cannot load connections", Duration::from_secs(10))
            .await,
        "{}",
        app.output()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (code, body) = app.health(true).await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["service"]["database"], "unreachable", "{body}");
    assert_eq!(body["connections"]["healthy"], 2, "{body}");
    for name in ["site_a", "site_b"] {
        let topic = format!("{name}/backend/status");
        assert!(
            !observer.payloads(&topic).contains(&"offline".to_owned()),
            "{name} went offline during the outage: {:?}",
            observer.payloads(&topic)
        );
        assert_eq!(
            broker.connects_of(&format!("{name}_test")),
            1,
            "{}",
            broker.log()
        );
    }

    outage.end().await;
    let healthy = eventually(Duration::from_secs(30), || async {
        app.health(false).await.is_some_and(|(code, body)| {
            code == 200 && body["status"] == "healthy" && body["service"]["database"] == "ok"
        })
    })
    .await;
    assert!(
        healthy,
        "health after recovery: {:?}\n{}",
        app.health(true).await,
        app.output()
    );
    // Changes are picked up again (NOTIFY or the periodic reconcile).
    let c = insert(&pool, &Row::new("site_c", broker.port())).await;
    assert!(
        wait_status(&pool, c, "connected", Duration::from_secs(15)).await,
        "row added after recovery:\n{}",
        app.output()
    );
    assert!(
        observer
            .wait_for("site_c/backend/status", "online", Duration::from_secs(5))
            .await
    );
    assert_eq!(broker.connects_of("site_a_test"), 1, "{}", broker.log());
    assert_eq!(broker.connects_of("site_b_test"), 1, "{}", broker.log());
    assert!(!app.output().contains("panicked"), "{}", app.output());
}

#[tokio::test]
async fn start_waits_for_the_database_and_stops_cleanly(/* no database */) {
    // Nothing listens there: the service must wait, not crash-loop or exit.
    let url = format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port());
    let mut app = App::spawn(&url, &[]);
    assert!(
        app.wait_output("attempt 2", Duration::from_secs(15)).await,
        "{}",
        app.output()
    );
    let out = app.output();
    let waiting: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("Waiting for database"))
        .collect();
    assert!(waiting.len() >= 2, "{out}");
    assert!(waiting[0].contains("attempt 1"), "{out}");
    assert!(waiting[1].contains("attempt 2"), "{out}");

    let (code, body) = app.health(false).await.expect("HTTP answers while waiting");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "critical", "{body}");
    assert_eq!(body["service"]["database"], "unreachable", "{body}");
    assert_eq!(body["service"]["running"], false, "{body}");

    app.sigterm();
    let status = app.wait_exit(Duration::from_secs(5)).await;
    let status = status.unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", app.output()));
    assert!(status.success(), "{status:?}\n{}", app.output());
}
