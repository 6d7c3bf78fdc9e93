//! One private node, then RabbitMQ 3.10's MQTT behaviour checked in
//! sequence (a node takes ~10 s to start, so the checks share it). Each
//! check names the fact it pins down; the service's handling of RabbitMQ
//! relies on these facts.

mod probe;

use super::*;
use probe::*;
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};

/// Long enough for anything the broker does at once (it answers in ms).
const SOON: Duration = Duration::from_secs(5);
/// How long a check waits for something that must not happen.
const QUIET: Duration = Duration::from_secs(1);

#[tokio::test]
async fn rabbitmq_node_serves_mqtt_with_known_quirks() {
    let rabbit = RabbitMq::start().await;
    smoke(&rabbit).await;
    retained_only_for_exact_topic(&rabbit).await;
    wills(&rabbit).await;
    wrong_password(&rabbit).await;
    mqtt5_connect(&rabbit).await;
    topic_permissions(&rabbit).await;
}

/// The node's last log lines, for failure messages.
fn context(rabbit: &RabbitMq) -> String {
    format!("--- RabbitMQ log (tail) ---\n{}", tail(&rabbit.log(), 40))
}

/// A 3.1.1 client connects; a retained QoS 1 publish reaches a subscriber
/// of the exact topic that comes later, flagged retained.
async fn smoke(rabbit: &RabbitMq) {
    let port = rabbit.mqtt_port();
    let publisher = Probe::connect(options(port, "smoke_pub")).await;
    assert_eq!(
        publisher.seen(),
        [Seen::ConnAck(ConnectReturnCode::Success)],
        "{}",
        context(rabbit)
    );
    publisher
        .client
        .publish("smoke/1/status", QoS::AtLeastOnce, true, "online")
        .await
        .unwrap();
    let acked = publisher
        .first(|s| matches!(s, Seen::PubAck(_)), SOON)
        .await;
    assert!(acked.is_some(), "no PUBACK\n{}", context(rabbit));
    let subscriber = Probe::connect(options(port, "smoke_sub")).await;
    subscriber.subscribe("smoke/1/status").await.unwrap();
    subscriber
        .first(|s| matches!(s, Seen::Publish { .. }), SOON)
        .await;
    assert_eq!(
        subscriber.deliveries("smoke/1/status"),
        [("online".to_owned(), true)],
        "{}",
        context(rabbit)
    );
    publisher.disconnect().await;
    subscriber.disconnect().await;
}

/// (c) A retained message goes to a new subscriber of the exact topic only:
/// `smoke/#`, `smoke/+/status` and `#` get nothing (RabbitMQ 3.10's
/// retained store is a plain key-value lookup by topic).
async fn retained_only_for_exact_topic(rabbit: &RabbitMq) {
    let port = rabbit.mqtt_port();
    let mut wild = Vec::new();
    for (i, filter) in ["smoke/#", "smoke/+/status", "#"].into_iter().enumerate() {
        let probe = Probe::connect(options(port, &format!("wild_{i}"))).await;
        let codes = probe.subscribe(filter).await;
        assert_eq!(
            codes,
            Some(vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)])
        );
        wild.push((filter, probe));
    }
    tokio::time::sleep(QUIET).await;
    for (filter, probe) in wild {
        assert_eq!(probe.deliveries("smoke/1/status"), [], "via {filter}");
        probe.disconnect().await;
    }
}

