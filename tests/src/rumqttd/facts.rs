//! What rumqttd 0.20 really does, measured with rumqttc clients, one broker
//! per test. rumqttd has no topic ACL; everything else is checked here.

use super::Rumqttd;
use crate::probe::{Options, Probe, QUIET, WAIT, publish_and_settle, will};
use std::time::Duration;

async fn probe(v5: bool, port: u16, id: &str, options: Options) -> Probe {
    if v5 {
        Probe::v5(port, id, options).await
    } else {
        Probe::v4(port, id, options).await
    }
}

/// A close with neither a CONNACK nor a DISCONNECT: rumqttc reports the
/// end of the stream.
fn tcp_close(probe: &Probe) -> bool {
    probe.closed().as_deref() == Some("MqttState(ConnectionAborted)")
}

/// Clean session/start, on either listener: the first connection gets a
/// plain TCP close (no DISCONNECT 0x8E on MQTT 5), and the Will published
/// at takeover is the *second* client's. That consumes it: when the second
/// connection later drops, no Will is published.
#[tokio::test]
async fn rumqttd_takeover_closes_the_first_and_fires_the_new_will() {
    let broker = Rumqttd::start().await;
    let watcher = Probe::v5(broker.port_v5(), "watcher", Options::default()).await;
    watcher.subscribe("t/#").await;
    for (round, (v5, id)) in [(true, "dev5"), (false, "dev4")].into_iter().enumerate() {
        let port = if v5 {
            broker.port_v5()
        } else {
            broker.port_v4()
        };
        let first = probe(v5, port, id, will("first-gone", false)).await;
        first.subscribe("t/cmd").await;
        let second = probe(v5, port, id, will("second-gone", false)).await;
        assert!(second.accepted(), "{:?}", second.seen());

        assert!(first.wait_closed(WAIT).await.is_some(), "{id}");
        assert!(tcp_close(&first), "{id}: {:?}", first.closed());
        let fired = crate::eventually(WAIT, || async {
            watcher.received("t/will").len() == round + 1
        });
        assert!(fired.await, "{id}: no Will at takeover");
        publish_and_settle(&watcher, "t/cmd", id).await;
        assert_eq!(
            second.received("t/cmd"),
            [],
            "{id}: a clean session kept subscriptions"
        );

        second.kill().await;
        publish_and_settle(&watcher, "t/settle", id).await;
        let wills = watcher.received("t/will");
        assert_eq!(
            wills.len(),
            round + 1,
            "{id}: a Will when the second dropped"
        );
        assert!(wills.iter().all(|(p, _)| p == "second-gone"), "{wills:?}");
    }
}

/// Across listeners (3.1.1 first, MQTT 5 second) the takeover is the same:
/// the first is closed and the second client's Will is published.
#[tokio::test]
async fn rumqttd_takeover_across_listeners() {
    let broker = Rumqttd::start().await;
    let watcher = Probe::v5(broker.port_v5(), "watcher", Options::default()).await;
    watcher.subscribe("t/#").await;
    let first = Probe::v4(broker.port_v4(), "dev", will("first-gone", false)).await;
    let second = Probe::v5(broker.port_v5(), "dev", will("second-gone", false)).await;
    assert!(second.accepted());
    assert!(first.wait_closed(WAIT).await.is_some());
    assert!(tcp_close(&first), "{:?}", first.closed());
    let wills = watcher.wait_received("t/will", WAIT).await;
    assert_eq!(wills, [("second-gone".to_owned(), false)]);
}

/// Persistent session: the first is closed, no Will at takeover, the second
/// inherits the subscriptions and keeps its own Will.
#[tokio::test]
async fn rumqttd_takeover_with_persistent_session() {
    let broker = Rumqttd::start().await;
    let port = broker.port_v5();
    let watcher = Probe::v5(port, "watcher", Options::default()).await;
    watcher.subscribe("t/#").await;
    let first = Probe::v5(port, "dev", will("first-gone", true)).await;
    first.subscribe("t/cmd").await;
    let second = Probe::v5(port, "dev", will("second-gone", true)).await;

    assert!(first.wait_closed(WAIT).await.is_some());
    assert!(tcp_close(&first), "{:?}", first.closed());
    let inherited = crate::eventually(WAIT, || async {
        watcher.publish("t/cmd", "hello", false).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        !second.received("t/cmd").is_empty()
    });
    assert!(inherited.await, "no delivery on the inherited subscription");
    assert_eq!(watcher.received("t/will"), []);

    second.kill().await;
    let wills = watcher.wait_received("t/will", WAIT).await;
    assert_eq!(wills, [("second-gone".to_owned(), false)]);
}

