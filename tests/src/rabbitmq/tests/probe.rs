//! Probing clients for the RabbitMQ checks: a rumqttc 3.1.1 client that
//! records what happened to it, and a raw TCP client that writes chosen
//! packets in one flush and reports what came back, byte for byte.

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, Incoming, LastWill, MqttOptions, QoS,
    SubscribeReasonCode,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// What a [`Probe`] saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    ConnAck(ConnectReturnCode),
    Publish {
        topic: String,
        payload: String,
        retain: bool,
    },
    PubAck(u16),
    SubAck(Vec<SubscribeReasonCode>),
    /// A DISCONNECT from the broker (3.1.1 has none; listed to be sure).
    Disconnect,
    /// The event loop failed: the connection is gone (the text says how).
    Error(String),
}

/// A rumqttc 3.1.1 client that never reconnects and records every event.
pub struct Probe {
    pub client: AsyncClient,
    seen: Arc<Mutex<Vec<(Instant, Seen)>>>,
    task: JoinHandle<()>,
}

/// Options for `client_id` on `port`, clean session, 30 s keep-alive.
pub fn options(port: u16, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options
}

/// A retained QoS 1 Will of `payload` on `topic`.
pub fn will(topic: &str, payload: &str) -> LastWill {
    LastWill::new(topic, payload, QoS::AtLeastOnce, true)
}

impl Probe {
    /// Connects and waits for the first event (CONNACK or an error).
    pub async fn connect(options: MqttOptions) -> Probe {
        let (client, mut events) = AsyncClient::new(options, 16);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let item = match events.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(c))) => Seen::ConnAck(c.code),
                    Ok(Event::Incoming(Incoming::Publish(p))) => Seen::Publish {
                        topic: p.topic,
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    },
                    Ok(Event::Incoming(Incoming::PubAck(a))) => Seen::PubAck(a.pkid),
                    Ok(Event::Incoming(Incoming::SubAck(s))) => Seen::SubAck(s.return_codes),
                    Ok(Event::Incoming(Incoming::Disconnect)) => Seen::Disconnect,
                    Ok(_) => continue,
                    Err(e) => Seen::Error(format!("{e:?}")),
                };
                let last = matches!(item, Seen::Error(_));
                sink.lock().unwrap().push((Instant::now(), item));
                if last {
                    return;
                }
            }
        });
        let probe = Probe { client, seen, task };
        probe.first(|_| true, Duration::from_secs(10)).await;
        probe
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Waits for the first event matching `what`; returns when it was seen.
    pub async fn first(&self, what: impl Fn(&Seen) -> bool, timeout: Duration) -> Option<Instant> {
        let find = || {
            let seen = self.seen.lock().unwrap();
            seen.iter().find(|(_, s)| what(s)).map(|(at, _)| *at)
        };
        crate::eventually(timeout, || async { find().is_some() }).await;
        find()
    }

    /// Waits for the connection to end (an error event).
    pub async fn closed(&self, timeout: Duration) -> Option<Instant> {
        self.first(|s| matches!(s, Seen::Error(_)), timeout).await
    }

    /// Payloads delivered on `topic`, with their retain flags.
    pub fn deliveries(&self, on: &str) -> Vec<(String, bool)> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Publish {
                    topic,
                    payload,
                    retain,
                } if topic == on => Some((payload, retain)),
                _ => None,
            })
            .collect()
    }

    /// Subscribes to `filter` at QoS 1 and returns its SUBACK's codes (None:
    /// no SUBACK within 5 s).
    pub async fn subscribe(&self, filter: &str) -> Option<Vec<SubscribeReasonCode>> {
        let before = self.seen().len();
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        let suback = || {
            self.seen().into_iter().skip(before).find_map(|s| match s {
                Seen::SubAck(codes) => Some(codes),
                _ => None,
            })
        };
        crate::eventually(Duration::from_secs(5), || async { suback().is_some() }).await;
        suback()
    }

    /// Drops the socket without a DISCONNECT (the event loop goes away).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// A clean DISCONNECT, then waits until the event loop ended.
    pub async fn disconnect(self) {
        self.client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// A raw 3.1.1 CONNECT (clean session, 30 s keep-alive).
pub fn connect_packet(level: u8, client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level];
    body.push(if login.is_some() { 0xC2 } else { 0x02 });
    body.extend([0, 30]);
    if level == 5 {
        body.push(0); // no properties
    }
    string(&mut body, client_id);
    if let Some((user, password)) = login {
        string(&mut body, user);
        string(&mut body, password);
    }
    packet(0x10, &body)
}

/// A raw PUBLISH, QoS 1, with `retain`.
pub fn publish_packet(topic: &str, id: u16, payload: &str, retain: bool) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic);
    body.extend(id.to_be_bytes());
    body.extend(payload.as_bytes());
    packet(0x32 | u8::from(retain), &body)
}

/// A raw SUBSCRIBE of one filter at QoS 1.
pub fn subscribe_packet(filter: &str, id: u16) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    string(&mut body, filter);
    body.push(1);
    packet(0x82, &body)
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u16).to_be_bytes());
    out.extend(s.as_bytes());
}

fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    crate::fake_broker::wire::encode_remaining(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// Opens a TCP connection, writes each of `flushes` with one `write_all`
/// (waiting `pause` between them), and returns every byte read until the
/// broker closed (`true`) or 3 s passed in silence (`false`).
pub async fn raw(port: u16, flushes: &[Vec<u8>], pause: Duration) -> (Vec<u8>, bool) {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    for (i, bytes) in flushes.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if socket.write_all(bytes).await.is_err() {
            break;
        }
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// The packet types in `bytes` (`CONNACK`, `PUBACK`, …) with their bodies.
pub fn packets(mut bytes: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (mut len, mut shift, mut i) = (0usize, 0, 1);
        while i < bytes.len() {
            len |= usize::from(bytes[i] & 0x7F) << shift;
            shift += 7;
            i += 1;
            if bytes[i - 1] & 0x80 == 0 {
                break;
            }
        }
        let end = (i + len).min(bytes.len());
        let name = match bytes[0] >> 4 {
            2 => "CONNACK",
            3 => "PUBLISH",
            4 => "PUBACK",
            9 => "SUBACK",
            13 => "PINGRESP",
            14 => "DISCONNECT",
            _ => "OTHER",
        };
        out.push((name, bytes[i..end].to_vec()));
        bytes = &bytes[end..];
    }
    out
}
