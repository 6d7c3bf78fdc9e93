//! A recording MQTT client for the broker behaviour tests (`amqtt::facts`,
//! `rumqttd::facts`): MQTT 3.1.1 or 5 through rumqttc, never reconnecting,
//! keeping every packet the broker sent and how the connection ended, so a
//! test can assert what a broker really does on takeover, on a Will, on a
//! refused login or a denied topic.

use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{Event, Incoming, LastWill, MqttOptions, QoS, v5};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What the broker did, in the order the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A CONNACK that accepted the connection.
    ConnAck,
    Publish {
        topic: String,
        payload: String,
        retain: bool,
    },
    /// SUBACK return codes, as rumqttc names them (`Success(AtLeastOnce)`,
    /// `Failure`, `NotAuthorized`, ...).
    SubAck(Vec<String>),
    PubAck,
    /// The connection ended: rumqttc's error, e.g.
    /// `ConnectionRefused(NotAuthorized)`, a v5 `ServerDisconnect { .. }`
    /// or an I/O error when the broker just closed the socket.
    Closed(String),
}

/// How a probe connects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Will topic and payload (QoS 1).
    pub will: Option<(&'static str, &'static str)>,
    pub will_retain: bool,
    pub login: Option<(&'static str, &'static str)>,
    /// Clean session (3.1.1) / clean start (5); rumqttc's default is true.
    pub persistent: bool,
}

enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// One connection to a broker that records what arrives.
pub(crate) struct Probe {
    client: Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Probe {
    /// Connects with MQTT 3.1.1; returns once the broker accepted, refused
    /// or closed the connection (bounded at 10 s).
    pub async fn v4(port: u16, id: &str, o: Options) -> Probe {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(!o.persistent);
        if let Some((topic, payload)) = o.will {
            options.set_last_will(LastWill::new(
                topic,
                payload,
                QoS::AtLeastOnce,
                o.will_retain,
            ));
        }
        if let Some((user, password)) = o.login {
            options.set_credentials(user, password);
        }
        let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = match events.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => Seen::ConnAck,
                    Ok(Event::Incoming(Incoming::Publish(p))) => Seen::Publish {
                        topic: p.topic,
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    },
                    Ok(Event::Incoming(Incoming::SubAck(s))) => {
                        Seen::SubAck(s.return_codes.iter().map(|c| format!("{c:?}")).collect())
                    }
                    Ok(Event::Incoming(Incoming::PubAck(_))) => Seen::PubAck,
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => continue,
                    Err(e) => Seen::Closed(format!("{e:?}")),
                };
                let closed = matches!(event, Seen::Closed(_));
                sink.lock().unwrap().push(event);
                if closed {
                    return;
                }
            }
        });
        Probe::settled(Client::V4(client), seen, task).await
    }

    /// Connects with MQTT 5; returns once the broker accepted, refused or
    /// closed the connection (bounded at 10 s).
    pub async fn v5(port: u16, id: &str, o: Options) -> Probe {
        let mut options = v5::MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_start(!o.persistent);
        if let Some((topic, payload)) = o.will {
            let qos = v5::mqttbytes::QoS::AtLeastOnce;
            options.set_last_will(p5::LastWill::new(topic, payload, qos, o.will_retain, None));
        }
        if let Some((user, password)) = o.login {
            options.set_credentials(user, password);
        }
        let (client, mut events) = v5::AsyncClient::new(options, 16);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = match events.poll().await {
                    Ok(v5::Event::Incoming(p5::Packet::ConnAck(_))) => Seen::ConnAck,
                    Ok(v5::Event::Incoming(p5::Packet::Publish(p))) => Seen::Publish {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    },
                    Ok(v5::Event::Incoming(p5::Packet::SubAck(s))) => {
                        Seen::SubAck(s.return_codes.iter().map(|c| format!("{c:?}")).collect())
                    }
                    Ok(v5::Event::Incoming(p5::Packet::PubAck(_))) => Seen::PubAck,
                    Ok(v5::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => continue,
                    Err(e) => Seen::Closed(format!("{e:?}")),
                };
                let closed = matches!(event, Seen::Closed(_));
                sink.lock().unwrap().push(event);
                if closed {
                    return;
                }
            }
        });
        Probe::settled(Client::V5(client), seen, task).await
    }

    async fn settled(client: Client, seen: Arc<Mutex<Vec<Seen>>>, task: JoinHandle<()>) -> Probe {
        let probe = Probe { client, seen, task };
        let settled = crate::eventually(Duration::from_secs(10), || async {
            probe.accepted() || probe.closed().is_some()
        })
        .await;
        assert!(settled, "no CONNACK and no close within 10 s");
        probe
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Whether a CONNACK accepted the connection.
    pub fn accepted(&self) -> bool {
        self.seen().contains(&Seen::ConnAck)
    }

    /// How the connection ended, if it did.
    pub fn closed(&self) -> Option<String> {
        self.seen().into_iter().find_map(|s| match s {
            Seen::Closed(why) => Some(why),
            _ => None,
        })
    }

    /// Waits up to `timeout` for the connection to end; returns how.
    pub async fn wait_closed(&self, timeout: Duration) -> Option<String> {
        crate::eventually(timeout, || async { self.closed().is_some() }).await;
        self.closed()
    }

    /// (payload, retain flag) of every message received on `topic`.
    pub fn received(&self, topic: &str) -> Vec<(String, bool)> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Publish {
                    topic: t,
                    payload,
                    retain,
                } if t == topic => Some((payload, retain)),
                _ => None,
            })
            .collect()
    }

    /// Waits up to `timeout` for a message on `topic`.
    pub async fn wait_received(&self, topic: &str, timeout: Duration) -> Vec<(String, bool)> {
        crate::eventually(timeout, || async { !self.received(topic).is_empty() }).await;
        self.received(topic)
    }

    /// Subscribes at QoS 1 and returns the SUBACK's codes (bounded at 10 s).
    pub async fn subscribe(&self, filter: &str) -> Vec<String> {
        let before = self.subacks().len();
        match &self.client {
            Client::V4(c) => c.subscribe(filter, QoS::AtLeastOnce).await.unwrap(),
            Client::V5(c) => {
                let qos = v5::mqttbytes::QoS::AtLeastOnce;
                c.subscribe(filter, qos).await.unwrap()
            }
        }
        let acked = crate::eventually(Duration::from_secs(10), || async {
            self.subacks().len() > before || self.closed().is_some()
        })
        .await;
        assert!(acked, "no SUBACK for {filter} within 10 s");
        self.subacks().get(before).cloned().unwrap_or_default()
    }

    fn subacks(&self) -> Vec<Vec<String>> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::SubAck(codes) => Some(codes),
                _ => None,
            })
            .collect()
    }

    /// Publishes at QoS 1 (queued; see [`Probe::pubacks`]).
    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        let payload = payload.as_bytes().to_vec();
        match &self.client {
            Client::V4(c) => c
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .unwrap(),
            Client::V5(c) => {
                let qos = v5::mqttbytes::QoS::AtLeastOnce;
                c.publish(topic, qos, retain, payload).await.unwrap()
            }
        }
    }

    /// PUBACKs received.
    pub fn pubacks(&self) -> usize {
        self.seen().iter().filter(|s| **s == Seen::PubAck).count()
    }

    /// A clean DISCONNECT, waiting until it is written.
    pub async fn disconnect(mut self) {
        let sent = match &self.client {
            Client::V4(c) => c.disconnect().await.is_ok(),
            Client::V5(c) => c.disconnect().await.is_ok(),
        };
        assert!(
            sent,
            "cannot DISCONNECT, the connection ended: {:?}",
            self.seen()
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }

    /// Drops the socket without a DISCONNECT (the abrupt close that fires a
    /// Will).
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a probe waits for something that should come.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits before concluding that something did not happen.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

pub(crate) fn will(payload: &'static str, persistent: bool) -> Options {
    Options {
        will: Some(("t/will", payload)),
        persistent,
        ..Options::default()
    }
}

/// A watcher on `t/#` that saw its own PUBLISH of `payload` on `topic`, so
/// that everything the broker routed before it has arrived too.
pub(crate) async fn publish_and_settle(watcher: &Probe, topic: &str, payload: &str) {
    watcher.publish(topic, payload, false).await;
    let routed = crate::eventually(WAIT, || async {
        watcher.received(topic).iter().any(|(p, _)| p == payload)
    });
    assert!(routed.await, "{payload} on {topic} not routed back");
    tokio::time::sleep(QUIET).await;
}