/// An abrupt close publishes the Will, retained when asked; a clean
/// DISCONNECT suppresses it; on both listeners.
#[tokio::test]
async fn rumqttd_will_on_abrupt_close_not_on_disconnect() {
    let broker = Rumqttd::start().await;
    let watcher = Probe::v5(broker.port_v5(), "watcher", Options::default()).await;
    watcher.subscribe("w/#").await;
    let retained_will = |topic| Options {
        will: Some((topic, "offline")),
        will_retain: true,
        ..Options::default()
    };
    let (v4, v5) = (broker.port_v4(), broker.port_v5());
    // All connect before any leaves: after a clean DISCONNECT rumqttd sends
    // its router a second, late disconnect for the same connection slot,
    // which can drop a client that connected in between and reused it.
    let a5 = Probe::v5(v5, "a5", retained_will("w/a5")).await;
    let a4 = Probe::v4(v4, "a4", retained_will("w/a4")).await;
    let b5 = Probe::v5(v5, "b5", retained_will("w/b5")).await;
    let b4 = Probe::v4(v4, "b4", retained_will("w/b4")).await;
    a5.kill().await;
    a4.kill().await;
    b5.disconnect().await;
    b4.disconnect().await;
    for topic in ["w/a5", "w/a4"] {
        let got = watcher.wait_received(topic, WAIT).await;
        assert_eq!(got, [("offline".to_owned(), false)], "{topic}");
    }
    publish_and_settle(&watcher, "w/settle", "x").await;
    assert_eq!(watcher.received("w/b5"), []);
    assert_eq!(watcher.received("w/b4"), []);

    let late = Probe::v4(v4, "late", Options::default()).await;
    late.subscribe("w/+").await;
    for topic in ["w/a5", "w/a4"] {
        let got = late.wait_received(topic, WAIT).await;
        assert_eq!(got, [("offline".to_owned(), true)], "{topic}");
    }
}

/// Retained messages reach exactly the matching filters (exact, `#`, `+`),
/// once, and nobody else.
#[tokio::test]
async fn rumqttd_retained_matches_filters_only() {
    let broker = Rumqttd::start().await;
    let port = broker.port_v5();
    let publisher = Probe::v5(port, "pub", Options::default()).await;
    publisher.publish("r/a/status", "online", true).await;
    assert!(crate::eventually(WAIT, || async { publisher.pubacks() == 1 }).await);

    let mut subscribers = Vec::new();
    for filter in ["r/a/status", "r/#", "r/+/status"] {
        let sub = Probe::v5(
            port,
            &format!("sub-{}", subscribers.len()),
            Options::default(),
        )
        .await;
        assert_eq!(sub.subscribe(filter).await, ["Success(AtLeastOnce)"]);
        let got = sub.wait_received("r/a/status", WAIT).await;
        assert_eq!(got, [("online".to_owned(), true)], "{filter}");
        subscribers.push(sub);
    }
    let bystander = Probe::v5(port, "bystander", Options::default()).await;
    let other = Probe::v5(port, "other", Options::default()).await;
    other.subscribe("other/#").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(bystander.received("r/a/status"), []);
    assert_eq!(other.received("r/a/status"), []);
    for sub in &subscribers {
        assert_eq!(sub.received("r/a/status").len(), 1);
    }
}

/// A wrong password, no login, or the other protocol's listener: the
/// connection is closed without a CONNACK, on both listeners.
#[tokio::test]
async fn rumqttd_refuses_without_connack() {
    let broker = Rumqttd::start_with_user("alice", "pw").await;
    let login = |password| Options {
        login: Some(("alice", password)),
        ..Options::default()
    };
    let (v4, v5) = (broker.port_v4(), broker.port_v5());
    let refused = [
        Probe::v5(v5, "wrong5", login("nope")).await,
        Probe::v4(v4, "wrong4", login("nope")).await,
        Probe::v5(v5, "anonymous5", Options::default()).await,
        Probe::v4(v4, "anonymous4", Options::default()).await,
        Probe::v4(v5, "v4-on-v5", login("pw")).await,
        Probe::v5(v4, "v5-on-v4", login("pw")).await,
    ];
    for probe in &refused {
        assert!(tcp_close(probe) && !probe.accepted(), "{:?}", probe.seen());
    }
    assert!(Probe::v5(v5, "ok5", login("pw")).await.accepted());
    assert!(Probe::v4(v4, "ok4", login("pw")).await.accepted());
}
