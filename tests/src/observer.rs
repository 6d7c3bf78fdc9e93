//! Foreign MQTT clients: an [`Observer`] that records every message the
//! broker delivers, and a [`Foreign`] client that takes a given client ID.

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

/// Subscribes to a filter and records what arrives.
pub struct Observer {
    client: AsyncClient,
    seen: Arc<Mutex<Vec<Message>>>,
    task: JoinHandle<()>,
}

impl Observer {
    /// Connects to the broker on `port` and subscribes to `filter`; returns
    /// once the SUBACK arrived (retained messages follow it).
    pub async fn start(port: u16, filter: &str) -> Observer {
        Observer::start_as(port, filter, None).await
    }

    /// Like [`Observer::start`], logging in as `(user, password)`.
    pub async fn start_as(port: u16, filter: &str, login: Option<(&str, &str)>) -> Observer {
        let id = format!("observer_{}", crate::free_port());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        let (client, mut events) = AsyncClient::new(options, 64);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        sink.lock().unwrap().push(Message {
                            topic: p.topic,
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                        })
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("observer subscribed")
            .unwrap();
        Observer { client, seen, task }
    }

    /// Payloads seen on `topic`, in order.
    pub fn payloads(&self, topic: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.payload.clone())
            .collect()
    }

    /// The last payload seen on `topic`.
    pub fn last(&self, topic: &str) -> Option<String> {
        self.payloads(topic).pop()
    }

    /// Every message seen so far.
    pub fn all(&self) -> Vec<Message> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until the last payload on `topic` is `payload`.
    pub async fn wait_for(&self, topic: &str, payload: &str, timeout: Duration) -> bool {
        crate::eventually(timeout, || async move {
            self.last(topic).as_deref() == Some(payload)
        })
        .await
    }

    /// Publishes (for tests that feed messages to the service).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client with a chosen client ID that counts its CONNACKs and how often
/// the broker dropped it. [`Foreign::connect`] never reconnects;
/// [`Foreign::fight`] takes the client ID back after every drop, like the
/// hand-written reconnect loop of the "code 7" war. Dropping it drops the
/// socket without DISCONNECT, as a killed process would.
pub struct Foreign {
    client: AsyncClient,
    connacks: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Foreign {
    /// Connects as `client_id`; returns after its CONNACK.
    pub async fn connect(port: u16, client_id: &str) -> Foreign {
        Foreign::start(port, client_id, None, None).await
    }

    /// Connects as `client_id`, logging in as `login` if given, and
    /// connects again `delay` after every drop, kicking whoever holds the
    /// client ID then. Returns after its first CONNACK.
    pub async fn fight(
        port: u16,
        client_id: &str,
        delay: Duration,
        login: Option<(&str, &str)>,
    ) -> Foreign {
        Foreign::start(port, client_id, Some(delay), login).await
    }

    async fn start(
        port: u16,
        client_id: &str,
        reconnect: Option<Duration>,
        login: Option<(&str, &str)>,
    ) -> Foreign {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(options, 16);
        let connacks = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let (c, d) = (connacks.clone(), drops.clone());
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) => {
                        d.fetch_add(1, Ordering::SeqCst);
                        match reconnect {
                            Some(delay) => tokio::time::sleep(delay).await,
                            None => return,
                        }
                    }
                }
            }
        });
        let up = crate::eventually(Duration::from_secs(10), || {
            let c = connacks.clone();
            async move { c.load(Ordering::SeqCst) > 0 }
        })
        .await;
        assert!(up, "foreign client {client_id} did not connect");
        Foreign {
            client,
            connacks,
            drops,
            task,
        }
    }

    /// How often the broker dropped this client (at most 1 unless it fights).
    pub fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }

    /// CONNACKs received.
    pub fn connacks(&self) -> usize {
        self.connacks.load(Ordering::SeqCst)
    }

    /// Clean DISCONNECT, waiting until it is written.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        self.task.abort();
    }
}
