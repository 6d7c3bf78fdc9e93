//! The actor acknowledges what it receives itself (rumqttc's manual acks,
//! the ground for storing messages before acknowledging them): QoS 1 and 2
//! messages keep flowing well past the broker's in-flight window (Mosquitto
//! sends at most 20 unacknowledged messages per client), in order.

use mqtt_supervisor_tests::{App, Broker, Row, database_url, insert, wait_status};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use sqlx::PgPool;
use std::time::Duration;

/// Far more than Mosquitto's default window of 20 unacknowledged messages.
const MESSAGES: usize = 200;

/// Topics the service logged as received by `site_1`, in order.
fn received(app: &App) -> Vec<String> {
    app.output()
        .lines()
        .filter(|l| l.contains("Message received.") && l.contains("connection=site_1 "))
        .filter_map(|l| {
            let start = l.find("topic=")? + "topic=".len();
            Some(l[start..].split(' ').next()?.to_owned())
        })
        .collect()
}

async fn publish_all(port: u16, qos: QoS) {
    let mut options = MqttOptions::new("publisher", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    // Within Mosquitto's window for incoming QoS 2 (20): beyond it the
    // broker answers PUBREC 0x97 (quota exceeded) and drops the message.
    options.set_inflight(10);
    let (client, mut events) = AsyncClient::new(options, 256);
    let mut completed = 0;
    for i in 0..MESSAGES {
        client
            .publish(format!("site_1/in/{i}"), qos, false, vec![b'x'; 10])
            .await
            .unwrap();
    }
    // Until the broker confirmed every one (PUBACK or PUBCOMP).
    tokio::time::timeout(Duration::from_secs(20), async {
        while completed < MESSAGES {
            if let Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_)) =
                events.poll().await.unwrap()
            {
                completed += 1;
            }
        }
    })
    .await
    .expect("the broker confirmed every publish");
}

async fn every_message_is_acknowledged(pool: PgPool, protocol: &str, qos: QoS) {
    let broker = Broker::start().await;
    let id = insert(
        &pool,
        &Row {
            protocol: Some(protocol.to_owned()),
            subscriptions: Some(vec![format!("site_1/in/#")]),
            ..Row::new("site_1", broker.port())
        },
    )
    .await;
    let app = App::spawn(
        &database_url(&pool),
        &[("RUST_LOG", "info,mqtt_supervisor_core::connection=trace")],
    );
    app.ready().await;
    assert!(wait_status(&pool, id, "connected", Duration::from_secs(10)).await);
    // The SUBACK may still be on its way: wait for it in the broker's log.
    assert!(
        mqtt_supervisor_tests::eventually(Duration::from_secs(5), || async {
            broker.log().contains("Sending SUBACK to site_1_test")
        })
        .await
    );
    publish_all(broker.port(), qos).await;
    let all = mqtt_supervisor_tests::eventually(Duration::from_secs(20), || async {
        received(&app).len() >= MESSAGES
    })
    .await;
    let got = received(&app);
    assert!(
        all,
        "{} of {MESSAGES} received: the broker stopped sending (acks missing?)\n{}\n{}",
        got.len(),
        app.output(),
        broker.log()
    );
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("site_1/in/{i}")).collect();
    assert_eq!(got, expected, "received out of order or twice");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn qos1_messages_are_acknowledged_mqtt311(pool: PgPool) {
    every_message_is_acknowledged(pool, "3.1.1", QoS::AtLeastOnce).await;
}

/// Published at QoS 2, delivered at the subscription's QoS 1.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn qos1_messages_are_acknowledged_mqtt5(pool: PgPool) {
    every_message_is_acknowledged(pool, "5", QoS::ExactlyOnce).await;
}
