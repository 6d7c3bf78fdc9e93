//! Every start, stop and restart the monitor decides is in the log with its
//! reason: a row disabled, deleted or made invalid, which settings changed,
//! a new row.

use mqtt_supervisor_tests::{App, Broker, Row, database_url, insert, wait_status};
use sqlx::PgPool;
use std::time::Duration;

async fn run(pool: &PgPool, sql: &'static str, id: i64) {
    sqlx::query(sql).bind(id).execute(pool).await.unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_decision_is_logged_with_its_reason(pool: PgPool) {
    let broker = Broker::start().await;
    let mut ids = Vec::new();
    for name in ["site_a", "site_b", "site_c", "site_e"] {
        ids.push(insert(&pool, &Row::new(name, broker.port())).await);
    }
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    for id in &ids {
        assert!(wait_status(&pool, *id, "connected", Duration::from_secs(10)).await);
    }
    assert!(
        app.output().contains("Starting 4 connection(s)."),
        "{}",
        app.output()
    );

    let wait = |line: &'static str| {
        let app = &app;
        async move {
            assert!(
                app.wait_output(line, Duration::from_secs(10)).await,
                "missing {line:?}:\n{}",
                app.output()
            );
        }
    };
    run(
        &pool,
        "UPDATE mqtt_connections SET is_enabled = false WHERE id = $1",
        ids[0],
    )
    .await;
    wait("connection=site_a").await;
    wait("Stopping the connection: row disabled.").await;
    run(&pool, "DELETE FROM mqtt_connections WHERE id = $1", ids[1]).await;
    wait("Stopping the connection: row deleted.").await;
    run(
        &pool,
        "UPDATE mqtt_connections SET keep_alive_secs = 30 WHERE id = $1",
        ids[2],
    )
    .await;
    wait("Configuration changed (keep-alive); reconnecting.").await;
    run(
        &pool,
        "UPDATE mqtt_connections SET subscriptions = ARRAY['a/#/b'] WHERE id = $1",
        ids[3],
    )
    .await;
    wait("Stopping the connection: row is now invalid (subscription 1 `a/#/b`: `#` must be the last level").await;
    insert(&pool, &Row::new("site_d", broker.port())).await;
    wait("Starting the connection: new or enabled row.").await;
    run(
        &pool,
        "UPDATE mqtt_connections SET is_enabled = true WHERE id = $1",
        ids[0],
    )
    .await;
    let out = app.output();
    let stop_line = out.lines().find(|l| l.contains("row disabled")).unwrap();
    assert!(
        stop_line.contains("site_a") && stop_line.contains("client_id=site_a_test"),
        "{stop_line}"
    );
    // Re-enabled: started again, the second such line.
    let again = mqtt_supervisor_tests::eventually(Duration::from_secs(10), || async {
        app.output()
            .matches("Starting the connection: new or enabled row.")
            .count()
            == 2
    })
    .await;
    assert!(again, "{}", app.output());
}
