//! One tenant's slow goodbye must not hold up another tenant's start.
//! Row A's broker never closes after our DISCONNECT, so A's stop takes the
//! whole goodbye bound (MQTT_CONNECT_TIMEOUT, 10 s here). Before the
//! hardening the reconcile that disabled A waited for A's stop before it
//! (or the next one) started anything else.

use super::holds_after_disconnect;
use mqtt_supervisor_tests::{
    App, Broker, FakeBroker, PacketKind, Row, database_url, insert, state, wait_status,
};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// Well inside A's 10 s goodbye.
const B_BOUND: Duration = Duration::from_secs(5);

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn slow_goodbye_does_not_delay_another_row(pool: PgPool) {
    let slow = FakeBroker::start(vec![holds_after_disconnect()]).await;
    let broker = Broker::start().await;
    let a = insert(&pool, &Row::new("tenant_a", slow.port())).await;
    let app = App::spawn(
        &database_url(&pool),
        &[
            ("MQTT_CONNECT_TIMEOUT", "10s"),
            ("MQTT_LEASE_PERIOD", "22s"),
        ],
    );
    app.ready().await;
    assert!(
        wait_status(&pool, a, "connected", Duration::from_secs(10)).await,
        "{}",
        app.output()
    );
    assert!(
        slow.wait_packet(0, PacketKind::Subscribe, Duration::from_secs(5))
            .await
    );

    sqlx::query("UPDATE mqtt_connections SET is_enabled = false WHERE id = $1")
        .bind(a)
        .execute(&pool)
        .await
        .unwrap();
    let added = Instant::now();
    let b = insert(&pool, &Row::new("tenant_b", broker.port())).await;
    let b_up = wait_status(&pool, b, "connected", Duration::from_secs(15)).await;
    let took = added.elapsed();
    eprintln!(
        "tenant B connected {:.2} s after its insert, while tenant A said goodbye",
        took.as_secs_f64()
    );
    assert!(b_up, "{:?}\n{}", state(&pool, b).await, app.output());
    assert!(
        took < B_BOUND,
        "tenant B waited {:.2} s for tenant A's goodbye\n{}",
        took.as_secs_f64(),
        app.output()
    );
    // A's goodbye was really under way: DISCONNECT sent, socket still open.
    let first = slow.connection(0);
    assert!(first.disconnect_received, "A was not stopped: {first:?}");
    assert!(first.closed_at.is_none(), "A's broker closed: {first:?}");

    // A's stop still ends, at its own bound.
    assert!(
        wait_status(&pool, a, "stopped", Duration::from_secs(15)).await,
        "{:?}\n{}",
        state(&pool, a).await,
        app.output()
    );
    assert_eq!(state(&pool, b).await.unwrap().0, "connected");
    assert_eq!(broker.connects_of("tenant_b_test"), 1, "{}", broker.log());
}