/// (a) takeover: the first connection is closed at once, by a TCP close (no
/// DISCONNECT: 3.1.1 has none), and its Will is NOT published. (b) An
/// abrupt close publishes the Will and stores it retained. (g) A clean
/// DISCONNECT suppresses the Will.
async fn wills(rabbit: &RabbitMq) {
    let port = rabbit.mqtt_port();
    let watcher = Probe::connect(options(port, "watcher")).await;
    watcher.subscribe("wills/#").await.unwrap();

    let mut first = options(port, "dup");
    first.set_last_will(will("wills/dup", "offline"));
    let first = Probe::connect(first).await;
    let second = Probe::connect(options(port, "dup")).await;
    let connack = second.first(|s| matches!(s, Seen::ConnAck(_)), SOON).await;
    let closed = first.closed(SOON).await;
    let (Some(connack), Some(closed)) = (connack, closed) else {
        panic!(
            "takeover: {:?} / {:?}\n{}",
            first.seen(),
            second.seen(),
            context(rabbit)
        );
    };
    let after = closed.saturating_duration_since(connack);
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("takeover: first connection closed {after:?} after the second's CONNACK");
    }
    assert!(
        after < Duration::from_secs(1),
        "closed only after {after:?}"
    );
    assert!(
        matches!(first.seen().as_slice(), [Seen::ConnAck(_), Seen::Error(_)]),
        "no DISCONNECT, just a close: {:?}",
        first.seen()
    );
    assert!(
        rabbit.wait_log("with duplicate id 'dup'").await,
        "{}",
        context(rabbit)
    );

    let mut abrupt = options(port, "abrupt");
    abrupt.set_last_will(will("wills/abrupt", "gone"));
    Probe::connect(abrupt).await.abort().await;
    let mut clean = options(port, "clean");
    clean.set_last_will(will("wills/clean", "never"));
    Probe::connect(clean).await.disconnect().await;

    let will_seen = |s: &Seen| matches!(s, Seen::Publish { topic, .. } if topic == "wills/abrupt");
    assert!(
        watcher.first(will_seen, SOON).await.is_some(),
        "{}",
        context(rabbit)
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        watcher.deliveries("wills/abrupt"),
        [("gone".to_owned(), false)],
        "abrupt close: Will published (live copy not flagged retained)"
    );
    assert_eq!(watcher.deliveries("wills/dup"), [], "takeover: no Will");
    assert_eq!(
        watcher.deliveries("wills/clean"),
        [],
        "clean DISCONNECT: no Will"
    );

    let late = Probe::connect(options(port, "late")).await;
    late.subscribe("wills/abrupt").await.unwrap();
    late.subscribe("wills/dup").await.unwrap();
    late.first(|s| matches!(s, Seen::Publish { .. }), SOON)
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        late.deliveries("wills/abrupt"),
        [("gone".to_owned(), true)],
        "Will kept retained"
    );
    assert_eq!(late.deliveries("wills/dup"), []);
    for probe in [watcher, second, late] {
        probe.disconnect().await;
    }
}

/// (d) A wrong password (or an unknown user) gets CONNACK 0x04 (bad user
/// name or password), then the broker closes the connection.
async fn wrong_password(rabbit: &RabbitMq) {
    let port = rabbit.mqtt_port();
    rabbit.add_user("bob", "secret").await;
    let mut right = options(port, "bob_ok");
    right.set_credentials("bob", "secret");
    let right = Probe::connect(right).await;
    assert_eq!(right.seen(), [Seen::ConnAck(ConnectReturnCode::Success)]);
    right.disconnect().await;

    let mut wrong = options(port, "bob_wrong");
    wrong.set_credentials("bob", "wrong");
    let wrong = Probe::connect(wrong).await;
    assert_eq!(
        wrong.seen(),
        [Seen::Error("ConnectionRefused(BadUserNamePassword)".into())]
    );
    for login in [("bob", "wrong"), ("nobody", "x")] {
        let (bytes, closed) = raw(port, &[connect_packet(4, "raw", Some(login))], SOON).await;
        assert_eq!((bytes, closed), (vec![0x20, 2, 0, 4], true), "{login:?}");
    }
    assert!(rabbit.wait_log("MQTT login failed for user 'bob'").await);
}

