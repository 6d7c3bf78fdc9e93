//! What amqtt 0.12.1 really does, measured with rumqttc clients, one broker
//! per test. Where it differs from Mosquitto the test name says so.

use super::Amqtt;
use crate::probe::{Options, Probe, QUIET, WAIT, publish_and_settle, will};
use std::time::Duration;

/// Clean session: the first connection is never closed and sends no Will;
/// its subscriptions are gone but it can still publish. Its own Will fires
/// when it finally drops.
#[tokio::test]
async fn amqtt_takeover_with_clean_session_leaves_the_first_open() {
    let broker = Amqtt::start().await;
    let port = broker.port();
    let watcher = Probe::v4(port, "watcher", Options::default()).await;
    watcher.subscribe("t/#").await;
    let first = Probe::v4(port, "dev", will("first-gone", false)).await;
    first.subscribe("t/cmd").await;
    let second = Probe::v4(port, "dev", will("second-gone", false)).await;
    assert!(second.accepted(), "{:?}", second.seen());

    assert_eq!(first.wait_closed(Duration::from_secs(2)).await, None);
    publish_and_settle(&watcher, "t/cmd", "to-first").await;
    assert_eq!(first.received("t/cmd"), [], "its subscription survived");
    first.publish("t/from-first", "still-here", false).await;
    assert!(!watcher.wait_received("t/from-first", WAIT).await.is_empty());
    assert_eq!(watcher.received("t/will"), [], "a Will at takeover");

    first.kill().await;
    let wills = watcher.wait_received("t/will", WAIT).await;
    assert_eq!(wills, [("first-gone".to_owned(), false)]);
    assert_eq!(second.closed(), None);
}

/// Persistent session, anonymous: the first connection is closed (a TCP
/// close: 3.1.1 has no server DISCONNECT) and a Will is published, but it
/// is the *second* client's Will; then the session monitor closes the
/// second connection too, and its Will is published again.
#[tokio::test]
async fn amqtt_takeover_with_persistent_session_closes_both() {
    let broker = Amqtt::start().await;
    let port = broker.port();
    let watcher = Probe::v4(port, "watcher", Options::default()).await;
    watcher.subscribe("t/will").await;
    let first = Probe::v4(port, "dev", will("first-gone", true)).await;
    let second = Probe::v4(port, "dev", will("second-gone", true)).await;
    assert!(second.accepted(), "{:?}", second.seen());

    let closed = first.wait_closed(WAIT).await.expect("first not closed");
    assert!(closed.contains("ConnectionAborted"), "{closed}");
    let closed = second.wait_closed(WAIT).await.expect("second not closed");
    assert!(closed.contains("ConnectionAborted"), "{closed}");
    let twice = crate::eventually(WAIT, || async { watcher.received("t/will").len() == 2 });
    assert!(twice.await, "{:?}", watcher.received("t/will"));
    let gone = ("second-gone".to_owned(), false);
    assert_eq!(watcher.received("t/will"), [gone.clone(), gone]);
}

/// Persistent session with a password user (not expired by the monitor):
/// the second connection stays, the Will published at takeover is again
/// the second client's, and the inherited subscription delivers nothing.
#[tokio::test]
async fn amqtt_takeover_with_persistent_session_and_user() {
    let broker = Amqtt::start_with_user("u", "p").await;
    let port = broker.port();
    let login = |o: Options| Options {
        login: Some(("u", "p")),
        ..o
    };
    let watcher = Probe::v4(port, "watcher", login(Options::default())).await;
    watcher.subscribe("t/#").await;
    let first = Probe::v4(port, "dev", login(will("first-gone", true))).await;
    first.subscribe("t/cmd").await;
    let second = Probe::v4(port, "dev", login(will("second-gone", true))).await;

    assert!(first.wait_closed(WAIT).await.is_some());
    let wills = watcher.wait_received("t/will", WAIT).await;
    assert_eq!(wills, [("second-gone".to_owned(), false)]);
    publish_and_settle(&watcher, "t/cmd", "to-session").await;
    assert_eq!(second.received("t/cmd"), []);
    assert_eq!(second.closed(), None);
}

/// An abrupt close publishes the Will, retained when asked; a clean
/// DISCONNECT suppresses it.
#[tokio::test]
async fn amqtt_will_on_abrupt_close_not_on_disconnect() {
    let broker = Amqtt::start().await;
    let port = broker.port();
    let watcher = Probe::v4(port, "watcher", Options::default()).await;
    watcher.subscribe("w/#").await;
    let retained_will = |topic| Options {
        will: Some((topic, "offline")),
        will_retain: true,
        ..Options::default()
    };
    Probe::v4(port, "a", retained_will("w/a"))
        .await
        .kill()
        .await;
    let got = watcher.wait_received("w/a", WAIT).await;
    assert_eq!(got, [("offline".to_owned(), false)]);

    Probe::v4(port, "b", retained_will("w/b"))
        .await
        .disconnect()
        .await;
    publish_and_settle(&watcher, "w/settle", "x").await;
    assert_eq!(watcher.received("w/b"), []);

    let late = Probe::v4(port, "late", Options::default()).await;
    late.subscribe("w/a").await;
    let got = late.wait_received("w/a", WAIT).await;
    assert!(got.contains(&("offline".to_owned(), true)), "{got:?}");
}

