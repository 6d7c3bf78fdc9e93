//! Start, connect, announce, stop: the happy path and the contract's shape.

use mqtt_supervisor_tests::{App, Broker, Observer, Row, database_url, insert, wait_status};
use sqlx::PgPool;
use std::time::Duration;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn connects_announces_online_and_reports_health(pool: PgPool) {
    let broker = Broker::start().await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let a = insert(&pool, &Row::new("site_88", broker.port())).await;
    let b = insert(
        &pool,
        &Row {
            protocol: Some("5".into()),
            ..Row::new("site_91", broker.port())
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    for (id, name) in [(a, "site_88"), (b, "site_91")] {
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
    assert_eq!(broker.connects_of("site_88_test"), 1, "{}", broker.log());
    assert_eq!(broker.connects_of("site_91_test"), 1);
    let (code, body) = app.health(true).await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["connections"]["healthy"], 2);
    let details = body["details"].as_array().unwrap();
    assert_eq!(details[0]["client_id"], "site_88_test");
    assert_eq!(details[1]["client_id"], "site_91_test");
    assert_eq!(details[0]["broker"], format!("127.0.0.1:{}", broker.port()));
}
