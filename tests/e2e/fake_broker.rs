//! Self-tests of the test kit's [`FakeBroker`], seen through rumqttc (the
//! client the service uses), MQTT 3.1.1 and 5: what a script says is what
//! the client experiences.

use mqtt_supervisor_tests::{ConnEnd, FakeBroker, MAX_REMAINING, PacketKind, Step};
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as Code5;
use rumqttc::v5::{self, StateError as State5};
use rumqttc::{ConnectReturnCode, ConnectionError, Event, Incoming, MqttOptions, QoS, StateError};
use std::time::{Duration, Instant};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) type Polled = Result<Event, ConnectionError>;
pub(crate) type Polled5 = Result<v5::Event, v5::ConnectionError>;

/// Polls a 3.1.1 event loop until `pick` takes an outcome; panics after
/// [`WAIT`] with everything seen.
pub(crate) async fn next<T>(
    events: &mut rumqttc::EventLoop,
    mut pick: impl FnMut(Polled) -> Option<T>,
) -> T {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let polled = events.poll().await;
            seen.push(format!("{polled:?}"));
            if let Some(t) = pick(polled) {
                return t;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("nothing picked in {WAIT:?}; seen: {seen:#?}"))
}

/// [`next`] for an MQTT 5 event loop.
pub(crate) async fn next5<T>(
    events: &mut v5::EventLoop,
    mut pick: impl FnMut(Polled5) -> Option<T>,
) -> T {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let polled = events.poll().await;
            seen.push(format!("{polled:?}"));
            if let Some(t) = pick(polled) {
                return t;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("nothing picked in {WAIT:?}; seen: {seen:#?}"))
}

pub(crate) fn client(port: u16, id: &str) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    rumqttc::AsyncClient::new(options, 16)
}

pub(crate) fn client5(port: u16, id: &str) -> (v5::AsyncClient, v5::EventLoop) {
    let mut options = v5::MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    v5::AsyncClient::new(options, 16)
}