/// Retained messages reach the exact topic, `#` and `+` subscribers, and
/// leak: at every CONNECT amqtt replays each retained message once per
/// matching filter in its subscription table (the filters of every session
/// it holds, not the new client's), so a client that subscribed to
/// nothing, or to a filter that does not match, gets it too.
#[tokio::test]
async fn amqtt_retained_matches_filters_and_leaks_to_every_new_client() {
    let broker = Amqtt::start().await;
    let port = broker.port();
    let publisher = Probe::v4(port, "pub", Options::default()).await;
    publisher.publish("r/a/status", "online", true).await;
    assert!(crate::eventually(WAIT, || async { publisher.pubacks() == 1 }).await);

    // They stay connected: the leak below comes from their filters.
    let mut subscribers = Vec::new();
    for filter in ["r/a/status", "r/#", "r/+/status"] {
        let sub = Probe::v4(port, &format!("sub {filter}"), Options::default()).await;
        assert_eq!(sub.subscribe(filter).await, ["Success(AtLeastOnce)"]);
        let got = sub.wait_received("r/a/status", WAIT).await;
        assert!(
            got.contains(&("online".to_owned(), true)),
            "{filter}: {got:?}"
        );
        subscribers.push(sub);
    }

    let bystander = Probe::v4(port, "bystander", Options::default()).await;
    let leaked = bystander.wait_received("r/a/status", WAIT).await;
    assert!(
        !leaked.is_empty(),
        "no leak to a client with no subscription"
    );
    // The three filters above all match: one copy each.
    tokio::time::sleep(QUIET).await;
    assert_eq!(bystander.received("r/a/status").len(), 3);

    let other = Probe::v4(port, "other", Options::default()).await;
    other.subscribe("other/#").await;
    let leaked = other.wait_received("r/a/status", WAIT).await;
    assert!(!leaked.is_empty(), "no leak to a client of other/#");
}

/// A wrong password or none: CONNACK 0x05 (not authorized).
#[tokio::test]
async fn amqtt_refuses_a_wrong_password_with_connack_5() {
    let broker = Amqtt::start_with_user("alice", "s3cret").await;
    let wrong = Options {
        login: Some(("alice", "nope")),
        ..Options::default()
    };
    let refused = Probe::v4(broker.port(), "wrong", wrong).await;
    assert_eq!(
        refused.closed().as_deref(),
        Some("ConnectionRefused(NotAuthorized)")
    );
    let anonymous = Probe::v4(broker.port(), "anonymous", Options::default()).await;
    assert_eq!(
        anonymous.closed().as_deref(),
        Some("ConnectionRefused(NotAuthorized)")
    );
}

/// MQTT 5 CONNECT: amqtt parses it as 3.1.1. Without a Will or login it
/// answers a 3.1.1 CONNACK 0x01 (unacceptable protocol version) and closes,
/// which rumqttc's v5 client reads as a plain close. With a Will (as
/// mqtt-supervisor sends) it misreads the payload and waits for bytes that
/// never come: no answer, no close.
#[tokio::test]
async fn amqtt_mqtt5_connect_is_refused_or_hangs() {
    let broker = Amqtt::start().await;
    let port = broker.port();
    let v5 = Probe::v5(port, "five", Options::default()).await;
    assert!(!v5.accepted());
    assert_eq!(v5.closed().as_deref(), Some("MqttState(ConnectionAborted)"));

    // CONNECT v5, clean start, keep-alive 60, no properties, client "five".
    let mut connect = vec![0x10, 0x11, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0];
    connect.extend_from_slice(&[0, 4, b'f', b'i', b'v', b'e']);
    let (answer, closed) = raw_exchange(port, &connect).await;
    assert_eq!((answer, closed), (vec![0x20, 2, 0, 1], true));

    // The same with a QoS 1 Will (no Will properties) "x" on "t/w".
    let mut connect = vec![0x10, 0x1a, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x0e, 0, 60, 0];
    connect.extend_from_slice(&[
        0, 4, b'f', b'i', b'v', b'e', 0, 0, 3, b't', b'/', b'w', 0, 1, b'x',
    ]);
    let (answer, closed) = raw_exchange(port, &connect).await;
    assert_eq!((answer, closed), (vec![], false));
}

/// Writes `bytes`, then reads until the broker closes or stays quiet for
/// 2 s; returns what it sent and whether it closed.
async fn raw_exchange(port: u16, bytes: &[u8]) -> (Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    socket.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// Topic ACL: a denied SUBSCRIBE gets SUBACK 0x80; a denied QoS 1 PUBLISH
/// gets its PUBACK and is dropped; the connection stays open.
#[tokio::test]
async fn amqtt_acl_denies_with_suback_0x80_and_a_silent_puback() {
    let broker = Amqtt::start_with_acl("alice", "pw", &["ok/#", "no/#"], &["ok/#"]).await;
    let login = Options {
        login: Some(("alice", "pw")),
        ..Options::default()
    };
    let alice = Probe::v4(broker.port(), "alice", login).await;
    assert_eq!(alice.subscribe("secret/#").await, ["Failure"]);
    assert_eq!(alice.subscribe("ok/#").await, ["Success(AtLeastOnce)"]);
    assert_eq!(alice.subscribe("no/#").await, ["Success(AtLeastOnce)"]);

    alice.publish("no/x", "denied", false).await;
    alice.publish("ok/x", "allowed", false).await;
    assert!(!alice.wait_received("ok/x", WAIT).await.is_empty());
    tokio::time::sleep(QUIET).await;
    assert_eq!(alice.pubacks(), 2);
    assert_eq!(alice.received("no/x"), []);
    assert_eq!(alice.closed(), None);
    assert!(
        broker
            .log()
            .contains("alice not allowed to publish to TOPIC no/x")
    );
}