/// (e) An MQTT 5 CONNECT is not understood (3.10 speaks 3.1 and 3.1.1
/// only): the broker logs a frame parse error and closes without CONNACK.
async fn mqtt5_connect(rabbit: &RabbitMq) {
    let port = rabbit.mqtt_port();
    let mut options = rumqttc::v5::MqttOptions::new("v5", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (_client, mut events) = rumqttc::v5::AsyncClient::new(options, 10);
    let first = tokio::time::timeout(SOON, events.poll()).await.unwrap();
    assert!(
        matches!(first, Err(rumqttc::v5::ConnectionError::MqttState(_))),
        "{first:?}"
    );
    let (bytes, closed) = raw(port, &[connect_packet(5, "v5raw", None)], SOON).await;
    assert_eq!((bytes, closed), (vec![], true));
    assert!(rabbit.wait_log("MQTT cannot parse a frame").await);
}

/// (f) Topic permissions: a denied PUBLISH (QoS 1) closes the connection at
/// once, without PUBACK, and stores nothing; a PUBLISH and a SUBSCRIBE in
/// one flush: the close comes first, the SUBSCRIBE is never answered. A
/// denied SUBSCRIBE closes the connection too, without SUBACK (no 0x80).
async fn topic_permissions(rabbit: &RabbitMq) {
    let port = rabbit.mqtt_port();
    rabbit.deny_topic_write("bob", "acl/bob/status").await;
    let mut bob = options(port, "bob_1");
    bob.set_credentials("bob", "secret");
    let probe = Probe::connect(bob.clone()).await;
    for (topic, retain) in [("acl/bob/other", false), ("acl/bob/status", true)] {
        probe
            .client
            .publish(topic, QoS::AtLeastOnce, retain, "online")
            .await
            .unwrap();
    }
    let closed = probe.closed(SOON).await;
    assert!(closed.is_some(), "{:?}\n{}", probe.seen(), context(rabbit));
    let seen = probe.seen();
    assert!(
        matches!(
            seen.as_slice(),
            [Seen::ConnAck(_), Seen::PubAck(1), Seen::Error(_)]
        ),
        "allowed publish acked, denied one closes without PUBACK: {seen:?}"
    );
    let refused = "access to topic 'acl.bob.status' in exchange 'amq.topic' \
                   in vhost '/' refused for user 'bob'";
    assert!(rabbit.wait_log(refused).await, "{}", context(rabbit));
    assert!(
        rabbit
            .wait_log("is closing due to an authorization failure")
            .await
    );

    let login = Some(("bob", "secret"));
    let publish = publish_packet("acl/bob/status", 1, "online", true);
    let subscribe = subscribe_packet("acl/bob/cmd", 2);
    let pause = Duration::from_millis(200);
    let (bytes, closed) = raw(
        port,
        &[
            connect_packet(4, "bob_2", login),
            [publish.clone(), subscribe.clone()].concat(),
        ],
        pause,
    )
    .await;
    assert_eq!(packets(&bytes), [("CONNACK", vec![0, 0])], "then the close");
    assert!(closed);
    let (bytes, closed) = raw(
        port,
        &[
            connect_packet(4, "bob_3", login),
            [subscribe, publish].concat(),
        ],
        pause,
    )
    .await;
    let suback = ("SUBACK", vec![0, 2, 1]);
    assert_eq!(packets(&bytes), [("CONNACK", vec![0, 0]), suback]);
    assert!(closed);

    // Write: still all but the status topic; read: all but acl/+/status.
    let read = format!(
        "^(?!{}$).*",
        RabbitMq::regex_escape(&RabbitMq::routing_key("acl/+/status"))
    );
    assert_eq!(read, r"^(?!acl\.\*\.status$).*");
    let write = format!(
        "^(?!{}$).*",
        RabbitMq::regex_escape(&RabbitMq::routing_key("acl/bob/status"))
    );
    rabbit.set_topic_permissions("bob", &write, &read).await;
    let reader = Probe::connect(bob).await;
    let allowed = reader.subscribe("acl/bob/status").await;
    assert_eq!(
        allowed,
        Some(vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)])
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        reader.deliveries("acl/bob/status"),
        [],
        "denied retained publish not stored"
    );
    let denied = reader.subscribe("acl/+/status").await;
    assert_eq!(denied, None, "no SUBACK at all: {:?}", reader.seen());
    assert!(reader.closed(SOON).await.is_some());
    assert!(rabbit.wait_log(
        "access to topic 'acl.*.status' in exchange 'amq.topic' in vhost '/' refused for user 'bob'"
    ).await);
}