#[tokio::test]
async fn fake_broker_answers_like_a_broker_v311() {
    let broker = FakeBroker::start(vec![Step::accept()]).await;
    let mut options = MqttOptions::new("kit_v4", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(25));
    options.set_credentials("app", "secret");
    options.set_last_will(rumqttc::LastWill::new(
        "site/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
    client
        .subscribe("site/cmd/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish("site/status", QoS::AtLeastOnce, true, "online")
        .await
        .unwrap();
    let mut acks = (false, false, false);
    next(&mut events, |e| {
        match e.unwrap() {
            Event::Incoming(Incoming::ConnAck(c)) => acks.0 = c.code == ConnectReturnCode::Success,
            Event::Incoming(Incoming::SubAck(s)) => acks.1 = s.return_codes.len() == 1,
            Event::Incoming(Incoming::PubAck(_)) => acks.2 = true,
            _ => {}
        }
        (acks == (true, true, true)).then_some(())
    })
    .await;
    client.disconnect().await.unwrap();
    next(&mut events, |e| e.is_err().then_some(())).await;
    assert!(broker.wait_closed(0, WAIT).await);

    let conn = broker.connection(0);
    assert_eq!(conn.protocol_level, 4);
    assert_eq!(conn.client_id, "kit_v4");
    assert_eq!(conn.username.as_deref(), Some("app"));
    assert_eq!(conn.password.as_deref(), Some(&b"secret"[..]));
    assert_eq!(conn.keep_alive, 25);
    assert_eq!(
        conn.will,
        Some(("site/status".to_owned(), b"offline".to_vec()))
    );
    assert_eq!(conn.subscriptions, ["site/cmd/#"]);
    assert_eq!(conn.payloads("site/status"), ["online"]);
    assert!(conn.publishes[0].retain && conn.publishes[0].qos == 1);
    assert_eq!(
        conn.kinds(),
        [
            PacketKind::Connect,
            PacketKind::Subscribe,
            PacketKind::Publish,
            PacketKind::Disconnect
        ]
    );
    assert!(conn.disconnect_received);
    assert_eq!(conn.end, Some(ConnEnd::ClientDisconnect));
    assert_eq!(broker.connections(), 1);
}

#[tokio::test]
async fn fake_broker_answers_like_a_broker_v5() {
    let broker = FakeBroker::start(vec![Step::accept()]).await;
    let (client, mut events) = client5(broker.port(), "kit_v5");
    client
        .subscribe("site/cmd/#", v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish(
            "site/status",
            v5::mqttbytes::QoS::AtLeastOnce,
            true,
            "online",
        )
        .await
        .unwrap();
    let mut acks = (false, false, false);
    next5(&mut events, |e| {
        match e.unwrap() {
            v5::Event::Incoming(v5::Incoming::ConnAck(c)) => acks.0 = c.code == Code5::Success,
            v5::Event::Incoming(v5::Incoming::SubAck(s)) => acks.1 = s.return_codes.len() == 1,
            v5::Event::Incoming(v5::Incoming::PubAck(_)) => acks.2 = true,
            _ => {}
        }
        (acks == (true, true, true)).then_some(())
    })
    .await;
    client.disconnect().await.unwrap();
    next5(&mut events, |e| e.is_err().then_some(())).await;
    assert!(broker.wait_closed(0, WAIT).await);

    let conn = broker.connection(0);
    assert_eq!(conn.protocol_level, 5);
    assert_eq!(conn.client_id, "kit_v5");
    assert_eq!(conn.username, None);
    assert_eq!(conn.keep_alive, 30);
    assert_eq!(conn.subscriptions, ["site/cmd/#"]);
    assert_eq!(conn.payloads("site/status"), ["online"]);
    assert!(conn.disconnect_received);
    assert_eq!(conn.end, Some(ConnEnd::ClientDisconnect));
}

#[tokio::test]
async fn fake_broker_refusal_is_a_refused_connection_and_the_last_script_repeats_v311() {
    let broker = FakeBroker::start(vec![vec![Step::ConnAck { code: 5 }], Step::accept()]).await;
    let (_client, mut events) = client(broker.port(), "kit_refused");
    let refused = next(&mut events, |e| match e {
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(refused, ConnectReturnCode::NotAuthorized);
    // The next attempts run the last script, again and again.
    let accepted = |e: Polled| matches!(e, Ok(Event::Incoming(Incoming::ConnAck(_)))).then_some(());
    next(&mut events, accepted).await;
    let (_again, mut events) = client(broker.port(), "kit_again");
    next(&mut events, accepted).await;
    assert_eq!(broker.connections(), 3);
}

#[tokio::test]
async fn fake_broker_refusal_is_a_refused_connection_v5() {
    let broker = FakeBroker::start(vec![vec![Step::ConnAck { code: 0x87 }]]).await;
    let (_client, mut events) = client5(broker.port(), "kit_refused");
    let refused = next5(&mut events, |e| match e {
        Err(v5::ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(refused, Code5::NotAuthorized);
}

#[tokio::test]
async fn fake_broker_delivers_a_5_mib_publish_v311() {
    let size = 5 * 1024 * 1024;
    let broker = FakeBroker::start(vec![vec![
        Step::ConnAck { code: 0 },
        Step::WaitFor(PacketKind::Subscribe),
        Step::Publish {
            topic: b"big/one".to_vec(),
            payload_len: size,
            qos: 1,
            retain: true,
        },
    ]])
    .await;
    let mut options = MqttOptions::new("kit_big", "127.0.0.1", broker.port());
    options.set_max_packet_size(8 * 1024 * 1024, 8 * 1024 * 1024);
    let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
    client.subscribe("big/#", QoS::AtLeastOnce).await.unwrap();
    let publish = next(&mut events, |e| match e.unwrap() {
        Event::Incoming(Incoming::Publish(p)) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(
        (publish.topic.as_str(), publish.qos),
        ("big/one", QoS::AtLeastOnce)
    );
    assert!(publish.retain);
    assert_eq!(publish.payload.len(), size);
    assert!(publish.payload.iter().all(|&b| b == b'x'));
    // rumqttc acknowledges it on its next poll.
    let acked = tokio::spawn(async move {
        loop {
            let _ = events.poll().await;
        }
    });
    assert!(broker.wait_packet(0, PacketKind::PubAck, WAIT).await);
    acked.abort();
}

#[tokio::test]
async fn fake_broker_delivers_a_5_mib_publish_v5() {
    let size = 5 * 1024 * 1024;
    let broker = FakeBroker::start(vec![vec![
        Step::ConnAck { code: 0 },
        Step::WaitFor(PacketKind::Subscribe),
        Step::publish("big/one", size),
    ]])
    .await;
    let mut options = v5::MqttOptions::new("kit_big", "127.0.0.1", broker.port());
    options.set_max_packet_size(Some(8 * 1024 * 1024));
    let (client, mut events) = v5::AsyncClient::new(options, 16);
    client
        .subscribe("big/#", v5::mqttbytes::QoS::AtMostOnce)
        .await
        .unwrap();
    let publish = next5(&mut events, |e| match e.unwrap() {
        v5::Event::Incoming(v5::Incoming::Publish(p)) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(&publish.topic[..], b"big/one");
    assert_eq!(publish.payload.len(), size);
    assert!(publish.payload.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn fake_broker_announces_the_largest_packet_mqtt_allows_v311() {
    let broker = FakeBroker::start(vec![vec![
        Step::ConnAck { code: 0 },
        Step::PublishHeaderOnly {
            announced_len: MAX_REMAINING,
        },
        Step::Hold,
    ]])
    .await;
    let (_client, mut events) = client(broker.port(), "kit_huge");
    let error = next(&mut events, Result::err).await;
    assert!(
        matches!(
            error,
            ConnectionError::MqttState(StateError::Deserialization(
                rumqttc::Error::PayloadSizeLimitExceeded(MAX_REMAINING)
            ))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn fake_broker_announces_the_largest_packet_mqtt_allows_v5() {
    let broker = FakeBroker::start(vec![vec![
        Step::ConnAck { code: 0 },
        Step::PublishHeaderOnly {
            announced_len: MAX_REMAINING,
        },
        Step::Hold,
    ]])
    .await;
    let (_client, mut events) = client5(broker.port(), "kit_huge");
    let error = next5(&mut events, Result::err).await;
    assert!(
        matches!(
            error,
            v5::ConnectionError::MqttState(State5::Deserialization(
                v5::mqttbytes::Error::PayloadSizeLimitExceeded {
                    pkt_size: MAX_REMAINING,
                    max: 10_240
                }
            ))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn fake_broker_close_after_subscribe_closes_after_the_suback_v311() {
    let broker = FakeBroker::start(vec![Step::close_after_subscribe()]).await;
    let (client, mut events) = client(broker.port(), "kit_close");
    client.subscribe("site/#", QoS::AtLeastOnce).await.unwrap();
    // When the SUBACK and the close arrive in one read, rumqttc reports the
    // close first (`ConnectionAborted`) and the SUBACK it had queued only
    // after the next CONNACK; so either order is fine here (the exact bytes
    // are checked in fake_broker_raw).
    let (mut subacked, mut aborted) = (false, false);
    next(&mut events, |e| {
        match e {
            Ok(Event::Incoming(Incoming::SubAck(_))) => subacked = true,
            Err(ConnectionError::MqttState(StateError::ConnectionAborted)) => aborted = true,
            _ => {}
        }
        (subacked && aborted).then_some(())
    })
    .await;
    assert!(broker.wait_closed(0, WAIT).await);
    let conn = broker.connection(0);
    assert_eq!(conn.kinds(), [PacketKind::Connect, PacketKind::Subscribe]);
    assert_eq!(conn.end, Some(ConnEnd::Script));
}

#[tokio::test]
async fn fake_broker_slow_connack_comes_after_the_sleep_v5() {
    let broker = FakeBroker::start(vec![vec![
        Step::Sleep(Duration::from_secs(1)),
        Step::ConnAck { code: 0 },
    ]])
    .await;
    let (_client, mut events) = client5(broker.port(), "kit_slow");
    let started = Instant::now();
    next5(&mut events, |e| match e.unwrap() {
        v5::Event::Incoming(v5::Incoming::ConnAck(_)) => Some(()),
        _ => None,
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(broker.connection(0).protocol_level, 5);
}
